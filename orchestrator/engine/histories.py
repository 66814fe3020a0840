"""Recorded histories checked against the workflow code loaded now (the replayer for CI).

A history recorded in production (``continuum runs history RUN_ID --json``, or the list
``orc.history`` returns) is fed to a fresh :class:`~orchestrator.engine.replay.Replayer` of
the workflow it names: every command the code issues must match the event recorded at the
same place, exactly as when a worker replays the run. A code change that would block running
runs is a :class:`~orchestrator.model.errors.NonDeterminismError` here, in CI, instead of a
``blocked`` run in production. Nothing is written and no activity runs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from orchestrator.engine.context import WorkflowInfo
from orchestrator.engine.registry import Registry
from orchestrator.engine.replay import Replayer
from orchestrator.model.errors import OrchestratorError
from orchestrator.model.events import Event, EventType
from orchestrator.model.settings import Settings


class HistoryError(OrchestratorError, ValueError):
    """What was given as a recorded history is not one."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"not a run history: {detail}")
        self.detail = detail


def load(source: Any) -> list[Event]:
    """The events of a recorded history: a list of :class:`Event`, the JSON text (or parsed
    JSON) of ``continuum runs history RUN_ID --json``, or that of ``runs show --json`` (an
    object whose ``history`` is that list). :class:`HistoryError` for anything else."""
    if isinstance(source, (str, bytes)):
        try:
            source = json.loads(source)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HistoryError(f"invalid JSON ({exc})") from None
    if isinstance(source, Mapping) and "history" in source:
        source = source["history"]
    if not isinstance(source, Sequence) or isinstance(source, (str, bytes)):
        raise HistoryError(f"expected a list of events, got {type(source).__name__}")
    events = [_event(item, i) for i, item in enumerate(source)]
    _check_shape(events)
    return events


def _event(item: Any, index: int) -> Event:
    if isinstance(item, Event):
        return item
    if not isinstance(item, Mapping):
        raise HistoryError(f"item {index} is a {type(item).__name__}, not an event object")
    try:
        at = item["at"]
        return Event(
            run_id=str(item["run_id"]),
            seq=int(item["seq"]),
            type=EventType(item["type"]),
            command_id=None if item.get("command_id") is None else int(item["command_id"]),
            attempt=None if item.get("attempt") is None else int(item["attempt"]),
            data=dict(item.get("data") or {}),
            at=at if isinstance(at, datetime) else datetime.fromisoformat(str(at)),
        )
    except KeyError as exc:
        raise HistoryError(f"event {index} has no {exc.args[0]!r}") from None
    except (TypeError, ValueError) as exc:
        raise HistoryError(f"event {index} is malformed ({exc})") from None


def _check_shape(events: list[Event]) -> None:
    """One run's events, in order, beginning with the ``run_started`` that names its code."""
    if not events:
        raise HistoryError("it has no events")
    first = events[0]
    if first.type is not EventType.RUN_STARTED:
        raise HistoryError(f"it begins with {first.type.value}, not run_started")
    if not isinstance(first.data.get("workflow"), str) or not first.data.get("version"):
        raise HistoryError("its run_started event names no workflow and version")
    others = sorted({e.run_id for e in events} - {first.run_id})
    if others:
        raise HistoryError(f"it mixes runs {first.run_id!r} and {others[0]!r}")
    for before, after in itertools.pairwise(events):
        if after.seq <= before.seq:
            raise HistoryError(f"event seq {after.seq} follows seq {before.seq}")


def replay(registry: Registry, settings: Settings, history: Any) -> None:
    """Replay ``history`` (see :func:`load`) against the code in ``registry``; raises
    :class:`NonDeterminismError` naming the first mismatch, or
    :class:`~orchestrator.model.errors.UnknownWorkflow` when the workflow version that
    recorded it is no longer loaded."""
    events = load(history)
    started = events[0]
    name, version = str(started.data["workflow"]), str(started.data["version"])
    definition = registry.get(name, version)
    info = WorkflowInfo(
        run_id=started.run_id,
        workflow=name,
        version=version,
        parent_run_id=None,
        correlation_id=started.run_id,
        continued_from_run_id=None,
    )

    replayer = Replayer(
        definition.fn,
        info,
        default_retry=settings.default_retry,
        max_payload_bytes=settings.max_payload_bytes,
        resolve_workflow=registry.resolve,
    )
    replayer.feed(events)
