"""``GET /metrics``: the journal's metrics (see :mod:`orchestrator.web.collector`)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from orchestrator.web import collector
from orchestrator.web.state import state_of


async def endpoint(request: Request) -> Response:
    """Prometheus text, read from the journal at this scrape."""
    app_state = request.app.state
    registry = getattr(app_state, "metrics_registry", None)
    if registry is None:
        registry = app_state.metrics_registry = collector.registry_for(
            state_of(request).orc.journal
        )
    body, content_type = collector.exposition(registry)
    return Response(body, media_type=content_type)
