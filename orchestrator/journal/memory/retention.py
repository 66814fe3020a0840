"""The in-memory journal's search for families to prune (see
:mod:`orchestrator.journal.families`), over its rows rather than by queries."""

from __future__ import annotations

from collections.abc import Mapping

from orchestrator.journal.families import Family, Member, gather
from orchestrator.journal.memory.rows import RunRow


def families(
    runs: Mapping[str, RunRow],
    *,
    closed_before: float,
    workflow: str | None,
    after: tuple[float, str] | None = None,
) -> list[Family]:
    """Every prunable family, oldest tip first (after the family keyed ``after``)."""
    members = {run_id: _member(row) for run_id, row in runs.items()}
    tips = sorted(
        (
            m
            for m in members.values()
            if _is_tip(runs[m.run_id], closed_before, workflow)
            and (after is None or (m.closed_at or 0.0, m.run_id) > after)
        ),
        key=lambda m: (m.closed_at or 0.0, m.run_id),
    )

    def chains(ids: list[str]) -> list[Member]:
        wanted = set(ids)
        return [
            m for m in members.values() if m.parent_run_id is None and m.correlation_id in wanted
        ]

    def children(ids: list[str]) -> list[Member]:
        wanted = set(ids)
        return [m for m in members.values() if m.parent_run_id in wanted]

    return gather(tips, chains=chains, children=children, closed_before=closed_before)


def _is_tip(row: RunRow, closed_before: float, workflow: str | None) -> bool:
    """A top-level chain's last run, closed before the cutoff (of ``workflow``, if given)."""
    return (
        row.new.parent_run_id is None
        and row.continued_to_run_id is None
        and row.retried_to_run_id is None
        and row.closed_at is not None
        and row.closed_at < closed_before
        and (workflow is None or row.new.workflow == workflow)
    )


def _member(row: RunRow) -> Member:
    return Member(
        run_id=row.new.run_id,
        correlation_id=row.chain,
        parent_run_id=row.new.parent_run_id,
        closed_at=row.closed_at,
    )


__all__ = ["families"]
