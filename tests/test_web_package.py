"""The built wheel carries the web view's templates (package data), so ``continuum web``
works from a pip install, not only from a checkout."""

from __future__ import annotations

import zipfile
from pathlib import Path


def test_wheel_ships_the_web_view_and_its_templates(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for template in ("base.html", "runs.html", "run.html", "schedules.html", "error.html"):
        assert f"orchestrator/web/templates/{template}" in names
    assert "orchestrator/web/app.py" in names
    assert "orchestrator/migrations/versions/0008_task_outcomes.py" in names
