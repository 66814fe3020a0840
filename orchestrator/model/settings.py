"""Settings of an orchestrator, read once from arguments, the Celery config and the environment.

The journal URL is taken from the argument, then ``app.conf.orchestrator_journal_url``, then
the ``ORCHESTRATOR_JOURNAL_URL`` environment variable, then a SQLite file in the working
directory (the embedded default). Other settings are ``orchestrator_<name>`` keys of the
Celery config.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from orchestrator.model import payloads
from orchestrator.model.retry import RetryPolicy

DEFAULT_JOURNAL_URL = "sqlite:///continuum.sqlite3"
JOURNAL_URL_ENV = "ORCHESTRATOR_JOURNAL_URL"


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Tunables, each overridable as ``orchestrator_<name>`` in the Celery config."""

    journal_url: str = DEFAULT_JOURNAL_URL
    #: Queue of the replay task (every worker of the app consumes it).
    queue: str = "orchestrator"
    #: Seconds a replay may hold a run's lease before another node may take it over.
    lease_ttl: float = 30.0
    #: Seconds a journal transaction may wait on its own process (paused, frozen, cut off)
    #: while holding row locks, before Postgres ends its session and frees the run.
    stall_timeout: float = 5.0
    #: Seconds before the dispatcher re-sends a replay that has not been picked up.
    redispatch_after: float = 30.0
    #: Seconds before the dispatcher re-publishes an activity no worker has started.
    republish_after: float = 60.0
    #: Seconds the body of an activity with no timeout runs before the worker records its
    #: start; one that ends sooner costs the journal one commit, its outcome's. Only the
    #: first message of an attempt, taken well before the dispatcher could re-publish it,
    #: waits; 0 records every start before the body runs.
    mark_start_after: float = 1.0
    #: Longest the dispatcher sleeps between passes (it also wakes on notifications).
    poll_interval: float = 1.0
    #: Largest JSON payload (arguments, results, signals) accepted, in bytes.
    max_payload_bytes: int = payloads.DEFAULT_MAX_BYTES
    #: Retry policy of activities that do not name one.
    default_retry: RetryPolicy = field(default_factory=RetryPolicy)
    #: Replayed runs whose state a worker process keeps in memory.
    cache_size: int = 1000
    #: Seconds between a worker's registrations of the workflow versions it has loaded.
    heartbeat_interval: float = 10.0
    #: A node that has not registered for this many seconds is taken for gone.
    node_ttl: float = 30.0
    #: Whether ``start`` takes a new run's first step in the starting process, when the
    #: workflow is loaded there: its first activities go out without a replay's broker hop.
    eager_start: bool = True
    #: Activities a worker process may run in place, one after the other, for one Celery
    #: message: the next activity of a run whose step it has just taken, when this worker
    #: would have been sent it, runs there without a broker hop and without a message
    #: (Flower does not show it). 0 sends every activity through the broker. See
    #: :mod:`orchestrator.celery.in_place`.
    eager_activities: int = 0
    #: Seconds a finished run is kept after it closed (with its whole family: see
    #: :mod:`orchestrator.journal.families`) before dispatchers delete it; ``None`` keeps
    #: every run.
    retention: float | None = None

    def replay_queue(self, workflow: str, version: str) -> str:
        """The queue of replay tasks for one workflow version (only nodes that have it
        consume it)."""
        return f"{self.queue}.{workflow}.v{version}"

    def __post_init__(self) -> None:
        positive = (
            "lease_ttl",
            "stall_timeout",
            "redispatch_after",
            "republish_after",
            "poll_interval",
            "heartbeat_interval",
            "node_ttl",
        )
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"orchestrator_{name} must be a positive number, not {value!r}")
        if not isinstance(self.mark_start_after, (int, float)) or self.mark_start_after < 0:
            raise ValueError(
                "orchestrator_mark_start_after must be a number of seconds, 0 or more, not "
                f"{self.mark_start_after!r}"
            )
        if (
            not isinstance(self.eager_activities, int)
            or isinstance(self.eager_activities, bool)
            or self.eager_activities < 0
        ):
            raise ValueError(
                "orchestrator_eager_activities must be a whole number, 0 or more, not "
                f"{self.eager_activities!r}"
            )
        if not isinstance(self.eager_start, bool):
            raise TypeError(
                f"orchestrator_eager_start must be True or False, not {self.eager_start!r}"
            )
        if not isinstance(self.default_retry, RetryPolicy):
            raise TypeError("orchestrator_default_retry must be a RetryPolicy")
        if self.retention is not None and (
            not isinstance(self.retention, (int, float))
            or isinstance(self.retention, bool)
            or not self.retention >= 0
        ):
            raise ValueError(
                "orchestrator_retention must be a number of seconds, 0 or more (or None to "
                f"keep every run), not {self.retention!r}"
            )

    @classmethod
    def resolve(
        cls, conf: Mapping[str, Any], journal_url: str | None = None, **overrides: Any
    ) -> Settings:
        """Settings from an argument, the Celery config (``conf``) and the environment."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            key = f"orchestrator_{f.name}"
            if conf.get(key) is not None:
                values[f.name] = conf.get(key)
        url = journal_url or values.get("journal_url") or os.environ.get(JOURNAL_URL_ENV)
        values["journal_url"] = url or DEFAULT_JOURNAL_URL
        values.update(overrides)
        return cls(**values)
