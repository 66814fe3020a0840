"""Run the app's workflows inside the test process: a Celery worker and a dispatcher in
threads, kombu's in-memory broker, and a fresh SQLite journal for the test session."""

import threading
from collections.abc import Iterator

import pytest
from celery.contrib.testing.worker import start_worker
from orchestrator import Orchestrator
from orchestrator.cli import main as continuum

from hello import app, orc


@pytest.fixture(scope="session")
def workflows(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orchestrator]:
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
        app.control.shutdown(destination=[worker.hostname])  # now, not at its next poll
    stop.set()
    dispatcher.join()
