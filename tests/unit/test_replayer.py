"""Recorded histories replayed against the code: the reference deployment's, in CI.

The histories under ``tests/histories`` were recorded from real runs of the reference
workflows (``continuum -A tasks dev``, then ``continuum -A tasks runs history RUN_ID
--json``). They must keep replaying as ``tasks`` changes; a change that breaks one would
block every run of that kind in production.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import tasks
from orchestrator import NonDeterminismError, UnknownWorkflow
from orchestrator.cli import main
from orchestrator.engine.histories import HistoryError
from orchestrator.testing import WorkflowEnvironment, replay
from tests.histories import changed

HISTORIES = Path(__file__).parents[1] / "histories"
RECORDED = sorted(HISTORIES.glob("*.json"))
ROOT = Path(__file__).parents[2]


def test_histories_were_recorded() -> None:
    assert {p.stem for p in RECORDED} >= {"order-completed", "subscription-continued"}


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_a_recorded_history_replays_against_the_code_of_today(path: Path) -> None:
    replay(tasks.orc, path.read_text())


def test_a_history_from_the_test_kit_replays_as_events_and_as_json() -> None:
    with WorkflowEnvironment(tasks.orc) as env:
        run_id = env.start(tasks.order, "o-1", tasks.APPROVAL_THRESHOLD, ["piano"])
        env.signal(run_id, "approve", True)
        env.result(run_id)
        history = env.history(run_id)
    replay(tasks.orc, history)
    replay(tasks.orc, json.loads(json.dumps([vars(e) for e in history], default=str)))


def test_the_output_of_runs_show_json_replays_too() -> None:
    history = json.loads((HISTORIES / "order-approved.json").read_text())
    replay(tasks.orc, {"run": {"run_id": "order-approved"}, "history": history})
    replay(tasks.orc, json.dumps({"history": history}).encode())


def test_a_changed_workflow_fails_replay_naming_the_first_mismatch() -> None:
    with pytest.raises(NonDeterminismError) as caught:
        replay(changed.orc, (HISTORIES / "order-completed.json").read_text())
    assert str(caught.value) == (
        "run order-completed: nondeterminism at command 1: the workflow issued "
        "activity_scheduled tasks.charge (command 1), but history has activity_scheduled "
        "tasks.reserve_stock (command 1, seq 2)"
    )


def test_a_history_whose_workflow_is_gone_names_it() -> None:
    with pytest.raises(UnknownWorkflow, match="unknown workflow 'shipment'"):
        replay(changed.orc, (HISTORIES / "shipment-completed.json").read_text())


def event(seq: int, kind: str = "timer_fired", run_id: str = "r-1", **data: object) -> dict:
    return {
        "run_id": run_id,
        "seq": seq,
        "type": kind,
        "command_id": None,
        "attempt": None,
        "data": data,
        "at": "2030-01-01T00:00:00+00:00",
    }


START = event(1, "run_started", workflow="order", version="1", args=[])


@pytest.mark.parametrize(
    ("history", "detail"),
    [
        ("", "invalid JSON (Expecting value"),
        ("{}", "expected a list of events, got dict"),
        ([], "it has no events"),
        (["run_started"], "item 0 is a str, not an event object"),
        ([{"seq": 1}], "event 0 has no 'at'"),
        (
            [{**START, "type": "run_exploded"}],
            "event 0 is malformed ('run_exploded' is not a valid",
        ),
        ([event(1)], "it begins with timer_fired, not run_started"),
        ([event(1, "run_started", args=[])], "its run_started event names no workflow and version"),
        ([START, event(2, run_id="r-2")], "it mixes runs 'r-1' and 'r-2'"),
        ([START, event(3), event(2)], "event seq 2 follows seq 3"),
    ],
)
def test_what_is_not_a_history_is_refused_clearly(history: object, detail: str) -> None:
    with pytest.raises(HistoryError) as caught:
        replay(tasks.orc, history)
    assert str(caught.value).startswith(f"not a run history: {detail}")


# -- the command line ----------------------------------------------------------------------
def cli(app: str, *files: Path | str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-A", app, "replay", *map(str, files)])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, result.output


def test_the_cli_replays_every_recorded_history() -> None:
    code, output = cli("tasks", *RECORDED)
    assert code == 0, output
    assert output.count(": ok (") == len(RECORDED)
    assert "order-completed.json: ok (order v1, 10 events)" in output


def test_the_cli_exits_1_naming_each_history_that_does_not_replay() -> None:
    code, output = cli("tests.histories.changed", *RECORDED)
    assert code == 1
    assert (
        "order-completed.json: does not replay (order v1, 10 events): run order-completed: "
        "nondeterminism at command 1: the workflow issued activity_scheduled tasks.charge"
    ) in output
    assert "shipment-completed.json: does not replay (shipment v1, 6 events): unknown " in output


def test_the_cli_exits_2_for_a_file_that_is_not_a_history(tmp_path: Path) -> None:
    notes = tmp_path / "notes.json"
    notes.write_text('{"todo": "record histories"}')
    code, output = cli("tasks", HISTORIES / "order-completed.json", notes)
    assert code == 2
    assert f"{notes}: not a run history: expected a list of events, got dict" in output
    code, output = cli("tasks", tmp_path / "missing.json")
    assert code == 2 and "No such file or directory" in output


def test_the_installed_command_shows_a_mismatch_without_a_traceback() -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "continuum"),
            "-A",
            "tests.histories.changed",
            "replay",
            str(HISTORIES / "order-approved.json"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 1, done.stderr
    assert "nondeterminism at command 1" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
