"""How big each scenario is and how often it is repeated."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace


@dataclass(frozen=True)
class Sizes:
    """Workload sizes. The defaults are the published figures' sizes."""

    repeats: int = 3
    #: ``w10``/``commits``: workflows (and plain chains) started at once, and their length.
    w10_runs: int = 200
    w10_steps: int = 10
    #: ``w1``: one-activity workflows run one after another.
    w1_runs: int = 100
    #: ``fanout``: activities one workflow gathers.
    fanout_width: int = 1000
    #: ``long``: sequential activities of one workflow, and the window measured at each end.
    long_steps: int = 5000
    long_window: int = 100
    #: ``idle``: runs left waiting for a signal, seconds of dispatcher CPU sampled, passes timed.
    idle_runs: int = 10000
    idle_seconds: float = 10.0
    idle_ticks: int = 5
    #: ``growth``: finished runs bulk-loaded into the journal (ten events each).
    growth_runs: int = 1_000_000

    @classmethod
    def quick(cls) -> Sizes:
        """One repetition and a shorter long run and idle backlog: a smoke run of the harness."""
        return cls(repeats=1, long_steps=1000, idle_runs=2000, growth_runs=100_000)

    def scaled(self, factor: float) -> Sizes:
        """Counts multiplied by ``factor`` (at least 1; windows stay within the workload)."""
        counts = ("w10_runs", "w1_runs", "fanout_width", "long_steps", "idle_runs", "growth_runs")
        changed = {name: max(1, round(getattr(self, name) * factor)) for name in counts}
        window = min(self.long_window, max(1, (changed["long_steps"] - 1) // 2))
        return replace(self, **changed, long_window=window)

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
