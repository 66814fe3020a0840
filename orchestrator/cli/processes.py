"""The long-running processes: the dispatcher, and ``dev`` (worker and dispatcher in one)."""

from __future__ import annotations

import logging
import signal
import threading

import click

from orchestrator.cli import common, journal_errors


@click.command("dispatcher")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.pass_context
def dispatcher_cmd(ctx: click.Context, loglevel: str) -> None:
    """Run the dispatcher: timers, timeouts, lost messages, stuck runs."""
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s %(levelname)s] %(message)s")
    orc = common.load_orchestrator(ctx)
    journal_errors.preflight(orc)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info(
        "dispatcher started (journal %s, queue %s)",
        common.safe_url(orc.settings.journal_url),
        orc.settings.queue,
    )
    orc.dispatcher().run(stop)


@click.command("dev")
@click.option("--journal", "journal_url", default=None, help="SQLite journal file URL")
@click.option("--start", "workflow", default=None, help="start this workflow and follow it")
@click.option("--args", "args_json", default="[]", help="JSON list of its arguments")
@click.option("--run-id", default=None)
@click.option("--concurrency", "-c", default=4, show_default=True)
@click.pass_context
@common.user_errors
def dev_cmd(
    ctx: click.Context,
    journal_url: str | None,
    workflow: str | None,
    args_json: str,
    run_id: str | None,
    concurrency: int,
) -> None:
    """Worker + dispatcher in one process on a SQLite file and an in-memory broker."""
    from orchestrator.cli import dev

    args = common.json_option(args_json, "--args", list)
    code = dev.run(
        common.load_orchestrator(ctx),
        journal_url=journal_url or dev.DEFAULT_JOURNAL,
        start=workflow,
        args=args,
        run_id=run_id,
        concurrency=concurrency,
        echo=click.echo,
    )
    ctx.exit(code)
