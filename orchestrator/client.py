"""The client API: start runs, wait for results, read runs and their histories."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator import payloads
from orchestrator.config import Settings
from orchestrator.errors import Cancelled, UnknownRun, UnknownWorkflow, WorkflowFailed
from orchestrator.events import Event, RunInfo, RunStatus
from orchestrator.journal import Journal, NewRun, RunRef
from orchestrator.publisher import Publisher
from orchestrator.registry import Registry, WorkflowDefinition

if TYPE_CHECKING:
    from orchestrator.facade import Orchestrator

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/+=-]{0,199}$")


def check_run_id(run_id: Any) -> str:
    """A clear error for a run id that is not a short printable token."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ValueError(
            f"invalid run id {run_id!r}: use 1-200 characters of letters, digits and _.:@/+=-"
        )
    return run_id


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, and shortcuts to wait for it and read it."""

    run_id: str
    orchestrator: Orchestrator

    def result(self, timeout: float | None = None) -> Any:
        """The run's result (see :meth:`Client.result`)."""
        return self.orchestrator.result(self.run_id, timeout=timeout)

    def describe(self) -> RunInfo:
        """The run's summary."""
        return self.orchestrator.describe(self.run_id)


class Client:
    """Talks to the journal and the broker on behalf of any process with the app configured."""

    def __init__(
        self, journal: Journal, registry: Registry, publisher: Publisher, settings: Settings
    ) -> None:
        self.journal = journal
        self.registry = registry
        self.publisher = publisher
        self.settings = settings

    def definition(self, workflow: Any, version: str | None = None) -> WorkflowDefinition:
        """The registered definition of a decorated workflow function or a workflow name."""
        if isinstance(workflow, str):
            return self.registry.get(workflow, version)
        definition = getattr(workflow, "__workflow__", None)
        if isinstance(definition, WorkflowDefinition):
            return definition if version is None else self.registry.get(definition.name, version)
        raise UnknownWorkflow(getattr(workflow, "__qualname__", repr(workflow)))

    def start(
        self, workflow: Any, *args: Any, run_id: str | None = None, version: str | None = None
    ) -> str:
        """Create a run and dispatch it; idempotent by ``run_id``. Returns the run id.

        Arguments JSON cannot carry are refused before anything is written.
        """
        definition = self.definition(workflow, version)
        run_id = check_run_id(run_id) if run_id is not None else uuid.uuid4().hex
        args_list = payloads.roundtrip(
            list(args), f"arguments of workflow {definition.name}", self.settings.max_payload_bytes
        )
        created = self.journal.create_run(
            NewRun(
                run_id=run_id, workflow=definition.name, version=definition.version, args=args_list
            )
        )
        if created:
            self.publisher.publish_replays(
                [RunRef(run_id=run_id, workflow=definition.name, version=definition.version)]
            )
            return run_id
        existing = self.describe(run_id)
        if existing.workflow != definition.name:
            raise ValueError(
                f"run id {run_id!r} is already used by workflow {existing.workflow!r}, "
                f"not {definition.name!r}"
            )
        return run_id

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for the run to end: its result, or :class:`WorkflowFailed` / :class:`Cancelled`
        / ``TimeoutError``."""
        info = self.journal.wait_closed(check_run_id(run_id), timeout)
        if info is None:
            if self.journal.describe(run_id) is None:
                raise UnknownRun(run_id)
            raise TimeoutError(f"run {run_id} did not finish within {timeout} seconds")
        if info.status is RunStatus.COMPLETED:
            return info.result
        if info.status is RunStatus.CANCELLED:
            raise Cancelled(run_id, info.reason)
        raise WorkflowFailed(run_id, info.error or {"type": "unknown", "message": info.status})

    def describe(self, run_id: str) -> RunInfo:
        """The run's summary; :class:`UnknownRun` for an unknown id."""
        info = self.journal.describe(check_run_id(run_id))
        if info is None:
            raise UnknownRun(run_id)
        return info

    def history(self, run_id: str) -> list[Event]:
        """The run's events, in order."""
        self.describe(run_id)
        return self.journal.history(run_id)

    def list_runs(
        self, status: str | RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs, newest first."""
        wanted = None
        if status is not None:
            try:
                wanted = RunStatus(status)
            except ValueError:
                known = ", ".join(s.value for s in RunStatus)
                raise ValueError(f"unknown status {status!r}; one of: {known}") from None
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        return self.journal.list_runs(status=wanted, workflow=workflow, limit=limit)
