"""Least privilege on the database, and no credentials where an operator reads."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from orchestrator.journal.sql import migrate
from tests.conftest import RUNTIME_ROLE

ROOT = Path(__file__).resolve().parents[1]


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE runs",
        "ALTER TABLE runs ADD COLUMN x int",
        "CREATE TABLE extra (x int)",
        "DELETE FROM events",
        "UPDATE events SET data = '{}'",
        "TRUNCATE inbox",
        "DELETE FROM runs",
        "UPDATE alembic_version SET version_num = 'x'",
    ],
)
def test_the_runtime_role_cannot_change_the_schema_or_rewrite_history(
    postgres_runtime_url: str, statement: str
) -> None:
    with psycopg.connect(libpq(postgres_runtime_url), autocommit=True) as conn:  # noqa: SIM117
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_grant_statements_refuse_a_role_name_that_is_not_an_identifier() -> None:
    with pytest.raises(ValueError, match="invalid role name"):
        migrate.grant_statements('app"; DROP TABLE runs; --')
    assert all(RUNTIME_ROLE in s for s in migrate.grant_statements(RUNTIME_ROLE))


def test_the_dispatcher_log_hides_the_journal_password(postgres_url: str, tmp_path: Path) -> None:
    url = make_url(postgres_url).set(password="s3cret-pw").render_as_string(hide_password=False)
    env = {"ORCHESTRATOR_JOURNAL_URL": url, "PATH": "", "PYTHONPATH": str(ROOT)}
    log = tmp_path / "dispatcher.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "continuum"),
                "-A",
                "tests.integration.wfapp",
                "dispatcher",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while b"dispatcher started" not in log.read_bytes():
                assert time.monotonic() < deadline, log.read_text()
                assert proc.poll() is None, log.read_text()
                time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert "s3cret-pw" not in text
    assert "***" in text
