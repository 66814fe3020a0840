"""``continuum query RUN_ID NAME``: the value a run last published under a name."""

from __future__ import annotations

import click

from orchestrator.cli import common


@click.command("query")
@click.argument("run_id")
@click.argument("name")
@click.option("--timeout", type=float, default=None, help="seconds to wait for a first value")
@click.pass_context
@common.user_errors
def query_cmd(ctx: click.Context, run_id: str, name: str, timeout: float | None) -> None:
    """Print, as JSON, the value RUN_ID last published under NAME (``ctx.publish``)."""
    common.dump(common.load_orchestrator(ctx).query(run_id, name, timeout=timeout))
