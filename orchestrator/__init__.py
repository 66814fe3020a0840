"""Continuum: durable workflows for Celery.

Workflows are ``async def`` functions replayed from their history in Postgres; activities are
the app's own Celery tasks. Start with :class:`Orchestrator`.

The package is layered, each layer a subpackage importing only those before it: ``model``,
``engine``, ``journal``, ``runtime``, ``celery`` (the integration), then the surfaces
(``client``, ``cli``). The public names are importable from here.
"""

from orchestrator.client.facade import Orchestrator, RunHandle
from orchestrator.engine.context import WorkflowContext
from orchestrator.model.errors import (
    ActivityFailed,
    Cancelled,
    ChildFailed,
    LeaseLost,
    NonDeterminismError,
    NotRetryable,
    OrchestratorError,
    PayloadError,
    RunClosed,
    UnknownRun,
    UnknownWorkflow,
    WorkflowFailed,
)
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus
from orchestrator.model.retry import RetryPolicy

__all__ = [
    "ActivityFailed",
    "Cancelled",
    "ChildFailed",
    "Event",
    "EventType",
    "LeaseLost",
    "NonDeterminismError",
    "NotRetryable",
    "Orchestrator",
    "OrchestratorError",
    "PayloadError",
    "RetryPolicy",
    "RunClosed",
    "RunHandle",
    "RunInfo",
    "RunStatus",
    "UnknownRun",
    "UnknownWorkflow",
    "WorkflowContext",
    "WorkflowFailed",
]
