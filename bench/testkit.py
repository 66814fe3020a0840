"""``python -m bench.testkit``: the test kit's speed on a long workflow with timers.

One run of ``steps`` steps, each an activity and a one-hour timer (so the workflow spans
``steps`` hours of virtual time), run to its end in a
:class:`~orchestrator.testing.WorkflowEnvironment`. Prints the wall time, per step too. No
server is involved: this is the cost of the engine, the in-memory journal and the kit.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from celery import Celery

from orchestrator import Orchestrator, WorkflowContext
from orchestrator.testing import WorkflowEnvironment

app = Celery("bench_testkit", set_as_current=False)
app.conf.update(task_serializer="json", accept_content=["json"], broker_url="memory://")
orc = Orchestrator(app)


@app.task
def step(i: int) -> int:
    """The activity of one step (trivial: the kit's cost is what is measured)."""
    return i + 1


@orc.workflow(name="long_steps", version="1")
async def long_steps(ctx: WorkflowContext, steps: int) -> int:
    """``steps`` times: an activity, then an hour's sleep."""
    total = 0
    for i in range(steps):
        total += await ctx.activity(step, i)
        await ctx.sleep(timedelta(hours=1))
    return total


def measure(steps: int) -> tuple[float, timedelta]:
    """Wall seconds to run ``long_steps(steps)`` to its end, and the virtual time it took."""
    start = datetime(2030, 1, 1, tzinfo=UTC)
    with WorkflowEnvironment(orc, start_time=start) as env:
        began = time.perf_counter()
        result = env.result(env.start(long_steps, steps))
        wall = time.perf_counter() - began
        assert result == steps * (steps + 1) // 2
        return wall, env.now() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for _ in range(args.repeat):
        wall, virtual = measure(args.steps)
        print(
            f"{args.steps} steps (activity + 1 h timer), {virtual} of virtual time: "
            f"{wall:.3f} s wall, {wall / args.steps * 1000:.3f} ms a step"
        )


if __name__ == "__main__":
    main()
