"""``replay(orc, history)``: a recorded history checked against the code loaded now.

The check itself is the engine's (:mod:`orchestrator.engine.histories`); this is its
surface for tests, where the orchestrator names the registry and the settings to use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.engine import histories

if TYPE_CHECKING:
    from orchestrator.client.facade import Orchestrator


def replay(orc: Orchestrator, history: Any) -> None:
    """Replay ``history`` against ``orc``'s workflows: the list ``orc.history`` returns, or
    the JSON (text or parsed) of ``continuum runs history RUN_ID --json``.

    Raises :class:`~orchestrator.NonDeterminismError` naming the first place where the code
    and the history disagree, :class:`~orchestrator.UnknownWorkflow` when the workflow
    version that recorded it is not loaded, and
    :class:`~orchestrator.engine.histories.HistoryError` when ``history`` is not one.
    Nothing is written and no activity runs.
    """
    histories.replay(orc.registry, orc.settings, history)
