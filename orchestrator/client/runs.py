"""The client API: start runs, wait for results, read runs and their histories."""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from orchestrator.engine.registry import Registry, WorkflowDefinition
from orchestrator.journal.inbox import cancel_item
from orchestrator.journal.protocol import Journal, RunRef
from orchestrator.model import limits, payloads
from orchestrator.model.deadlines import WORKFLOW_TIMEOUT, check_timeout
from orchestrator.model.errors import (
    Cancelled,
    RunClosed,
    UnknownRun,
    UnknownWorkflow,
    WorkflowFailed,
    WorkflowTimeout,
)
from orchestrator.model.events import Event, EventType, RunInfo, RunStatus, parse_status
from orchestrator.model.ids import check_run_id
from orchestrator.model.records import InboxItem, NewRun
from orchestrator.model.settings import Settings
from orchestrator.runtime import tracing
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import Publisher

log = logging.getLogger(__name__)

_SIGNAL = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


async def _not_loaded(*_: Any) -> None:
    raise AssertionError("a workflow started by name is replayed only where it is loaded")


class Client:
    """Talks to the journal and the broker on behalf of any process with the app configured."""

    def __init__(
        self,
        journal: Journal,
        registry: Registry,
        publisher: Publisher,
        settings: Settings,
        *,
        driver: Driver | None = None,
    ) -> None:
        self.journal = journal
        self.registry = registry
        self.publisher = publisher
        self.settings = settings
        #: Takes a new run's first step here (``eager_start``); ``None`` leaves it to a worker.
        self.driver = driver

    def start(
        self,
        workflow: Any,
        *args: Any,
        run_id: str | None = None,
        version: str | None = None,
        timeout: float | None = None,
        connection: Any = None,
    ) -> str:
        """Create a run and take its first step (here, or on a worker); idempotent by
        ``run_id``. Returns the run id.

        Arguments JSON cannot carry are refused before anything is written. With
        ``timeout`` (seconds), the run and its continuations fail with ``WorkflowTimeout``
        if still open that long after the start. With ``connection`` (a SQLAlchemy or
        psycopg 3 connection to the journal's Postgres database, a transaction open), the run
        is inserted in the caller's transaction and taken by a dispatcher once the caller
        commits (see :mod:`orchestrator.journal.sql.transactional`).
        """
        run, definition = self.new_run(workflow, args, run_id, version, timeout)
        if connection is not None:
            # A run of that id may exist only in the caller's transaction, unseen from here.
            self.journal.create_run_in(connection, run)
        elif not self._create(run, definition):
            self.check_reused(run)
        return run.run_id

    def new_run(
        self,
        workflow: Any,
        args: tuple[Any, ...],
        run_id: str | None,
        version: str | None,
        timeout: float | None = None,
    ) -> tuple[NewRun, WorkflowDefinition]:
        """The run a start would create, every part of it checked (nothing is written)."""
        definition = self._definition(workflow, version)
        run_id = check_run_id(run_id) if run_id is not None else uuid.uuid4().hex
        args_list = self.checked_args(definition, args, f"arguments of workflow {definition.name}")
        run = NewRun(
            run_id=run_id,
            workflow=definition.name,
            version=definition.version,
            args=args_list,
            **limits.run_fields(definition.limit, args_list),
            execution_timeout=None if timeout is None else check_timeout(timeout, "timeout"),
            trace_context=tracing.start_run(definition.name, run_id),
        )
        return run, definition

    def checked_args(
        self, definition: WorkflowDefinition, args: Sequence[Any], what: str
    ) -> list[Any]:
        """``args`` as the journal keeps them (JSON, within the payload limit), checked by
        the workflow's own check if it has one (``WorkflowDefinition.check_args``); a clear
        error naming ``what`` otherwise. Nothing is written."""
        checked: list[Any] = payloads.roundtrip(list(args), what, self.settings.max_payload_bytes)
        if definition.check_args is not None:
            definition.check_args(checked)
        return checked

    def check_reused(self, run: NewRun) -> None:
        """A start of an id that exists returns that run, if it is of the same workflow."""
        existing = self.describe(run.run_id)
        if existing.workflow != run.workflow:
            raise ValueError(
                f"run id {run.run_id!r} is already used by workflow {existing.workflow!r}, "
                f"not {run.workflow!r}"
            )

    def _create(self, run: NewRun, definition: WorkflowDefinition) -> bool:
        """Insert the run, and take its first step here in the same transaction when the
        workflow is loaded here. Otherwise, or when that fails, a worker takes the step.
        Returns whether the run was created (``False``: its id was taken)."""
        failed = False
        # A limited run is admitted by the journal first: no step is taken with its insert.
        if self.driver is not None and definition.fn is not _not_loaded and not definition.limit:
            try:
                return self.driver.start(run)
            except Exception:
                log.exception("run %s: first step at start failed; dispatching it", run.run_id)
                failed = True
        created = self.journal.create_run(run)  # done already if the failure was past the step
        if created or failed:
            ref = RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)
            self.publisher.publish_replays([ref])
        return created

    def _definition(self, workflow: Any, version: str | None) -> WorkflowDefinition:
        """The workflow to start: loaded here, or (by name and version) on a live node."""
        try:
            return self.registry.resolve(workflow, version)
        except UnknownWorkflow:
            if not (isinstance(workflow, str) and version):
                raise
            if (workflow, version) not in self.journal.live_versions(
                node_ttl=self.settings.node_ttl
            ):
                raise UnknownWorkflow(workflow, version) from None
            return WorkflowDefinition(name=workflow, version=version, fn=_not_loaded)

    def tip(self, run_id: str) -> str:
        """The live tip of ``run_id``'s continue-as-new chain; :class:`UnknownRun` if none."""
        tip = self.journal.resolve_tip(check_run_id(run_id))
        if tip is None:
            raise UnknownRun(run_id)
        return tip

    def signal(
        self, run_id: str, name: str, payload: Any = None, *, signal_id: str | None = None
    ) -> None:
        """Deliver signal ``name`` to the run (its chain's live tip). Signals wait, in order,
        until the workflow asks for them. ``signal_id`` makes a retried send idempotent."""
        self.deliver(run_id, self.signal_item(name, payload, signal_id), f"signal {name!r}")

    def signal_item(self, name: str, payload: Any, signal_id: str | None = None) -> InboxItem:
        """The inbox item of a signal, checked (nothing is written)."""
        if not isinstance(name, str) or not _SIGNAL.match(name):
            raise ValueError(f"invalid signal name {name!r}: 1-200 printable characters")
        data = {
            "name": name,
            "payload": payloads.roundtrip(
                payload, f"payload of signal {name!r}", self.settings.max_payload_bytes
            ),
        }
        key = f"signal:{signal_id or uuid.uuid4().hex}"
        return InboxItem(dedupe_key=key, type=EventType.SIGNAL_RECEIVED, data=data)

    def cancel(self, run_id: str, reason: str | None = None) -> None:
        """Ask the run (its chain's live tip) to stop: ``Cancelled`` is raised at its current
        await; it may clean up, then ends ``cancelled``. Asking twice is harmless."""
        if reason is not None and not isinstance(reason, str):
            raise TypeError(f"cancel reason must be a string, not {reason!r}")
        self.deliver(run_id, cancel_item(reason), "the cancellation")

    def deliver(self, run_id: str, item: InboxItem, what: str) -> None:
        """Deliver ``item`` to the live tip of ``run_id``'s chain; :class:`RunClosed` naming
        ``what`` when the run has ended."""
        for _ in range(3):
            tip = self.tip(run_id)
            delivery = self.journal.deliver(tip, item)
            if delivery.dispatch is not None:
                self.publisher.publish_replays([delivery.dispatch])
            if delivery.accepted:
                return
            # This run, not its chain's tip: it may have continued since it was looked up.
            info = self.journal.describe(tip)
            if info is None:
                raise UnknownRun(tip)
            if info.status is not RunStatus.CONTINUED:
                if info.status.terminal:
                    raise RunClosed(tip, info.status.value, what)
                return  # already delivered (same dedupe key)
        raise RunClosed(run_id, "continued", what)

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for the run (following its continue-as-new chain) to end: its result, or
        :class:`WorkflowFailed` / :class:`Cancelled` / ``TimeoutError``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        tip = self.tip(run_id)
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            info = self.journal.wait_closed(tip, left)
            if info is None:
                raise TimeoutError(f"run {run_id} did not finish within {timeout} seconds")
            if info.status is not RunStatus.CONTINUED or info.continued_to_run_id is None:
                break
            tip = info.continued_to_run_id
        if info.status is RunStatus.COMPLETED:
            return info.result
        if info.status is RunStatus.CANCELLED:
            raise Cancelled(run_id, info.reason)
        error = info.error or {"type": "unknown", "message": info.status}
        if str(error.get("type")) == WORKFLOW_TIMEOUT:
            raise WorkflowTimeout(run_id, error)
        raise WorkflowFailed(run_id, error)

    def describe(self, run_id: str) -> RunInfo:
        """The summary of the run (its chain's live tip); :class:`UnknownRun` for an unknown id."""
        tip = self.tip(run_id)
        info = self.journal.describe(tip)
        if info is None:
            raise UnknownRun(run_id)
        if info.status.value in ("runnable", "blocked") and not info.reason:
            live = self.journal.live_versions(node_ttl=self.settings.node_ttl)
            if (info.workflow, info.version) not in live:
                reason = (
                    f"waiting for a node with workflow {info.workflow!r} version {info.version!r}"
                )
                info = dataclasses.replace(info, reason=reason)
        return info

    def history(self, run_id: str) -> list[Event]:
        """The events of the run (its chain's live tip), in order."""
        return self.journal.history(self.tip(run_id))

    def list_runs(
        self, status: str | RunStatus | None = None, workflow: str | None = None, limit: int = 50
    ) -> list[RunInfo]:
        """Runs, newest first."""
        wanted = None if status is None else parse_status(status)
        if not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be a positive integer, not {limit!r}")
        return self.journal.list_runs(status=wanted, workflow=workflow, limit=limit)
