"""Summaries: percentiles within one run, and median/min/max across repeated runs."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by the nearest-rank method (a value that occurred)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan


@dataclass
class Figure:
    """One measured quantity: its value in each repetition."""

    label: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    @property
    def min(self) -> float:
        return min(self.values, default=math.nan)

    @property
    def max(self) -> float:
        return max(self.values, default=math.nan)

    def as_dict(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "median": self.median,
            "min": self.min,
            "max": self.max,
            "values": self.values,
        }


class Figures:
    """The figures of one scenario, in the order they were first recorded."""

    def __init__(self) -> None:
        self.items: dict[str, Figure] = {}

    def add(self, label: str, unit: str, value: float) -> None:
        figure = self.items.setdefault(label, Figure(label, unit))
        figure.values.append(value)

    def __iter__(self) -> Iterator[Figure]:
        return iter(self.items.values())
