"""Schedules on SQL: the schedule operations of the journal contract.

A due schedule is fired under its row's lock (``FOR UPDATE SKIP LOCKED``: two dispatchers
never fire one schedule at once, and one finds the other's slot gone once it committed), and
its run is created in the same transaction, under an id made of the slot, so a slot fired
twice all the same starts one run.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from orchestrator.journal.protocol import Lease, RunRef
from orchestrator.journal.sql import schema
from orchestrator.journal.sql.connection import WAKEUP_CHANNEL, SqlConnection
from orchestrator.journal.sql.rows import ref_of
from orchestrator.model import payloads
from orchestrator.model.events import RunStatus, timestamp
from orchestrator.model.records import NewRun
from orchestrator.model.schedules import (
    ScheduleInfo,
    ScheduleSpec,
    manual_run_id,
    slot_run_id,
)

schedules, runs = schema.schedules, schema.runs
_TERMINAL = [s.value for s in RunStatus if s.terminal]
_id: sa.BindParameter[str] = sa.bindparam("p_schedule_id")
LOCK_SCHEDULE = sa.select(schedules).where(schedules.c.schedule_id == _id).with_for_update()
#: Whether a run's continue-as-new chain (the chain's root is the run the schedule started)
#: has a run that has not ended.
CHAIN_OPEN = (
    sa.select(runs.c.run_id)
    .where(runs.c.correlation_id == sa.bindparam("p_run_id"), runs.c.status.not_in(_TERMINAL))
    .limit(1)
)
NEXT_SLOT = sa.select(sa.func.min(schedules.c.next_fire_at)).where(sa.not_(schedules.c.paused))


class ScheduleQueries(SqlConnection):
    """The schedule operations of :class:`~orchestrator.journal.sql.journal.SqlJournal`."""

    def _insert_run_x(
        self, conn: Connection, run: NewRun, now: float, lease: Lease | None = None
    ) -> bool:
        """Insert a run (see :class:`~orchestrator.journal.sql.commit.StepCommits`)."""
        raise NotImplementedError

    def put_schedule(self, spec: ScheduleSpec) -> ScheduleInfo:
        values = _spec_values(spec)

        def body(conn: Connection) -> ScheduleInfo:
            now = self._clock()
            created = conn.execute(
                self._insert(schedules)
                .values(**values, next_fire_at=spec.next_slot(now), created_at=now, updated_at=now)
                .on_conflict_do_nothing(index_elements=["schedule_id"])
                .returning(schedules.c.schedule_id)
            ).first()
            if created is None:
                row = conn.execute(LOCK_SCHEDULE, {"p_schedule_id": spec.schedule_id}).one()
                rewrite = {**values, "updated_at": now}
                if _spec(row).timing != spec.timing:
                    rewrite["next_fire_at"] = spec.next_slot(now)
                self._update_x(conn, spec.schedule_id, rewrite)
            self._notify(conn, WAKEUP_CHANNEL)
            return _info(conn.execute(LOCK_SCHEDULE, {"p_schedule_id": spec.schedule_id}).one())

        return self._retrying(body)

    def get_schedule(self, schedule_id: str) -> ScheduleInfo | None:
        with self._tx(autocommit=True) as conn:
            row = conn.execute(
                sa.select(schedules).where(schedules.c.schedule_id == schedule_id)
            ).first()
        return None if row is None else _info(row)

    def list_schedules(self) -> list[ScheduleInfo]:
        with self._tx(autocommit=True) as conn:
            rows = conn.execute(sa.select(schedules).order_by(schedules.c.schedule_id)).all()
        return [_info(row) for row in rows]

    def pause_schedule(self, schedule_id: str, paused: bool) -> ScheduleInfo | None:
        def body(conn: Connection) -> ScheduleInfo | None:
            row = conn.execute(LOCK_SCHEDULE, {"p_schedule_id": schedule_id}).first()
            if row is None:
                return None
            now = self._clock()
            values: dict[str, Any] = {"paused": paused, "updated_at": now}
            if row.paused and not paused:
                values["next_fire_at"] = _spec(row).next_slot(now)
                self._notify(conn, WAKEUP_CHANNEL)
            return _info(self._update_x(conn, schedule_id, values))

        return self._retrying(body)

    def delete_schedule(self, schedule_id: str) -> bool:
        with self._tx() as conn:
            deleted = conn.execute(
                schedules.delete()
                .where(schedules.c.schedule_id == schedule_id)
                .returning(schedules.c.schedule_id)
            ).first()
        return deleted is not None

    def trigger_schedule(self, schedule_id: str) -> RunRef | None:
        def body(conn: Connection) -> RunRef | None:
            row = conn.execute(LOCK_SCHEDULE, {"p_schedule_id": schedule_id}).first()
            if row is None:
                return None
            now = self._clock()
            run = _spec(row).run(manual_run_id(schedule_id, now))
            self._insert_run_x(conn, run, now)
            self._update_x(conn, schedule_id, {"last_run_id": run.run_id, "updated_at": now})
            return ref_of(run)

        return self._retrying(body)

    def fire_due_schedules(self, limit: int = 100) -> list[RunRef]:
        def body(conn: Connection) -> list[RunRef]:
            now = self._clock()
            due = conn.execute(
                sa.select(schedules)
                .where(sa.not_(schedules.c.paused), schedules.c.next_fire_at <= now)
                .order_by(schedules.c.next_fire_at)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            refs: list[RunRef] = []
            for row in due:
                spec = _spec(row)
                slot, next_fire_at = spec.due(row.next_fire_at, now)
                values: dict[str, Any] = {"next_fire_at": next_fire_at, "updated_at": now}
                if slot is not None and not (spec.overlap == "skip" and self._open_x(conn, row)):
                    run = spec.run(slot_run_id(spec.schedule_id, slot))
                    if self._insert_run_x(conn, run, now):
                        refs.append(
                            RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)
                        )
                    values.update(last_slot_at=slot, last_run_id=run.run_id)
                self._update_x(conn, spec.schedule_id, values)
            return refs

        return self._retrying(body)

    def _open_x(self, conn: Connection, row: Row[Any]) -> bool:
        """Whether the schedule's last run (its chain) is still open."""
        if row.last_run_id is None:
            return False
        return conn.execute(CHAIN_OPEN, {"p_run_id": row.last_run_id}).first() is not None

    def _update_x(self, conn: Connection, schedule_id: str, values: dict[str, Any]) -> Row[Any]:
        return conn.execute(
            schedules.update()
            .where(schedules.c.schedule_id == schedule_id)
            .values(**values)
            .returning(*schedules.c)
        ).one()


