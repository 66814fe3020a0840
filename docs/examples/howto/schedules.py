"""Schedules and concurrency limits: runs started by the journal's clock, and held in line."""

import time
from zoneinfo import ZoneInfo

from celery import Celery
from orchestrator import Orchestrator, WorkflowContext

app = Celery("schedules")
orc = Orchestrator(app)

polled: list[str] = []


@app.task
def fetch_mail(mailbox: str) -> int:
    polled.append(mailbox)
    return 0


@orc.workflow(name="nightly_report")
async def nightly_report(ctx: WorkflowContext) -> str:
    return "report sent"


@orc.workflow(name="poll")
async def poll(ctx: WorkflowContext, mailbox: str) -> int:
    return await ctx.activity(fetch_mail, mailbox)


def test_schedules_fire_one_run_per_slot(workflows: Orchestrator) -> None:
    # --8<-- [start:schedule]
    orc.schedule("nightly-report", nightly_report, cron="0 2 * * *", timezone="Europe/Paris")
    orc.schedule("poll-inbox", poll, "support@example.com", every=1)  # seconds or a timedelta
    # --8<-- [end:schedule]
    nightly = {s.schedule_id: s for s in orc.list_schedules()}["nightly-report"]
    assert nightly.next_fire_at.astimezone(ZoneInfo("Europe/Paris")).hour == 2
    # The interval's slots come due: each starts one run, its id the schedule's and the slot's.
    deadline = time.monotonic() + 10
    while not any(s.last_run_id for s in orc.list_schedules() if s.schedule_id == "poll-inbox"):
        assert time.monotonic() < deadline, orc.list_schedules()
        time.sleep(0.1)
    orc.pause_schedule("poll-inbox")
    (poll_inbox,) = [s for s in orc.list_schedules() if s.schedule_id == "poll-inbox"]
    assert poll_inbox.last_run_id.startswith("poll-inbox@")
    assert orc.result(poll_inbox.last_run_id, timeout=10) == 0
    assert "support@example.com" in polled
    # A trigger starts a run now, whatever the timing.
    assert orc.trigger_schedule("nightly-report").result(timeout=10) == "report sent"
    orc.delete_schedule("nightly-report")
    orc.delete_schedule("poll-inbox")


# --8<-- [start:concurrency]
@orc.workflow(name="sync_customer", concurrency=1, concurrency_key=lambda customer_id: customer_id)
async def sync_customer(ctx: WorkflowContext, customer_id: str) -> None:
    await ctx.wait_signal("synced")


# --8<-- [end:concurrency]


def test_one_run_per_key_at_once(workflows: Orchestrator) -> None:
    first = orc.start(sync_customer, "c-1")
    second = orc.start(sync_customer, "c-1")  # same key: waits
    other = orc.start(sync_customer, "c-2")  # another key: runs
    assert second.describe().status == "queued"
    assert "key 'c-1' has its limit of 1 open run" in (second.describe().reason or "")
    orc.signal(first.run_id, "synced")
    first.result(timeout=10)
    # Admitted first in, first out, as the first run of its key ends.
    orc.signal(second.run_id, "synced")
    orc.signal(other.run_id, "synced")
    assert second.result(timeout=10) is None
    assert other.result(timeout=10) is None
