"""The ``continuum`` command, also reachable as ``celery -A proj orchestrator ...``.

The same click commands hang off both groups: standalone, the app comes from ``-A``; under
Celery, from the Celery CLI context (``ctx.obj.app``). User mistakes (unknown run or workflow,
malformed JSON) exit non-zero with a one-line message, not a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import click

from orchestrator import migrate
from orchestrator.config import DEFAULT_JOURNAL_URL, JOURNAL_URL_ENV
from orchestrator.errors import OrchestratorError
from orchestrator.events import Event, RunInfo

F = TypeVar("F", bound=Callable[..., Any])


def _load_orchestrator(ctx: click.Context) -> Any:
    from orchestrator import facade

    obj = ctx.find_root().obj
    app = getattr(obj, "app", None)
    if app is None:
        name = obj.get("app") if isinstance(obj, dict) else None
        if not name:
            raise click.UsageError("name the Celery app with -A/--app (e.g. -A tasks)")
        from celery.app.utils import find_app

        sys.path.insert(0, os.getcwd())
        try:
            app = find_app(name)
        except Exception as exc:
            raise click.ClickException(f"cannot load Celery app {name!r}: {exc}") from None
    try:
        return facade.of(app)
    except LookupError as exc:
        raise click.ClickException(str(exc)) from None


def _user_errors(fn: F) -> F:
    """Turn the library's user-facing errors into a clean non-zero exit."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OrchestratorError, ValueError, TypeError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def _json_option(text: str, option: str, kind: type) -> Any:
    """An option's JSON value, or a one-line error naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise click.ClickException(f"{option} must be a JSON {kind.__name__}")
    return value


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _dump(value: Any) -> None:
    click.echo(json.dumps(value, default=_json_default, indent=2, sort_keys=True))


def _run_dict(info: RunInfo) -> dict[str, Any]:
    return asdict(info)


def _event_line(event: Event, started: datetime) -> str:
    offset = (event.at - started).total_seconds()
    command = f" cmd={event.command_id}" if event.command_id is not None else ""
    attempt = f" attempt={event.attempt}" if event.attempt is not None else ""
    detail = ""
    if "task" in event.data:
        detail = f" {event.data['task']}"
    error = event.data.get("error")
    if isinstance(error, dict):
        detail += f" {error.get('type')}: {error.get('message')}"
    when = f"+{offset:.3f}s"
    return f"{event.seq:>5} {when:>11} {event.type.value:<22}{command}{attempt}{detail}"


# -- commands (shared by both groups) ---------------------------------------------------------
@click.command("dispatcher")
@click.option("--loglevel", "-l", default="INFO", show_default=True)
@click.pass_context
def dispatcher_cmd(ctx: click.Context, loglevel: str) -> None:
    """Run the dispatcher: timers, timeouts, lost messages, stuck runs."""
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s %(levelname)s] %(message)s")
    orc = _load_orchestrator(ctx)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    logging.getLogger(__name__).info(
        "dispatcher started (journal %s, queue %s)",
        _safe_url(orc.settings.journal_url),
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
@_user_errors
def dev_cmd(
    ctx: click.Context,
    journal_url: str | None,
    workflow: str | None,
    args_json: str,
    run_id: str | None,
    concurrency: int,
) -> None:
    """Worker + dispatcher in one process on a SQLite file and an in-memory broker."""
    from orchestrator import dev

    args = _json_option(args_json, "--args", list)
    code = dev.run(
        _load_orchestrator(ctx),
        journal_url=journal_url or dev.DEFAULT_JOURNAL,
        start=workflow,
        args=args,
        run_id=run_id,
        concurrency=concurrency,
        echo=click.echo,
    )
    ctx.exit(code)


def _journal_url(ctx: click.Context) -> str:
    root = ctx.find_root().obj
    has_app = getattr(root, "app", None) is not None or (isinstance(root, dict) and root.get("app"))
    if has_app:
        return str(_load_orchestrator(ctx).settings.journal_url)
    return os.environ.get(JOURNAL_URL_ENV, DEFAULT_JOURNAL_URL)


@click.group("db")
def db_group() -> None:
    """Manage the journal's schema."""


@db_group.command("upgrade")
@click.option("--url", help=f"journal URL (default: the app's, ${JOURNAL_URL_ENV}, or SQLite)")
@click.pass_context
def db_upgrade(ctx: click.Context, url: str | None) -> None:
    """Apply the journal's migrations."""
    url = url or _journal_url(ctx)
    migrate.upgrade(url)
    click.echo(f"journal at {_safe_url(url)} is at revision {migrate.current(url)}")


