"""Prometheus metrics derived from the journal: one scrape describes the whole deployment,
whatever the number of workers and dispatchers, because every fact is in the journal.

A custom collector reads :meth:`~orchestrator.journal.protocol.Journal.stats` (a few
aggregate queries) at each scrape; nothing is counted in process memory, so a restarted
exporter loses nothing. Needs only ``prometheus_client`` (the ``metrics`` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from orchestrator.journal.insight import DURATION_BUCKETS, JournalStats
from orchestrator.journal.protocol import Journal


class JournalCollector(Collector):
    """Exports the journal's aggregates, read anew at every scrape."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal

    def collect(self) -> Iterator[Metric]:
        """The metrics of one scrape (DESIGN §8's names)."""
        yield from families(self.journal.stats())


def families(stats: JournalStats) -> Iterator[Metric]:
    """The metric families of ``stats``."""
    runs = GaugeMetricFamily(
        "continuum_runs",
        "Runs in the journal, per workflow and status.",
        labels=["workflow", "status"],
    )
    for (workflow, status), n in sorted(stats.runs.items()):
        runs.add_metric([workflow, status.value], n)
    yield runs
    waited = 0.0 if stats.runnable_oldest_at is None else stats.now - stats.runnable_oldest_at
    yield GaugeMetricFamily(
        "continuum_runnable_oldest_seconds",
        "How long the longest-waiting runnable run has waited for a replay (0: none waits).",
        value=max(waited, 0.0),
    )
    attempts = CounterMetricFamily(
        "continuum_activity_attempts",
        "Ended activity and compensation attempts, per task and outcome.",
        labels=["task", "outcome"],
    )
    for a in stats.attempts:
        attempts.add_metric([a.task, a.outcome], a.count)
    yield attempts
    yield _durations(stats)
    yield GaugeMetricFamily(
        "continuum_outbox_unpublished",
        "Activity tasks due and not yet published to the broker.",
        value=stats.outbox_unpublished,
    )
    yield GaugeMetricFamily(
        "continuum_timers_overdue",
        "Durable timers past their time that no dispatcher has fired yet.",
        value=stats.timers_overdue,
    )


def _durations(stats: JournalStats) -> Metric:
    histogram = HistogramMetricFamily(
        "continuum_step_duration_seconds",
        "Duration of ended activity attempts (the steps of workflows), from start to outcome.",
        labels=["task"],
    )
    per_task: dict[str, tuple[list[int], float]] = {}
    for a in stats.attempts:
        counts, total = per_task.get(a.task, ([0] * len(a.buckets), 0.0))
        per_task[a.task] = (
            [c + n for c, n in zip(counts, a.buckets, strict=True)],
            total + a.seconds_sum,
        )
    for task, (counts, total) in sorted(per_task.items()):
        cumulative: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip([*map(str, DURATION_BUCKETS), "+Inf"], counts, strict=True):
            running += n
            cumulative.append((bound, running))
        histogram.add_metric([task], buckets=cumulative, sum_value=total)
    return histogram


def registry_for(journal: Journal) -> CollectorRegistry:
    """A registry holding only the journal's metrics (no process metrics of this exporter)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JournalCollector(journal))
    return registry


def exposition(registry: Any) -> tuple[bytes, str]:
    """The registry's metrics in Prometheus text format, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST
