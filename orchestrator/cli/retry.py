"""``continuum runs retry RUN_ID``: run a failed run again from its failure."""

from __future__ import annotations

import click

from orchestrator.cli import common, runs


@runs.runs_group.command("retry")
@click.argument("run_id")
@click.pass_context
@common.user_errors
def retry_cmd(ctx: click.Context, run_id: str) -> None:
    """Retry the failed RUN_ID: its history up to the failure is kept (completed activities
    do not run again) and the failed step runs again under the code now deployed. Prints the
    retry's run id; RUN_ID reaches the retry from now on."""
    handle = common.load_orchestrator(ctx).retry(run_id)
    click.echo(handle.run_id)
