"""The pages and the JSON API that read runs: the runs list, a run's page, and their JSON."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from orchestrator.journal.insight import RunPage
from orchestrator.model.errors import UnknownRun
from orchestrator.model.events import Event, RunInfo
from orchestrator.model.ids import check_run_id
from orchestrator.web import runview, timeline
from orchestrator.web.runview import BadRequest, ListQuery
from orchestrator.web.state import state_of

#: The actions a run's page posts to (a GET of one is a wrong method, not an unknown run).
ACTIONS = ("signal", "cancel", "retry")


def _listing(request: Request) -> tuple[ListQuery, RunPage, dict[str, int], list[str]]:
    query = ListQuery.parse(request.query_params)
    journal = state_of(request).orc.journal
    page = journal.page_runs(
        status=query.status,
        workflow=query.workflow,
        prefix=query.q,
        after=query.after,
        limit=query.limit,
    )
    everything = journal.count_runs()
    workflows = sorted({w for w, _ in everything})
    in_view = (
        everything
        if query.workflow is None
        else {k: n for k, n in everything.items() if k[0] == query.workflow}
    )
    return query, page, runview.status_counts(in_view), workflows


async def runs_page(request: Request) -> Response:
    """``GET /``: runs newest first, filtered, a page at a time."""
    query, page, counts, workflows = _listing(request)
    now = runview.now_utc()
    rows = [
        {
            "info": info,
            "duration": runview.duration(info, now),
            "error": runview.error_line(info),
        }
        for info in page.runs
    ]
    return state_of(request).page(
        request,
        "runs.html",
        query=query,
        rows=rows,
        counts=counts,
        total=sum(counts.values()),
        workflows=workflows,
        next_link=query.link(after=page.next.encode()) if page.next else None,
        first_link=query.link() if query.after else None,
    )


async def runs_api(request: Request) -> Response:
    """``GET /api/runs``: the same list as JSON (``next`` is the cursor of the next page)."""
    _, page, counts, _ = _listing(request)
    return JSONResponse(runview.page_json(page, counts))


def _run(request: Request) -> tuple[RunInfo, list[Event]]:
    run_id = request.path_params["run_id"]
    orc = state_of(request).orc
    try:
        check_run_id(run_id)
        return orc.describe(run_id), orc.history(run_id)
    except (UnknownRun, ValueError):
        stem, _, last = run_id.rpartition("/")
        if last in ACTIONS and stem and _exists(orc, stem):
            raise BadRequest(
                f"GET is not allowed here; {last} a run with the POST form on its page", 405
            ) from None
        raise BadRequest(f"unknown run {run_id!r}", 404) from None


def _exists(orc: Any, run_id: str) -> bool:
    try:
        orc.describe(run_id)
    except (UnknownRun, ValueError):
        return False
    return True


async def run_page(request: Request) -> Response:
    """``GET /runs/{run_id}``: a run's status, input, outcome, timeline and history."""
    info, history = _run(request)
    now = runview.now_utc()
    t0 = history[0].at if history else None
    events = [
        {
            "event": e,
            "offset": (e.at - t0).total_seconds() if t0 else 0.0,
            "summary": runview.event_summary(e),
            "data": runview.pretty(e.data),
        }
        for e in history
    ]
    web = state_of(request)
    return web.page(
        request,
        "run.html",
        info=info,
        asked=request.path_params["run_id"],
        duration=runview.duration(info, now),
        error_line=runview.error_line(info),
        args=runview.pretty(info.args),
        result=runview.pretty(info.result),
        links=runview.run_links(info, history),
        chart=timeline.build(history, now),
        events=events,
        notice=request.query_params.get("done"),
    )


async def run_api(request: Request) -> Response:
    """``GET /api/runs/{run_id}``: the run's ``describe`` fields and its history."""
    info, history = _run(request)
    return JSONResponse(
        {"run": runview.run_json(info), "history": [runview.event_json(e) for e in history]}
    )
