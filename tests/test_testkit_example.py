"""The test kit's example, shown verbatim by the testing guide (docs/pages/how-to/testing.md)."""

# --8<-- [start:example]
import pytest

from orchestrator import WorkflowFailed
from tasks import APPROVAL_TIMEOUT, orc, order


def test_an_order_nobody_approves_is_refunded(workflow_environment):
    env = workflow_environment(orc)  # in-process: no broker, database or worker
    started = env.now()
    run_id = env.start(order, "o-1", 90_000, ["piano"])  # large enough to need approval
    with pytest.raises(WorkflowFailed, match="not approved"):
        env.result(run_id)  # skips the wait for approval: milliseconds, not a day
    assert env.now() - started >= APPROVAL_TIMEOUT
    undone = [e.data["task"] for e in env.history(run_id) if e.type == "compensation_scheduled"]
    assert undone == ["tasks.refund", "tasks.release_stock"]


# --8<-- [end:example]
def test_the_testing_guide_shows_this_example() -> None:
    from pathlib import Path

    guide = Path(__file__).parents[1] / "docs" / "pages" / "how-to" / "testing.md"
    assert '--8<-- "tests/test_testkit_example.py:example"' in guide.read_text()
