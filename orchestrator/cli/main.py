"""The ``continuum`` command, also reachable as ``celery -A proj orchestrator ...``.

The same click commands hang off both groups: standalone, the app comes from ``-A``; under
Celery, from the Celery CLI context (``ctx.obj.app``). User mistakes (unknown run or workflow,
malformed JSON) exit non-zero with a one-line message, not a traceback. Each command group
lives in its own module and is added here.
"""

from __future__ import annotations

import click

from orchestrator.cli import canvas, control, db, metrics, processes, query, runs, schedules, web
from orchestrator.cli import lifecycle as _lifecycle  # noqa: F401  (adds ``runs prune|export``)
from orchestrator.cli import replay as replay_cli
from orchestrator.cli import retry as _retry  # noqa: F401  (adds ``runs retry``)
from orchestrator.cli.journal_errors import JournalErrors

_COMMANDS: list[click.Command] = [
    processes.dispatcher_cmd,
    processes.dev_cmd,
    db.db_group,
    control.start_cmd,
    control.result_cmd,
    control.signal_cmd,
    control.cancel_cmd,
    runs.runs_group,
    schedules.schedules_group,
    replay_cli.replay_cmd,
    query.query_cmd,
    canvas.start_canvas_cmd,
    web.web_cmd,
    metrics.metrics_cmd,
]


@click.group("continuum", cls=JournalErrors)
@click.option(
    "-A",
    "--app",
    "app_name",
    default=None,
    envvar="CONTINUUM_APP",
    help="the Celery app module, e.g. tasks or proj.celery:app",
)
@click.pass_context
def main(ctx: click.Context, app_name: str | None) -> None:
    """Continuum: durable workflows for Celery."""
    ctx.obj = {"app": app_name}


@click.group("orchestrator", cls=JournalErrors)
def celery_command() -> None:
    """Durable workflows: dispatcher, runs, db (Continuum)."""


for _command in _COMMANDS:
    main.add_command(_command)
    celery_command.add_command(_command)
