"""The web view in a real browser (headless Chromium), on a real stack: Postgres journal,
Redis, a Celery worker and a dispatcher in their own processes.

What a user does there: find runs in the list and narrow it, read a failed run's page (its
timeline and its error), send a signal and cancel a live run with the page's forms, and be
refused by a read-only view; see the schedules with their timing and next slot, pause,
resume and trigger one from its row, and follow it to the run it started. The metrics it
serves are checked against the journal.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from orchestrator.model.errors import Cancelled, WorkflowFailed
from orchestrator.model.events import EventType
from orchestrator.model.schedules import ScheduleInfo, UnknownSchedule
from tests.integration.cluster import Cluster, wait_for
from tests.integration.webserver import CHROMEDRIVER, CHROMIUM, chromium, serving

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
#: Where the run page's screenshot goes (the docs' image) when this is set.
SCREENSHOT_ENV = "CONTINUUM_WEB_SCREENSHOT"
#: Where the schedules page's screenshot goes when this is set.
SCHEDULES_SCREENSHOT_ENV = "CONTINUUM_WEB_SCHEDULES_SCREENSHOT"


@pytest.fixture(scope="module")
def site(cluster: Cluster) -> Iterator[str]:
    with serving(cluster.orc) as url:
        yield url


@pytest.fixture(scope="module")
def read_only_site(cluster: Cluster) -> Iterator[str]:
    with serving(cluster.orc, read_only=True) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with chromium(tmp_path_factory.mktemp("chromium-profile")) as driver:
        yield driver


def _stable(action: Callable[[], T]) -> T:
    """``action``, done again on a fresh lookup when the page's live refresh replaced the
    element it found (an open run's page swaps its content every 2 s)."""
    from selenium.common.exceptions import StaleElementReferenceException

    for _ in range(10):
        try:
            return action()
        except StaleElementReferenceException:
            continue
    return action()


@pytest.fixture
def schedules(cluster: Cluster) -> Iterator[Callable[..., str]]:
    """``orc.schedule`` for the test; the schedules it made are deleted afterwards."""
    made: list[str] = []

    def make(schedule_id: str, workflow: str, *args: Any, **options: Any) -> str:
        cluster.orc.schedule(schedule_id, workflow, *args, **options)
        made.append(schedule_id)
        return schedule_id

    yield make
    for schedule_id in made:
        with contextlib.suppress(UnknownSchedule):
            cluster.orc.delete_schedule(schedule_id)


def _css(driver: Any, selector: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(driver.find_elements(By.CSS_SELECTOR, selector))


def _listed(driver: Any) -> list[str]:
    return [a.text for a in _css(driver, "#runs td.id a")]


def test_the_list_shows_runs_and_filters_narrow_it(
    cluster: Cluster, site: str, browser: Any
) -> None:
    tag = uuid.uuid4().hex[:6]
    ok = [cluster.orc.start("sequential", 2, run_id=f"list-{tag}-ok-{i}").run_id for i in range(2)]
    bad = cluster.orc.start("failing", run_id=f"list-{tag}-bad").run_id
    assert cluster.orc.result(ok[0], timeout=60) == 1
    with pytest.raises(WorkflowFailed):
        cluster.orc.result(bad, timeout=60)

    browser.get(f"{site}/?q=list-{tag}")
    assert sorted(_listed(browser)) == sorted([*ok, bad])
    failed_row = _css(browser, '#runs tr[data-status="failed"]')
    assert len(failed_row) == 1 and "ValueError: the order is invalid" in failed_row[0].text

    # Narrow it with the page's own controls: the "failed" chip, then the run id box.
    [chip] = [c for c in _css(browser, ".chips a.chip") if c.text.startswith("failed")]
    chip.click()
    wait_for(lambda: "status=failed" in browser.current_url, 10, "the failed filter")
    assert bad in _listed(browser) and not set(ok) & set(_listed(browser))
    box = _css(browser, 'input[name="q"]')[0]
    box.clear()
    box.send_keys(f"list-{tag}-ok-1")
    _css(browser, "form.filters button")[0].click()
    wait_for(lambda: "q=list-" in browser.current_url, 10, "the run id filter")
    assert _listed(browser) == []  # still "failed" only: no failed run has that prefix
    _css(browser, ".chips a.chip")[0].click()  # All
    wait_for(lambda: _listed(browser) == [ok[1]], 10, "the list to show one run")


def test_a_failed_run_page_shows_its_timeline_and_its_error(
    cluster: Cluster, site: str, browser: Any, tmp_path: Path
) -> None:
    run_id = cluster.orc.start("checkout", f"web-{uuid.uuid4().hex[:6]}").run_id
    browser.get(f"{site}/runs/{run_id}")
    # The run waits for "approve": send it with the page's signal form.
    wait_for(lambda: _has_event(cluster, run_id, EventType.ACTIVITY_COMPLETED, 2), 60, "the charge")
    browser.get(f"{site}/runs/{run_id}")
    _stable(lambda: _css(browser, 'input[name="name"]')[0].send_keys("approve"))
    _stable(lambda: _css(browser, 'textarea[name="payload"]')[0].send_keys('{"by": "ops"}'))
    _stable(lambda: _css(browser, "form.action button")[0].click())
    wait_for(lambda: "signal" in _notice(browser), 10, "the page's notice")
    with pytest.raises(WorkflowFailed, match="ship failed"):
        cluster.orc.result(run_id, timeout=90)

    browser.get(f"{site}/runs/{run_id}")
    assert _css(browser, "#status")[0].text == "failed"
    failure = _css(browser, "#failure")[0].text
    assert "RuntimeError: ship failed" in failure and "Traceback" in failure
    rows = [
        (r.get_attribute("data-kind"), r.find_element("css selector", ".name").text)
        for r in _css(browser, ".tl-row")
    ]
    # Each compensation right after the activity it undoes.
    assert rows[:4] == [
        ("activity", "step"),
        ("compensation", "undo"),
        ("activity", "flaky"),
        ("compensation", "undo"),
    ]
    assert {"timer", "child", "signal"} <= {kind for kind, _ in rows}
    flaky = _css(browser, ".tl-row")[2]
    states = [b.get_attribute("class") for b in flaky.find_elements("css selector", ".tl-bar")]
    assert states == ["tl-bar failed", "tl-bar completed"]  # one bar per attempt
    history = _css(browser, "#history tbody tr")
    assert len(history) == len(cluster.orc.history(run_id))
    child = _css(browser, ".tl-row.child a.name")[0].get_attribute("href")
    assert child and child.startswith(f"{site}/runs/")

    _screenshot(browser, tmp_path / "run-page.png", SCREENSHOT_ENV)


def test_the_cancel_button_cancels_a_live_run(cluster: Cluster, site: str, browser: Any) -> None:
    run_id = cluster.orc.start("approval", 600).run_id
    browser.get(f"{site}/runs/{run_id}")
    assert _stable(lambda: _css(browser, "#status")[0].text) in ("runnable", "running", "suspended")
    _stable(lambda: _css(browser, 'input[name="reason"]')[0].send_keys("changed their mind"))
    _stable(lambda: _css(browser, "#cancel")[0].click())
    with pytest.raises(Cancelled):
        cluster.orc.result(run_id, timeout=60)
    # The open page refreshes itself (its script) and shows the run's end, with no reload.
    status = "return document.getElementById('status').textContent"  # never a stale element
    wait_for(lambda: browser.execute_script(status) == "cancelled", 15, "the page to refresh")
    assert _has_event(cluster, run_id, EventType.CANCEL_REQUESTED)


def test_a_read_only_view_refuses_to_cancel(
    cluster: Cluster, read_only_site: str, browser: Any
) -> None:
    run_id = cluster.orc.start("approval", 600).run_id
    browser.get(f"{read_only_site}/runs/{run_id}")
    assert not _stable(lambda: _css(browser, "#cancel")[0].is_enabled())
    # A user who enables the button anyway is refused by the server.
    enable_and_click = "var b = document.getElementById('cancel'); b.disabled = false; b.click();"
    browser.execute_script(enable_and_click)
    wait_for(lambda: _css(browser, "#refusal"), 10, "the refusal")
    assert "read-only" in _css(browser, "#refusal")[0].text
    assert not _has_event(cluster, run_id, EventType.CANCEL_REQUESTED)
    assert not cluster.orc.describe(run_id).status.terminal
    cluster.orc.cancel(run_id)  # leave nothing running


def test_the_schedules_page_lists_each_schedule_with_its_timing_and_next_slot(
    cluster: Cluster, site: str, browser: Any, schedules: Callable[..., str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    nightly = schedules(f"nightly-{tag}", "tick", cron="0 2 * * *", timezone="Europe/Paris")
    daily = schedules(
        f"daily-{tag}", "sequential", 3, every=86400, overlap="allow", catchup_window=300
    )
    browser.get(f"{site}/")
    [link] = [a for a in _css(browser, "header.top nav a") if a.text == "Schedules"]
    link.click()
    wait_for(lambda: browser.current_url == f"{site}/schedules", 10, "the schedules page")
    found = _schedules_by_id(cluster)

    row = _schedule_row(browser, nightly)
    assert row.get_attribute("data-state") == "active"
    assert _cell(row, "timing") == "0 2 * * *\nEurope/Paris"
    assert _cell(row, "overlap") == "skip" and _cell(row, "catchup") == "1 min"
    at, relative, in_paris = _cell(row, "next").split("\n")
    assert at == found[nightly].next_fire_at.strftime("%Y-%m-%d %H:%M:%S")
    assert relative.startswith("in ") and in_paris.split()[1] == "02:00"
    assert _cell(row, "last") == "none yet"

    row = _schedule_row(browser, daily)
    assert _cell(row, "workflow") == "sequential v1\n3"
    assert _cell(row, "timing") == "every 1 d"
    assert _cell(row, "overlap") == "allow" and _cell(row, "catchup") == "5 min"
    assert _cell(row, "next").startswith(found[daily].next_fire_at.strftime("%Y-%m-%d 00:00:00"))

    listed = httpx.get(f"{site}/api/schedules", timeout=10).json()["schedules"]
    [entry] = [s for s in listed if s["schedule_id"] == nightly]
    assert entry["spec"]["cron"] == "0 2 * * *" and entry["spec"]["timezone"] == "Europe/Paris"
    assert entry["paused"] is False and entry["last_run_id"] is None
    assert entry["next_fire_at"] == found[nightly].next_fire_at.isoformat()


def test_pause_and_resume_on_the_page_steer_the_schedule(
    cluster: Cluster, site: str, browser: Any, schedules: Callable[..., str]
) -> None:
    sid = schedules(f"pausable-{uuid.uuid4().hex[:6]}", "tick", every=86400)
    browser.get(f"{site}/schedules")
    _schedule_row(browser, sid).find_element("css selector", "button.pause").click()
    wait_for(lambda: _notice(browser) == f"paused {sid}", 10, "the page's notice")
    assert _schedules_by_id(cluster)[sid].paused
    row = _schedule_row(browser, sid)
    assert row.get_attribute("data-state") == "paused" and _cell(row, "next") == "\u2013"
    assert not row.find_elements("css selector", "button.pause")

    row.find_element("css selector", "button.resume").click()
    wait_for(lambda: _notice(browser) == f"resumed {sid}", 10, "the page's notice")
    info = _schedules_by_id(cluster)[sid]
    assert not info.paused and info.next_fire_at > datetime.now(UTC)
    assert _schedule_row(browser, sid).get_attribute("data-state") == "active"


def test_trigger_now_starts_a_run_the_page_links_to(
    cluster: Cluster, site: str, browser: Any, schedules: Callable[..., str], tmp_path: Path
) -> None:
    schedules("nightly-report", "tick", cron="0 2 * * *", timezone="Europe/Paris")
    inbox = schedules("poll-inbox", "sequential", 2, every=300, overlap="allow")
    cluster.orc.pause_schedule(inbox)
    ledger = schedules("sync-ledger", "tick", cron="0 3 1 * *", catchup_window=3600)
    browser.get(f"{site}/schedules")
    _schedule_row(browser, ledger).find_element("css selector", "button.trigger").click()
    wait_for(lambda: _notice(browser).startswith(f"triggered {ledger}"), 10, "the page's notice")
    run_id = _css(browser, ".notice a")[0].text
    assert run_id.startswith(f"{ledger}@manual-")
    assert _schedules_by_id(cluster)[ledger].last_run_id == run_id
    assert cluster.orc.result(run_id, timeout=60) == run_id

    browser.get(f"{site}/schedules")
    row = _schedule_row(browser, ledger)
    assert _cell(row, "last") == f"completed\n{run_id}"
    assert _schedule_row(browser, inbox).get_attribute("data-state") == "paused"
    _screenshot(browser, tmp_path / "schedules-page.png", SCHEDULES_SCREENSHOT_ENV, fit=True)
    row.find_element("css selector", "td.last a").click()
    wait_for(lambda: browser.current_url == f"{site}/runs/{run_id}", 10, "the run's page")
    assert _css(browser, "#status")[0].text == "completed"


def test_a_read_only_view_refuses_to_steer_schedules(
    cluster: Cluster, read_only_site: str, browser: Any, schedules: Callable[..., str]
) -> None:
    sid = schedules(f"watched-{uuid.uuid4().hex[:6]}", "tick", every=86400)
    browser.get(f"{read_only_site}/schedules")
    buttons = _schedule_row(browser, sid).find_elements("css selector", "button")
    assert buttons and not any(b.is_enabled() for b in buttons)
    # A user who enables a button anyway is refused by the server.
    for action in ("pause", "trigger"):
        browser.get(f"{read_only_site}/schedules")
        browser.execute_script(
            f"var b = document.querySelector('tr[data-id=\"{sid}\"] button.{action}');"
            " b.disabled = false; b.click();"
        )
        wait_for(lambda: _css(browser, "#refusal"), 10, "the refusal")
        assert "read-only" in _css(browser, "#refusal")[0].text
    info = _schedules_by_id(cluster)[sid]
    assert not info.paused and info.last_run_id is None
    assert not _runs_of(cluster, sid)


def test_steering_a_schedule_deleted_meanwhile_is_refused_by_name(
    cluster: Cluster, site: str, browser: Any, schedules: Callable[..., str]
) -> None:
    tag = uuid.uuid4().hex[:6]
    for action in ("pause", "trigger"):
        sid = schedules(f"gone-{action}-{tag}", "tick", every=86400)
        browser.get(f"{site}/schedules")
        cluster.orc.delete_schedule(sid)  # by someone else, while the page is open
        _schedule_row(browser, sid).find_element("css selector", f"button.{action}").click()
        wait_for(lambda: _css(browser, "#refusal"), 10, "the refusal")
        assert f"unknown schedule '{sid}'" in _css(browser, "#refusal")[0].text
        assert sid not in _schedules_by_id(cluster)
        assert not _runs_of(cluster, sid)


def test_metrics_match_the_journal(cluster: Cluster, site: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    run_id = cluster.orc.start("retrying", f"metrics-{uuid.uuid4().hex[:6]}", 1).run_id
    cluster.orc.result(run_id, timeout=60)
    text = httpx.get(f"{site}/metrics", timeout=10).text
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    with cluster.orc.journal.engine.connect() as conn:
        runs = conn.execute(
            sa.text("SELECT workflow, status, count(*) FROM runs GROUP BY workflow, status")
        ).all()
        # From the histories, independently of the tasks table the metrics read. The events a
        # retry copied from the run it retries (same seq and type there) are not its attempts.
        outcomes = conn.execute(
            sa.text(
                "SELECT s.data, o.type FROM events o JOIN events s ON s.run_id = o.run_id"
                " AND s.command_id = o.command_id AND s.attempt = o.attempt"
                " AND s.type IN ('activity_scheduled', 'compensation_scheduled')"
                " JOIN runs r ON r.run_id = o.run_id"
                " WHERE o.type IN ('activity_completed', 'activity_failed', 'activity_timed_out',"
                " 'compensation_completed', 'compensation_failed')"
                " AND NOT EXISTS (SELECT 1 FROM events c WHERE c.run_id = r.retried_from_run_id"
                " AND c.seq = o.seq AND c.type = o.type)"
            )
        ).all()
    closed = {"completed", "failed", "cancelled", "continued"}
    for workflow, status, n in runs:
        if status in closed:  # open runs may move between the two reads
            key = ("continuum_runs", (("status", status), ("workflow", workflow)))
            assert samples[key] == n, key
    import json

    expected: dict[tuple[str, str], int] = {}
    for data, kind in outcomes:
        outcome = {"completed": "completed", "failed": "failed"}.get(
            kind.split("_", 1)[1], "timed_out"
        )
        key = (json.loads(data)["task"], outcome)
        expected[key] = expected.get(key, 0) + 1
    for (task, outcome), n in expected.items():
        key = ("continuum_activity_attempts_total", (("outcome", outcome), ("task", task)))
        assert samples.get(key, 0) >= n, key  # attempts may end between the two reads
    flaky = "tests.integration.wfapp.flaky"
    assert samples[("continuum_activity_attempts_total", (("outcome", "failed"), ("task", flaky)))]
    count = samples[("continuum_step_duration_seconds_count", (("task", flaky),))]
    ended = sum(
        v
        for (name, labels), v in samples.items()
        if name == "continuum_activity_attempts_total" and ("task", flaky) in labels
    )
    assert count == ended
    assert samples[("continuum_timers_overdue", ())] >= 0
    assert samples[("continuum_outbox_unpublished", ())] >= 0


def _schedule_row(driver: Any, schedule_id: str) -> Any:
    [row] = _css(driver, f'#schedules tr.schedule[data-id="{schedule_id}"]')
    return row


def _cell(row: Any, name: str) -> str:
    return str(row.find_element("css selector", f"td.{name}").text)


def _notice(driver: Any) -> str:
    return str(
        driver.execute_script(
            "var n = document.querySelector('.notice'); return n ? n.textContent : '';"
        )
    )


def _schedules_by_id(cluster: Cluster) -> dict[str, ScheduleInfo]:
    return {s.schedule_id: s for s in cluster.orc.list_schedules()}


def _runs_of(cluster: Cluster, schedule_id: str) -> list[str]:
    runs = cluster.orc.list_runs(workflow="tick", limit=10_000)
    return [r.run_id for r in runs if r.run_id.startswith(f"{schedule_id}@")]


def _screenshot(browser: Any, shot: Path, env: str, fit: bool = False) -> None:
    """The page as shown (``fit``: the window made as tall as the page, so the picture ends
    where the page does), kept where ``env`` says (a path under the repository) if it is set."""
    if fit:
        size = browser.get_window_size()
        height = browser.execute_script(
            "return document.body.scrollHeight + window.outerHeight - window.innerHeight"
        )
        browser.set_window_size(size["width"], height)
    try:
        browser.save_screenshot(str(shot))
    finally:
        if fit:
            browser.set_window_size(size["width"], size["height"])
    assert shot.stat().st_size > 10_000
    if os.environ.get(env):
        shutil.copy(shot, ROOT / os.environ[env])


def _has_event(
    cluster: Cluster, run_id: str, kind: EventType, command_id: int | None = None
) -> bool:
    return any(
        e.type is kind and (command_id is None or e.command_id == command_id)
        for e in cluster.orc.journal.history(run_id)
    )
