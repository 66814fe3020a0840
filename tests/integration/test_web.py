"""The web view in a real browser (headless Chromium), on a real stack: Postgres journal,
Redis, a Celery worker and a dispatcher in their own processes.

What a user does there: find runs in the list and narrow it, read a failed run's page (its
timeline and its error), send a signal and cancel a live run with the page's forms, and be
refused by a read-only view. The metrics it serves are checked against the journal.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import sqlalchemy as sa

from orchestrator.model.errors import Cancelled, WorkflowFailed
from orchestrator.model.events import EventType
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
    notice = "var n = document.querySelector('.notice'); return n ? n.textContent : '';"
    wait_for(lambda: "signal" in browser.execute_script(notice), 10, "the page's notice")
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

    shot = tmp_path / "run-page.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copy(shot, ROOT / os.environ[SCREENSHOT_ENV])


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


def _has_event(
    cluster: Cluster, run_id: str, kind: EventType, command_id: int | None = None
) -> bool:
    return any(
        e.type is kind and (command_id is None or e.command_id == command_id)
        for e in cluster.orc.journal.history(run_id)
    )
