"""``start_canvas`` refuses what it cannot run as Celery would, at the call, writing nothing;
and the rules it walks a canvas by (``celery/canvas.py``'s) on the JSON form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.canvas import Signature

from orchestrator import Orchestrator, PayloadError
from orchestrator.celery import canvas, canvas_rules, canvas_walk
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.events import EventType
from tests.builders import completed
from tests.unit.harness import Harness, failed, timed_out


def make_app(name: str) -> Celery:
    app = Celery(name, broker="memory://", set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])

    @app.task(name="u.add", shared=False)  # type: ignore[untyped-decorator]
    def add(x: int, y: int) -> int:
        return x + y

    return app


@pytest.fixture
def orc() -> Orchestrator:
    return Orchestrator(make_app("unit"), journal=InMemoryJournal())


def add(orc: Orchestrator, *args: Any, **kwargs: Any) -> Signature:
    return orc.app.signature("u.add", args=args, kwargs=kwargs)


def nested(orc: Orchestrator, depth: int) -> Signature:
    sig = add(orc, 1, 1)
    for _ in range(depth):
        sig = group(sig, add(orc, 2, 2))
    return sig


REFUSED: list[tuple[str, Callable[[Orchestrator], Any], type[Exception], str]] = [
    (
        "unknown task",
        lambda o: chain(add(o, 1, 2), o.app.signature("u.nope")),
        ValueError,
        "u.nope",
    ),
    ("non-JSON argument", lambda o: group(add(o, object(), 1)), PayloadError, "u.add"),
    (
        "another app's signature",
        lambda o: chain(add(o, 1, 2), make_app("other").signature("u.add", args=(1,))),
        ValueError,
        "'other'",
    ),
    ("nested too deep", lambda o: nested(o, canvas.MAX_DEPTH + 1), ValueError, "deeper than"),
    ("unsupported option", lambda o: add(o, 1, 2).set(priority=9), ValueError, "'priority'"),
    ("not a signature", lambda o: "u.add", TypeError, "needs a Celery signature"),
    ("empty chain", lambda o: chain(app=o.app), ValueError, "empty chain"),
    (
        "link on a chord's options",
        lambda o: chord([add(o, 1, 1)], add(o, 2)).set(link=add(o, 3)),
        ValueError,
        "Cannot add link to group",
    ),
]


@pytest.mark.parametrize("what,build,error,named", REFUSED, ids=[r[0] for r in REFUSED])
def test_bad_canvas_is_refused_at_the_call_and_nothing_is_written(
    orc: Orchestrator,
    what: str,
    build: Callable[[Orchestrator], Any],
    error: type[Exception],
    named: str,
) -> None:
    with pytest.raises(error, match=named.replace("(", r"\(")):
        orc.start_canvas(build(orc))
    assert orc.list_runs() == []


def test_a_canvas_nested_to_the_limit_is_accepted(orc: Orchestrator) -> None:
    prepared = canvas.prepare(orc.app, nested(orc, canvas.MAX_DEPTH), max_payload_bytes=10**6)
    assert prepared["subtask_type"] == "group"


def steps(orc: Orchestrator, sig: Signature) -> list[str]:
    walked = canvas.prepare(orc.app, sig, max_payload_bytes=10**6)
    return [canvas_rules.kind(s) for s in canvas_rules.chain_steps(walked)]


def test_chain_steps_follow_celerys_upgrades(orc: Orchestrator) -> None:
    a = add(orc, 1, 1)
    # A group followed by a step is a chord; a group of one is its member; chains splice.
    assert steps(orc, chain(a, group(add(orc, 1), add(orc, 2)), add(orc, 3))) == ["task", "chord"]
    assert steps(orc, chain(a, group(add(orc, 1)), add(orc, 3))) == ["task", "task", "task"]
    assert steps(orc, chain(chain(a, add(orc, 1)), chain(add(orc, 2)))) == ["task", "task", "task"]
    assert steps(orc, chain(a, group(add(orc, 1), add(orc, 2)))) == ["task", "group"]


def test_a_chains_error_callback_reaches_every_step_and_its_link_the_last(
    orc: Orchestrator,
) -> None:
    errback, link = add(orc, 0, 0), add(orc, 9)
    sig = chain(add(orc, 1, 1), add(orc, 2)).set(link_error=[errback], link=[link])
    walked = canvas.prepare(orc.app, sig, max_payload_bytes=10**6)
    first, last = canvas_rules.chain_steps(walked)
    assert [e["task"] for e in first["options"]["link_error"]] == ["u.add"]
    assert "link" not in first["options"]
    assert [cb["args"] for cb in last["options"]["link"]] == [[9]]


def test_the_errors_a_canvas_raises_keep_their_type_and_message() -> None:
    rebuilt = canvas_walk.rebuild({"type": "ValueError", "message": "boom"})
    assert type(rebuilt) is ValueError and str(rebuilt) == "boom"
    stand_in = canvas_walk.rebuild({"type": "nowhere.module.Failed", "message": "lost"})
    assert (type(stand_in).__module__, type(stand_in).__qualname__) == ("nowhere.module", "Failed")
    assert canvas_walk.error_repr({"type": "ValueError", "message": "boom"}) == "ValueError('boom')"


def test_every_orchestrator_registers_the_canvas_workflow(orc: Orchestrator) -> None:
    assert orc.registry.has(canvas_walk.WORKFLOW, canvas_walk.VERSION)
    assert canvas_walk.ERRBACK_TASK in orc.app.tasks


def test_a_chords_error_callback_reaches_its_header_only_when_the_app_says_so(
    orc: Orchestrator,
) -> None:
    errback = add(orc, 0, 0)
    walked = canvas.prepare(orc.app, chord([add(orc, 1, 1)], add(orc, 2)), max_payload_bytes=10**6)
    for on_header, expected in ((False, []), (True, [True])):
        linked = canvas_rules.with_errback(walked, errback, on_header)
        (member,) = linked["kwargs"]["header"]
        assert [e["immutable"] for e in member["options"].get("link_error", [])] == expected
        assert linked["kwargs"]["body"]["options"]["link_error"] == [errback]


def walk(orc: Orchestrator, sig: Signature, timeout: float | None = None) -> Harness:
    prepared = canvas.prepare(orc.app, sig, max_payload_bytes=10**6)
    return Harness(canvas_walk.workflow_for(orc.app), prepared, {"timeout": timeout})


def test_a_lost_attempt_is_made_again_and_a_raised_error_is_not(orc: Orchestrator) -> None:
    h = walk(orc, chain(add(orc, 1, 1), add(orc, 10), add(orc, 100)), timeout=5)
    h.step()
    h.step([timed_out(h.command("u.add"), task="u.add", timeout=5)])
    assert [name for _, name, _ in h.scheduled()] == ["u.add", "u.add"]
    h.step([completed(h.command("u.add", 1), 2)])
    scheduled = h.events(EventType.ACTIVITY_SCHEDULED)[-1]
    assert scheduled.data["args"] == [2, 10]
    h.step([failed(scheduled.command_id or 0, "ValueError", "bad step")])
    end = h.terminal()
    assert end is not None and end.type is EventType.RUN_FAILED
    assert (end.data["error"]["type"], end.data["error"]["message"]) == ("ValueError", "bad step")
    assert len(h.scheduled()) == 3  # the third step never ran
    h.replay()  # the recorded history replays without a mismatch


def test_a_link_runs_after_success_and_its_failure_leaves_the_result(orc: Orchestrator) -> None:
    sig = add(orc, 1, 1)
    sig.link(add(orc, 5))
    h = walk(orc, sig)
    h.step()
    h.step([completed(h.command("u.add"), 2)])
    link = h.events(EventType.ACTIVITY_SCHEDULED)[-1]
    assert link.data["args"] == [2, 5]
    assert h.terminal() is None  # the run waits for its callbacks
    h.step([failed(link.command_id or 0)])
    end = h.terminal()
    assert end is not None and end.type is EventType.RUN_COMPLETED
    assert end.data["result"] == 2
    h.replay()
