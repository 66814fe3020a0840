"""Surfaces: :class:`~orchestrator.client.facade.Orchestrator`, the two lines a Celery app
adds, and the client calls on runs (start, signal, cancel, result, describe, history, list).

It may import every layer below it; the command line, the web view and the test kit build on it.
"""
