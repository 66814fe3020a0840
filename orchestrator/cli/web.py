"""``continuum -A app web``: serve the web view of runs (and ``/metrics``) with uvicorn."""

from __future__ import annotations

import click

from orchestrator.cli import common, journal_errors


@click.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--read-only", is_flag=True, help="refuse signal, cancel and retry (403)")
@click.option("--root-path", default="", help="the path prefix a proxy serves it under")
@click.pass_context
def web_cmd(ctx: click.Context, host: str, port: int, read_only: bool, root_path: str) -> None:
    """Serve the web view of runs, its JSON API and /metrics.

    It listens on 127.0.0.1 unless told otherwise: put it behind the deployment's own
    authenticating proxy to reach it from elsewhere (it has no login of its own)."""
    try:
        import uvicorn

        from orchestrator.web import app
    except ImportError as exc:
        raise click.ClickException(
            f"the web view needs the web extra ({exc.name} is missing): "
            "pip install 'continuum-orchestrator[web]'"
        ) from None
    orc = common.load_orchestrator(ctx)
    journal_errors.preflight(orc)
    mode = " (read-only)" if read_only else ""
    click.echo(
        f"web view of the journal at {common.safe_url(orc.settings.journal_url)}{mode}: "
        f"http://{host}:{port}/"
    )
    uvicorn.run(
        app.create_app(orc, read_only=read_only),
        host=host,
        port=port,
        root_path=root_path.rstrip("/"),
        log_level="warning",
    )
