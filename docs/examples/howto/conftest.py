"""Each example module runs against its own worker, dispatcher and journal, in this process.

The same arrangement as the Getting started page's ``conftest.py``, for many apps: the
fixture serves the ``app`` and ``orc`` of the module whose tests ask for it.
"""

import threading
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from orchestrator import Orchestrator
from orchestrator.cli import main as continuum


@pytest.fixture(scope="module")
def workflows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrator]:
    app, orc = request.module.app, request.module.orc
    journal_url = f"sqlite:///{tmp_path_factory.mktemp('journal')}/journal.sqlite3"
    continuum(["db", "upgrade", "--url", journal_url], standalone_mode=False)
    app.conf.update(
        broker_url="memory://",
        broker_transport_options={"polling_interval": 0.01},
        result_backend=None,
    )
    orc.configure(journal_url=journal_url, poll_interval=0.1)
    stop = threading.Event()
    dispatcher = threading.Thread(target=orc.dispatcher().run, args=(stop,), daemon=True)
    dispatcher.start()
    with start_worker(app, pool="solo", perform_ping_check=False) as worker:
        yield orc
        app.control.shutdown(destination=[worker.hostname])
    stop.set()
    dispatcher.join()
