"""A cluster of the canvas app (:mod:`tests.integration.canvasapp`) and signatures of its
tasks, for the canvas tests."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from celery import Celery
from celery.canvas import Signature

from tests.integration import canvasapp
from tests.integration.cluster import BROKER, Cluster

#: A second queue the worker consumes, for canvases that route a task there.
OTHER = "other"


@contextlib.contextmanager
def running(workdir: Path, broker: str = BROKER) -> Iterator[Cluster]:
    """A journal, one worker of the canvas app (also on a second queue) and a dispatcher;
    ``cluster.orc`` is this process's instance of the app's orchestrator."""
    c = Cluster(workdir, app="tests.integration.canvasapp", broker=broker)
    c.orc = canvasapp.make(broker, c.name, c.url)[1]
    try:
        start_worker(c)
        c.start_dispatcher()
        yield c
    finally:
        c.stop()


def start_worker(cluster: Cluster) -> None:
    cluster.start_worker(queues=f"{cluster.name}-default,{cluster.name}-{OTHER}")


class Tasks:
    """Signatures of the canvas app's tasks: ``t.add(1, 2)`` is ``canvas.add.s(1, 2)``."""

    def __init__(self, cluster: Cluster) -> None:
        self.app: Celery = cluster.orc.app
        self.prefix = cluster.name

    def __getattr__(self, name: str) -> Callable[..., Signature]:
        def make(*args: Any, **kwargs: Any) -> Signature:
            return self.app.signature(f"canvas.{name}", args=args, kwargs=kwargs)

        return make

    def si(self, name: str, *args: Any, **kwargs: Any) -> Signature:
        return self.app.signature(f"canvas.{name}", args=args, kwargs=kwargs, immutable=True)
