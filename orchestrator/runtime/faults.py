"""Named fault points, so crash tests hit the exact window they mean to test.

``CONTINUUM_FAULTS="driver.before_commit=sleep:3,worker.before_outcome=exit"`` makes the
named points act: ``sleep:SECONDS`` pauses there (to be killed, stopped or overtaken),
``exit`` ends the process at once with no cleanup (as ``kill -9`` would), ``raise`` raises.
A point may carry a probability (``exit@0.2``). Unset, a point costs one dict lookup.
"""

from __future__ import annotations

import os
import random
import time

ENV = "CONTINUUM_FAULTS"


def _parse(spec: str) -> dict[str, str]:
    points: dict[str, str] = {}
    for part in spec.split(","):
        name, _, action = part.strip().partition("=")
        if name:
            points[name] = action or "exit"
    return points


_POINTS = _parse(os.environ.get(ENV, ""))


class InjectedFault(RuntimeError):
    """Raised by a fault point set to ``raise``."""


def point(name: str) -> None:
    """Act as configured for ``name`` (nothing, unless a test asked for it)."""
    action = _POINTS.get(name)
    if action is None:
        return
    action, _, chance = action.partition("@")
    if chance and random.random() >= float(chance):
        return
    kind, _, arg = action.partition(":")
    if kind == "sleep":
        time.sleep(float(arg or 1))
    elif kind == "exit":
        os._exit(137)
    elif kind == "raise":
        raise InjectedFault(f"fault injected at {name}")
