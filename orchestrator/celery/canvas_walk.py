"""The built-in workflow that runs a Celery canvas durably: it walks the canvas's signature
dicts and runs each task as an activity, keeping Celery's semantics.

The rules are Celery's own (``celery/canvas.py`` and the worker's tracer), applied to the JSON
form of a signature, so a replay reads the same canvas and issues the same commands:

- a task gets the partial arguments it is given (the previous result in a chain, the header's
  results in a chord body) before its own, unless it is immutable (``.si()``); its options
  are merged over by the options its container pushes down;
- a chain runs its steps one after the other, each step receiving the previous result;
  nested chains are spliced in, a group of one is unrolled to its member, and a group followed
  by another step becomes a chord with that step as its body (whose error callbacks then
  see a failed group as ``ChordError``, as in Celery); the chain's ``link`` goes to its last
  step, its ``link_error`` to every step, its other options to its first step; a failed step
  fails the chain with its own error;
- a group runs its members at once (nested groups flattened, the group's options pushed to
  each member) and returns their results in order; a group whose only member returns a group
  result returns that result itself; its failure is the first failed member in order;
- a chord runs its header as a group and calls its body with the list of results; a failed
  header member fails the chord with its own error, and the body's error callbacks are given
  ``ChordError('Dependency <id> raised <error>')``;
- ``link`` callbacks run after success with the result, whatever becomes of them (their
  failures do not change the run's result); ``link_error`` callbacks run after failure: those
  whose task takes more than one positional argument with ``(request, exc, traceback)``, the
  others with the failed task's id, as Celery's result backend calls them.

Every activity is attempted once (a task that raises fails, as in Celery); an attempt that
ran past the canvas's ``timeout`` without an outcome (its worker died) is made again.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Coroutine
from datetime import datetime
from typing import Any

from celery import Celery

from orchestrator.celery.canvas_rules import (
    BOOKKEEPING,
    Node,
    chain_steps,
    flatten,
    header_of,
    kind,
    listed,
    merged,
    new_style,
    options,
    yields_group_result,
)
from orchestrator.engine.context import Future, WorkflowContext
from orchestrator.model.errors import ActivityFailed
from orchestrator.model.records import task_id_for
from orchestrator.model.retry import RetryPolicy

#: The built-in workflow's name and version.
WORKFLOW = "continuum.canvas"
VERSION = "1"
#: The task that calls a new-style error callback (``request, exc, traceback``) on a worker.
ERRBACK_TASK = "continuum.canvas.errback"
#: How many times a task whose attempt was lost (no outcome within the timeout) is made.
LOST_ATTEMPTS = 10
#: Celery does not retry a task that raised; neither does the canvas.
ONCE = RetryPolicy(max_attempts=1)


class CanvasFailure(Exception):
    """A member of the canvas failed: its error (type, message, traceback) and task id."""

    def __init__(self, error: dict[str, Any], task_id: str) -> None:
        super().__init__(f"{error.get('type')}: {error.get('message')}")
        self.error = error
        self.task_id = task_id


def error_repr(error: dict[str, Any]) -> str:
    """``repr`` of the exception an error record describes, as Celery writes it."""
    bare = str(error.get("type", "Exception")).rsplit(".", 1)[-1]
    message = error.get("message")
    return f"{bare}({message!r})" if message else f"{bare}()"


_CLASSES: dict[str, type[Exception]] = {}


def rebuild(error: dict[str, Any]) -> Exception:
    """An exception of the type an error record names, with its message: the real class when
    it is loaded and takes a message, else a stand-in with the same module and name."""
    name = str(error.get("type") or "Exception")
    message = str(error.get("message") or "")
    module, _, qualname = name.rpartition(".")
    found = getattr(sys.modules.get(module or "builtins"), qualname, None)
    if isinstance(found, type) and issubclass(found, Exception):
        try:
            return found(message) if message else found()
        except Exception:  # a constructor that wants more than a message
            pass
    cls = _CLASSES.get(name)
    if cls is None:
        cls = type(qualname, (Exception,), {"__module__": module or "builtins"})
        cls.__qualname__ = qualname
        _CLASSES[name] = cls
    return cls(message)


class Walker:
    """Runs one canvas in one workflow run: each method runs one kind of signature."""

    def __init__(self, ctx: WorkflowContext, app: Celery, timeout: float | None) -> None:
        self.ctx = ctx
        self.app = app
        self.timeout = timeout
        #: Callbacks started and not awaited by the canvas (``link``); the run waits for them.
        self.detached: list[Future[Any]] = []

    async def run(self, node: Node, args: list[Any]) -> Any:
        shape = kind(node)
        if shape == "chain":
            return await self.chain(node, args)
        if shape == "group":
            return await self.group(node, args)
        if shape == "chord":
            return await self.chord(node, args)
        return await self.task(node, args)

    async def chain(self, node: Node, args: list[Any]) -> Any:
        own = list(node.get("args") or ())
        args = own if node.get("immutable") or not args else args + own
        value: Any = None
        on_header = bool(self.app.conf.task_allow_error_cb_on_chord_header)
        for index, step in enumerate(chain_steps(node, on_header)):
            value = await self.run(step, args if index == 0 else [value])
        return value

    async def group(self, node: Node, args: list[Any]) -> Any:
        tasks = flatten(node, {})
        outcomes = await self.ctx.gather(*(settled(self.run(t, args)) for t in tasks))
        for ok, value in outcomes:
            if not ok:
                raise value
        values = [value for _, value in outcomes]
        if len(tasks) == 1 and yields_group_result(tasks[0]):
            return values[0]
        return values

    async def chord(self, node: Node, args: list[Any]) -> Any:
        own = list(node.get("args") or ())
        args = own if node.get("immutable") or not args else args + own
        pushed = {k: v for k, v in options(node).items() if k not in BOOKKEEPING}
        body = merged((node.get("kwargs") or {})["body"], pushed)
        header = flatten(header_of(node), pushed)
        outcomes = await self.ctx.gather(*(settled(self.run(t, args)) for t in header))
        for ok, value in outcomes:
            if not ok:
                # What ``get()`` raises is the member's own error (the body's result has the
                # header for parent); the body's error callbacks are given a ChordError.
                error = {
                    "type": "celery.exceptions.ChordError",
                    "message": f"Dependency {value.task_id} raised {error_repr(value.error)}",
                    "traceback": None,
                }
                await self.errbacks(body, CanvasFailure(error, self.ctx.uuid4().hex))
                raise value
        return await self.run(body, [[value for _, value in outcomes]])

    async def task(self, node: Node, args: list[Any]) -> Any:
        own = options(node)
        call_args = list(node.get("args") or ())
        if args and not node.get("immutable"):
            call_args = args + call_args
        await self.delay(own)
        call = {
            "task": node["task"],
            "args": call_args,
            "kwargs": dict(node.get("kwargs") or {}),
            "options": {"queue": own["queue"]} if own.get("queue") else {},
        }
        for attempt in range(1, LOST_ATTEMPTS + 1):
            try:
                value = await self.ctx.activity(call, retry=ONCE, timeout=self.timeout)
                break
            except ActivityFailed as exc:
                lost = exc.error_type == "TimeoutError" and not exc.remote_traceback
                if lost and self.timeout is not None and attempt < LOST_ATTEMPTS:
                    continue
                task_id = task_id_for(exc.run_id, exc.command_id, exc.attempt)
                failure = CanvasFailure(exc.error, task_id)
                await self.errbacks({**call, "options": own}, failure)
                raise failure from None
        for link in listed(own.get("link")):
            self.detached.append(self.ctx.gather(settled(self.run(link, [value]))))
        return value

    async def delay(self, own: dict[str, Any]) -> None:
        """Wait out a ``countdown`` or an ``eta`` on a durable timer."""
        seconds = 0.0
        if own.get("countdown"):
            seconds = float(own["countdown"])
        elif own.get("eta"):
            eta = datetime.fromisoformat(str(own["eta"]))
            now = self.ctx.now()
            if eta.tzinfo is None:
                now = now.replace(tzinfo=None)
            seconds = (eta - now).total_seconds()
        if seconds > 0:
            await self.ctx.sleep(seconds)

    async def errbacks(self, node: Node, failure: CanvasFailure) -> None:
        """Call ``node``'s error callbacks as Celery's result backend does; what becomes of
        them does not change the failure."""
        calls: list[Coroutine[Any, Any, Any]] = []
        old: list[Node] = []
        request = {
            "id": failure.task_id,
            "task": node.get("task"),
            "args": list(node.get("args") or ()),
            "kwargs": dict(node.get("kwargs") or {}),
        }
        for errback in listed(options(node).get("link_error")):
            if new_style(self.app, errback):
                payload = [errback, request, failure.error]
                calls.append(settled(self.ctx.activity(ERRBACK_TASK, *payload, retry=ONCE)))
            else:
                old.append(errback)
        if old:
            group = {"subtask_type": "group", "kwargs": {"tasks": old}}
            calls.append(settled(self.run(group, [failure.task_id])))
        if calls:
            await self.ctx.gather(*calls)

    async def settle_detached(self) -> None:
        """Wait for the ``link`` callbacks started so far (and those they start)."""
        while self.detached:
            pending, self.detached = self.detached, []
            await self.ctx.gather(*pending)


async def settled(awaitable: Any) -> tuple[bool, Any]:
    """``(True, value)`` or ``(False, failure)``: a member's outcome, kept for its turn."""
    try:
        return True, await awaitable
    except CanvasFailure as failure:
        return False, failure
    except ActivityFailed as exc:
        return False, CanvasFailure(exc.error, task_id_for(exc.run_id, exc.command_id, exc.attempt))


def workflow_for(app: Celery) -> Callable[..., Coroutine[Any, Any, Any]]:
    """The built-in workflow of ``app``'s orchestrator: ``canvas`` is the signature dict,
    ``settings`` holds the per-attempt ``timeout``."""

    async def canvas(ctx: WorkflowContext, canvas: Node, settings: dict[str, Any]) -> Any:
        walker = Walker(ctx, app, settings.get("timeout"))
        try:
            result = await walker.run(canvas, [])
        except CanvasFailure as failure:
            await walker.settle_detached()
            surfaced = rebuild(failure.error)
            if failure.error.get("traceback"):
                surfaced.add_note(
                    f"raised by task {failure.task_id}:\n{failure.error['traceback']}"
                )
            raise surfaced from None
        await walker.settle_detached()
        return result

    return canvas
