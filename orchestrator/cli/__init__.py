"""Surfaces: the ``continuum`` command line (and ``celery -A app orchestrator``), and dev mode.

May import every layer below it; nothing imports it. ``main`` is the console script.
"""

from orchestrator.cli.main import celery_command, main

__all__ = ["celery_command", "main"]
