"""The documentation's examples run, so none of them can rot.

Every example is a file under ``docs/examples`` that a page includes with a snippet
(``--8<-- "file"``), so the page shows exactly the file tested here:

- ``howto/*.py``: one module per page, its workflows and the tests that drive them, run by
  pytest against a Celery worker and a dispatcher in the test process (``howto/conftest.py``:
  on SQLite, or on a Postgres database of their own for the transactional start), or in the
  test kit's ``WorkflowEnvironment`` (``howto/testkit.py``);
- ``getting_started/``: the Getting started page's project, run as a reader would run it: its
  commands (``run.sh``) and its tests (``pytest`` in a folder holding only its files).

A ```` ```python ```` block in a page must be such an include; a fragment shown but not run
(a line of configuration, a signature) is fenced ```` ```py ```` instead.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = DOCS / "pages"
EXAMPLES = DOCS / "examples"
GETTING_STARTED = EXAMPLES / "getting_started"
BIN = Path(sys.executable).parent

FENCE = re.compile(
    r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.M | re.S
)
SNIPPET = re.compile(r'^--8<-- "(?P<path>[^"]+)"$')


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without journal settings a developer may have exported, with the
    venv's scripts first on ``PATH`` (as for a reader who activated it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PYTHON"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # pytest's plugins from the test extra (pytest-celery and its Docker tools) are not needed
    # by the examples and take seconds to load.
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env.update(extra)
    return env


def run(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def code_blocks() -> list[tuple[Path, str, str]]:
    """``(page, language, body)`` of every fenced block in the pages."""
    return [
        (page, m["lang"], m["body"])
        for page in sorted(PAGES.rglob("*.md"))
        for m in FENCE.finditer(page.read_text())
    ]


def included() -> set[Path]:
    """The files the pages include, resolved (``file.py:section`` counts as ``file.py``)."""
    paths = set()
    for _, _, body in code_blocks():
        for line in body.splitlines():
            match = SNIPPET.match(line.strip())
            if match:
                paths.add((EXAMPLES / match["path"].split(":", 1)[0]).resolve())
    return paths


def test_every_python_block_is_an_included_example() -> None:
    offenders = []
    for page, lang, body in code_blocks():
        if lang != "python":
            continue
        lines = [line.strip() for line in body.splitlines() if line.strip()]
        if not lines or not all(SNIPPET.match(line) for line in lines):
            offenders.append(f"{page.relative_to(DOCS)}: {body[:60]!r}")
    assert not offenders, "python blocks that are not included examples:\n" + "\n".join(offenders)


def test_every_example_is_shown_on_a_page() -> None:
    examples = {
        p.resolve()
        for p in EXAMPLES.rglob("*")
        if p.suffix in (".py", ".sh") and p.name != "conftest.py" and "__pycache__" not in p.parts
    }
    examples.add((GETTING_STARTED / "conftest.py").resolve())
    missing = sorted(str(p.relative_to(EXAMPLES)) for p in examples - included())
    assert not missing, f"examples no page includes: {missing}"


@pytest.mark.timeout(180)
def test_how_to_examples_pass() -> None:
    howto = EXAMPLES / "howto"
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "pytest_timeout"], cwd=howto)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    tests = sum(p.read_text().count("\ndef test_") for p in howto.glob("*.py"))
    assert f"{tests} passed" in done.stdout.splitlines()[-1], done.stdout[-2000:]


@pytest.mark.timeout(180)
def test_getting_started_commands_run_the_first_workflow(tmp_path: Path) -> None:
    shutil.copy(GETTING_STARTED / "hello.py", tmp_path)
    done = run(["bash", "-e", str(GETTING_STARTED / "run.sh")], cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    steps = [
        "started hello as run hello-1",
        'done           greet "Hello, world!"',
        "timer fired",
        'done           shout "HELLO, WORLD!"',
        'result: "HELLO, WORLD!"',
        "status    completed",
        "run_completed",
    ]
    positions = [out.find(step) for step in steps]
    assert all(p >= 0 for p in positions), out
    assert positions == sorted(positions), out


@pytest.mark.timeout(180)
def test_getting_started_tests_pass_in_a_project_of_their_own(tmp_path: Path) -> None:
    for name in ("hello.py", "conftest.py", "test_hello.py"):
        shutil.copy(GETTING_STARTED / name, tmp_path)
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 passed" in done.stdout, done.stdout
