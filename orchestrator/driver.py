"""Moves one run forward: claim its lease, replay, commit the decision, publish, release.

This is the body of the ``orchestrator.replay`` task, kept free of Celery so it runs (and is
tested) against any journal and publisher. Replayers are cached per process, keyed by run and
last sequence number, so a run replays only the events recorded since its last step; a miss
or any doubt falls back to a full replay, which is always correct.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from orchestrator import faults
from orchestrator.config import Settings
from orchestrator.context import WorkflowInfo
from orchestrator.errors import LeaseLost, NonDeterminismError
from orchestrator.events import RunInfo, RunStatus
from orchestrator.journal import (
    Batch,
    Claimed,
    Committed,
    Delivery,
    InboxItem,
    Journal,
    NewRun,
    RunRef,
)
from orchestrator.publisher import Publisher
from orchestrator.registry import Registry
from orchestrator.replay import Decision, Replayer

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
        self._clock = clock

    def deliver(self, run_id: str, item: InboxItem, *, task_id: str | None = None) -> Delivery:
        """Journal a fact from outside and, when the run is free, replay it right here: the
        delivery and the claim are one transaction, and no replay message is sent. Whoever
        cannot replay it now (the run is leased, or replay fails) leaves it to a replay in
        flight or to the dispatcher."""
        cached = self.cache.take(run_id)
        decided: list[tuple[Replayer, Decision]] = []
        touched: list[bool] = []  # a replay began inside the transaction (it may be retried)

        def decide(claimed: Claimed) -> Batch | None:
            # Called inside the delivering transaction, with the run's row locked: the whole
            # step is one transaction. A second call (the transaction was retried), a version
            # this node lacks or a replay that fails fall back to claim-then-commit.
            if touched or not self.registry.has(claimed.run.workflow, claimed.run.version):
                return None
            touched.append(True)
            try:
                replayer, decision, batch = self._decide(claimed, cached)
            except NonDeterminismError:
                return None  # the fallback blocks the run, with the reason
            except Exception:
                log.exception("run %s: replay inside the delivery failed", run_id)
                return None
            decided.append((replayer, decision))
            return batch

        delivery, claimed, committed = self.journal.deliver_and_claim(
            run_id,
            item,
            task_id=task_id,
            owner=self.owner,
            ttl=self.settings.lease_ttl,
            after_seq=cached.last_seq if cached else 0,
            decide=decide,
        )
        # A cached replayer fed inside a transaction that did not commit its decision has
        # seen events that are not history: it is dropped.
        trusted = None if touched else cached
        if claimed is None:  # not claimed: the run is someone else's for now
            if trusted is not None:
                self.cache.put(run_id, trusted)
            return delivery
        pending: Claimed | None = claimed
        if committed is not None and decided:
            replayer, decision = decided[-1]
            self._after_commit(claimed.run, replayer, decision, committed)
            if not committed.pending_inbox:
                return delivery
            pending = None  # more facts arrived: claim again, from the cache
        elif cached is not None and trusted is None:
            # The claim holds history after the dropped replayer's last event only.
            pending = replace(claimed, history=self.journal.history(run_id))
        try:
            self.advance(run_id, claimed=pending, cached=trusted if pending else None)
        except Exception:
            log.exception("run %s: replay after delivery failed; dispatching it", run_id)
            self.publisher.publish_replays([_ref(claimed.run)])
        return delivery

    def advance(
        self, run_id: str, *, claimed: Claimed | None = None, cached: Replayer | None = None
    ) -> RunStatus | None:
        """Replay ``run_id`` until it waits, ends, or is someone else's. Returns its status
        after the last commit (``None`` when it could not be claimed). ``claimed`` (with the
        ``cached`` replayer it was claimed for) is a claim the caller already holds."""
        status: RunStatus | None = None
        run: RunInfo | None = None
        for _ in range(MAX_ROUNDS):
            if claimed is None:
                cached = self.cache.take(run_id)
                claimed = self.journal.claim(
                    run_id, self.owner, self.settings.lease_ttl, cached.last_seq if cached else 0
                )
            if claimed is None:
                return status
            run = claimed.run
            status, more = self._step(claimed, cached)
            claimed = cached = None
            if not more:
                return status
        if run is not None:
            self.publisher.publish_replays([_ref(run)])
        return status

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
        replayer = cached or self._new_replayer(run)
        replayer.feed(claimed.history)
        decision = replayer.decide(claimed.inbox, self._clock())
        batch = Batch(
            events=decision.events,
            absorbed=[i.id for i in claimed.inbox[: decision.consumed] if i.id is not None],
            tasks=decision.tasks,
            timers=decision.timers,
            children=decision.children,
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
            resolve_workflow=self._resolve_child,
        )

    def _resolve_child(self, workflow: Any, version: str | None) -> tuple[str, str]:
        definition = self.registry.resolve(workflow, version)
        return definition.name, definition.version


def _ref(run: RunInfo) -> RunRef:
    return RunRef(run_id=run.run_id, workflow=run.workflow, version=run.version)
