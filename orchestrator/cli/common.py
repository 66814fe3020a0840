"""What every ``continuum`` command shares: loading the app's orchestrator, turning user
mistakes into one-line errors, and printing runs and events.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any, TypeVar

import click

from orchestrator.model.errors import OrchestratorError
from orchestrator.model.events import Event, RunInfo
from orchestrator.model.settings import DEFAULT_JOURNAL_URL, JOURNAL_URL_ENV

F = TypeVar("F", bound=Callable[..., Any])


def load_orchestrator(ctx: click.Context) -> Any:
    from orchestrator.client import facade

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


def user_errors(fn: F) -> F:
    """Turn the library's user-facing errors into a clean non-zero exit."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (OrchestratorError, ValueError, TypeError, TimeoutError) as exc:
            raise click.ClickException(str(exc)) from None

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper  # type: ignore[return-value]


def json_option(text: str, option: str, kind: type) -> Any:
    """An option's JSON value, or a one-line error naming the option."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{option} is not valid JSON: {exc}") from None
    if not isinstance(value, kind):
        raise click.ClickException(f"{option} must be a JSON {kind.__name__}")
    return value


def json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def dump(value: Any) -> None:
    click.echo(json.dumps(value, default=json_default, indent=2, sort_keys=True))


def run_dict(info: RunInfo) -> dict[str, Any]:
    return asdict(info)


def event_line(event: Event, started: datetime) -> str:
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


def journal_url(ctx: click.Context) -> str:
    root = ctx.find_root().obj
    has_app = getattr(root, "app", None) is not None or (isinstance(root, dict) and root.get("app"))
    if has_app:
        return str(load_orchestrator(ctx).settings.journal_url)
    return os.environ.get(JOURNAL_URL_ENV, DEFAULT_JOURNAL_URL)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable url>"
