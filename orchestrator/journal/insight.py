"""What operators read about many runs at once: a page of runs, runs with their histories,
and the journal's aggregates.

The web view pages through runs by *keyset* (the last run shown is the cursor), so a page
deep in a journal of millions costs what the first one costs. An export reads
:class:`RunHistory` records for a page of runs at once, in two queries however many there
are. The metrics endpoint reads :class:`JournalStats`, a few aggregate queries, so that one
scrape describes the whole deployment however many workers it has.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from orchestrator.model.events import Event, EventType, RunInfo, RunStatus

#: Upper bounds (seconds) of the step-duration histogram's buckets; one more is ``+Inf``.
DURATION_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)

_OUTCOMES = {
    EventType.ACTIVITY_COMPLETED: "completed",
    EventType.COMPENSATION_COMPLETED: "completed",
    EventType.ACTIVITY_FAILED: "failed",
    EventType.COMPENSATION_FAILED: "failed",
    EventType.ACTIVITY_TIMED_OUT: "timed_out",
}


def attempt_outcome(kind: EventType | str) -> str:
    """How an attempt ended, as the metrics label it, from the event that journals its end."""
    return _OUTCOMES.get(EventType(kind), "failed")


def bucket_of(seconds: float) -> int:
    """The index of the histogram bucket ``seconds`` falls in (``len(DURATION_BUCKETS)``
    for ``+Inf``)."""
    for i, bound in enumerate(DURATION_BUCKETS):
        if seconds <= bound:
            return i
    return len(DURATION_BUCKETS)


@dataclass(frozen=True, kw_only=True)
class RunCursor:
    """Where a page of runs ends: the last run's creation time (as stored) and id.

    Its text form (``encode``) goes into links; ``repr`` of a float reads back exactly, and
    ``~`` never occurs in a run id, so the round trip is lossless.
    """

    created_at: float
    run_id: str

    def encode(self) -> str:
        """The cursor as a URL-safe token."""
        return f"{self.created_at!r}~{self.run_id}"

    @classmethod
    def decode(cls, text: str) -> RunCursor:
        """The cursor from :meth:`encode`'s text; ``ValueError`` naming it when malformed."""
        stamp, sep, run_id = text.partition("~")
        try:
            created_at = float(stamp)
        except ValueError:
            created_at = math.nan
        if not sep or not run_id or not math.isfinite(created_at):
            raise ValueError(f"invalid page cursor {text!r}")
        return cls(created_at=created_at, run_id=run_id)


@dataclass(frozen=True, kw_only=True)
class RunPage:
    """Runs newest first, and the cursor of the next page (``None``: this is the last)."""

    runs: list[RunInfo]
    next: RunCursor | None = None


@dataclass(frozen=True, kw_only=True)
class RunHistory:
    """A run's fields and its whole history, in order: a line of ``continuum runs export``."""

    info: RunInfo
    events: tuple[Event, ...]


@dataclass(frozen=True, kw_only=True)
class AttemptStats:
    """Ended activity (and compensation) attempts of one task with one outcome.

    ``buckets`` counts them per :data:`DURATION_BUCKETS` bound (not cumulative; the last
    entry is past the largest bound); a duration runs from the attempt's start (or, when its
    start was not recorded, its publication) to its outcome.
    """

    task: str
    outcome: str
    count: int
    seconds_sum: float
    buckets: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class JournalStats:
    """The journal's aggregates at ``now`` (epoch seconds, the journal's clock)."""

    now: float
    #: Runs per (workflow, status).
    runs: dict[tuple[str, RunStatus], int] = field(default_factory=dict)
    #: When the longest-waiting runnable run became runnable (``None``: none is).
    runnable_oldest_at: float | None = None
    attempts: list[AttemptStats] = field(default_factory=list)
    #: Outbox tasks due and never published (the committer died between commit and publish).
    outbox_unpublished: int = 0
    #: Timers whose time has come and that no dispatcher has fired yet.
    timers_overdue: int = 0


def attempt_stats(rows: Iterable[tuple[str, str, int, int, float]]) -> list[AttemptStats]:
    """Fold ``(task, outcome, bucket, count, seconds)`` rows into one record per task and
    outcome, sorted by them."""
    folded: dict[tuple[str, str], tuple[int, float, list[int]]] = {}
    for task, outcome, bucket, count, seconds in rows:
        total, seconds_sum, buckets = folded.get(
            (task, outcome), (0, 0.0, [0] * (len(DURATION_BUCKETS) + 1))
        )
        buckets[int(bucket)] += int(count)
        folded[(task, outcome)] = (total + int(count), seconds_sum + float(seconds), buckets)
    return [
        AttemptStats(task=t, outcome=o, count=n, seconds_sum=s, buckets=tuple(b))
        for (t, o), (n, s, b) in sorted(folded.items())
    ]
