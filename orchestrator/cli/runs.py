"""``continuum runs``: list runs, show one, print its history."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from orchestrator.cli import common, reading


@click.group("runs")
def runs_group() -> None:
    """Inspect runs."""


@runs_group.command("list")
@click.option("--status", default=None)
@click.option("--workflow", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@reading.journal_options
@click.pass_context
@common.user_errors
def runs_list(
    ctx: click.Context,
    status: str | None,
    workflow: str | None,
    limit: int,
    as_json: bool,
    journal_url: str | None,
    dev: bool,
) -> None:
    """List runs, newest first."""
    source = reading.reader(ctx, journal_url, dev)
    runs = source.list_runs(status=status, workflow=workflow, limit=limit)
    if as_json:
        common.dump([common.run_dict(r) for r in runs])
        return
    for r in runs:
        created = r.created_at.isoformat(timespec="seconds") if r.created_at else "-"
        click.echo(
            f"{r.run_id:<36} {r.workflow:<28} v{r.version:<4} {r.status.value:<10} {created}"
        )


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@reading.journal_options
@click.pass_context
@common.user_errors
def runs_show(
    ctx: click.Context, run_id: str, as_json: bool, journal_url: str | None, dev: bool
) -> None:
    """Show a run and its history."""
    orc = reading.reader(ctx, journal_url, dev)
    info = orc.describe(run_id)
    history = orc.history(run_id)
    if as_json:
        common.dump({"run": common.run_dict(info), "history": [asdict(e) for e in history]})
        return
    click.echo(f"run       {info.run_id}\nworkflow  {info.workflow} v{info.version}")
    click.echo(f"status    {info.status.value}" + (f" ({info.reason})" if info.reason else ""))
    if info.error:
        click.echo(f"error     {info.error.get('type')}: {info.error.get('message')}")
    if info.status.value == "completed":
        click.echo(f"result    {json.dumps(info.result, default=common.json_default)}")
    if history:
        for event in history:
            click.echo(common.event_line(event, history[0].at))


@runs_group.command("history")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@reading.journal_options
@click.pass_context
@common.user_errors
def runs_history(
    ctx: click.Context, run_id: str, as_json: bool, journal_url: str | None, dev: bool
) -> None:
    """Print a run's history, one event a line."""
    history = reading.reader(ctx, journal_url, dev).history(run_id)
    if as_json:
        common.dump([asdict(e) for e in history])
        return
    for event in history:
        click.echo(common.event_line(event, history[0].at))
