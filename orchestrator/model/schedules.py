"""Schedules: a workflow started by the dispatchers at every slot of a cron expression or a
fixed interval, and the arithmetic of those slots.

A slot is a point in time (epoch seconds). Slots of ``every`` are the multiples of the interval
since the epoch, so every dispatcher, before and after a restart, agrees on them; slots of a
cron expression are its matches in the schedule's timezone (daylight saving included, as
croniter computes them). The run a slot starts has an id made of the schedule's id and the
slot (:func:`slot_run_id`): a second firing of the same slot is the idempotent start of a run
that exists already.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from orchestrator.model.errors import OrchestratorError
from orchestrator.model.records import NewRun

#: What a slot does while the schedule's previous run is still open.
OVERLAP_POLICIES = ("skip", "allow")
#: Like a run id, shorter (the slot is appended) and without ``@`` (which separates them).
_SCHEDULE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+=-]{0,149}$")
#: The finest interval: slots are written into run ids to the millisecond.
MIN_EVERY = 0.001


class UnknownSchedule(OrchestratorError, LookupError):
    """No schedule has that id."""

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"unknown schedule {schedule_id!r}")
        self.schedule_id = schedule_id


def check_schedule_id(schedule_id: Any) -> str:
    """A clear error for a schedule id that is not a short printable token."""
    if not isinstance(schedule_id, str) or not _SCHEDULE_ID.match(schedule_id):
        raise ValueError(
            f"invalid schedule id {schedule_id!r}: use 1-150 characters of letters, digits "
            "and _.:/+=-"
        )
    return schedule_id


def every_seconds(schedule_id: str, every: Any) -> float:
    """``every`` (seconds or a timedelta) as seconds; a clear error unless it is positive."""
    seconds = every.total_seconds() if isinstance(every, timedelta) else every
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
        raise ValueError(
            f"schedule {schedule_id!r}: every must be a positive number of seconds or a "
            f"timedelta, not {every!r}"
        )
    if seconds < MIN_EVERY or not math.isfinite(seconds):
        raise ValueError(
            f"schedule {schedule_id!r}: every must be between a millisecond and forever, "
            f"not {every!r}"
        )
    return float(seconds)


@dataclass(frozen=True, kw_only=True)
class ScheduleSpec:
    """What a schedule starts, and when. Validated when made, so a bad schedule is refused at
    the call that writes it, before anything is written.

    ``concurrency_key`` and ``concurrency_limit`` are those of the runs it starts (its
    arguments never change, so the key is computed once, when the schedule is written).
    """

    schedule_id: str
    workflow: str
    version: str
    args: list[Any]
    cron: str | None = None
    every: float | None = None
    timezone: str = "UTC"
    overlap: str = "skip"
    catchup_window: float = 60.0
    concurrency_key: str | None = None
    concurrency_limit: int | None = None

    def __post_init__(self) -> None:
        name = check_schedule_id(self.schedule_id)
        if (self.cron is None) == (self.every is None):
            which = "both" if self.cron is not None else "neither"
            raise ValueError(
                f"schedule {name!r}: give exactly one of cron= and every=, not {which}"
            )
        if self.cron is not None:
            fields = self.cron.split() if isinstance(self.cron, str) else []
            if len(fields) != 5 or not croniter.is_valid(self.cron):
                raise ValueError(
                    f"schedule {name!r}: invalid cron expression {self.cron!r}: five fields "
                    "(minute hour day-of-month month day-of-week), e.g. '0 2 * * *'"
                )
        else:
            every_seconds(name, self.every)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(
                f"schedule {name!r}: unknown timezone {self.timezone!r} (an IANA name, "
                "e.g. 'Europe/Paris')"
            ) from None
        if self.overlap not in OVERLAP_POLICIES:
            raise ValueError(
                f"schedule {name!r}: overlap must be one of {', '.join(OVERLAP_POLICIES)}, "
                f"not {self.overlap!r}"
            )
        window = self.catchup_window
        if isinstance(window, bool) or not isinstance(window, (int, float)) or window <= 0:
            raise ValueError(
                f"schedule {name!r}: catchup_window must be a positive number of seconds, "
                f"not {window!r}"
            )

    def run(self, run_id: str) -> NewRun:
        """The run this schedule starts under ``run_id``."""
        return NewRun(
            run_id=run_id,
            workflow=self.workflow,
            version=self.version,
            args=self.args,
            concurrency_key=self.concurrency_key,
            concurrency_limit=self.concurrency_limit,
        )

    @property
    def timing(self) -> tuple[str | None, float | None, str]:
        """What decides the slots: a rewrite that keeps it keeps the next slot too."""
        return self.cron, self.every, self.timezone

    def next_slot(self, after: float) -> float:
        """The first slot strictly after ``after``."""
        if self.every is not None:
            slot = _every_slot(math.floor(after / self.every) + 1, self.every)
            return slot if slot > after else _every_slot(round(slot / self.every) + 1, self.every)
        assert self.cron is not None
        start = datetime.fromtimestamp(math.floor(after), ZoneInfo(self.timezone))
        return float(croniter(self.cron, start).get_next(float))

    def latest_slot(self, at: float) -> float:
        """The latest slot at or before ``at``."""
        if self.every is not None:
            slot = _every_slot(math.floor(at / self.every), self.every)
            return slot if slot <= at else _every_slot(round(slot / self.every) - 1, self.every)
        assert self.cron is not None
        # Cron slots are whole minutes: none lies between a whole second and half past it.
        start = datetime.fromtimestamp(math.floor(at) + 0.5, ZoneInfo(self.timezone))
        return float(croniter(self.cron, start).get_prev(float))

    def due(self, next_fire_at: float, now: float) -> tuple[float | None, float]:
        """The slot to fire when a dispatcher reaches a schedule due at ``next_fire_at`` at
        ``now`` (``None``: its latest slot is older than the catch-up window, so none), and
        the next slot to wait for. Slots between are skipped: after downtime, only the latest
        missed slot is fired."""
        latest = self.latest_slot(now)
        fire = latest if latest >= next_fire_at and now - latest <= self.catchup_window else None
        return fire, self.next_slot(now)


def _every_slot(k: int | float, every: float) -> float:
    """The ``k``-th slot of an interval, rounded to the millisecond (as run ids show it)."""
    return round(k * every, 3)


def slot_stamp(at: float) -> str:
    """A slot as run ids show it: UTC, to the second, or to the millisecond when it has one."""
    moment = datetime.fromtimestamp(at, UTC)
    if moment.microsecond:
        return moment.strftime("%Y%m%dT%H%M%S.") + f"{moment.microsecond // 1000:03d}Z"
    return moment.strftime("%Y%m%dT%H%M%SZ")


def slot_run_id(schedule_id: str, slot: float) -> str:
    """The id of the run a slot starts: the same on every dispatcher."""
    return f"{schedule_id}@{slot_stamp(slot)}"


def manual_run_id(schedule_id: str, at: float) -> str:
    """The id of a run started by :func:`trigger <orchestrator.Orchestrator.trigger_schedule>`."""
    return f"{schedule_id}@manual-{slot_stamp(round(at, 3))}"


@dataclass(frozen=True, kw_only=True)
class ScheduleInfo:
    """A schedule as the journal keeps it: its spec and where it stands.

    ``next_fire_at``: the slot the dispatchers wait for (it moves on when the schedule is
    resumed); ``last_slot_at``/``last_run_id``: the latest slot fired (or the trigger) and
    the run it started, which ``overlap="skip"`` waits for.
    """

    spec: ScheduleSpec
    paused: bool
    next_fire_at: datetime
    last_slot_at: datetime | None = None
    last_run_id: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def schedule_id(self) -> str:
        """The schedule's id."""
        return self.spec.schedule_id
