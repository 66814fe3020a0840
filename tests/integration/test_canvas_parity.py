"""Durable canvas against Celery itself: each canvas of the table runs both ways on the same
real worker, ``apply_async().get()`` on a Redis result backend and ``orc.start_canvas`` +
``orc.result``, and must give the same result, the same exception and the same callbacks.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import chain, chord, group
from celery.canvas import Signature

from orchestrator import Cancelled, EventType, RunStatus, WorkflowFailed
from tests.integration import canvasapp
from tests.integration.canvas_cluster import OTHER, Tasks, running
from tests.integration.cluster import BIN, ROOT, Cluster, wait_for


@pytest.fixture(scope="module")
def canvas_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running(tmp_path_factory.mktemp("canvas")) as cluster:
        yield cluster


@dataclass(frozen=True)
class Case:
    """A canvas of the table: ``build(t, key)`` makes it; ``records`` says it calls back."""

    id: str
    build: Callable[[Tasks, str], Signature]
    records: bool = False


def _chord(header: list[Signature], body: Signature) -> Signature:
    return chord(header, body)


CASES = [
    Case("task", lambda t, k: t.add(2, 3)),
    Case("chain", lambda t, k: chain(t.add(1, 2), t.add(3), t.mul(2))),
    Case("chain-immutable", lambda t, k: chain(t.add(1, 2), t.si("add", 10, 10), t.add(1))),
    Case("chain-kwargs", lambda t, k: chain(t.add(1, 2), t.add(y=10))),
    Case("chain-partial-args", lambda t, k: chain(t.collect(1), t.collect(2, z=3))),
    Case("group", lambda t, k: group(t.add(1, 1), t.add(2, 2), t.add(3, 3))),
    Case("group-of-one", lambda t, k: group(t.add(1, 1))),
    Case("empty-group", lambda t, k: group([], app=t.app)),
    Case("nested-groups", lambda t, k: group(t.add(1, 1), group(t.add(2, 2), t.add(3, 3)))),
    Case("chord", lambda t, k: _chord([t.add(i, i) for i in range(5)], t.tsum())),
    Case("chord-empty-header", lambda t, k: _chord([], t.collect())),
    Case("chord-immutable-body", lambda t, k: _chord([t.add(1, 1)], t.si("add", 5, 5))),
    Case(
        "chord-chain-body",
        lambda t, k: _chord([t.add(1, 1), t.add(2, 2)], chain(t.tsum(), t.mul(10))),
    ),
    Case(
        "chord-chain-in-header",
        lambda t, k: _chord([chain(t.add(1, 1), t.mul(2)), t.add(5, 5)], t.tsum()),
    ),
    Case("chain-ending-in-group", lambda t, k: chain(t.add(1, 1), group(t.add(1), t.add(2)))),
    Case(
        "chain-group-middle", lambda t, k: chain(t.add(1, 1), group(t.add(1), t.add(2)), t.tsum())
    ),
    Case("chain-group-of-one", lambda t, k: chain(t.add(1, 1), group(t.add(5)), t.add(1))),
    Case(
        "chain-two-groups",
        lambda t, k: chain(group(t.add(1, 1), t.add(2, 2)), group(t.collect(), t.collect("x"))),
    ),
    Case(
        "group-of-chains",
        lambda t, k: group(chain(t.add(1, 1), t.mul(3)), chain(t.add(2, 2), t.mul(10))),
    ),
    Case("group-of-one-chain", lambda t, k: group(chain(t.add(1, 1), t.mul(3)))),
    Case(
        "group-with-chord",
        lambda t, k: group(_chord([t.add(1, 1), t.add(2, 2)], t.tsum()), t.add(10, 10)),
    ),
    Case("chain-of-chains", lambda t, k: chain(chain(t.add(1, 1), t.add(1)), chain(t.mul(5)))),
    Case(
        "chain-into-chord", lambda t, k: chain(t.add(1, 1), _chord([t.add(1), t.mul(3)], t.tsum()))
    ),
    Case("queue", lambda t, k: chain(t.add(1, 1), t.where().set(queue=f"{t.prefix}-{OTHER}"))),
    Case("task-autoretry", lambda t, k: chain(t.flaky(k), t.add(1))),
    Case("countdown", lambda t, k: chain(t.add(1, 1).set(countdown=1), t.add(1))),
    Case("link", lambda t, k: _linked(t.add(1, 1), t.mark(key=k)), True),
    Case("chain-link", lambda t, k: _linked(chain(t.add(1, 1), t.add(1)), t.mark(key=k)), True),
    Case(
        "link-immutable",
        lambda t, k: _linked(t.add(1, 1), t.si("mark", "fixed", key=k)),
        True,
    ),
]

FAILING = [
    Case("fail-task", lambda t, k: t.boom()),
    Case("fail-chain", lambda t, k: chain(t.add(1, 1), t.boom(), t.add(1))),
    Case("fail-group", lambda t, k: group(t.add(1, 1), t.boom(message="second"))),
    Case("fail-chord-header", lambda t, k: _chord([t.add(1, 1), t.boom()], t.tsum())),
    Case("fail-chord-body", lambda t, k: _chord([t.add(1, 1)], t.boom())),
    Case("fail-custom", lambda t, k: chain(t.add(1, 1), t.custom())),
    Case("errback-old", lambda t, k: t.boom().on_error(t.on_error_id(key=k)), True),
    Case("errback-new", lambda t, k: t.boom().on_error(t.on_error_full(k)), True),
    Case(
        "chain-errback",
        lambda t, k: chain(t.add(1, 1), t.boom()).on_error(t.on_error_full(k)),
        True,
    ),
    Case(
        "chord-errback",
        lambda t, k: _errback(_chord([t.boom()], t.tsum()), t.on_error_full(k)),
        True,
    ),
]


def _linked(sig: Signature, callback: Signature) -> Signature:
    sig.link(callback)
    return sig


def _errback(sig: Signature, errback: Signature) -> Signature:
    sig.link_error(errback)
    return sig


def _records(cluster: Cluster, key: str) -> list[Any]:
    return sorted(canvasapp.recorded(key), key=repr)


def _callbacks(cluster: Cluster, case: Case, keys: dict[str, str]) -> None:
    if not case.records:
        return
    celery_side = wait_for(lambda: _records(cluster, keys["celery"]), 30, "Celery's callback")
    durable_side = _records(cluster, keys["durable"])
    assert durable_side == celery_side


def _keys(case: Case) -> dict[str, str]:
    tag = uuid.uuid4().hex[:8]
    return {side: f"{case.id}-{side}-{tag}" for side in ("celery", "durable")}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_same_result_as_celery(canvas_cluster: Cluster, case: Case) -> None:
    t = Tasks(canvas_cluster)
    keys = _keys(case)
    expected = case.build(t, keys["celery"]).apply_async().get(timeout=30)
    handle = canvas_cluster.orc.start_canvas(case.build(t, keys["durable"]))
    assert canvas_cluster.orc.result(handle.run_id, timeout=60) == expected
    _callbacks(canvas_cluster, case, keys)


@pytest.mark.parametrize("case", FAILING, ids=[c.id for c in FAILING])
def test_same_failure_as_celery(canvas_cluster: Cluster, case: Case) -> None:
    t = Tasks(canvas_cluster)
    keys = _keys(case)
    with pytest.raises(Exception) as raised:
        case.build(t, keys["celery"]).apply_async().get(timeout=30)
    handle = canvas_cluster.orc.start_canvas(case.build(t, keys["durable"]))
    with pytest.raises(WorkflowFailed) as failed:
        canvas_cluster.orc.result(handle.run_id, timeout=60)
    error = raised.value
    cls = type(error)
    name = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    assert failed.value.error_type == name
    assert _normal(failed.value.remote_message) == _normal(str(error))
    _callbacks(canvas_cluster, case, keys)


def _normal(message: str) -> str:
    """A chord's error names the failed task by its id, which differs between the runs."""
    if message.startswith("Dependency "):
        return "Dependency <id> " + message.split(" ", 2)[2]
    return message


