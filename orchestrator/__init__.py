"""Continuum: durable workflows for Celery.

Workflows are ``async def`` functions replayed from their history in Postgres; activities are
the app's own Celery tasks. Start with :class:`Orchestrator`.
"""

from orchestrator.client import RunHandle
from orchestrator.context import WorkflowContext
from orchestrator.errors import (
    ActivityFailed,
    Cancelled,
    ChildFailed,
    LeaseLost,
    NonDeterminismError,
    OrchestratorError,
    PayloadError,
    RunClosed,
    UnknownRun,
    UnknownWorkflow,
    WorkflowFailed,
)
from orchestrator.events import Event, EventType, RunInfo, RunStatus
from orchestrator.facade import Orchestrator
from orchestrator.retry import RetryPolicy

__all__ = [
    "ActivityFailed",
    "Cancelled",
    "ChildFailed",
    "Event",
    "EventType",
    "LeaseLost",
    "NonDeterminismError",
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
