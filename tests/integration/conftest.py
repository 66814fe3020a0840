from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from tests.integration.cluster import Cluster


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A journal database, one worker (prefork, 2 processes) and one dispatcher."""
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.start_worker()
        c.start_dispatcher()
        yield c
    finally:
        c.stop()


@pytest.fixture
def queue(cluster: Cluster) -> Iterator[str]:
    """The queue of a worker that runs up to 3 activities in place per message; no other
    worker consumes it."""
    name = f"{cluster.name}-in-place"
    cluster.start_worker("eager", concurrency=1, queues=name, CONTINUUM_TEST_EAGER_ACTIVITIES="3")
    try:
        yield name
    finally:
        cluster.kill(cluster.workers.pop("eager"), signal.SIGTERM)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.integration)
