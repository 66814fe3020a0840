"""Each example module runs against its own worker, dispatcher and journal, in this process.

The same arrangement as the Getting started page's ``conftest.py``, for many apps: the
fixture serves the ``app`` and ``orc`` of the module whose tests ask for it. ``workflows``
keeps the journal in SQLite; ``postgres_workflows`` in a Postgres database of its own,
created on the server of ``CONTINUUM_TEST_PG`` (default: the local one) and dropped after.
"""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from celery.contrib.testing.worker import start_worker
from orchestrator import Orchestrator
from orchestrator.cli import main as continuum
from sqlalchemy.engine import make_url


@contextmanager
def serve(request: pytest.FixtureRequest, journal_url: str) -> Iterator[Orchestrator]:
    app, orc = request.module.app, request.module.orc
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
    orc.journal.close()


@pytest.fixture(scope="module")
def workflows(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrator]:
    journal_url = f"sqlite:///{tmp_path_factory.mktemp('journal')}/journal.sqlite3"
    with serve(request, journal_url) as orc:
        yield orc


@pytest.fixture(scope="module")
def postgres_workflows(request: pytest.FixtureRequest) -> Iterator[Orchestrator]:
    server = make_url(
        os.environ.get("CONTINUUM_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    )
    name = f"continuum_howto_{os.getpid()}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        journal_url = server.set(database=name).render_as_string(hide_password=False)
        with serve(request, journal_url) as orc:
            yield orc
    finally:
        drop()
