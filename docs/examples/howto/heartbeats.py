"""Heartbeats: a long activity says it is alive, and leaves notes for its retry."""

import time
from collections.abc import Iterator

from celery import Celery

# --8<-- [start:imports]
from orchestrator import Orchestrator, RetryPolicy, WorkflowContext, activity_info, heartbeat

# --8<-- [end:imports]

app = Celery("heartbeats")
orc = Orchestrator(app)

ROWS = 30
stored: dict[str, list[int]] = {}
resumed_at: dict[str, list[int]] = {}
trouble: set[str] = {"crash.csv", "hang.csv"}  # the first attempt of each goes wrong


def read_rows(path: str) -> Iterator[int]:
    yield from range(ROWS)


def store(path: str, row: int) -> None:
    time.sleep(0.02)
    if row == 25 and path in trouble:
        trouble.discard(path)
        if path == "crash.csv":
            raise ConnectionError("the database went away")
        time.sleep(2.5)  # stuck, saying nothing
    stored.setdefault(path, []).append(row)


# --8<-- [start:example]
@app.task
def import_rows(path: str) -> int:
    done = activity_info().heartbeat_details or 0  # where an earlier attempt got to
    resumed_at.setdefault(path, []).append(done)
    for n, row in enumerate(read_rows(path)):
        if n < done:
            continue
        store(path, row)
        heartbeat(n)  # cheap: call it as often as you like
    return n


@orc.workflow(name="import")
async def import_file(ctx: WorkflowContext, path: str) -> int:
    return await ctx.activity(
        import_rows,
        path,
        heartbeat_timeout=1,  # silent for 1 s: timed out, retried
        retry=RetryPolicy(max_attempts=5, initial_interval=0.1),
    )


# --8<-- [end:example]


def test_a_retry_resumes_where_the_failed_attempt_got_to(workflows: Orchestrator) -> None:
    handle = orc.start(import_file, "crash.csv")
    assert handle.result(timeout=20) == ROWS - 1
    first, second = resumed_at["crash.csv"]
    assert first == 0 and 0 < second <= 25  # the details last written (throttled)
    assert set(stored["crash.csv"]) == set(range(ROWS))


def test_a_silent_attempt_times_out_and_is_retried(workflows: Orchestrator) -> None:
    handle = orc.start(import_file, "hang.csv")
    assert handle.result(timeout=20) == ROWS - 1
    timed_out = [e for e in orc.history(handle.run_id) if e.type == "activity_timed_out"]
    assert [e.data["error"]["type"] for e in timed_out] == ["orchestrator.errors.HeartbeatTimeout"]
    assert len(resumed_at["hang.csv"]) == 2
