"""The client's schedules: write, pause, resume, trigger, delete and list them.

A schedule names a workflow loaded here (or, by name and version, on a live node) and its
arguments, checked as a start checks them; everything is validated before anything is
written. The dispatchers fire it (see :meth:`Journal.fire_due_schedules
<orchestrator.journal.protocol.Journal.fire_due_schedules>`).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.client.runs import Client
from orchestrator.model import limits
from orchestrator.model.schedules import (
    ScheduleInfo,
    ScheduleSpec,
    UnknownSchedule,
    check_schedule_id,
    every_seconds,
)


class Schedules:
    """Schedules on the journal of a :class:`~orchestrator.client.runs.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.journal = client.journal

    def schedule(
        self,
        schedule_id: str,
        workflow: Any,
        *args: Any,
        cron: str | None = None,
        every: float | timedelta | None = None,
        overlap: str = "skip",
        catchup_window: float = 60,
        timezone: str = "UTC",
        version: str | None = None,
    ) -> ScheduleInfo:
        """Create or rewrite (idempotently, by id) the schedule; see
        :meth:`Orchestrator.schedule <orchestrator.client.facade.Orchestrator.schedule>`."""
        check_schedule_id(schedule_id)
        definition = self.client._definition(workflow, version)
        args_list = self.client.checked_args(
            definition, args, f"arguments of schedule {schedule_id}"
        )
        spec = ScheduleSpec(
            schedule_id=schedule_id,
            workflow=definition.name,
            version=definition.version,
            args=args_list,
            cron=cron,
            every=None if every is None else every_seconds(schedule_id, every),
            timezone=timezone,
            overlap=overlap,
            catchup_window=catchup_window,
            **limits.run_fields(definition.limit, args_list),
        )
        return self.journal.put_schedule(spec)

    def pause(self, schedule_id: str) -> ScheduleInfo:
        """Stop firing the schedule until it is resumed."""
        return self._found(schedule_id, self.journal.pause_schedule(schedule_id, True))

    def resume(self, schedule_id: str) -> ScheduleInfo:
        """Fire the schedule again, from its first slot after now."""
        return self._found(schedule_id, self.journal.pause_schedule(schedule_id, False))

    def trigger(self, schedule_id: str) -> str:
        """Start the schedule's run now (paused or not, its last run open or not); its id."""
        ref = self.journal.trigger_schedule(check_schedule_id(schedule_id))
        if ref is None:
            raise UnknownSchedule(schedule_id)
        self.client.publisher.publish_replays([ref])
        return ref.run_id

    def delete(self, schedule_id: str) -> None:
        """Delete the schedule; the runs it started stay."""
        if not self.journal.delete_schedule(check_schedule_id(schedule_id)):
            raise UnknownSchedule(schedule_id)

    def get(self, schedule_id: str) -> ScheduleInfo:
        """The schedule; :class:`UnknownSchedule` for an unknown id."""
        return self._found(schedule_id, self.journal.get_schedule(schedule_id))

    def list(self) -> list[ScheduleInfo]:
        """Every schedule, by id."""
        return self.journal.list_schedules()

    @staticmethod
    def _found(schedule_id: str, info: ScheduleInfo | None) -> ScheduleInfo:
        if info is None:
            raise UnknownSchedule(schedule_id)
        return info
