"""The schedules page, its JSON twin, and its actions: pause, resume and trigger now.

Schedules are written in code (``orc.schedule(...)``, where their workflow and arguments
are); here operators see when each fires next and what it last started, and steer it as
``continuum schedules`` does. Each action first passes the checks every action of the view
passes (:func:`orchestrator.web.actions.read_form`), then the orchestrator's own call does the
work and the browser is sent back to the list (303).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.model.errors import OrchestratorError, UnknownRun
from orchestrator.model.events import RunStatus
from orchestrator.model.schedules import ScheduleInfo, UnknownSchedule
from orchestrator.web import actions, runview
from orchestrator.web.runview import BadRequest
from orchestrator.web.state import state_of
from orchestrator.web.timeline import format_seconds

T = TypeVar("T")

#: How late a slot may be before the page calls it overdue: a dispatcher fires a due slot on
#: its next tick, so a slot a moment old is not a sign of trouble; one long past is (no
#: dispatcher runs).
LATE_AFTER_SECONDS = 5.0

#: Whole units an interval reads in, largest first.
_UNITS = ((86400, "d"), (3600, "h"), (60, "min"))


@dataclass(frozen=True, kw_only=True)
class ScheduleRow:
    """A schedule as its row shows it.

    ``next_in`` says when the awaited slot comes relative to now (empty while paused: a
    resumed schedule waits for its first slot after the resume, not this one);
    ``next_local`` is that slot in the schedule's time zone when its cron is read in one
    other than UTC; ``last_status`` is the status of the last run it started (of that run's
    continue-as-new chain), ``None`` when it started none or the run has been pruned.
    """

    info: ScheduleInfo
    every: str | None
    catchup: str
    args: str
    next_in: str
    late: bool
    next_local: str | None
    last_status: RunStatus | None


def seconds_text(seconds: float) -> str:
    """Seconds in the largest whole unit they are a multiple of: ``90 s``, ``5 min``, ``2 h``
    (the way a schedule's interval and catch-up window are thought of)."""
    for size, unit in _UNITS:
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g} {unit}"
    return f"{seconds:g} s"


def _relative(info: ScheduleInfo, now: datetime) -> tuple[str, bool]:
    if info.paused:
        return "", False
    ahead = (info.next_fire_at - now).total_seconds()
    if ahead >= 0:
        return f"in {format_seconds(ahead)}", False
    if -ahead < LATE_AFTER_SECONDS:
        return "due now", False
    return f"overdue by {format_seconds(-ahead)}", True


def _last_status(orc: Any, info: ScheduleInfo) -> RunStatus | None:
    if info.last_run_id is None:
        return None
    try:
        status: RunStatus = orc.describe(info.last_run_id).status
    except UnknownRun:
        return None
    return status


def _row(orc: Any, info: ScheduleInfo, now: datetime) -> ScheduleRow:
    spec = info.spec
    next_in, late = _relative(info, now)
    local = None
    if spec.cron is not None and spec.timezone != "UTC":
        local = info.next_fire_at.astimezone(ZoneInfo(spec.timezone)).strftime("%Y-%m-%d %H:%M %Z")
    return ScheduleRow(
        info=info,
        every=None if spec.every is None else seconds_text(spec.every),
        catchup=seconds_text(spec.catchup_window),
        args=runview.short(json.dumps(spec.args, default=str)[1:-1], 60),
        next_in=next_in,
        late=late,
        next_local=local,
        last_status=_last_status(orc, info),
    )


def schedule_json(info: ScheduleInfo, last_status: RunStatus | None) -> dict[str, Any]:
    """A schedule as ``continuum schedules list --json`` shows it, with the status of the last
    run it started."""
    fields = {k: runview.jsonable(v) for k, v in asdict(info).items()}
    return {
        "schedule_id": info.schedule_id,
        **fields,
        "last_run_status": runview.jsonable(last_status),
    }


async def schedules_page(request: Request) -> Response:
    """``GET /schedules``: every schedule, by id, with its next slot and its last run."""
    web = state_of(request)
    now = runview.now_utc()
    rows = [_row(web.orc, info, now) for info in web.orc.list_schedules()]
    return web.page(
        request,
        "schedules.html",
        rows=rows,
        paused=sum(1 for r in rows if r.info.paused),
        notice=request.query_params.get("done"),
        notice_run=request.query_params.get("run"),
    )


async def schedules_api(request: Request) -> Response:
    """``GET /api/schedules``: the same list as JSON."""
    orc = state_of(request).orc
    return JSONResponse(
        {"schedules": [schedule_json(s, _last_status(orc, s)) for s in orc.list_schedules()]}
    )


async def _steer(request: Request, call: Callable[[str], T]) -> tuple[str, T]:
    """The schedule id of an action and what ``call`` returned for it, or the refusal."""
    await actions.read_form(request)
    schedule_id = request.path_params["schedule_id"]
    try:
        return schedule_id, call(schedule_id)
    except (UnknownSchedule, ValueError):  # ValueError: not even the shape of a schedule id
        raise BadRequest(f"unknown schedule {schedule_id!r}", 404) from None
    except (OrchestratorError, TypeError) as exc:
        raise actions.refuse(exc) from None


async def pause(request: Request) -> Response:
    """``POST /schedules/{schedule_id}/pause``: fire nothing until it is resumed."""
    schedule_id, _ = await _steer(request, state_of(request).orc.pause_schedule)
    return actions.back(request, "/schedules", f"paused {schedule_id}")


async def resume(request: Request) -> Response:
    """``POST /schedules/{schedule_id}/resume``: fire again, from the first slot after now."""
    schedule_id, _ = await _steer(request, state_of(request).orc.resume_schedule)
    return actions.back(request, "/schedules", f"resumed {schedule_id}")


async def trigger(request: Request) -> Response:
    """``POST /schedules/{schedule_id}/trigger``: start its run now, whatever its slots, pause
    or overlap policy."""
    schedule_id, handle = await _steer(request, state_of(request).orc.trigger_schedule)
    return actions.back(request, "/schedules", f"triggered {schedule_id}", run=handle.run_id)
