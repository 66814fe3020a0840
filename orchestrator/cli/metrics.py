"""``continuum -A app metrics --port N``: Prometheus metrics of the journal, on their own."""

from __future__ import annotations

import signal
import threading

import click

from orchestrator.cli import common, journal_errors, reading


@click.command("metrics")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=9464, show_default=True, type=click.IntRange(0, 65535))
@reading.journal_options
@click.pass_context
def metrics_cmd(
    ctx: click.Context, host: str, port: int, journal_url: str | None, dev: bool
) -> None:
    """Serve the journal's metrics for Prometheus at http://HOST:PORT/metrics.

    One exporter describes the whole deployment (the metrics are read from the journal), so
    run one, not one per worker. Needs only the journal: -A or --journal-url."""
    try:
        from prometheus_client import start_http_server

        from orchestrator.web import collector
    except ImportError:
        raise click.ClickException(
            "metrics need prometheus_client: pip install 'continuum-orchestrator[metrics]'"
        ) from None
    source = reading.reader(ctx, journal_url, dev)
    journal_errors.preflight(source)
    server, thread = start_http_server(
        port, addr=host, registry=collector.registry_for(source.journal)
    )
    url = ctx.meta.get(journal_errors.URL_KEY, "")
    click.echo(f"metrics of the journal at {common.safe_url(url)}: http://{host}:{port}/metrics")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(timeout=5)
