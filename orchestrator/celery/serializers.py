"""JSON only: an app that sends or accepts pickle is refused (DESIGN §7)."""

from __future__ import annotations

from celery import Celery

from orchestrator.model.errors import ConfigurationError

_PICKLE = {"pickle", "application/x-python-serialize"}


def check_serializers(app: Celery) -> None:
    """Refuse an app that sends or accepts pickle: orchestrator messages are JSON only."""
    conf = app.conf
    accepted = {str(c) for c in (conf.accept_content or ())}
    if str(conf.task_serializer) in _PICKLE or accepted & _PICKLE:
        raise ConfigurationError(
            f"Celery app {app.main!r} is configured for pickle (task_serializer="
            f"{conf.task_serializer!r}, accept_content={sorted(accepted)!r}); the orchestrator "
            "sends and accepts JSON only: set task_serializer='json' and accept_content=['json']"
        )
