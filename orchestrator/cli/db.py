"""``continuum db``: the journal's schema (migrations, and the runtime role's grants)."""

from __future__ import annotations

import click

from orchestrator.cli import common
from orchestrator.journal.sql import migrate
from orchestrator.model.settings import JOURNAL_URL_ENV


@click.group("db")
def db_group() -> None:
    """Manage the journal's schema."""


@db_group.command("upgrade")
@click.option("--url", help=f"journal URL (default: the app's, ${JOURNAL_URL_ENV}, or SQLite)")
@click.pass_context
def db_upgrade(ctx: click.Context, url: str | None) -> None:
    """Apply the journal's migrations."""
    url = url or common.journal_url(ctx)
    migrate.upgrade(url)
    click.echo(f"journal at {common.safe_url(url)} is at revision {migrate.current(url)}")


@db_group.command("grant")
@click.argument("role")
@click.option("--url", help=f"journal URL (default: the app's, ${JOURNAL_URL_ENV})")
@click.option("--print", "print_only", is_flag=True, help="print the SQL instead of running it")
@click.pass_context
@common.user_errors
def db_grant(ctx: click.Context, role: str, url: str | None, print_only: bool) -> None:
    """Grant ROLE what workers and dispatchers need (run as the schema owner)."""
    if print_only:
        for statement in migrate.grant_statements(role):
            click.echo(statement + ";")
        return
    url = url or common.journal_url(ctx)
    migrate.grant(url, role)
    click.echo(f"granted {role} the runtime privileges on {common.safe_url(url)}")
