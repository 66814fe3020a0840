"""A Celery canvas made durable: checked and turned into the JSON the built-in workflow walks.

:func:`prepare` takes what a user would call ``apply_async`` on (a signature, ``chain``,
``group``, ``chord`` or any nesting of them, as objects or as their dicts) and returns its
JSON form, or refuses it before anything is written: a task the app does not know, an argument
JSON cannot carry, a signature bound to another app, a canvas nested deeper than
:data:`MAX_DEPTH`, or an option a durable run cannot honour. :func:`install` registers the
built-in workflow (:mod:`orchestrator.celery.canvas_walk`) and the task that calls new-style
error callbacks on every app that has an orchestrator, so every worker can replay a canvas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.app.task import Context

from orchestrator.celery import canvas_rules, canvas_walk
from orchestrator.celery.host import Host
from orchestrator.model import payloads
from orchestrator.model.errors import OrchestratorError

WORKFLOW = canvas_walk.WORKFLOW

#: Containers nested deeper than this (callbacks count as a level) are refused.
MAX_DEPTH = 32
#: Options a durable run honours (besides Celery's own bookkeeping, which it drops).
SUPPORTED = frozenset({"queue", "countdown", "eta", "link", "link_error"})
#: Options that change how a message is published, not what runs: the journal publishes.
IGNORED = canvas_rules.BOOKKEEPING | {
    "reply_to",
    "stamped_headers",
    "stamps",
    "retry",
    "retry_policy",
    "serializer",
}
_CONTAINERS = {"celery.chain": "chain", "celery.group": "group", "celery.chord": "chord"}


class InvalidCanvas(OrchestratorError, ValueError):
    """A canvas ``start_canvas`` refuses; the message names where in the canvas and why."""

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(f"canvas {where}: {detail}")
        self.where = where


def prepare(app: Celery, signature: Any, *, max_payload_bytes: int) -> dict[str, Any]:
    """The canvas as JSON signature dicts, checked against ``app``; nothing is written."""
    if not isinstance(signature, Mapping):
        raise TypeError(
            "start_canvas needs a Celery signature (task.s(...), chain, group or chord) or "
            f"its dict, not {signature!r}"
        )
    return _Checker(app, max_payload_bytes).node(signature, "", 0)


class _Checker:
    def __init__(self, app: Celery, max_payload_bytes: int) -> None:
        self.app = app
        self.limit = max_payload_bytes

    def node(self, sig: Any, where: str, depth: int) -> dict[str, Any]:
        where = where or "root"
        if not isinstance(sig, Mapping):
            raise InvalidCanvas(where, f"expected a signature, found {sig!r:.80}")
        if depth > MAX_DEPTH:
            raise InvalidCanvas(where, f"nested deeper than {MAX_DEPTH} levels")
        bound = getattr(sig, "_app", None) or getattr(getattr(sig, "_type", None), "_app", None)
        if bound is not None and bound is not self.app:
            raise InvalidCanvas(
                where, f"signature of Celery app {bound.main!r}, not of {self.app.main!r}"
            )
        subtask = sig.get("subtask_type") or _CONTAINERS.get(str(sig.get("task")))
        if subtask in ("chain", "group"):
            return self.container(sig, str(subtask), where, depth)
        if subtask == "chord":
            return self.chord(sig, where, depth)
        if subtask:
            raise InvalidCanvas(where, f"{subtask} signatures are not supported")
        return self.task(sig, where, depth)

    def container(
        self, sig: Mapping[str, Any], subtask: str, where: str, depth: int
    ) -> dict[str, Any]:
        tasks = list((sig.get("kwargs") or {}).get("tasks") or [])
        if subtask == "chain" and not tasks:
            raise InvalidCanvas(where, "an empty chain runs nothing")
        nested = [self.node(t, f"{where}.{subtask}[{i}]", depth + 1) for i, t in enumerate(tasks)]
        return self.shell(sig, subtask, {"tasks": nested}, where, depth)

    def chord(self, sig: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
        kwargs = sig.get("kwargs") or {}
        header, body = kwargs.get("header"), kwargs.get("body")
        if body is None:
            raise InvalidCanvas(where, "a chord needs a body")
        if isinstance(header, Mapping):
            checked: Any = self.node(header, f"{where}.header", depth + 1)
        else:
            header = list(header or [])
            checked = [
                self.node(t, f"{where}.header[{i}]", depth + 1) for i, t in enumerate(header)
            ]
        own = sig.get("options") or {}
        if own.get("link") or own.get("link_error"):
            raise InvalidCanvas(
                where, "Cannot add link to group: use chord.link() or chord.link_error()"
            )
        parts = {"header": checked, "body": self.node(body, f"{where}.body", depth + 1)}
        return self.shell(sig, "chord", parts, where, depth)

    def task(self, sig: Mapping[str, Any], where: str, depth: int) -> dict[str, Any]:
        name = sig.get("task")
        if not isinstance(name, str) or not name:
            raise InvalidCanvas(where, f"a signature without a task name: {dict(sig)!r:.80}")
        if name not in self.app.tasks:
            raise InvalidCanvas(
                where, f"unknown task {name!r}: the app {self.app.main!r} has no such task"
            )
        where = f"{where} ({name})"
        args = payloads.roundtrip(
            list(sig.get("args") or ()), f"arguments of task {name}", self.limit
        )
        kwargs = payloads.roundtrip(
            dict(sig.get("kwargs") or {}), f"keyword arguments of task {name}", self.limit
        )
        return self.shell(sig, None, kwargs, where, depth, args=args)

    def shell(
        self,
        sig: Mapping[str, Any],
        subtask: str | None,
        kwargs: dict[str, Any],
        where: str,
        depth: int,
        args: list[Any] | None = None,
    ) -> dict[str, Any]:
        """The JSON form of one signature with its options checked."""
        opts: dict[str, Any] = {}
        for key, value in (sig.get("options") or {}).items():
            if key in IGNORED:
                continue
            if key not in SUPPORTED:
                raise InvalidCanvas(
                    where,
                    f"option {key!r} cannot be honoured by a durable run (supported: "
                    f"{', '.join(sorted(SUPPORTED))}; route with queue or task_routes)",
                )
            if key in ("link", "link_error"):
                value = [
                    self.node(cb, f"{where}.{key}[{i}]", depth + 1)
                    for i, cb in enumerate(canvas_rules.listed(value))
                ]
            elif key == "queue":
                value = getattr(value, "name", value)
            opts[key] = value
        shell = {
            "task": str(sig.get("task") or f"celery.{subtask}"),
            "args": args
            if args is not None
            else payloads.roundtrip(
                list(sig.get("args") or ()), f"arguments of {where}", self.limit
            ),
            "kwargs": kwargs,
            "options": payloads.roundtrip(opts, f"options of {where}", self.limit),
            "subtask_type": subtask,
            "immutable": bool(sig.get("immutable")),
        }
        return shell


def install(app: Celery, orc: Host) -> None:
    """Register the built-in canvas workflow and the error-callback task on ``app``."""
    orc.registry.add(
        canvas_walk.workflow_for(app), name=canvas_walk.WORKFLOW, version=canvas_walk.VERSION
    )

    @app.task(  # type: ignore[untyped-decorator]
        name=canvas_walk.ERRBACK_TASK, serializer="json", ignore_result=True, shared=False
    )
    def call_errback(
        errback: dict[str, Any], request: dict[str, Any], error: dict[str, Any]
    ) -> None:
        """Call a new-style error callback as Celery's result backend does, in this worker:
        ``errback(request, exc, traceback)``."""
        exc = canvas_walk.rebuild(error)
        app.signature(errback)(Context(request), exc, error.get("traceback"))
