"""The run page's actions: signal, cancel and retry, each a POST form; and the checks every
action of the web view passes first (:func:`read_form`).

Every action is refused before anything is written when the app is read-only (403), the
body is too large (413) or not a form (415), the CSRF token is missing or wrong (403), the
run is unknown (404) or the input is malformed (400); then the orchestrator's own call does
the work, and the browser is sent back to the run's page (303).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from orchestrator.model.errors import (
    NotRetryable,
    OrchestratorError,
    PayloadError,
    RunClosed,
    UnknownRun,
)
from orchestrator.model.ids import check_run_id
from orchestrator.web import csrf
from orchestrator.web.runview import BadRequest
from orchestrator.web.state import root_path, state_of

#: Room for a form's other fields (name, reason, token) beyond the signal's payload.
_FORM_SLACK = 16 * 1024


async def read_form(request: Request) -> dict[str, str]:
    """The fields of an action's form, once it passes the checks that do not depend on what it
    acts on (read-only, size, form encoding, CSRF token); or the refusal as
    :class:`BadRequest`."""
    web = state_of(request)
    if web.read_only:
        raise BadRequest("this web view is read-only: actions are turned off (--read-only)", 403)
    limit = int(web.orc.settings.max_payload_bytes) + _FORM_SLACK
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadRequest(_too_large(limit), 413)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(_too_large(limit), 413)
    kind = request.headers.get("content-type", "").split(";")[0].strip()
    if body and kind != "application/x-www-form-urlencoded":
        raise BadRequest("send the action as a form (application/x-www-form-urlencoded)", 415)
    try:
        parsed = parse_qs(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("the form could not be read") from None
    fields = {k: v[-1] for k, v in parsed.items()}
    if not csrf.valid(request, fields.get(csrf.FIELD)):
        raise BadRequest(
            "missing or wrong CSRF token: reload the page and submit its form again", 403
        )
    return fields


async def _form(request: Request) -> tuple[str, dict[str, str]]:
    """The checked run id and form fields of a run's action, or the refusal."""
    fields = await read_form(request)
    run_id = request.path_params["run_id"]
    try:
        state_of(request).orc.describe(check_run_id(run_id))
    except (UnknownRun, ValueError):
        raise BadRequest(f"unknown run {run_id!r}", 404) from None
    return run_id, fields


def _too_large(limit: int) -> str:
    return f"the form is larger than {limit} bytes (the journal's payload limit, and a little)"


def back(request: Request, path: str, done: str, **more: str) -> Response:
    """Send the browser to the page at ``path`` (under the app's root), which says what was
    ``done`` (see other after a POST, so a reload does not post the form again)."""
    query = urlencode({"done": done, **more}, quote_via=quote)
    return RedirectResponse(f"{root_path(request)}{quote(path)}?{query}", status_code=303)


def _back(request: Request, run_id: str, done: str) -> Response:
    return back(request, f"/runs/{run_id}", done)


def refuse(exc: Exception) -> BadRequest:
    """What the orchestrator refused, as the HTTP answer saying why."""
    if isinstance(exc, RunClosed | NotRetryable):
        return BadRequest(str(exc), 409)
    if isinstance(exc, PayloadError):  # a JSON value read from a form: too large to journal
        return BadRequest(str(exc), 413)
    return BadRequest(str(exc), 400)


async def signal(request: Request) -> Response:
    """``POST /runs/{run_id}/signal``: fields ``name`` and ``payload`` (JSON, default null)."""
    run_id, fields = await _form(request)
    name = fields.get("name", "").strip()
    if not name:
        raise BadRequest("name the signal to send")
    text = fields.get("payload", "").strip() or "null"
    try:
        payload: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the payload is not valid JSON: {exc}") from None
    try:
        state_of(request).orc.signal(run_id, name, payload)
    except (OrchestratorError, ValueError, TypeError) as exc:
        raise refuse(exc) from None
    return _back(request, run_id, f"signal {name!r} sent")


async def cancel(request: Request) -> Response:
    """``POST /runs/{run_id}/cancel``: field ``reason`` (optional)."""
    run_id, fields = await _form(request)
    reason = fields.get("reason", "").strip() or "cancelled from the web view"
    try:
        state_of(request).orc.cancel(run_id, reason)
    except (OrchestratorError, ValueError, TypeError) as exc:
        raise refuse(exc) from None
    return _back(request, run_id, "cancellation requested")


async def retry(request: Request) -> Response:
    """``POST /runs/{run_id}/retry``: run a failed run again from its failed step."""
    run_id, _ = await _form(request)
    try:
        handle = state_of(request).orc.retry(run_id)
    except (OrchestratorError, ValueError, TypeError) as exc:
        raise refuse(exc) from None
    return _back(request, handle.run_id, "retry started")
