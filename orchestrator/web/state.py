"""What every handler of the web view shares: the orchestrator it shows, whether actions are
allowed, and its templates; and how a page or a refusal is answered."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response

from orchestrator.web import csrf

#: No framing (its buttons cancel runs: no clickjacking), no sniffing, no referrer elsewhere.
_PAGE_HEADERS = {
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


@dataclass(frozen=True)
class WebState:
    """The app's state (``app.state.web``)."""

    orc: Any
    read_only: bool
    env: jinja2.Environment

    def page(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        """A rendered template, with the CSRF cookie set when the browser has none yet."""
        token = csrf.token(request)
        html = self.env.get_template(name).render(
            request=request,
            read_only=self.read_only,
            csrf_token=token,
            root=root_path(request),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=_PAGE_HEADERS)
        csrf.set_cookie(request, response, token)
        return response


def root_path(request: Request) -> str:
    """Where the app is mounted (``""`` at the root of its host): every link starts with it."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def state_of(request: Request) -> WebState:
    """The :class:`WebState` of the app serving ``request``."""
    web: WebState = request.app.state.web
    return web


def error_response(request: Request, status: int, message: str) -> Response:
    """A refusal, as JSON under ``/api`` and as a page elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return state_of(request).page(
        request, "error.html", status=status, status_code=status, message=message
    )
