"""The runtime: the driver (claim, replay, commit, publish), the dispatcher, the publisher
interface and the named fault points.

It may import the model, the engine and the journal; never Celery or kombu: it publishes
through :class:`~orchestrator.runtime.publisher.Publisher`, which the Celery layer implements.
"""