def test_the_canvas_is_journaled_as_signature_dicts(canvas_cluster: Cluster) -> None:
    t = Tasks(canvas_cluster)
    canvas = chain(t.add(1, 2), group(t.add(1), t.mul(2)))
    handle = canvas_cluster.orc.start_canvas(canvas)
    assert canvas_cluster.orc.result(handle.run_id, timeout=60) == [4, 6]
    history = canvas_cluster.orc.history(handle.run_id)
    started = history[0].data
    journaled = started["args"][0]
    assert journaled["subtask_type"] == "chain"
    assert [s["task"] for s in journaled["kwargs"]["tasks"]] == ["canvas.add", "celery.group"]
    names = [e.data.get("task") for e in history if e.type.value == "activity_scheduled"]
    assert names == ["canvas.add", "canvas.add", "canvas.mul"]


def test_cancelling_a_canvas_stops_it_at_its_current_step(canvas_cluster: Cluster) -> None:
    t = Tasks(canvas_cluster)
    key = f"cancel-{uuid.uuid4().hex[:8]}"
    canvas = chain(t.gate(1, key), t.add(1), t.mul(10))
    handle = canvas_cluster.orc.start_canvas(canvas)
    try:
        wait_for(lambda: canvasapp.recorded(key), 30, "the first step to start")
        canvas_cluster.orc.cancel(handle.run_id, "no longer wanted")
        with pytest.raises(Cancelled):
            canvas_cluster.orc.result(handle.run_id, timeout=30)
    finally:
        (canvasapp.effects() / f"{key}.open").touch()
    info = canvas_cluster.orc.describe(handle.run_id)
    assert info.status is RunStatus.CANCELLED
    history = canvas_cluster.orc.history(handle.run_id)
    scheduled = [e.data["task"] for e in history if e.type is EventType.ACTIVITY_SCHEDULED]
    assert scheduled == ["canvas.gate"]


def test_start_canvas_from_the_command_line(canvas_cluster: Cluster) -> None:
    t = Tasks(canvas_cluster)
    canvas = json.dumps(chain(t.add(1, 2), group(t.add(1), t.mul(2))))

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "continuum"), "-A", canvas_cluster.app, *args],
            cwd=ROOT,
            env=canvas_cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    started = cli("start-canvas", canvas, "--timeout", "30")
    assert started.returncode == 0, started.stderr
    result = cli("result", started.stdout.strip(), "--timeout", "30")
    assert json.loads(result.stdout) == [4, 6]
    unknown = cli("start-canvas", json.dumps(t.app.signature("canvas.nope")))
    assert unknown.returncode != 0
    assert "unknown task 'canvas.nope'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
