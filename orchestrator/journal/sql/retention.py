"""Retention on SQL: finding finished families and deleting them with every row they own.

A prune is one short transaction of about ``limit`` runs. It finds the oldest finished
top-level chains' tips through their own partial index (``ix_runs_closed_tips``), gathers
each family by ``correlation_id`` and ``parent_run_id`` (both indexed), locks the family's
rows with ``SKIP LOCKED`` (a family one of whose rows is locked elsewhere is left for a
later pass, so a prune never waits for another transaction, and two dispatchers never take
the same family), then deletes the rows the runs own and the runs. Every statement reaches
its rows by run id; none scans a table. An export reads the families it pages through
(:meth:`~RetentionQueries.prunable`) with their histories, a page of runs in two queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection

from orchestrator.journal.families import Family, Member, check_limit, gather, take
from orchestrator.journal.insight import RunHistory
from orchestrator.journal.sql import migrate, schema
from orchestrator.journal.sql.connection import SqlConnection
from orchestrator.journal.sql.rows import event_of, run_info
from orchestrator.model.events import Event

runs = schema.runs
#: Tables whose rows belong to one run (by ``run_id``), deleted with it.
OWNED = (schema.events, schema.inbox, schema.tasks, schema.timers)
#: What pruning needs beyond the runtime's grants (:data:`~orchestrator.journal.sql.migrate.
#: RUNTIME_GRANTS`), which keep history append-only: dispatchers that apply retention run as a
#: role given these as well.
GRANTS: dict[str, tuple[str, ...]] = {
    "runs": ("DELETE",),
    "events": ("DELETE",),
    "tasks": ("DELETE",),
}
#: Pages of tips one prune reads at most while families it finds are being kept.
PAGES = 4

_MEMBER = (runs.c.run_id, runs.c.correlation_id, runs.c.parent_run_id, runs.c.closed_at)
#: On Postgres, lists of run ids are one array parameter (``= ANY``): the statements are
#: compiled once, where an IN list of 500 values is rendered and bound value by value.
_IDS = sa.bindparam("p_ids", type_=postgresql.ARRAY(sa.String))


class RetentionQueries(SqlConnection):
    """The data lifecycle's operations of :class:`~orchestrator.journal.protocol.Journal`."""

    def prune(
        self, *, closed_before: float, workflow: str | None = None, limit: int = 500
    ) -> list[str]:
        check_limit(limit)

        def body(conn: Connection) -> list[str]:
            taken: list[Family] = []
            after = None
            for _ in range(PAGES):
                tips = self._tips_x(conn, closed_before, workflow, limit, after, lock=True)
                found = self._families_x(conn, tips, closed_before)
                taken = take([*taken, *self._locked_x(conn, found, tips)], limit)
                if len(tips) < limit or sum(len(f.run_ids) for f in taken) >= limit:
                    break
                after = (tips[-1].closed_at or 0.0, tips[-1].run_id)
            pruned = [run_id for family in taken for run_id in family.run_ids]
            if pruned:
                self._delete_x(conn, pruned)
            return pruned

        return self._retrying(body)

    def prunable(
        self,
        *,
        closed_before: float,
        workflow: str | None = None,
        limit: int = 100,
        after: tuple[float, str] | None = None,
    ) -> list[Family]:
        check_limit(limit)
        with self.engine.connect() as conn:  # read only, rolled back
            found: list[Family] = []
            while len(found) < limit:
                tips = self._tips_x(conn, closed_before, workflow, limit, after, lock=False)
                found += self._families_x(conn, tips, closed_before)
                if len(tips) < limit:
                    break
                after = (tips[-1].closed_at or 0.0, tips[-1].run_id)
        return found[:limit]

    def histories(self, run_ids: Sequence[str]) -> list[RunHistory]:
        ids = list(dict.fromkeys(run_ids))
        if not ids:
            return []
        events = schema.events
        history: dict[str, list[Event]] = {run_id: [] for run_id in ids}
        with self._tx(autocommit=True) as conn:
            # Histories first: a run deleted between the reads is then left out, never
            # returned without its events.
            query = (
                sa.select(events)
                .where(self._among(events.c.run_id, ids))
                .order_by(events.c.run_id, events.c.seq)
            )
            for row in conn.execute(query, self._ids(ids)):
                history[row.run_id].append(event_of(row))
            query = sa.select(runs).where(self._among(runs.c.run_id, ids))
            infos = {row.run_id: run_info(row) for row in conn.execute(query, self._ids(ids))}
        return [
            RunHistory(info=infos[run_id], events=tuple(history[run_id]))
            for run_id in ids
            if run_id in infos
        ]

    def _tips_x(
        self,
        conn: Connection,
        closed_before: float,
        workflow: str | None,
        limit: int,
        after: tuple[float, str] | None,
        *,
        lock: bool,
    ) -> list[Member]:
        """Tips of finished top-level chains closed before the cutoff, oldest first."""
        query = (
            sa.select(*_MEMBER)
            .where(
                runs.c.parent_run_id.is_(None),
                runs.c.continued_to_run_id.is_(None),
                runs.c.retried_to_run_id.is_(None),
                runs.c.closed_at.is_not(None),
                runs.c.closed_at < closed_before,
            )
            .order_by(runs.c.closed_at, runs.c.run_id)
            .limit(limit)
        )
        if workflow is not None:
            query = query.where(runs.c.workflow == workflow)
        if after is not None:
            query = query.where(sa.tuple_(runs.c.closed_at, runs.c.run_id) > sa.tuple_(*after))
        if lock:
            query = query.with_for_update(skip_locked=True)
        return [_member(row) for row in conn.execute(query)]

    def _families_x(
        self, conn: Connection, tips: Sequence[Member], closed_before: float
    ) -> list[Family]:
        # A tip that continues nothing is its chain's only run: no need to read its chain.
        alone = {t.correlation_id: t for t in tips if t.run_id == t.correlation_id}

        def chains(ids: list[str]) -> list[Member]:
            found = [alone[i] for i in ids if i in alone]
            rest = [i for i in ids if i not in alone]
            if rest:
                query = sa.select(*_MEMBER).where(
                    self._among(runs.c.correlation_id, rest), runs.c.parent_run_id.is_(None)
                )
                found += [_member(row) for row in conn.execute(query, self._ids(rest))]
            return found

        def children(ids: list[str]) -> list[Member]:
            query = sa.select(*_MEMBER).where(self._among(runs.c.parent_run_id, ids))
            return [_member(row) for row in conn.execute(query, self._ids(ids))]

        if not tips:
            return []
        return gather(tips, chains=chains, children=children, closed_before=closed_before)

    def _among(self, column: sa.Column[Any], ids: list[str]) -> sa.ColumnElement[bool]:
        """``column`` is one of ``ids``: an array parameter on Postgres, IN on SQLite."""
        return column == sa.any_(_IDS) if self.postgres else column.in_(ids)

    def _ids(self, ids: list[str]) -> dict[str, Any]:
        return {"p_ids": ids} if self.postgres else {}

    def _locked_x(
        self, conn: Connection, families: list[Family], tips: Sequence[Member]
    ) -> list[Family]:
        """The families all of whose runs this transaction holds locked (Postgres; SQLite's
        transaction holds the whole database already). The tips were locked when read."""
        held = {t.run_id for t in tips}
        others = [i for f in families for i in f.run_ids if i not in held]
        if not self.postgres or not others:
            return families
        query = (
            sa.select(runs.c.run_id)
            .where(self._among(runs.c.run_id, others))
            .with_for_update(skip_locked=True)
        )
        held.update(conn.execute(query, self._ids(others)).scalars())
        return [f for f in families if held.issuperset(f.run_ids)]

    def _delete_x(self, conn: Connection, run_ids: list[str]) -> None:
        """Delete the runs and every row they own: one statement on Postgres."""
        if self.postgres:
            conn.execute(_DELETE_RUNS, {"p_ids": run_ids})
            return
        for table in OWNED:
            conn.execute(table.delete().where(table.c.run_id.in_(run_ids)))
        conn.execute(runs.delete().where(runs.c.run_id.in_(run_ids)))


#: On Postgres, the runs ``p_ids`` and the rows they own, deleted in one statement.
_DELETE_RUNS = runs.delete().where(runs.c.run_id == sa.any_(_IDS))
for _table in OWNED:
    _DELETE_RUNS = _DELETE_RUNS.add_cte(
        _table.delete().where(_table.c.run_id == sa.any_(_IDS)).cte(f"pruned_{_table.name}")
    )


def grant_statements(role: str) -> list[str]:
    """The runtime's grants (:func:`~orchestrator.journal.sql.migrate.grant_statements`,
    which checks ``role``) and what pruning needs besides."""
    statements = migrate.grant_statements(role)
    statements += [
        f'GRANT {", ".join(privileges)} ON TABLE {table} TO "{role}"'
        for table, privileges in GRANTS.items()
    ]
    return statements


def _member(row: Any) -> Member:
    return Member(
        run_id=row.run_id,
        correlation_id=row.correlation_id,
        parent_run_id=row.parent_run_id,
        closed_at=row.closed_at,
    )


__all__ = ["GRANTS", "OWNED", "RetentionQueries", "grant_statements"]
