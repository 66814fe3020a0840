"""Bad input to every form and API route of the web view: a 4xx naming what was wrong, and
nothing written (the run's history and inbox, the schedule and the runs are as they were)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.importorskip("starlette")

from celery import Celery
from starlette.testclient import TestClient

from orchestrator import Orchestrator
from orchestrator.journal.memory.journal import InMemoryJournal
from orchestrator.model.schedules import ScheduleSpec
from orchestrator.web import create_app
from tests.builders import new_run, offline

MAX_PAYLOAD = 4096


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    status: int
    says: str
    form: dict[str, str] = field(default_factory=dict)
    csrf: bool = True
    read_only: bool = False
    raw: bytes | None = None
    content_type: str | None = None


CASES = [
    # unknown runs
    Case("GET", "/runs/nope", 404, "unknown run 'nope'"),
    Case("GET", "/api/runs/nope", 404, "unknown run 'nope'"),
    Case("POST", "/runs/nope/signal", 404, "unknown run 'nope'", {"name": "go"}),
    Case("POST", "/runs/nope/cancel", 404, "unknown run 'nope'"),
    Case("POST", "/runs/nope/retry", 404, "unknown run 'nope'"),
    Case("GET", "/runs/bad%20id", 404, "unknown run 'bad id'"),
    # malformed input
    Case(
        "POST", "/runs/r1/signal", 400, "payload is not valid JSON", {"name": "go", "payload": "{"}
    ),
    Case("POST", "/runs/r1/signal", 400, "name the signal", {"payload": "1"}),
    Case("POST", "/runs/r1/signal", 400, "invalid signal name", {"name": "a\x01b"}),
    Case("GET", "/?status=bogus", 400, "unknown status 'bogus'"),
    Case("GET", "/api/runs?status=bogus", 400, "unknown status 'bogus'"),
    Case("GET", "/api/runs?after=garbage", 400, "invalid page cursor"),
    Case("GET", "/api/runs?limit=0", 400, "limit must be an integer"),
    Case("GET", "/api/runs?limit=many", 400, "limit must be an integer"),
    Case(
        "POST",
        "/runs/r1/cancel",
        415,
        "as a form",
        raw=b'{"reason": 1}',
        content_type="application/json",
    ),
    # oversized payloads
    Case(
        "POST",
        "/runs/r1/signal",
        413,
        "larger than",
        {"name": "go", "payload": '"' + "x" * 40_000 + '"'},
    ),
    Case(
        "POST",
        "/runs/r1/signal",
        413,
        "over the limit",
        {"name": "go", "payload": '"' + "x" * 8_000 + '"'},
    ),
    # wrong methods
    Case("GET", "/runs/r1/cancel", 405, "GET is not allowed"),
    Case("GET", "/runs/r1/signal", 405, "GET is not allowed"),
    Case("POST", "/runs/r1", 405, "POST is not allowed"),
    Case("POST", "/api/runs", 405, "POST is not allowed"),
    Case("DELETE", "/api/runs/r1", 405, "DELETE is not allowed"),
    # missing or wrong CSRF token
    Case("POST", "/runs/r1/signal", 403, "CSRF token", {"name": "go"}, csrf=False),
    Case("POST", "/runs/r1/cancel", 403, "CSRF token", csrf=False),
    Case("POST", "/runs/r1/retry", 403, "CSRF token", csrf=False),
    Case(
        "POST", "/runs/r1/cancel", 403, "CSRF token", {"csrf_token": "forged" * 7 + "x"}, csrf=False
    ),
    # read-only
    Case("POST", "/runs/r1/signal", 403, "read-only", {"name": "go"}, read_only=True),
    Case("POST", "/runs/r1/cancel", 403, "read-only", read_only=True),
    Case("POST", "/runs/r1/retry", 403, "read-only", read_only=True),
    # schedules: unknown, wrong method, missing CSRF token, read-only
    Case("POST", "/schedules/nope/pause", 404, "unknown schedule 'nope'"),
    Case("POST", "/schedules/nope/resume", 404, "unknown schedule 'nope'"),
    Case("POST", "/schedules/nope/trigger", 404, "unknown schedule 'nope'"),
    Case("POST", "/schedules/bad%20id/trigger", 404, "unknown schedule 'bad id'"),
    Case("POST", "/schedules/r1/trigger", 404, "unknown schedule 'r1'"),
    Case("GET", "/schedules/s1/trigger", 405, "GET is not allowed"),
    Case("POST", "/schedules", 405, "POST is not allowed"),
    Case("POST", "/api/schedules", 405, "POST is not allowed"),
    Case("GET", "/schedules/s1", 404, "nothing at /schedules/s1"),
    Case("POST", "/schedules/s1/pause", 403, "CSRF token", csrf=False),
    Case("POST", "/schedules/s1/resume", 403, "CSRF token", csrf=False),
    Case("POST", "/schedules/s1/trigger", 403, "CSRF token", csrf=False),
    Case("POST", "/schedules/s1/pause", 403, "read-only", read_only=True),
    Case("POST", "/schedules/s1/resume", 403, "read-only", read_only=True),
    Case("POST", "/schedules/s1/trigger", 403, "read-only", read_only=True),
    Case("POST", "/schedules/nope/trigger", 403, "read-only", read_only=True),
    Case(
        "POST",
        "/schedules/s1/trigger",
        415,
        "as a form",
        raw=b'{"now": true}',
        content_type="application/json",
    ),
]

#: The schedule every case may act on: paused, so a resume would be a visible change.
SCHEDULE = ScheduleSpec(schedule_id="s1", workflow="wf", version="1", args=[], every=86400)


@pytest.fixture
def journal() -> Iterator[InMemoryJournal]:
    yield InMemoryJournal()


def _client(journal: InMemoryJournal, read_only: bool) -> TestClient:
    app = Celery("bad_input", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"])
    orc = offline(Orchestrator(app, journal=journal, max_payload_bytes=MAX_PAYLOAD))
    assert journal.create_run(new_run("r1", args=[1]))
    journal.put_schedule(SCHEDULE)
    journal.pause_schedule("s1", True)
    return TestClient(create_app(orc, read_only=read_only))


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path} {c.status} {c.says}")
def test_bad_input_is_refused_clearly_and_writes_nothing(
    journal: InMemoryJournal, case: Case
) -> None:
    client = _client(journal, case.read_only)
    client.get("/runs/r1")  # as a browser would: the page hands out the CSRF cookie
    form: dict[str, Any] = dict(case.form)
    if case.csrf:
        form["csrf_token"] = client.cookies.get("continuum_csrf")
    before = journal.history("r1")
    schedules = journal.list_schedules()
    kwargs: dict[str, Any] = {"follow_redirects": False}
    if case.raw is not None:
        kwargs["content"] = case.raw
        kwargs["headers"] = {"content-type": case.content_type}
    elif case.method == "POST":
        kwargs["data"] = form
    response = client.request(case.method, case.path, **kwargs)

    assert response.status_code == case.status, response.text
    text = response.json()["error"] if case.path.startswith("/api/") else response.text
    assert case.says in text.replace("&#39;", "'")
    assert journal.history("r1") == before
    assert journal.list_schedules() == schedules
    assert [r.run_id for r in journal.list_runs()] == ["r1"]
    claimed = journal.claim("r1", "probe", 60)
    assert claimed is not None and claimed.inbox == [], "something was delivered to the run"


def test_a_good_signal_is_delivered_and_the_browser_sent_back(journal: InMemoryJournal) -> None:
    client = _client(journal, read_only=False)
    client.get("/runs/r1")
    token = client.cookies.get("continuum_csrf")
    response = client.post(
        "/runs/r1/signal",
        data={"name": "approve", "payload": '{"ok": true}', "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"].startswith("/runs/r1?done=")
    claimed = journal.claim("r1", "probe", 60)
    assert claimed is not None
    assert [(i.type.value, i.data) for i in claimed.inbox] == [
        ("signal_received", {"name": "approve", "payload": {"ok": True}})
    ]


def test_retrying_a_run_that_has_not_failed_is_a_conflict_and_writes_nothing(
    journal: InMemoryJournal,
) -> None:
    client = _client(journal, read_only=False)
    client.get("/runs/r1")
    token = client.cookies.get("continuum_csrf")
    response = client.post("/runs/r1/retry", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 409
    assert "only a failed run can be retried" in response.text
    assert [r.run_id for r in journal.list_runs()] == ["r1"]
    assert journal.describe("r1").retried_to_run_id is None  # type: ignore[union-attr]


def test_schedule_actions_steer_the_schedule_and_send_the_browser_back_to_the_list(
    journal: InMemoryJournal,
) -> None:
    client = _client(journal, read_only=False)
    page = client.get("/schedules")
    assert 'action="/schedules/s1/resume"' in page.text and "/schedules/s1/pause" not in page.text
    token = client.cookies.get("continuum_csrf")
    resumed = client.post(
        "/schedules/s1/resume", data={"csrf_token": token}, follow_redirects=False
    )
    assert resumed.status_code == 303
    assert resumed.headers["location"] == "/schedules?done=resumed%20s1"
    assert not journal.get_schedule("s1").paused  # type: ignore[union-attr]
    triggered = client.post(
        "/schedules/s1/trigger", data={"csrf_token": token}, follow_redirects=False
    )
    assert triggered.status_code == 303
    run_id = journal.get_schedule("s1").last_run_id  # type: ignore[union-attr]
    assert run_id and run_id.startswith("s1@manual-")
    page = client.get(triggered.headers["location"])
    assert f'href="/runs/{run_id}"' in page.text and "triggered s1" in page.text
    listed = client.get("/api/schedules").json()["schedules"]
    assert [(s["schedule_id"], s["last_run_id"], s["last_run_status"]) for s in listed] == [
        ("s1", run_id, "runnable")
    ]


def test_with_no_schedules_the_page_says_how_to_make_one() -> None:
    app = Celery("empty", broker="memory://")
    app.conf.update(task_serializer="json", accept_content=["json"])
    client = TestClient(create_app(offline(Orchestrator(app, journal=InMemoryJournal()))))
    page = client.get("/schedules")
    assert page.status_code == 200
    assert "No schedules yet" in page.text and "orc.schedule(" in page.text
    assert client.get("/api/schedules").json() == {"schedules": []}


def test_mounted_under_a_prefix_every_link_and_redirect_keeps_it(
    journal: InMemoryJournal,
) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    inner = _client(journal, read_only=False).app
    client = TestClient(Starlette(routes=[Mount("/admin", app=inner)]))
    page = client.get("/admin/")
    assert page.status_code == 200
    assert 'href="/admin/runs/r1"' in page.text
    run_page = client.get("/admin/runs/r1")
    assert 'action="/admin/runs/r1/cancel"' in run_page.text
    token = client.cookies.get("continuum_csrf")
    done = client.post("/admin/runs/r1/cancel", data={"csrf_token": token}, follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith("/admin/runs/r1?done=")
    schedules = client.get("/admin/schedules")
    assert 'href="/admin/schedules"' in schedules.text
    assert 'action="/admin/schedules/s1/resume"' in schedules.text
    resumed = client.post(
        "/admin/schedules/s1/resume", data={"csrf_token": token}, follow_redirects=False
    )
    assert resumed.headers["location"].startswith("/admin/schedules?done=")


def test_pages_may_not_be_framed(journal: InMemoryJournal) -> None:
    page = _client(journal, read_only=False).get("/runs/r1")
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