def _spec_values(spec: ScheduleSpec) -> dict[str, Any]:
    """The columns of a schedule's spec."""
    return {
        "schedule_id": spec.schedule_id,
        "workflow": spec.workflow,
        "version": spec.version,
        "args": payloads.encode(spec.args, f"arguments of schedule {spec.schedule_id}"),
        "cron": spec.cron,
        "every": spec.every,
        "timezone": spec.timezone,
        "overlap": spec.overlap,
        "catchup_window": spec.catchup_window,
        "concurrency_key": spec.concurrency_key,
        "concurrency_limit": spec.concurrency_limit,
    }


def _spec(row: Row[Any]) -> ScheduleSpec:
    return ScheduleSpec(
        schedule_id=row.schedule_id,
        workflow=row.workflow,
        version=row.version,
        args=payloads.decode(row.args),
        cron=row.cron,
        every=row.every,
        timezone=row.timezone,
        overlap=row.overlap,
        catchup_window=row.catchup_window,
        concurrency_key=row.concurrency_key,
        concurrency_limit=row.concurrency_limit,
    )


def _info(row: Row[Any]) -> ScheduleInfo:
    return ScheduleInfo(
        spec=_spec(row),
        paused=bool(row.paused),
        next_fire_at=timestamp(row.next_fire_at),
        last_slot_at=None if row.last_slot_at is None else timestamp(row.last_slot_at),
        last_run_id=row.last_run_id,
        created_at=timestamp(row.created_at),
        updated_at=timestamp(row.updated_at),
    )
