"""Celery's canvas rules on the JSON form of signatures: how a chain's steps, a group's
members and a chord's parts are laid out before they run (``celery/canvas.py``'s
``prepare_steps``, ``_prepared``, ``link``/``link_error``), as pure functions of the dicts, so
a replay lays out the same canvas the same way. :mod:`orchestrator.celery.canvas_walk` runs
what they lay out.
"""

from __future__ import annotations

from collections import deque
from functools import partial
from typing import Any

from celery import Celery
from celery.utils.functional import arity_greater

#: Options Celery sets on the signatures it freezes; they name messages, not behaviour.
BOOKKEEPING = frozenset(
    {"task_id", "group_id", "group_index", "root_id", "parent_id", "chord", "chain"}
)

Node = dict[str, Any]


def kind(node: Node) -> str:
    """``chain``, ``group``, ``chord`` or ``task``."""
    subtask = node.get("subtask_type")
    if subtask in ("chain", "group", "chord"):
        return str(subtask)
    return "task"


def members(node: Node) -> list[Node]:
    """The signatures a chain or group holds (a chord's header as given)."""
    return list((node.get("kwargs") or {}).get("tasks") or [])


def options(node: Node) -> dict[str, Any]:
    return dict(node.get("options") or {})


def listed(value: Any) -> list[Node]:
    """A ``link``/``link_error`` option as a list (Celery accepts one signature too)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def merged(node: Node, pushed: dict[str, Any]) -> Node:
    """``node`` with ``pushed`` options over its own (``Signature._merge``)."""
    if not pushed:
        return node
    own = options(node)
    keep = {k: v for k, v in pushed.items() if k != "group_id" or k not in own}
    return {**node, "options": {**own, **keep}}


def with_errback(node: Node, errback: Node, on_header: bool = False) -> Node:
    """``node.link_error(errback)`` as each kind of signature does it; ``on_header`` is the
    app's ``task_allow_error_cb_on_chord_header``."""
    shape = kind(node)
    if shape == "group":
        frozen = {**errback, "immutable": True}
        tasks = [with_errback(m, frozen, on_header) for m in members(node)]
        return {**node, "kwargs": {**node.get("kwargs", {}), "tasks": tasks}}
    if shape == "chord":
        kwargs = dict(node.get("kwargs") or {})
        group = header_of(node)
        frozen = {**errback, "immutable": True}
        header = [
            with_errback(m, errback, on_header)
            if kind(m) == "chord"
            else with_errback(m, frozen, on_header)
            if on_header
            else m
            for m in members(group)
        ]
        given = kwargs.get("header")
        kwargs["header"] = (
            {**given, "kwargs": {**given.get("kwargs", {}), "tasks": header}}
            if isinstance(given, dict) and kind(given) == "group"
            else header
        )
        kwargs["body"] = with_errback(kwargs["body"], errback, on_header)
        return {**node, "kwargs": kwargs}
    own = options(node)
    errbacks = listed(own.get("link_error"))
    if errback not in errbacks:
        errbacks.append(errback)
    return {**node, "options": {**own, "link_error": errbacks}}


def unroll(group: Node) -> Node:
    """A group of one is its member (``maybe_unroll_group``)."""
    tasks = members(group)
    return tasks[0] if len(tasks) == 1 else group


def chord_of(header: Node, body: Node) -> Node:
    """``chord(group, body)``: the group's members become the header (its options are lost)."""
    return {"subtask_type": "chord", "kwargs": {"header": members(header), "body": body}}


def chain_steps(chain: Node, on_header: bool = False) -> list[Node]:
    """The steps Celery runs for a chain (``_chain.prepare_steps``), first step first;
    ``on_header`` is the app's ``task_allow_error_cb_on_chord_header``."""
    steps = deque(members(chain))
    out: list[Node] = []
    while steps:
        step = steps.pop()
        if kind(step) == "group":
            step = unroll(step)
        if kind(step) == "chain":
            steps.extend(members(step))
            continue
        if kind(step) == "group" and out:
            step = chord_of(step, out.pop())
        out.append(step)
    out.reverse()
    own = options(chain)
    links, errbacks = listed(own.pop("link", None)), listed(own.pop("link_error", None))
    for errback in errbacks:
        out = [with_errback(s, errback, on_header) for s in out]
    if out and links:
        last = out[-1]
        out[-1] = {
            **last,
            "options": {**options(last), "link": listed(options(last).get("link")) + links},
        }
    pushed = {k: v for k, v in own.items() if k not in BOOKKEEPING}
    if out and pushed:
        out[0] = merged(out[0], pushed)
    return out


def flatten(group: Node, pushed: dict[str, Any]) -> list[Node]:
    """A group's members with nested groups' members spliced in, each with the group's
    options over its own (``group._prepared``)."""
    pushed = {**{k: v for k, v in options(group).items() if k not in BOOKKEEPING}, **pushed}
    out: list[Node] = []
    for member in members(group):
        if kind(member) == "group":
            out.extend(flatten(member, pushed))
        else:
            out.append(merged(member, pushed))
    return out


def header_of(chord: Node) -> Node:
    """A chord's header as a group."""
    header = (chord.get("kwargs") or {}).get("header")
    if isinstance(header, dict):
        return (
            header
            if kind(header) == "group"
            else {"subtask_type": "group", "kwargs": {"tasks": [header]}}
        )
    return {"subtask_type": "group", "kwargs": {"tasks": list(header or [])}}


def yields_group_result(node: Node) -> bool:
    """Whether Celery's ``apply_async`` of ``node`` returns a ``GroupResult``."""
    shape = kind(node)
    if shape == "group":
        return True
    if shape == "chain":
        steps = chain_steps(node)
        return bool(steps) and yields_group_result(steps[-1])
    if shape == "chord":
        return yields_group_result((node.get("kwargs") or {})["body"])
    return False


def new_style(app: Celery, errback: Node) -> bool:
    """Whether Celery calls ``errback`` with ``(request, exc, traceback)`` rather than as a
    task given the failed task's id (``Backend._call_task_errbacks``)."""
    if kind(errback) != "task":
        return False
    task = app.tasks.get(errback.get("task"))
    header = getattr(task, "__header__", None)
    return header is not None and not isinstance(header, partial) and arity_greater(header, 1)
