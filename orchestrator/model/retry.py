"""Retry policy of an activity: a frozen record validated where it is written."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

Seconds = float | int | timedelta


def to_seconds(value: Seconds, what: str) -> float:
    """A duration as float seconds; a clear error names ``what`` when it is not one."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be seconds (int/float) or a timedelta, not {value!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be a finite number of seconds >= 0, not {value!r}")
    return seconds


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often, and how far apart, an activity is attempted.

    ``max_attempts`` counts the first attempt: ``RetryPolicy(max_attempts=1)`` never retries.
    The delay before attempt ``n + 1`` is ``initial_interval * backoff ** (n - 1)``, capped at
    ``max_interval``. Errors whose type name (qualified or bare) is in ``non_retryable`` fail at
    once. A timed-out attempt is retried like a failed one.
    """

    max_attempts: int = 1
    initial_interval: Seconds = 1.0
    backoff: float = 2.0
    max_interval: Seconds = 60.0
    non_retryable: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.max_attempts, int) or isinstance(self.max_attempts, bool):
            raise TypeError(f"RetryPolicy.max_attempts must be an int, not {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, not {self.max_attempts}")
        to_seconds(self.initial_interval, "RetryPolicy.initial_interval")
        to_seconds(self.max_interval, "RetryPolicy.max_interval")
        backoff = self.backoff
        if not isinstance(backoff, (int, float)) or not math.isfinite(backoff) or backoff < 1:
            raise ValueError(f"RetryPolicy.backoff must be a finite number >= 1, not {backoff!r}")
        names = self.non_retryable
        if isinstance(names, str):  # ("ValueError") without its comma
            names = (names,)
        if not all(isinstance(n, str) and n for n in names):
            raise TypeError(f"RetryPolicy.non_retryable must be error type names, not {names!r}")
        object.__setattr__(self, "non_retryable", tuple(names))

    def delay_before(self, attempt: int) -> float:
        """Seconds to wait before ``attempt`` (2 or more)."""
        initial = to_seconds(self.initial_interval, "initial_interval")
        cap = to_seconds(self.max_interval, "max_interval")
        return float(min(cap, initial * self.backoff ** max(0, attempt - 2)))

    def retries(self, attempt: int, error_type: str) -> bool:
        """Whether a failure of ``attempt`` with ``error_type`` is followed by another attempt."""
        if attempt >= self.max_attempts:
            return False
        bare = error_type.rsplit(".", 1)[-1]
        return error_type not in self.non_retryable and bare not in self.non_retryable

    def to_json(self) -> dict[str, Any]:
        """The policy as recorded in an ``activity_scheduled`` event."""
        return {
            "max_attempts": self.max_attempts,
            "initial_interval": to_seconds(self.initial_interval, "initial_interval"),
            "backoff": float(self.backoff),
            "max_interval": to_seconds(self.max_interval, "max_interval"),
            "non_retryable": list(self.non_retryable),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RetryPolicy:
        """The policy recorded in history (history wins over the code's current policy)."""
        return cls(
            max_attempts=int(data["max_attempts"]),
            initial_interval=float(data["initial_interval"]),
            backoff=float(data["backoff"]),
            max_interval=float(data["max_interval"]),
            non_retryable=tuple(data.get("non_retryable", ())),
        )
