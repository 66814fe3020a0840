"""Reading runs as an operator does, from a machine without the workers' code: only the
journal URL, no ``-A``. And what a newcomer sees when the journal cannot be used: one line
naming it (password masked) and the fix, exit status 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest

from orchestrator.journal.sql import migrate
from orchestrator.journal.sql.journal import SqlJournal
from tests.builders import new_run
from tests.integration.cluster import APP, BIN, ROOT, SERVER, Cluster


def continuum(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The command run where no app module can be imported (an operator's directory)."""
    base = {k: v for k, v in os.environ.items() if k not in ("ORCHESTRATOR_JOURNAL_URL",)}
    base.pop("PYTHONPATH", None)
    return subprocess.run(
        [str(BIN / "continuum"), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_runs_and_results_read_with_only_the_journal_url(cluster: Cluster, tmp_path: Path) -> None:
    run_id = cluster.orc.start("sequential", 3, run_id=f"read-{uuid.uuid4().hex[:8]}").run_id
    assert cluster.orc.result(run_id, timeout=60) == 3
    url = cluster.url

    listed = continuum("runs", "list", "--journal-url", url, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert run_id in [r["run_id"] for r in json.loads(listed.stdout)]

    shown = continuum("runs", "show", run_id, "--journal-url", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "status    completed" in shown.stdout and "run_completed" in shown.stdout

    history = continuum(
        "runs", "history", run_id, cwd=tmp_path, env={"ORCHESTRATOR_JOURNAL_URL": url}
    )
    assert history.returncode == 0, history.stderr
    assert history.stdout.count("activity_completed") == 3

    result = continuum("result", run_id, "--journal-url", url, "--timeout", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == 3


@pytest.mark.parametrize("command", [["runs", "show"], ["runs", "history"], ["result"]])
def test_an_unknown_run_is_an_error_naming_it(
    cluster: Cluster, tmp_path: Path, command: list[str]
) -> None:
    done = continuum(*command, "no-such-run", "--journal-url", cluster.url, cwd=tmp_path)
    assert done.returncode == 1
    assert "unknown run 'no-such-run'" in done.stderr
    assert "Traceback" not in done.stderr


def _unmigrated_database() -> str:
    name = f"continuum_bare_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(SERVER.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def _drop(name: str) -> None:
    with psycopg.connect(SERVER.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "list"],
        ["runs", "show", "r1"],
        ["result", "r1"],
        ["-A", APP, "runs", "list"],
        ["-A", APP, "start", "sequential", "--args", "[1]"],
        ["-A", APP, "dispatcher"],
        ["-A", APP, "web", "--port", "0"],
        ["metrics", "--port", "0"],
    ],
    ids=lambda a: " ".join(a),
)
def test_an_unusable_journal_is_one_line_naming_it_and_the_fix(
    tmp_path: Path, argv: list[str]
) -> None:
    base = SERVER.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    with_password = base.replace("postgres@", "postgres:s3cret@")
    bare = _unmigrated_database()
    try:
        cases = {
            "unreachable": (with_password.replace(":5432", ":1") + "/x", "cannot reach"),
            "no database": (f"{base}/continuum_missing_{uuid.uuid4().hex[:6]}", "does not exist"),
            "no tables": (f"{base}/{bare}", "has no tables yet"),
        }
        for what, (url, says) in cases.items():
            env = {"ORCHESTRATOR_JOURNAL_URL": url, "PYTHONPATH": str(ROOT)}
            done = continuum(*argv, cwd=ROOT, env=env, timeout=30)
            lines = done.stderr.strip().splitlines()
            assert done.returncode == 2, (what, done.stdout, done.stderr)
            assert len(lines) == 1 and says in lines[0], (what, done.stderr)
            assert "s3cret" not in done.stderr
            if what != "unreachable":
                assert "continuum db upgrade" in lines[0]
    finally:
        _drop(bare)


def test_dev_runs_are_read_with_dev(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'continuum-dev.sqlite3'}"
    migrate.upgrade(url)
    journal = SqlJournal(url)
    assert journal.create_run(new_run("dev-run-1", workflow="order"))
    journal.close()

    listed = continuum("runs", "list", "--dev", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "dev-run-1" in listed.stdout and "order" in listed.stdout
    shown = continuum("runs", "show", "dev-run-1", "--dev", cwd=tmp_path)
    assert shown.returncode == 0 and "run_started" in shown.stdout

    # Pointed elsewhere by mistake, the error says where the dev runs are.
    env = {"ORCHESTRATOR_JOURNAL_URL": f"sqlite:///{tmp_path / 'other.sqlite3'}"}
    done = continuum("runs", "list", cwd=tmp_path, env=env)
    assert done.returncode == 2 and "add --dev" in done.stderr


@pytest.mark.parametrize(
    ("argv", "path", "says"),
    [
        (["-A", APP, "web", "--read-only"], "/", "Runs"),
        (["metrics", "--journal-url", "{url}"], "/metrics", "continuum_runs{"),
    ],
    ids=["web", "metrics"],
)
def test_web_and_metrics_serve_the_journal(
    cluster: Cluster, argv: list[str], path: str, says: str
) -> None:
    import httpx

    from tests.integration.cluster import wait_for
    from tests.integration.webserver import _free_port

    cluster.orc.start("sequential", 1)
    port = _free_port()
    args = [a.replace("{url}", cluster.url) for a in argv]
    proc = subprocess.Popen(
        [str(BIN / "continuum"), *args, "--port", str(port)],
        cwd=ROOT,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:

        def page() -> str | None:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            except httpx.TransportError:
                return None
            return answer.text if answer.status_code == 200 else None

        assert says in wait_for(page, 30, f"{' '.join(argv)} to answer")
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert f"http://127.0.0.1:{port}/" in out
    assert "Traceback" not in out