@db_group.command("grant")
@click.argument("role")
@click.option("--url", help=f"journal URL (default: the app's, ${JOURNAL_URL_ENV})")
@click.option("--print", "print_only", is_flag=True, help="print the SQL instead of running it")
@click.pass_context
@_user_errors
def db_grant(ctx: click.Context, role: str, url: str | None, print_only: bool) -> None:
    """Grant ROLE what workers and dispatchers need (run as the schema owner)."""
    if print_only:
        for statement in migrate.grant_statements(role):
            click.echo(statement + ";")
        return
    url = url or _journal_url(ctx)
    migrate.grant(url, role)
    click.echo(f"granted {role} the runtime privileges on {_safe_url(url)}")


@click.command("start")
@click.argument("workflow")
@click.option("--args", "args_json", default="[]", help="JSON list of arguments")
@click.option("--run-id", default=None)
@click.option("--version", "wf_version", default=None)
@click.pass_context
@_user_errors
def start_cmd(
    ctx: click.Context, workflow: str, args_json: str, run_id: str | None, wf_version: str | None
) -> None:
    """Start a run of WORKFLOW and print its run id."""
    args = _json_option(args_json, "--args", list)
    handle = _load_orchestrator(ctx).start(workflow, *args, run_id=run_id, version=wf_version)
    click.echo(handle.run_id)


@click.command("result")
@click.argument("run_id")
@click.option("--timeout", type=float, default=None)
@click.pass_context
@_user_errors
def result_cmd(ctx: click.Context, run_id: str, timeout: float | None) -> None:
    """Wait for RUN_ID and print its result as JSON."""
    _dump(_load_orchestrator(ctx).result(run_id, timeout=timeout))


@click.command("signal")
@click.argument("run_id")
@click.argument("name")
@click.option("--payload", "payload_json", default="null", help="JSON payload")
@click.pass_context
@_user_errors
def signal_cmd(ctx: click.Context, run_id: str, name: str, payload_json: str) -> None:
    """Send signal NAME to RUN_ID (its chain's live tip)."""
    payload = _json_option(payload_json, "--payload", object)
    _load_orchestrator(ctx).signal(run_id, name, payload)
    click.echo(f"signal {name!r} sent to {run_id}")


@click.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None)
@click.pass_context
@_user_errors
def cancel_cmd(ctx: click.Context, run_id: str, reason: str | None) -> None:
    """Cancel RUN_ID (its chain's live tip); its children are cancelled too."""
    _load_orchestrator(ctx).cancel(run_id, reason)
    click.echo(f"cancellation requested for {run_id}")


@click.group("runs")
def runs_group() -> None:
    """Inspect runs."""


@runs_group.command("list")
@click.option("--status", default=None)
@click.option("--workflow", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_user_errors
def runs_list(
    ctx: click.Context, status: str | None, workflow: str | None, limit: int, as_json: bool
) -> None:
    """List runs, newest first."""
    runs = _load_orchestrator(ctx).list_runs(status=status, workflow=workflow, limit=limit)
    if as_json:
        _dump([_run_dict(r) for r in runs])
        return
    for r in runs:
        created = r.created_at.isoformat(timespec="seconds") if r.created_at else "-"
        click.echo(
            f"{r.run_id:<36} {r.workflow:<28} v{r.version:<4} {r.status.value:<10} {created}"
        )


@runs_group.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_user_errors
def runs_show(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Show a run and its history."""
    orc = _load_orchestrator(ctx)
    info = orc.describe(run_id)
    history = orc.history(run_id)
    if as_json:
        _dump({"run": _run_dict(info), "history": [asdict(e) for e in history]})
        return
    click.echo(f"run       {info.run_id}\nworkflow  {info.workflow} v{info.version}")
    click.echo(f"status    {info.status.value}" + (f" ({info.reason})" if info.reason else ""))
    if info.error:
        click.echo(f"error     {info.error.get('type')}: {info.error.get('message')}")
    if info.status.value == "completed":
        click.echo(f"result    {json.dumps(info.result, default=_json_default)}")
    if history:
        for event in history:
            click.echo(_event_line(event, history[0].at))


@runs_group.command("history")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_user_errors
def runs_history(ctx: click.Context, run_id: str, as_json: bool) -> None:
    """Print a run's history, one event a line."""
    history = _load_orchestrator(ctx).history(run_id)
    if as_json:
        _dump([asdict(e) for e in history])
        return
    for event in history:
        click.echo(_event_line(event, history[0].at))


_COMMANDS: list[click.Command] = [
    dispatcher_cmd,
    dev_cmd,
    db_group,
    start_cmd,
    result_cmd,
    signal_cmd,
    cancel_cmd,
    runs_group,
]


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"


@click.group("continuum")
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


@click.group("orchestrator")
def celery_command() -> None:
    """Durable workflows: dispatcher, runs, db (Continuum)."""


for _command in _COMMANDS:
    main.add_command(_command)
    celery_command.add_command(_command)
