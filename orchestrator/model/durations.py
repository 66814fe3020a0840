"""Ages written as operators write them: ``30d``, ``12h``, ``90m``, ``0s``.

``continuum runs prune|export --older-than`` and the built-in ``continuum.prune`` workflow
read the same durations, so an age that one takes, the other takes too.
"""

from __future__ import annotations

import re
from typing import Any

from orchestrator.model.retry import to_seconds

_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"^(\d+)([dhms])$")


def parse_duration(text: str) -> int:
    """Seconds in ``text``: a whole number and one unit, ``30d``, ``12h``, ``90m``, ``0s``."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: write a whole number and one unit, "
            "d, h, m or s (30d, 12h, 90m, 0s)"
        )
    return int(match.group(1)) * _UNITS[match.group(2)]


def age_seconds(value: Any, what: str) -> float:
    """``value`` as seconds: a duration (:func:`parse_duration`) or a number of seconds, 0 or
    more. A clear error names ``what`` when it is neither."""
    if isinstance(value, str):
        try:
            return float(parse_duration(value))
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{what} must be a duration (30d, 12h, 90m, 0s) or seconds, not {value!r}")
    return to_seconds(value, what)


__all__ = ["age_seconds", "parse_duration"]
