"""``continuum runs prune|export`` and ``continuum db grant-retention``: the data lifecycle.

``export`` writes the families that ``prune`` would delete as JSON lines (a run's fields and
its history per line), so export-then-prune is the archive path. Both work from the journal
URL alone (the app's, or ``$ORCHESTRATOR_JOURNAL_URL``): an operator's machine needs none of
the workers' code. Runs are taken whole families at a time, as retention takes them (see
:mod:`orchestrator.journal.families`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict

import click

from orchestrator.cli import common, db, runs
from orchestrator.journal import pruning
from orchestrator.journal.families import Family
from orchestrator.journal.sql import retention
from orchestrator.journal.sql.journal import SqlJournal
from orchestrator.model import durations
from orchestrator.model.settings import JOURNAL_URL_ENV

#: Runs per prune transaction, and families per page of an export or dry run.
BATCH = pruning.BATCH


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> int:
    try:
        return durations.parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


_older_than = click.option(
    "--older-than",
    "older_than",
    callback=_duration,
    required=True,
    help="runs whose family closed longer ago than this: 30d, 12h, 90m, 0s",
)
_workflow = click.option(
    "--workflow", default=None, help="only families whose top-level run is of this workflow"
)


@contextmanager
def _journal(ctx: click.Context) -> Iterator[SqlJournal]:
    journal = SqlJournal(common.journal_url(ctx))
    try:
        yield journal
    finally:
        journal.close()


def families(journal: SqlJournal, closed_before: float, workflow: str | None) -> Iterator[Family]:
    """Every family prune would delete, page by page, oldest first."""
    after = None
    while True:
        page = journal.prunable(
            closed_before=closed_before, workflow=workflow, limit=BATCH, after=after
        )
        yield from page
        if len(page) < BATCH:
            return
        after = page[-1].key


def groups(found: Iterable[Family], size: int) -> Iterator[list[str]]:
    """The families' run ids in groups of about ``size`` runs, families whole (one larger
    than ``size`` is a group alone): what an export reads at once."""
    group: list[str] = []
    for family in found:
        if group and len(group) + len(family.run_ids) > size:
            yield group
            group = []
        group.extend(family.run_ids)
    if group:
        yield group


@runs.runs_group.command("prune")
@_older_than
@_workflow
@click.option("--dry-run", is_flag=True, help="count what would be deleted; delete nothing")
@click.pass_context
@common.user_errors
def prune_cmd(ctx: click.Context, older_than: int, workflow: str | None, dry_run: bool) -> None:
    """Delete finished runs, whole families, with their histories."""
    cutoff = time.time() - older_than
    with _journal(ctx) as journal:
        if dry_run:
            found = list(families(journal, cutoff, workflow))
            count = sum(len(f.run_ids) for f in found)
            click.echo(f"would prune {count} runs in {len(found)} families (nothing deleted)")
            return
        began = time.monotonic()
        pruned = pruning.prune_all(journal, closed_before=cutoff, workflow=workflow, limit=BATCH)
        took = time.monotonic() - began
    click.echo(f"pruned {pruned} runs in {took:.1f} s")


@runs.runs_group.command("export")
@_older_than
@_workflow
@click.pass_context
@common.user_errors
def export_cmd(ctx: click.Context, older_than: int, workflow: str | None) -> None:
    """Print the runs prune would delete, one JSON object a line: its fields and history."""
    cutoff = time.time() - older_than
    with _journal(ctx) as journal:
        for run_ids in groups(families(journal, cutoff, workflow), BATCH):
            for run in journal.histories(run_ids):  # a run pruned meanwhile is left out
                line = {
                    **common.run_dict(run.info),
                    "history": [asdict(e) for e in run.events],
                }
                click.echo(json.dumps(line, default=common.json_default, sort_keys=True))


@db.db_group.command("grant-retention")
@click.argument("role")
@click.option("--url", help=f"journal URL (default: the app's, ${JOURNAL_URL_ENV})")
@click.option("--print", "print_only", is_flag=True, help="print the SQL instead of running it")
@click.pass_context
@common.user_errors
def grant_retention_cmd(ctx: click.Context, role: str, url: str | None, print_only: bool) -> None:
    """Grant ROLE the runtime's privileges and the deletes retention needs."""
    statements = retention.grant_statements(role)
    if print_only:
        for statement in statements:
            click.echo(statement + ";")
        return
    import sqlalchemy as sa

    journal = SqlJournal(url or common.journal_url(ctx))
    try:
        if not journal.postgres:
            raise ValueError("roles and grants are a Postgres feature; SQLite has none")
        with journal.engine.begin() as conn:
            for statement in statements:
                conn.execute(sa.text(statement))
    finally:
        journal.close()
    click.echo(f"granted {role} the runtime and retention privileges")
