"""The README's first command works in a fresh virtual environment built from the wheel."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_first_command() -> str:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README has no sh block"
    commands = [line for line in block.group(1).splitlines() if line and not line.startswith("#")]
    return commands[0]


@pytest.mark.timeout(600)
def test_readme_first_command_runs_the_order_from_a_wheel(wheel: Path, tmp_path: Path) -> None:
    command = readme_first_command()
    assert "continuum -A tasks dev" in command
    dev_part = command.split("&&")[-1].strip()  # the part after the install steps

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    installed = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]

    # A project directory with the reference deployment, and no checkout of the library.
    project = tmp_path / "project"
    shutil.copytree(ROOT / "tasks", project / "tasks")
    shutil.copy(ROOT / "celeryconfig.py", project / "celeryconfig.py")
    argv = shlex.split(dev_part)
    argv[0] = str(env_dir / "bin" / Path(argv[0]).name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PYTHON"))}
    done = subprocess.run(
        argv,
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = [
        "done           reserve_stock",
        "done           charge",
        "timer fired",
        "child started",
        "child done",
        'result: {"order_id": "o-1", "status": "shipped"',
    ]
    positions = [out.find(step) for step in steps]
    assert all(p >= 0 for p in positions), out
    assert positions == sorted(positions), out
    assert (project / "continuum-dev.sqlite3").exists()

    # The newcomer's next command: dev said how to read its runs, and that works.
    assert "continuum runs list --dev" in out
    continuum = str(env_dir / "bin" / "continuum")

    def next_command(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [continuum, "-A", "tasks", "runs", "list", *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    listed = next_command("--dev")
    assert listed.returncode == 0, listed.stderr
    assert "order" in listed.stdout
    # Without --dev it reads the reference config's Postgres journal: where that cannot be
    # used, one line says so and points at the dev runs.
    elsewhere = next_command()
    if elsewhere.returncode != 0:
        assert elsewhere.returncode == 2, elsewhere.stderr
        assert len(elsewhere.stderr.strip().splitlines()) == 1, elsewhere.stderr
        assert "add --dev" in elsewhere.stderr
