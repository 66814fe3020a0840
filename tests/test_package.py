"""The built wheel carries the migrations: ``continuum db upgrade`` works from an install."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from orchestrator.journal.sql import migrate

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_migrations_and_upgrades_a_database(wheel: Path, tmp_path: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "orchestrator/migrations/env.py" in names
    assert "orchestrator/migrations/versions/0001_journal.py" in names
    assert "orchestrator/migrations/versions/0002_children_and_nodes.py" in names
    assert "orchestrator/migrations/versions/0003_tasks_by_run_and_id.py" in names
    assert "orchestrator/migrations/script.py.mako" in names
    installed = tmp_path / "installed"
    zipfile.ZipFile(wheel).extractall(installed)

    # Only the unpacked wheel and the dependencies: no checkout, no editable finder.
    db = tmp_path / "journal.sqlite3"
    env = {
        "PYTHONPATH": os.pathsep.join([str(installed), sysconfig.get_paths()["purelib"]]),
        "PATH": os.environ.get("PATH", ""),
    }
    code = (
        "import orchestrator, sys; assert orchestrator.__file__.startswith(sys.argv[1]);"
        "from orchestrator.cli.main import main; main(['db', 'upgrade', '--url', sys.argv[2]])"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(installed), f"sqlite:///{db}"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"is at revision {migrate.head()}" in result.stdout
    tables = {r[0] for r in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"runs", "events", "inbox", "tasks", "timers", "alembic_version"} <= tables
