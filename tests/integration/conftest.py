from __future__ import annotations

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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.nodeid.split("/"):
            item.add_marker(pytest.mark.integration)
