"""Durable canvas: an existing chord, run as a durable run."""

import pytest
from celery import Celery, chord
from orchestrator import Orchestrator, WorkflowFailed

app = Celery("canvas")
orc = Orchestrator(app)

urls = ["https://example.com/a", "https://example.com/bb"]


@app.task
def fetch(url: str) -> int:
    if "broken" in url:
        raise ValueError(f"cannot fetch {url}")
    return len(url)


@app.task
def merge(sizes: list[int]) -> int:
    return sum(sizes)


def test_a_chord_runs_durably(workflows: Orchestrator) -> None:
    # --8<-- [start:chord]
    # before: plain Celery
    #   result = chord([fetch.s(url) for url in urls], merge.s()).apply_async()
    #   merged = result.get()
    # after: durable, with the same canvas
    handle = orc.start_canvas(chord([fetch.s(url) for url in urls], merge.s()))
    merged = orc.result(handle.run_id)
    # --8<-- [end:chord]
    assert merged == len(urls[0]) + len(urls[1])
    tasks = [e.data["task"] for e in orc.history(handle.run_id) if e.type == "activity_scheduled"]
    assert tasks == ["canvas.fetch", "canvas.fetch", "canvas.merge"]


def test_a_failed_canvas_raises_the_tasks_error(workflows: Orchestrator) -> None:
    handle = orc.start_canvas(chord([fetch.s("broken"), fetch.s("ok")], merge.s()))
    with pytest.raises(WorkflowFailed) as failed:
        handle.result(timeout=10)
    assert failed.value.error_type == "ValueError"
