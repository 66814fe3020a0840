"""Where the read commands (``runs list|show|history``, ``result``) read runs from.

With ``-A`` they use the app's orchestrator, as every command does. Without it, the journal
URL alone is enough (``--journal-url``, else ``$ORCHESTRATOR_JOURNAL_URL``), so an operator's
machine needs none of the workers' code; ``--dev`` reads the file ``continuum dev`` writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestrator.cli import common, journal_errors
from orchestrator.model.settings import JOURNAL_URL_ENV

F = TypeVar("F", bound=Callable[..., Any])

#: The journal ``continuum dev`` writes (its default), relative to the working directory.
DEV_JOURNAL_URL = f"sqlite:///{journal_errors.DEV_FILE}"


def journal_options(fn: F) -> F:
    """Add ``--journal-url`` and ``--dev`` to a read command."""
    fn = click.option(
        "--dev",
        "dev",
        is_flag=True,
        help=f"read the journal of `continuum dev` ({journal_errors.DEV_FILE})",
    )(fn)
    return click.option(
        "--journal-url",
        "journal_url",
        default=None,
        help=f"read runs from this journal, no app needed (default: the app's, ${JOURNAL_URL_ENV})",
    )(fn)


def reader(ctx: click.Context, journal_url: str | None = None, dev: bool = False) -> Any:
    """What reads runs for this command: the app's orchestrator, or a reader of the URL."""
    if journal_url and dev:
        raise click.UsageError("give --journal-url or --dev, not both")
    if dev:
        journal_url = DEV_JOURNAL_URL
        if not os.path.exists(journal_errors.DEV_FILE):
            raise click.ClickException(
                f"no {journal_errors.DEV_FILE} here: "
                "run `continuum -A APP dev` in this directory first"
            )
    root = ctx.find_root().obj
    has_app = getattr(root, "app", None) is not None or (isinstance(root, dict) and root.get("app"))
    if journal_url is None and has_app:
        orc = common.load_orchestrator(ctx)
        ctx.meta[journal_errors.URL_KEY] = orc.settings.journal_url
        return orc
    url = journal_url or os.environ.get(JOURNAL_URL_ENV)
    if not url:
        raise click.UsageError(
            f"name the journal: --journal-url URL, ${JOURNAL_URL_ENV}, --dev, or the app with -A"
        )
    from orchestrator.client.reader import open_reader

    ctx.meta[journal_errors.URL_KEY] = url
    return open_reader(url)
