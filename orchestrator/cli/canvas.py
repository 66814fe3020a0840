"""``continuum start-canvas JSON``: run a Celery canvas, given as the JSON of its signature,
durably (see :meth:`~orchestrator.Orchestrator.start_canvas`)."""

from __future__ import annotations

import click

from orchestrator.cli import common


@click.command("start-canvas")
@click.argument("canvas_json", metavar="JSON")
@click.option("--run-id", default=None)
@click.option(
    "--timeout",
    type=float,
    default=None,
    help="seconds each task may run before an attempt with no outcome is made again",
)
@click.pass_context
@common.user_errors
def start_canvas_cmd(
    ctx: click.Context, canvas_json: str, run_id: str | None, timeout: float | None
) -> None:
    """Start the canvas JSON (a signature, chain, group or chord as ``json.dumps(sig)``
    writes it) as a durable run and print its run id."""
    canvas = common.json_option(canvas_json, "JSON", dict)
    orc = common.load_orchestrator(ctx)
    click.echo(orc.start_canvas(canvas, run_id=run_id, timeout=timeout).run_id)
