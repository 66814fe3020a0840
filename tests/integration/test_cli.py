"""The CLI driven as a user drives it: a subprocess, on real Postgres and Redis."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.integration.cluster import APP, BIN, ROOT, Cluster, wait_for


def cli(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "continuum"), "-A", APP, *args],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_a_whole_lifecycle_through_the_cli(cluster: Cluster) -> None:
    run_id = f"cli-{uuid.uuid4().hex[:8]}"
    started = cli(cluster, "start", "approval", "--args", "[30]", "--run-id", run_id)
    assert started.returncode == 0, started.stderr
    assert started.stdout.strip() == run_id

    for who in ("ann", "bob"):
        sent = cli(cluster, "signal", run_id, "approve", "--payload", json.dumps({"by": who}))
        assert sent.returncode == 0, sent.stderr
    result = cli(cluster, "result", run_id, "--timeout", "30")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [{"by": "ann"}, {"by": "bob"}]

    shown = cli(cluster, "runs", "show", run_id)
    assert shown.returncode == 0, shown.stderr
    assert "status    completed" in shown.stdout
    assert shown.stdout.count("signal_received") == 2
    assert "run_completed" in shown.stdout

    as_json = json.loads(cli(cluster, "runs", "show", run_id, "--json").stdout)
    assert as_json["run"]["status"] == "completed"
    assert [e["seq"] for e in as_json["history"]] == list(range(1, len(as_json["history"]) + 1))
    listed = json.loads(cli(cluster, "runs", "list", "--workflow", "approval", "--json").stdout)
    assert run_id in [r["run_id"] for r in listed]
    history = cli(cluster, "runs", "history", run_id)
    assert history.stdout.splitlines()[0].split()[2] == "run_started"

    # Cancel a run that waits, through the Celery subcommand this time.
    other = cli(cluster, "start", "approval", "--args", "[600]").stdout.strip()
    wait_for(
        lambda: "timer_started" in cli(cluster, "runs", "history", other).stdout,
        30,
        "the run to wait",
    )
    cancelled = subprocess.run(
        [str(BIN / "celery"), "-A", APP, "orchestrator", "cancel", other, "--reason", "test"],
        cwd=ROOT,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cancelled.returncode == 0, cancelled.stderr
    failed = cli(cluster, "result", other, "--timeout", "30")
    assert failed.returncode == 1
    assert "cancelled" in failed.stderr


def test_user_mistakes_exit_non_zero_with_one_line_and_no_traceback(cluster: Cluster) -> None:
    cases = [
        (("runs", "show", "no-such-run"), "unknown run 'no-such-run'"),
        (("result", "no-such-run", "--timeout", "1"), "unknown run 'no-such-run'"),
        (("signal", "no-such-run", "approve"), "unknown run 'no-such-run'"),
        (("start", "no-such-workflow"), "unknown workflow 'no-such-workflow'"),
        (("start", "approval", "--args", "[30"), "--args is not valid JSON"),
        (("start", "approval", "--args", '{"a": 1}'), "--args must be a JSON list"),
        (("signal", "x", "approve", "--payload", "{"), "--payload is not valid JSON"),
        (("runs", "list", "--status", "sleeping"), "unknown status 'sleeping'"),
    ]
    for args, message in cases:
        done = cli(cluster, *args)
        assert done.returncode != 0, args
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr, (args, done.stderr)
