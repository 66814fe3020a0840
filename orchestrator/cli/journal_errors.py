"""A journal the command cannot use, said in one line: which URL (password masked), what is
wrong with it, and the command that fixes it; exit status 2, no traceback.

The commands' group (:class:`JournalErrors`) catches the database's error wherever it comes
from, so every command, present and future, answers the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from sqlalchemy import exc as sa_exc

from orchestrator.cli import common
from orchestrator.model.settings import JOURNAL_URL_ENV

#: ``ctx.meta`` key under which a command records the journal URL it opened.
URL_KEY = "continuum.journal_url"
#: The file ``continuum dev`` journals to, in its working directory.
DEV_FILE = "continuum-dev.sqlite3"


class JournalUnavailable(click.ClickException):
    """The journal cannot be reached or has no schema (exit status 2)."""

    exit_code = 2


def explain(error: BaseException, url: str) -> str | None:
    """What is wrong with the journal at ``url`` and how to fix it, in one line; ``None``
    when ``error`` is not about reaching the journal or its schema."""
    if not isinstance(error, sa_exc.OperationalError | sa_exc.ProgrammingError):
        return None
    reason = str(getattr(error, "orig", error)).strip()
    shown = common.safe_url(url)
    upgrade = f"continuum db upgrade --url '{shown}'"
    if "no such table" in reason or ("relation" in reason and "does not exist" in reason):
        line = f"the journal at {shown} has no tables yet: run `{upgrade}`"
    elif "database" in reason and "does not exist" in reason:
        name = url.rsplit("/", 1)[-1].split("?")[0]
        line = (
            f"the journal database at {shown} does not exist: "
            f"create it (`createdb {name}`), then run `{upgrade}`"
        )
    elif isinstance(error, sa_exc.OperationalError):
        cause = reason.splitlines()[0] if reason else type(error).__name__
        cause = cause.split(": ", 1)[-1] if "failed:" in cause else cause
        line = (
            f"cannot reach the journal at {shown} ({cause.strip()}): start its database, "
            f"or point at another journal with --journal-url or ${JOURNAL_URL_ENV}"
        )
    else:
        return None
    if Path(DEV_FILE).exists() and not url.endswith(DEV_FILE):
        line += f" (the runs of `continuum dev` are in {DEV_FILE}: add --dev)"
    return line


def url_in_use(ctx: click.Context, args: list[str]) -> str:
    """The journal URL the failing command used: recorded, named on its command line
    (``args``), or resolved as the command resolves it."""
    if URL_KEY in ctx.meta:  # shared by every context of the command line
        return str(ctx.meta[URL_KEY])
    for i, arg in enumerate(args):
        for option in ("--url", "--journal-url"):
            if arg == option and i + 1 < len(args):
                return args[i + 1]
            if arg.startswith(option + "="):
                return arg.split("=", 1)[1]
    try:
        return common.journal_url(ctx)
    except click.ClickException:
        return os.environ.get(JOURNAL_URL_ENV, "")


class JournalErrors(click.Group):
    """A command group whose commands answer an unusable journal with one line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]  # the group consumes them
        try:
            return super().invoke(ctx)
        except (sa_exc.OperationalError, sa_exc.ProgrammingError) as error:
            line = explain(error, url_in_use(ctx, args))
            if line is None:
                raise
            raise JournalUnavailable(line) from None


def preflight(orc: Any) -> None:
    """Read the journal once, so that a command stops at once with :class:`JournalErrors`'
    one line: a long-running one (dispatcher, web, metrics) instead of failing on every pass,
    one that writes instead of retrying its transaction for half a minute."""
    orc.journal.describe("continuum-preflight")


def ready(orc: Any) -> Any:
    """``orc``, once :func:`preflight` found its journal usable."""
    preflight(orc)
    return orc
