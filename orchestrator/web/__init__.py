"""The web view of runs and schedules, its JSON API and its Prometheus metrics
(``continuum web``).

Needs the ``web`` extra (``pip install continuum-orchestrator[web]``): Starlette, Jinja2,
uvicorn and prometheus_client. Imported lazily, so the metrics collector works with only
prometheus_client installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(orc: Any, read_only: bool = False) -> Starlette:
    """The web view's ASGI app for ``orc`` (see :func:`orchestrator.web.app.create_app`)."""
    from orchestrator.web import app

    return app.create_app(orc, read_only=read_only)


__all__ = ["create_app"]
