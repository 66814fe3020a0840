"""The test kit's speed on a long workflow: a thousand steps with hour-long timers.

``python -m bench.testkit`` prints the figure; this keeps it from growing out of bounds
(replay cost per step must stay proportional to what is new, not to the whole history).
"""

from __future__ import annotations

from datetime import timedelta

from bench import testkit


def test_a_thousand_steps_with_hour_long_timers_take_seconds() -> None:
    wall, virtual = testkit.measure(1000)
    assert virtual == timedelta(hours=1000)
    assert wall < 10.0, f"1,000 steps took {wall:.1f} s of wall time"
