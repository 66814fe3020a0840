"""Moves one run forward: claim its lease, replay, commit the decision, publish, release.

Claim, replay and commit are one transaction where they can be (the run's row stays locked
while its step is decided); a step that cannot be decided there is claimed and committed in
two, fenced by the lease's token. This is the body of the ``orchestrator.replay`` task, kept
free of Celery so it runs (and is tested) against any journal and publisher. Replayers are
cached per process, keyed by run and last sequence number, so a run replays only the events
recorded since its last step; a miss or any doubt falls back to a full replay, which is
always correct.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from orchestrator.engine.context import WorkflowInfo
from orchestrator.engine.registry import Registry
from orchestrator.engine.replay import Decision, Replayer
from orchestrator.journal.protocol import Batch, Claimed, Committed, Delivery, Journal, RunRef
from orchestrator.model.errors import LeaseLost, NonDeterminismError
from orchestrator.model.events import RunInfo, RunStatus
from orchestrator.model.records import InboxItem, NewRun
from orchestrator.model.settings import Settings
from orchestrator.runtime import faults, tracing
from orchestrator.runtime.publisher import Publisher

log = logging.getLogger(__name__)

#: Rounds one call makes while new facts keep arriving, before handing the run back.
MAX_ROUNDS = 20


class ReplayCache:
    """Live replayers by run id (LRU). Taking one removes it: one user at a time."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[str, Replayer] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, run_id: str) -> Replayer | None:
        with self._lock:
            return self._items.pop(run_id, None)

    def put(self, run_id: str, replayer: Replayer) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._items[run_id] = replayer
            self._items.move_to_end(run_id)
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Driver:
    """Advances runs on behalf of one process (``owner`` names it in leases)."""

    def __init__(
        self,
        journal: Journal,
        registry: Registry,
        publisher: Publisher,
        settings: Settings,
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.journal = journal
        self.registry = registry
        self.publisher = publisher
        self.settings = settings
        self.owner = owner
        self.cache = ReplayCache(settings.cache_size)
        self.traces = tracing.StepSpans()
        self._clock = clock

    def start(self, run: NewRun) -> bool:
        """Create ``run`` and take its first step here, in the same transaction. Returns
        whether it was created (``False``: its id is taken, and nothing was done)."""
        inside = _InTransaction(self, run.run_id)
        created, claimed, committed = self.journal.start_and_claim(
            run, owner=self.owner, ttl=self.settings.lease_ttl, decide=inside.decide
        )
        first = inside.outcome(claimed, committed)
        if first.run is not None:
            self.advance(run.run_id, first=first)
        return created

    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        """Journal a fact from outside and, when the run is free, replay it right here: the
        delivery, the claim and the step are one transaction, and no replay message is sent.
        Whoever cannot replay it now (the run is leased, or replay fails) leaves it to a
        replay in flight or to the dispatcher."""
        inside = _InTransaction(self, run_id)
        delivery, claimed, committed = self.journal.deliver_and_claim(
            run_id,
            item,
            task_id=task_id,
            owner=self.owner,
            ttl=self.settings.lease_ttl,
            after_seq=inside.after_seq,
            decide=inside.decide,
        )
        first = inside.outcome(claimed, committed)
        if first.run is None:
            return delivery
        try:
            self.advance(run_id, first=first)
        except Exception:
            log.exception("run %s: replay after delivery failed; dispatching it", run_id)
            self.publisher.publish_replays([_ref(first.run)])
        return delivery

    def advance(self, run_id: str, *, first: _Round | None = None) -> RunStatus | None:
        """Replay ``run_id`` until it waits, ends, or is someone else's. Returns its status
        after the last commit (``None`` when it could not be claimed). ``first`` is the
        outcome of a round the caller already began."""
        status: RunStatus | None = None
        run: RunInfo | None = None
        for _ in range(MAX_ROUNDS):
            round_ = first or self._claim_round(run_id)
            first = None
            if round_.run is None:
                return status
            run = round_.run
            if round_.held is not None:
                status, more = self._step(*round_.held)
            else:
                status, more = round_.status, round_.more
            if not more:
                return status
        if run is not None:
            self.publisher.publish_replays([_ref(run)])
        return status

    def _claim_round(self, run_id: str) -> _Round:
        inside = _InTransaction(self, run_id)
        claimed, committed = self.journal.claim_and_commit(
            run_id,
            owner=self.owner,
            ttl=self.settings.lease_ttl,
            after_seq=inside.after_seq,
            decide=inside.decide,
        )
        return inside.outcome(claimed, committed)

    def _step(self, claimed: Claimed, cached: Replayer | None) -> tuple[RunStatus, bool]:
        run, lease = claimed.run, claimed.lease
        if not self.registry.has(run.workflow, run.version):
            # A per-node fact: leave the run for a node that has this version loaded.
            reason = f"waiting for a node with workflow {run.workflow!r} version {run.version!r}"
            self.journal.release(lease, reason=reason)
            log.warning("run %s released: %s", run.run_id, reason)
            return RunStatus.RUNNABLE, False
        try:
            replayer, decision, batch = self._decide(claimed, cached)
        except NonDeterminismError as err:
            self.journal.commit(lease, Batch(status=RunStatus.BLOCKED, reason=str(err)))
            log.error("run %s blocked: %s", run.run_id, err)
            return RunStatus.BLOCKED, False
        except BaseException:
            self.journal.release(lease)
            raise
        faults.point("driver.before_commit")
        try:
            committed = self.journal.commit(lease, batch)
        except LeaseLost:
            log.warning("run %s: lease lost before commit; another node carries on", run.run_id)
            return RunStatus.RUNNING, False
        self._after_commit(run, replayer, decision, committed)
        return decision.status, committed.pending_inbox

    def _decide(
        self, claimed: Claimed, cached: Replayer | None
    ) -> tuple[Replayer, Decision, Batch]:
        """Replay the claimed run and turn its decision into the batch to commit."""
        run = claimed.run
        self.traces.begin(run)
        replayer = cached or self._new_replayer(run)
        replayer.feed(claimed.history)
        decision = replayer.decide(claimed.inbox, self._clock())
        batch = Batch(
            events=decision.events,
            absorbed=[i.id for i in claimed.inbox[: decision.consumed] if i.id is not None],
            tasks=decision.tasks,
            timers=decision.timers,
            children=self.traces.children(run.run_id, decision.children),
            continuation=self._continuation(run, decision),
            status=decision.status,
            result=decision.result,
            error=decision.error,
            reason=decision.reason,
        )
        return replayer, decision, batch

    def _after_commit(
        self, run: RunInfo, replayer: Replayer, decision: Decision, committed: Committed
    ) -> None:
        """Keep the replayer for the run's next step, and publish what the commit made due."""
        replayer.last_seq = committed.last_seq
        if not decision.status.terminal:
            self.cache.put(run.run_id, replayer)
        faults.point("driver.after_commit")
        now = self._clock()
        with self.traces.publishing(run.run_id, decision.status.value, committed.last_seq):
            due = [t for t in decision.tasks if t.available_at <= now]
            if due:
                self.publisher.publish_tasks(due)
            if committed.dispatch:
                self.publisher.publish_replays(committed.dispatch)

    def _continuation(self, run: RunInfo, decision: Decision) -> NewRun | None:
        """The run that continues ``run``: the newest loaded version of its workflow."""
        command = decision.continuation
        if command is None:
            return None
        return NewRun(
            run_id=command.next_run_id,
            workflow=run.workflow,
            version=self.registry.get(run.workflow).version,
            args=command.args,
            parent_run_id=run.parent_run_id,
            parent_command_id=run.parent_command_id,
            correlation_id=run.correlation_id or run.run_id,
            continued_from_run_id=run.run_id,
            parent_close_policy=run.parent_close_policy,
            trace_context=run.trace_context,
        )

    def _new_replayer(self, run: RunInfo) -> Replayer:
        definition = self.registry.get(run.workflow, run.version)
        info = WorkflowInfo(
            run_id=run.run_id,
            workflow=run.workflow,
            version=run.version,
            parent_run_id=run.parent_run_id,
            correlation_id=run.correlation_id,
            continued_from_run_id=run.continued_from_run_id,
        )
        return Replayer(
            definition.fn,
            info,
            default_retry=self.settings.default_retry,
            max_payload_bytes=self.settings.max_payload_bytes,
            resolve_workflow=self.registry.resolve,
        )


@dataclass
class _Round:
    """How one claim of a run went: nothing to do (``run`` is ``None``), a step committed in
    the claiming transaction (``status``, and ``more`` when facts arrived meanwhile), or a
    claim ``held`` with no commit yet (with the replayer it may start from)."""

    run: RunInfo | None = None
    status: RunStatus | None = None
    more: bool = False
    held: tuple[Claimed, Replayer | None] | None = None


class _InTransaction:
    """A step decided inside the transaction that claims the run, the run's row locked, so
    that claim, replay and commit are one transaction.

    A second call (the transaction was retried), a version this node lacks or a replay
    that fails decide nothing: the claim is then stepped on its own, committed apart
    (:meth:`Driver._step`)."""

    def __init__(self, driver: Driver, run_id: str) -> None:
        self.driver = driver
        self.run_id = run_id
        self.cached = driver.cache.take(run_id)
        self.after_seq = self.cached.last_seq if self.cached else 0
        self.touched = False  # a replay began inside the transaction (it may be retried)
        self.decided: tuple[Replayer, Decision] | None = None

    def decide(self, claimed: Claimed) -> Batch | None:
        if self.touched or not self.driver.registry.has(claimed.run.workflow, claimed.run.version):
            return None
        self.touched = True
        try:
            faults.point("driver.decide_in_transaction")
            replayer, decision, batch = self.driver._decide(claimed, self.cached)
        except NonDeterminismError:
            return None  # the step apart blocks the run, with the reason
        except Exception:
            log.exception("run %s: replay inside the claiming transaction failed", self.run_id)
            return None
        self.decided = (replayer, decision)
        return batch

    def outcome(self, claimed: Claimed | None, committed: Committed | None) -> _Round:
        # A cached replayer fed inside a transaction that did not commit its decision has
        # seen events that are not history: it is dropped.
        trusted = None if self.touched else self.cached
        if claimed is None:  # the run is someone else's for now, or has nothing to do
            if trusted is not None:
                self.driver.cache.put(self.run_id, trusted)
            return _Round()
        if committed is not None and self.decided is not None:
            replayer, decision = self.decided
            self.driver._after_commit(claimed.run, replayer, decision, committed)
            return _Round(claimed.run, decision.status, committed.pending_inbox)
        if self.cached is not None and trusted is None:
            # The claim holds history after the dropped replayer's last event only.
            claimed = replace(claimed, history=self.driver.journal.history(self.run_id))
        return _Round(claimed.run, held=(claimed, trusted))


def _ref(run: RunInfo) -> RunRef:
    return RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)
