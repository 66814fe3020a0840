"""The web view's ASGI app: routes, templates, and how refusals are answered.

``create_app(orc)`` returns a Starlette app to serve with any ASGI server (``continuum web``
uses uvicorn) or to mount in an existing site. It holds no state of its own: every page is
read from the journal when asked for, so any number of copies may serve one deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.model.events import RunStatus
from orchestrator.web import actions, metrics, schedules, views
from orchestrator.web.runview import BadRequest
from orchestrator.web.state import WebState, error_response
from orchestrator.web.timeline import format_seconds

_TEMPLATES = Path(__file__).with_name("templates")


def create_app(orc: Any, read_only: bool = False) -> Starlette:
    """The web view of ``orc``'s runs (see DESIGN §8): the runs list at ``/``, a run's page
    at ``/runs/{run_id}``, its schedules at ``/schedules``, actions as POST forms (refused
    with 403 when ``read_only``), the JSON API under ``/api/runs`` and ``/api/schedules``, and
    Prometheus metrics at ``/metrics``."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["duration"] = lambda s: "\u2013" if s is None else format_seconds(float(s))
    env.filters["tojson_pretty"] = lambda v: json.dumps(v, indent=2, default=str)
    env.globals["statuses"] = [s.value for s in RunStatus]
    state = WebState(orc=orc, read_only=read_only, env=env)
    routes = [
        Route("/", views.runs_page, methods=["GET"]),
        Route("/api/runs", views.runs_api, methods=["GET"]),
        Route("/api/runs/{run_id:path}", views.run_api, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/runs/{run_id:path}/signal", actions.signal, methods=["POST"]),
        Route("/runs/{run_id:path}/cancel", actions.cancel, methods=["POST"]),
        Route("/runs/{run_id:path}/retry", actions.retry, methods=["POST"]),
        Route("/runs/{run_id:path}", views.run_page, methods=["GET"]),
        Route("/schedules", schedules.schedules_page, methods=["GET"]),
        Route("/api/schedules", schedules.schedules_api, methods=["GET"]),
        Route("/schedules/{schedule_id:path}/pause", schedules.pause, methods=["POST"]),
        Route("/schedules/{schedule_id:path}/resume", schedules.resume, methods=["POST"]),
        Route("/schedules/{schedule_id:path}/trigger", schedules.trigger, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={BadRequest: _refused, HTTPException: _http_error},
    )
    app.state.web = state
    return app


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return error_response(request, exc.status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 405:
        message = f"{request.method} is not allowed here; this address takes POST forms only"
    elif exc.status_code == 404:
        message = f"nothing at {request.url.path}"
    response = error_response(request, exc.status_code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response
