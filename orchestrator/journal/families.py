"""Families of runs, the unit that retention deletes.

A run is never deleted while something may still read it: a parent reads its children's
outcomes, a continuation its chain, an operator follows links from one to the other. So
runs are pruned by *family*: a top-level run's continue-as-new chain (the runs sharing its
``correlation_id``) with every run descended from it (children, and their continuations,
which keep their ``parent_run_id``), and only when every run of it closed before the
cutoff. A finished child of an open parent, or a finished link of an open chain, is kept
with the rest of its family.

A family is found from its top-level chain's tip (the run with no successor), which is
the chain's last run to close; families are taken oldest tip first. The journals find
tips and members with their own queries and share the decision made here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Family:
    """Runs deleted together, and where the family stands in the order families are taken
    (its tip's close time and run id: ``key``, the ``after`` of the next page)."""

    key: tuple[float, str]
    run_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Member:
    """What the choice of a family needs of one run (``closed_at`` is ``None`` while open)."""

    run_id: str
    correlation_id: str
    parent_run_id: str | None
    closed_at: float | None


def gather(
    tips: Sequence[Member],
    *,
    chains: Callable[[list[str]], Iterable[Member]],
    children: Callable[[list[str]], Iterable[Member]],
    closed_before: float,
) -> list[Family]:
    """The families of ``tips`` (top-level chain tips, in order) whose every run closed
    before ``closed_before``; families with a run still open, or closed since, are left out.

    ``chains(correlation_ids)`` returns the top-level runs of those chains, and
    ``children(run_ids)`` the runs whose parent is one of ``run_ids``: one call per level of
    descent for all the families at once.
    """
    owner: dict[str, str] = {}  # run id -> its family's tip
    members: dict[str, list[Member]] = {}
    tip_of_chain: dict[str, str] = {}
    for tip in tips:
        if tip.correlation_id not in tip_of_chain:
            tip_of_chain[tip.correlation_id] = tip.run_id
            members[tip.run_id] = []
    level: list[str] = []
    for member in chains(list(tip_of_chain)):
        _join(member, tip_of_chain[member.correlation_id], owner, members, level)
    while level:
        parents, level = level, []
        for member in children(parents):
            if member.run_id not in owner and member.parent_run_id in owner:
                _join(member, owner[member.parent_run_id], owner, members, level)
    found = []
    for tip in tips:
        family = members.pop(tip.run_id, None)
        if family and all(_closed_before(m, closed_before) for m in family):
            assert tip.closed_at is not None
            key = (tip.closed_at, tip.run_id)
            found.append(Family(key=key, run_ids=tuple(m.run_id for m in family)))
    return found


def _join(
    member: Member,
    tip: str,
    owner: dict[str, str],
    members: dict[str, list[Member]],
    level: list[str],
) -> None:
    owner[member.run_id] = tip
    members[tip].append(member)
    level.append(member.run_id)


def _closed_before(member: Member, cutoff: float) -> bool:
    return member.closed_at is not None and member.closed_at < cutoff


def take(families: Iterable[Family], limit: int) -> list[Family]:
    """Whole families, in order, up to ``limit`` runs in all (a first family larger than
    ``limit`` is taken alone: a family is never split)."""
    taken: list[Family] = []
    count = 0
    for family in families:
        if taken and count + len(family.run_ids) > limit:
            break
        taken.append(family)
        count += len(family.run_ids)
        if count >= limit:
            break
    return taken


def check_limit(limit: int) -> int:
    """A clear error for a batch size that is not a positive whole number."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"limit must be a positive whole number, not {limit!r}")
    return limit


__all__ = ["Family", "Member", "check_limit", "gather", "take"]
