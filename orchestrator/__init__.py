"""Continuum: durable workflows for Celery.

Workflows are ``async def`` functions replayed from their history in Postgres; activities are
the app's own Celery tasks. Start with :class:`Orchestrator`.

The package is layered, each layer a subpackage importing only those before it: ``model``,
``engine``, ``journal``, ``runtime``, ``celery`` (the integration), then the surfaces
(``client``, then ``web`` and ``testing``, then ``cli``). The public names are importable
from here.
"""

from orchestrator.client.facade import Orchestrator, RunHandle
from orchestrator.engine.context import WorkflowContext
from orchestrator.model.errors import (
    ActivityCancelled,
    ActivityFailed,
    Cancelled,
    ChildFailed,
    LeaseLost,
    NonDeterminismError,
    NotPublished,
    NotRetryable,
    OrchestratorError,
    PayloadError,
    RunClosed,
    TransactionalStartError,
    UnknownRun,
    UnknownWorkflow,
    WorkflowFailed,
    WorkflowTimeout,
)
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus
from orchestrator.model.retry import RetryPolicy
from orchestrator.model.schedules import ScheduleInfo, UnknownSchedule
from orchestrator.runtime.heartbeat import ActivityInfo, activity_info, heartbeat

__all__ = [
    "ActivityCancelled",
    "ActivityFailed",
    "ActivityInfo",
    "Cancelled",
    "ChildFailed",
    "Event",
    "EventType",
    "LeaseLost",
    "NonDeterminismError",
    "NotPublished",
    "NotRetryable",
    "Orchestrator",
    "OrchestratorError",
    "PayloadError",
    "RetryPolicy",
    "RunClosed",
    "RunHandle",
    "RunInfo",
    "RunStatus",
    "ScheduleInfo",
    "TransactionalStartError",
    "UnknownRun",
    "UnknownSchedule",
    "UnknownWorkflow",
    "WorkflowContext",
    "WorkflowFailed",
    "WorkflowTimeout",
    "activity_info",
    "heartbeat",
]
