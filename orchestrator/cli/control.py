"""Commands that act on one run: start, result, signal, cancel."""

from __future__ import annotations

import click

from orchestrator.cli import common, journal_errors, reading


@click.command("start")
@click.argument("workflow")
@click.option("--args", "args_json", default="[]", help="JSON list of arguments")
@click.option("--run-id", default=None)
@click.option("--version", "wf_version", default=None)
@click.pass_context
@common.user_errors
def start_cmd(
    ctx: click.Context, workflow: str, args_json: str, run_id: str | None, wf_version: str | None
) -> None:
    """Start a run of WORKFLOW and print its run id."""
    args = common.json_option(args_json, "--args", list)
    handle = journal_errors.ready(common.load_orchestrator(ctx)).start(
        workflow, *args, run_id=run_id, version=wf_version
    )
    click.echo(handle.run_id)


@click.command("result")
@click.argument("run_id")
@click.option("--timeout", type=float, default=None)
@reading.journal_options
@click.pass_context
@common.user_errors
def result_cmd(
    ctx: click.Context, run_id: str, timeout: float | None, journal_url: str | None, dev: bool
) -> None:
    """Wait for RUN_ID and print its result as JSON."""
    common.dump(reading.reader(ctx, journal_url, dev).result(run_id, timeout=timeout))


@click.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", "payload_json", default="null", help="JSON payload")
@click.pass_context
@common.user_errors
def signal_cmd(ctx: click.Context, run_id: str, name: str, payload_json: str) -> None:
    """Send signal NAME to RUN_ID (its chain's live tip)."""
    payload = common.json_option(payload_json, "--payload", object)
    journal_errors.ready(common.load_orchestrator(ctx)).signal(run_id, name, payload)
    click.echo(f"signal {name!r} sent to {run_id}")


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None)
@click.pass_context
@common.user_errors
def cancel_cmd(ctx: click.Context, run_id: str, reason: str | None) -> None:
    """Cancel RUN_ID (its chain's live tip); its children are cancelled too."""
    journal_errors.ready(common.load_orchestrator(ctx)).cancel(run_id, reason)
    click.echo(f"cancellation requested for {run_id}")
