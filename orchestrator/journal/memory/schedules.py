"""Schedules in memory: the schedule operations of the journal contract, over the in-memory
journal's runs, under its one lock (so each is one atomic step, as on SQL)."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass

from orchestrator.journal.memory.rows import RunRow
from orchestrator.journal.protocol import RunRef
from orchestrator.model import payloads
from orchestrator.model.events import timestamp
from orchestrator.model.records import NewRun
from orchestrator.model.schedules import (
    ScheduleInfo,
    ScheduleSpec,
    manual_run_id,
    slot_run_id,
)


@dataclass(slots=True)
class ScheduleRow:
    """A schedule as stored (its arguments as JSON text, as SQL keeps them)."""

    spec: ScheduleSpec
    args: str
    next_fire_at: float
    created_at: float
    updated_at: float
    paused: bool = False
    last_slot_at: float | None = None
    last_run_id: str | None = None

    def info(self) -> ScheduleInfo:
        spec = dataclasses.replace(self.spec, args=payloads.decode(self.args))
        return ScheduleInfo(
            spec=spec,
            paused=self.paused,
            next_fire_at=timestamp(self.next_fire_at),
            last_slot_at=None if self.last_slot_at is None else timestamp(self.last_slot_at),
            last_run_id=self.last_run_id,
            created_at=timestamp(self.created_at),
            updated_at=timestamp(self.updated_at),
        )


class MemorySchedules:
    """The schedule operations of :class:`~orchestrator.journal.memory.journal.InMemoryJournal`."""

    _lock: threading.RLock
    _clock: Callable[[], float]
    _runs: dict[str, RunRow]
    _schedules: dict[str, ScheduleRow]

    def _new_run(self, run: NewRun, now: float) -> RunRow:
        raise NotImplementedError

    def _insert(self, run: RunRow) -> bool:
        raise NotImplementedError

    def _wake(self) -> None:
        raise NotImplementedError

    def _next_slot(self) -> float | None:
        """The earliest slot an unpaused schedule waits for (``next_wakeup``'s part)."""
        return min((r.next_fire_at for r in self._schedules.values() if not r.paused), default=None)

    def put_schedule(self, spec: ScheduleSpec) -> ScheduleInfo:
        args = payloads.encode(spec.args, f"arguments of schedule {spec.schedule_id}")
        with self._lock:
            now = self._clock()
            row = self._schedules.get(spec.schedule_id)
            if row is None:
                row = ScheduleRow(spec, args, spec.next_slot(now), now, now)
                self._schedules[spec.schedule_id] = row
            else:
                if row.spec.timing != spec.timing:
                    row.next_fire_at = spec.next_slot(now)
                row.spec, row.args, row.updated_at = spec, args, now
            self._wake()
            return row.info()

    def get_schedule(self, schedule_id: str) -> ScheduleInfo | None:
        with self._lock:
            row = self._schedules.get(schedule_id)
            return None if row is None else row.info()

    def list_schedules(self) -> list[ScheduleInfo]:
        with self._lock:
            return [self._schedules[key].info() for key in sorted(self._schedules)]

    def pause_schedule(self, schedule_id: str, paused: bool) -> ScheduleInfo | None:
        with self._lock:
            row = self._schedules.get(schedule_id)
            if row is None:
                return None
            now = self._clock()
            if row.paused and not paused:
                row.next_fire_at = row.spec.next_slot(now)
                self._wake()
            row.paused, row.updated_at = paused, now
            return row.info()

    def delete_schedule(self, schedule_id: str) -> bool:
        with self._lock:
            return self._schedules.pop(schedule_id, None) is not None

    def trigger_schedule(self, schedule_id: str) -> RunRef | None:
        with self._lock:
            row = self._schedules.get(schedule_id)
            if row is None:
                return None
            now = self._clock()
            run_id = manual_run_id(schedule_id, now)
            self._start(row, run_id, now)
            row.last_run_id, row.updated_at = run_id, now
            return self._runs[run_id].ref()

    def fire_due_schedules(self, limit: int = 100) -> list[RunRef]:
        with self._lock:
            now = self._clock()
            due = sorted(
                (r for r in self._schedules.values() if not r.paused and r.next_fire_at <= now),
                key=lambda r: r.next_fire_at,
            )
            refs: list[RunRef] = []
            for row in due[:limit]:
                slot, row.next_fire_at = row.spec.due(row.next_fire_at, now)
                row.updated_at = now
                if slot is None or (row.spec.overlap == "skip" and self._open(row.last_run_id)):
                    continue
                run_id = slot_run_id(row.spec.schedule_id, slot)
                if self._start(row, run_id, now):
                    refs.append(self._runs[run_id].ref())
                row.last_slot_at, row.last_run_id = slot, run_id
            return refs

    def _start(self, row: ScheduleRow, run_id: str, now: float) -> bool:
        spec = dataclasses.replace(row.spec, args=payloads.decode(row.args))
        return self._insert(self._new_run(spec.run(run_id), now))

    def _open(self, run_id: str | None) -> bool:
        """Whether the run (its continue-as-new chain) has not ended."""
        if run_id is None:
            return False
        return any(r.chain == run_id and not r.status.terminal for r in self._runs.values())
