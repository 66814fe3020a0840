"""The Celery integration: the publisher, message headers, the replay task, outcome capture,
the worker bootstep, activities run in place and late start marks.

The only layer below the surfaces that imports ``celery`` or ``kombu``. It may import every
layer below it; it reaches the orchestrator it serves through
:class:`~orchestrator.celery.host.Host`, never the class itself.
"""
