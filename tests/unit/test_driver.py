"""The driver's hot path: an outcome's delivery, claim, replay and commit in one transaction,
and the fallback when that transaction runs more than once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from orchestrator import WorkflowContext
from orchestrator.engine.registry import Registry
from orchestrator.journal.inbox import outcome_key
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.journal.protocol import Batch, Claimed, Committed, Delivery, Lease, TaskStart
from orchestrator.model.events import EventType, RunStatus
from orchestrator.model.records import InboxItem, NewRun, task_id_for
from orchestrator.model.settings import Settings
from orchestrator.runtime.driver import Driver
from orchestrator.runtime.publisher import RecordingPublisher
from tests.invariants import check_history


async def three_steps(ctx: WorkflowContext, n: int) -> int:
    for _ in range(3):
        n = await ctx.activity("math.double", n)
    return n


class RetriedJournal(InMemoryJournal):
    """Runs a one-step call's ``decide`` once in a transaction that is then rolled back (as a
    deadlock or a dropped connection would), before the real one."""

    retries = 0  # of deliver_and_claim
    claim_retries = 0  # of claim_and_commit

    def deliver_and_claim(
        self,
        run_id: str,
        item: InboxItem,
        *,
        decide: Callable[[Claimed], Batch | None] | None = None,
        **kw: Any,
    ) -> tuple[Delivery, Claimed | None, Committed | None]:
        if decide is not None and self.retries:
            self.retries -= 1
            self._decide_and_roll_back(decide, run_id, [replace(item, id=-1)], **kw)
        return super().deliver_and_claim(run_id, item, decide=decide, **kw)

    def claim_and_commit(
        self, run_id: str, *, decide: Callable[[Claimed], Batch | None], **kw: Any
    ) -> tuple[Claimed | None, Committed | None]:
        if self.claim_retries:
            self.claim_retries -= 1
            self._decide_and_roll_back(decide, run_id, [], **kw)
        return super().claim_and_commit(run_id, decide=decide, **kw)

    def _decide_and_roll_back(
        self,
        decide: Callable[[Claimed], Batch | None],
        run_id: str,
        inbox: list[InboxItem],
        **kw: Any,
    ) -> None:
        info = self.describe(run_id)
        assert info is not None
        decide(
            Claimed(
                lease=Lease(run_id=run_id, owner=kw["owner"], token=0, expires_at=0.0),
                run=info,
                history=self.history(run_id, kw["after_seq"]),
                inbox=inbox,
                last_seq=len(self.history(run_id)),
            )
        )


class CountingJournal(InMemoryJournal):
    """Counts the journal's transactions by kind."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []
        for name in ("claim_and_commit", "deliver_and_claim", "commit", "release"):
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def counted(*args: Any, **kw: Any) -> Any:
            self.calls.append(name)
            return method(*args, **kw)

        return counted


def outcome(command_id: int, result: int) -> InboxItem:
    return InboxItem(
        dedupe_key=outcome_key(command_id, 1),
        type=EventType.ACTIVITY_COMPLETED,
        command_id=command_id,
        attempt=1,
        data={"result": result},
    )


def make(journal: InMemoryJournal) -> tuple[Driver, RecordingPublisher]:
    registry = Registry()
    registry.add(three_steps, name="three", version="1")
    publisher = RecordingPublisher()
    driver = Driver(journal, registry, publisher, Settings(), owner="w1")
    journal.create_run(NewRun(run_id="r1", workflow="three", version="1", args=[1]))
    return driver, publisher


def run_to_end(journal: InMemoryJournal, driver: Driver) -> None:
    driver.advance("r1")
    value = 1
    for command_id in (1, 2, 3):
        value *= 2
        task_id = task_id_for("r1", command_id, 1)
        assert journal.mark_started(task_id) is TaskStart.STARTED
        driver.deliver("r1", outcome(command_id, value), task_id=task_id)


def assert_ended_with_8(journal: InMemoryJournal) -> None:
    info = journal.describe("r1")
    assert info is not None and (info.status, info.result) == (RunStatus.COMPLETED, 8), info
    history = journal.history("r1")
    check_history(history)
    kinds = [e.type for e in history]
    assert kinds.count(EventType.ACTIVITY_COMPLETED) == 3
    assert kinds.count(EventType.ACTIVITY_SCHEDULED) == 3


def test_each_outcome_is_replayed_and_committed_in_its_delivering_transaction() -> None:
    journal = InMemoryJournal()
    driver, publisher = make(journal)
    run_to_end(journal, driver)
    assert_ended_with_8(journal)
    assert publisher.replays == []  # no replay message: every step ran where its outcome landed


def test_every_step_is_one_transaction_from_the_first_replay_to_the_end() -> None:
    journal = CountingJournal()
    driver, _ = make(journal)
    run_to_end(journal, driver)
    assert_ended_with_8(journal)
    # The in-memory journal commits inside the one-step calls too; none is made apart.
    assert [c for c in journal.calls if c != "commit"] == ["claim_and_commit"] + [
        "deliver_and_claim"
    ] * 3
    assert journal.calls.count("commit") == 4


def test_a_replay_fed_in_a_rolled_back_transaction_is_not_trusted_afterwards() -> None:
    journal = RetriedJournal()
    driver, _ = make(journal)
    journal.claim_retries = 1  # the first replay's decision is made and rolled back
    journal.retries = 2  # the cached replayer sees an outcome that is never committed, twice
    run_to_end(journal, driver)
    assert_ended_with_8(journal)
