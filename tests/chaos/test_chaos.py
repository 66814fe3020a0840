"""Faults survived: hundreds of workflows of every shape run while workers, dispatchers,
Redis and Postgres are killed, stopped and restarted under them.

Every run must end with the result its shape computes, every history and every link between
runs must hold (:mod:`tests.chaos.invariants_db`), and no activity may have run more often
than the attempts journaled for it. Two schedules fire through it all, and bursts of runs
under concurrency limits (one per workflow, one per key) are started among the others: no slot
may fire twice or be lost while a dispatcher could fire it, and no limit may be exceeded
(:mod:`tests.chaos.slots_and_limits`). ``CONTINUUM_CHAOS_RUNS`` (default 200) and
``CONTINUUM_CHAOS_SEED`` (printed) choose the workload and the fault schedule.

    .venv/bin/pytest -m chaos tests/chaos -x -s
"""

from __future__ import annotations

import math
import os
import random
import re
import signal
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import pytest

from orchestrator.model.events import EventType, RunStatus
from tests.chaos import chaosapp
from tests.chaos.conftest import Cluster, lease_pid, retrying, wait_for
from tests.chaos.invariants_db import (
    Execution,
    Executions,
    Report,
    check_runs,
    describe_run,
    read_executions,
    split_task_id,
)
from tests.chaos.slots_and_limits import (
    SlotRun,
    Timing,
    check_slots,
    failed_passes,
    most_at_once,
    nobody_up,
    place_held,
)

pytestmark = pytest.mark.chaos
T = TypeVar("T")

RUNS = int(os.environ.get("CONTINUUM_CHAOS_RUNS", "200"))
SEED = int(os.environ.get("CONTINUUM_CHAOS_SEED", "20241124"))
#: Seconds over which the runs are started (the faults fall in the same window).
WINDOW = max(20.0, RUNS * 0.35)
#: Seconds every run has to end after the last fault.
RECOVERY_DEADLINE = 240.0

SHAPES = {
    "seq": 20,
    "fan": 15,
    "family": 8,
    "saga": 15,
    "waiter": 14,
    "counter": 14,
    "relay": 14,
}
#: Schedules written when the chaos begins, paused when the faults are over: (every, overlap,
#: seconds its activity takes). The slower one is still running at its next slot, often.
SCHEDULES = {
    "tick-allow": (2.0, "allow", 0.05),
    "tick-skip": (1.0, "skip", 1.5),
}
#: Limited runs started in bursts of this many (a burst is more than the limit admits).
BURST = 5
KINDS = (
    "kill_worker_mid_activity",
    "kill_worker_mid_replay",
    "stop_worker_holding_lease",
    "kill_dispatcher",
    "restart_redis",
    "restart_postgres",
)
TERMINAL = ("completed", "failed", "cancelled", "continued")
OUTCOMES = (
    EventType.ACTIVITY_COMPLETED,
    EventType.ACTIVITY_FAILED,
    EventType.ACTIVITY_TIMED_OUT,
    EventType.COMPENSATION_COMPLETED,
    EventType.COMPENSATION_FAILED,
)


# -- the workload ----------------------------------------------------------------------------
@dataclass
class Planned:
    """One run to start, what to send it, and what it must end with."""

    run_id: str
    shape: str
    args: list[Any]
    at: float
    signals: list[tuple[float, Any]] = field(default_factory=list)
    status: RunStatus = RunStatus.COMPLETED
    result: Any = None
    error: str | None = None

    @property
    def workflow(self) -> str:
        return f"chaos.{self.shape}"


def plan_runs(rng: random.Random, n: int, window: float) -> list[Planned]:
    shapes = rng.choices(list(SHAPES), weights=list(SHAPES.values()), k=n)
    planned = []
    for i, shape in enumerate(shapes):
        run_id = f"c{SEED}-{i:04d}-{shape}"
        at = window * i / n
        # Some runs' activities take a while, so a kill can catch one mid-flight (every 10th
        # run is a slow sequence, so there is one at any time); the load stays well below
        # what two workers of two processes can take.
        seconds = rng.choice([0.0, 0.0, 0.0, 0.05, 0.05, 0.05, 0.05, rng.uniform(0.5, 1.2)])
        if i % 10 == 5:
            shape, seconds = "seq", rng.uniform(0.8, 1.2)
            run_id = f"c{SEED}-{i:04d}-{shape}"
        if shape == "seq":
            steps, base = rng.randint(2, 4), rng.randint(0, 100)
            p = Planned(run_id, shape, [steps, base, seconds], at)
            p.result = base + sum(range(steps))
        elif shape == "fan":
            width = rng.randint(3, 5)
            p = Planned(run_id, shape, [width, seconds], at, result=[2 * k for k in range(width)])
        elif shape == "family":
            base = rng.randint(0, 100)
            p = Planned(run_id, shape, [base], at, result=[base + 1, [0, 2, 4], 3])
        elif shape == "saga":
            fail_at = rng.choice([None, 1, 2, 2])
            p = Planned(run_id, shape, [run_id, fail_at, seconds], at)
            if fail_at is None:
                p.result = "shipped"
            else:
                p.status = RunStatus.FAILED
                p.error = f"StepFailed: {run_id}: {chaosapp.SAGA_STEPS[fail_at]} failed"
        elif shape == "waiter":
            count = rng.randint(1, 3)
            delays = sorted(rng.uniform(0.0, 6.0) for _ in range(count))
            payloads = [{"n": k, "run": run_id} for k in range(count)]
            p = Planned(run_id, shape, [count], at, list(zip(delays, payloads, strict=True)))
            p.result = payloads
        elif shape == "counter":
            steps = rng.randint(2, 4)
            p = Planned(run_id, shape, [steps, 0], at, result=sum(range(steps + 1)))
        else:  # relay: the signal goes to the chain's first run, early or late
            payload = f"relayed to {run_id}"
            p = Planned(run_id, shape, [0], at, [(rng.choice([0.0, 0.3, 1.0, 3.0]), payload)])
            p.result = payload
        planned.append(p)
    return planned


def plan_limited(rng: random.Random, n: int, window: float) -> list[Planned]:
    """``n`` runs of the workflow limited to :data:`chaosapp.LIMITED` at once, about half
    as many limited to :data:`chaosapp.KEYED` per customer, and a few parents of two
    children each under the first limit, started in bursts spread over the window (numbered
    after the other runs)."""
    planned = []
    shapes = ["limited"] * n + ["keyed"] * max(4, n // 2) + ["limited_parent"] * max(2, n // 4)
    bursts = math.ceil(len(shapes) / BURST)
    for i, shape in enumerate(shapes):
        run_id = f"c{SEED}-{RUNS + i:04d}-{shape}"
        at = window * (i // BURST + 1) / (bursts + 1)
        base, seconds = rng.randint(0, 100), rng.uniform(0.3, 0.9)
        args: list[Any] = [base, seconds]
        if shape == "keyed":
            args.insert(0, rng.choice(["ann", "bob"]))
        result = 2 * base + 5 if shape == "limited_parent" else base + 2
        planned.append(Planned(run_id, shape, args, at, result=result))
    return planned


class Traffic(threading.Thread):
    """Starts the runs and sends their signals on schedule, retrying through outages."""

    def __init__(self, cluster: Cluster, planned: list[Planned], t0: float) -> None:
        super().__init__(name="chaos-traffic", daemon=True)
        self.cluster, self.t0 = cluster, t0
        actions: list[tuple[float, int, Callable[[], None]]] = []
        for p in planned:
            actions.append((p.at, len(actions), self._starter(p)))
            for k, (delay, payload) in enumerate(p.signals):
                actions.append((p.at + delay, len(actions), self._signaller(p, k, payload)))
        self.actions = sorted(actions)
        self.errors: list[str] = []

    def _starter(self, p: Planned) -> Callable[[], None]:
        def start() -> None:
            self.cluster.orc.start(p.workflow, *p.args, run_id=p.run_id)

        start.__name__ = f"start {p.run_id}"
        return start

    def _signaller(self, p: Planned, k: int, payload: Any) -> Callable[[], None]:
        def send() -> None:
            self.cluster.orc.signal(p.run_id, "go", payload, signal_id=f"{p.run_id}-{k}")

        send.__name__ = f"signal {k} to {p.run_id}"
        return send

    def run(self) -> None:
        for at, _, action in self.actions:
            pause = self.t0 + at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                retrying(action, action.__name__, timeout=90)
            except AssertionError as exc:
                self.errors.append(str(exc))


# -- the faults ------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    at: float
    began: float = 0.0
    ended: float = 0.0
    detail: str = ""
    skipped: bool = False


class NoTarget(Exception):
    """Nothing left for a fault to hit: the workload is over."""


class Injector(threading.Thread):
    """Injects the scheduled faults one after another and restarts what it killed."""

    def __init__(self, cluster: Cluster, rng: random.Random, t0: float) -> None:
        super().__init__(name="chaos-injector", daemon=True)
        self.cluster, self.rng, self.t0 = cluster, rng, t0
        # Each kind once, in a seeded order, then a few more of any kind.
        kinds = rng.sample(KINDS, len(KINDS)) + [
            rng.choice(KINDS) for _ in range(int(WINDOW // 14))
        ]
        slots = len(kinds)
        self.faults = [
            Fault(kind, 3.0 + (WINDOW - 3.0) * k / slots + rng.uniform(0, 2))
            for k, kind in enumerate(kinds)
        ]
        self.done: list[Fault] = []
        self.errors: list[str] = []
        #: (worker, run id) whose lease was taken over while the worker was stopped.
        self.fenced: list[tuple[str, str]] = []
        self.settings = cluster.settings

    def run(self) -> None:
        for fault in self.faults:
            pause = self.t0 + fault.at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            fault.began = time.monotonic()
            try:
                fault.detail = getattr(self, fault.kind)()
            except NoTarget as exc:
                fault.detail = f"skipped ({exc})"
                fault.skipped = True
            except Exception as exc:
                self.errors.append(f"{fault.kind} at +{fault.began - self.t0:.1f}s: {exc}")
                traceback.print_exc()
                self._heal()
            fault.ended = time.monotonic()
            self.done.append(fault)
            print(f"  +{fault.began - self.t0:6.1f}s {fault.kind}: {fault.detail}", flush=True)

    def _aim(self, find: Callable[[], T | None], what: str, every: float = 0.1) -> T:
        """Wait (30s at most) for something to hit; :class:`NoTarget` when the work is all
        done meanwhile (a fault delayed the schedule past the workload)."""
        try:
            return wait_for(find, 30, what, every=every)
        except AssertionError:
            if unfinished(self.cluster) == 0:
                raise NoTarget(f"waited 30s for {what}, but every run has ended") from None
            raise

    def _heal(self) -> None:
        """After a fault went wrong: nothing stays stopped (the supervisor restarts the dead)."""
        for node in self.cluster.nodes.values():
            if node.alive:
                assert node.proc is not None
                os.killpg(node.proc.pid, signal.SIGCONT)

    def _pause(self) -> float:
        return self.rng.uniform(0.5, 2.0)

    def _kill_and_restart(self, name: str) -> None:
        with self.cluster.holding(name):
            self.cluster.signal(name, signal.SIGKILL)
            time.sleep(self._pause())
            retrying(lambda: self.cluster.start(name), f"restart {name}", 120)

    def kill_worker_mid_activity(self) -> str:
        """``kill -9`` a worker while one of its processes is inside a slow activity."""

        def victim() -> tuple[str, Execution] | None:
            now = time.time()
            for path in self.cluster.effects.glob("*.log"):
                name = self.cluster.node_of_pid(int(path.stem))
                if name is None or not name.startswith("w"):
                    continue
                for execution in read_executions_of(path):
                    left = execution.started_at + execution.seconds - now
                    if execution.seconds >= 0.5 and left > 0.2 and now > execution.started_at:
                        return name, execution
            return None

        name, execution = self._aim(victim, "an activity in flight")
        self._kill_and_restart(name)
        return f"{name} killed inside {execution.task_name} {execution.task_id}"

    def kill_worker_mid_replay(self) -> str:
        """``kill -9`` the lingering worker while it holds a run's lease (inside a replay)."""
        run_id, owner, _ = self._lease_held_by("w2")
        self._kill_and_restart("w2")
        return f"w2 killed while {owner} held the lease of {run_id}"

    def _lease_held_by(self, name: str) -> tuple[str, str, int]:
        """A lease that a process of ``name`` took within the last fraction of a second: its
        holder is inside a replay (an older lease may be one whose holder failed and left it
        to expire)."""
        ttl = float(self.settings["lease_ttl"])

        def held() -> tuple[str, str, int] | None:
            now = time.time()
            for row in self.cluster.leases():
                pid = lease_pid(row.lease_owner)
                fresh = row.lease_expires_at - now > ttl - 0.3
                if fresh and pid is not None and self.cluster.node_of_pid(pid) == name:
                    return row.run_id, row.lease_owner, row.lease_token
            return None

        return self._aim(held, f"{name} to take a lease", every=0.02)

    def stop_worker_holding_lease(self) -> str:
        """SIGSTOP a worker inside a replay until another worker has taken the run over,
        then SIGCONT it: its late commit must be fenced off (``LeaseLost``, logged)."""
        name = "w2"
        with self.cluster.holding(name):
            for _ in range(20):
                run_id, owner, token = self._lease_held_by(name)
                self.cluster.signal(name, signal.SIGSTOP)
                stopped = time.monotonic()
                [row] = self.cluster.query(
                    "SELECT lease_owner, lease_token FROM runs WHERE run_id = :r", r=run_id
                )
                if (row.lease_owner, row.lease_token) == (owner, token):
                    break
                self.cluster.signal(name, signal.SIGCONT)  # it committed before the stop
            else:
                raise AssertionError(f"{name} never stopped while holding a lease")
            try:
                try:
                    wait_for(
                        lambda: self.cluster.query(
                            "SELECT 1 FROM runs WHERE run_id = :r AND lease_token > :t",
                            r=run_id,
                            t=token,
                        ),
                        20,
                        f"another worker to take {run_id} over",
                        every=0.1,
                    )
                except AssertionError as exc:
                    raise AssertionError(f"{exc}\n{self.cluster.diagnose(run_id)}") from None
                ttl = float(self.settings["lease_ttl"])
                time.sleep(max(0.0, stopped + ttl - time.monotonic()))
            finally:
                self.cluster.signal(name, signal.SIGCONT)
            held_for = time.monotonic() - stopped
            line = f"run {run_id}: lease lost before commit"
            wait_for(lambda: line in self.cluster.log_text(name), 20, f"{name} to log {line!r}")
        self.fenced.append((name, run_id))
        return (
            f"{name} stopped {held_for:.1f}s inside a replay of {run_id} (token {token}); "
            "its commit was fenced off"
        )

    def kill_dispatcher(self) -> str:
        name = self.rng.choice(["d1", "d2"])
        self._kill_and_restart(name)
        return f"{name} killed and restarted"

    def restart_redis(self) -> str:
        down = self._pause()
        self.cluster.redis.restart_empty(down_for=down)
        return f"killed, restarted empty after {down:.1f}s"

    def restart_postgres(self) -> str:
        assert self.cluster.pg is not None
        down = self._pause()
        self.cluster.pg.restart(down_for=down)
        return f"fast shutdown, started again after {down:.1f}s"


def read_executions_of(path: Any) -> list[Execution]:
    """Executions started in one process's effect file and not finished (yet)."""
    open_: dict[str, Execution] = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts[0] == "S":
            open_[parts[1]] = Execution(
                parts[1], parts[2], int(parts[3]), float(parts[4]), float(parts[5])
            )
        elif parts[0] == "E":
            open_.pop(parts[1], None)
    return list(open_.values())


# -- the checks ------------------------------------------------------------------------------
def unfinished(cluster: Cluster) -> int:
    [row] = cluster.query(
        "SELECT count(*) AS n FROM runs WHERE NOT (status = ANY(:terminal))",
        terminal=list(TERMINAL),
    )
    return int(row.n)


def check_outcome(cluster: Cluster, p: Planned, report: Report) -> str | None:
    """What is wrong with how the run ended (``None``: it ended as its shape says)."""
    journal = cluster.orc.journal
    tip = journal.resolve_tip(p.run_id)
    info = journal.describe(tip) if tip else None
    if info is None:
        return "never created"
    if info.status is not p.status:
        return f"ended {info.status} ({info.result!r} {info.error!r}), expected {p.status}"
    if p.status is RunStatus.COMPLETED and info.result != p.result:
        return f"result {info.result!r}, expected {p.result!r}"
    if p.error is not None:
        message = (info.error or {}).get("message", "")
        if p.error not in message:
            return f"error {message!r}, expected {p.error!r}"
    if p.shape == "saga":
        fail_at = p.args[1]
        done = [] if fail_at is None else list(chaosapp.SAGA_STEPS[:fail_at])
        history = report.histories.get(tip, [])
        undone = [e.data["args"][1] for e in history if e.type is EventType.COMPENSATION_SCHEDULED]
        completed = sum(e.type is EventType.COMPENSATION_COMPLETED for e in history)
        if undone != done[::-1] or completed != len(done):
            return f"compensations {undone} ({completed} completed), expected {done[::-1]}"
    return None


def killed_attempts_timed_out(report: Report, executions: Executions) -> list[str]:
    """Each execution that never finished (its worker was killed) was journaled as timed
    out, unless the same attempt ran again and finished (which the attempt counts catch)."""
    problems = []
    for execution in executions.open:
        if executions.finished[execution.task_id]:
            continue
        run_id, command_id, attempt = split_task_id(execution.task_id)
        outcomes = [
            e
            for e in report.histories.get(run_id, [])
            if (e.command_id, e.attempt) == (command_id, attempt) and e.type in OUTCOMES
        ]
        if len(outcomes) != 1:
            problems.append(f"{execution.task_id} killed: outcomes {outcomes}")
            continue
        error_type = (outcomes[0].data.get("error") or {}).get("type")
        if outcomes[0].type is not EventType.ACTIVITY_TIMED_OUT and error_type != "TimeoutError":
            problems.append(f"{execution.task_id} killed, but journaled {outcomes[0].type}")
    return problems


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "chaos_cluster",
    [{}, {"eager_activities": 5}],
    indirect=True,
    ids=["by-message", "in-place"],
)
def test_workflows_survive_killed_stopped_and_restarted_processes_and_servers(
    chaos_cluster: Cluster,
) -> None:
    cluster = chaos_cluster
    began = time.monotonic()
    rng = random.Random(SEED)
    planned = plan_runs(rng, RUNS, WINDOW)
    planned += plan_limited(random.Random(SEED + 2), max(6, RUNS // 10), WINDOW)
    print(f"\nchaos: seed {SEED}, {RUNS} runs over {WINDOW:.0f}s, workdir {cluster.workdir}")
    print(f"  shapes: {dict(Counter(p.shape for p in planned))}")
    first_slots = {
        sid: retrying(
            partial(cluster.orc.schedule, sid, "chaos.tick", seconds, every=every, overlap=overlap),
            f"write schedule {sid}",
        ).next_fire_at.timestamp()
        for sid, (every, overlap, seconds) in SCHEDULES.items()
    }

    t0 = time.monotonic()
    epoch = time.time() - t0  # monotonic + epoch: the wall clock the journal keeps
    traffic = Traffic(cluster, planned, t0)
    injector = Injector(cluster, random.Random(SEED + 1), t0)
    traffic.start()
    injector.start()
    injector.join(timeout=WINDOW + 300)
    traffic.join(timeout=120)
    assert not injector.is_alive(), "the fault injector did not finish"
    assert not traffic.is_alive(), "the runs were not all started and signalled"
    last_fault = max([t0] + [f.ended for f in injector.done if not f.skipped])
    # Slots whose time to be fired is over before the pause must all be accounted for.
    paused_at = time.time()
    for sid in SCHEDULES:
        retrying(partial(cluster.orc.pause_schedule, sid), f"pause {sid}")

    # Every run ends, within a deadline counted from the last fault.
    deadline = last_fault + RECOVERY_DEADLINE
    while True:
        try:
            left = unfinished(cluster)
        except Exception:
            left = -1
        if left == 0:
            break
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    recovered = time.monotonic()
    # Copies of messages still queued would run later: count executions once all is quiet.
    try:
        stranded: int | None = cluster.wait_quiet(60)
    except AssertionError:
        stranded = None

    executions = read_executions(cluster.effects)
    slot_runs = cluster.query(
        "SELECT run_id, created_at, closed_at FROM runs WHERE workflow = 'chaos.tick'"
    )
    for row in slot_runs:
        seconds = SCHEDULES[row.run_id.partition("@")[0]][2]
        planned.append(Planned(row.run_id, "tick", [seconds], 0.0, result=2))
    report = check_runs(cluster.url, [p.run_id for p in planned], executions)
    stuck = [i for i in report.runs.values() if not i.status.terminal]
    wrong = {
        p.run_id: why
        for p in planned
        if (why := retrying(lambda p=p: check_outcome(cluster, p, report), "read a run's end"))
    }
    killed = killed_attempts_timed_out(report, executions)
    all_runs = {r.run_id for r in cluster.query("SELECT run_id FROM runs")}
    strays = sorted(all_runs - set(report.runs))
    lease_lost = sum(cluster.log_text(n).count("lease lost before commit") for n in ("w1", "w2"))
    by_kind = Counter(f.kind for f in injector.done if f.detail and not f.skipped)
    down = dispatchers_down(cluster, injector.done, epoch)
    slot_reports = [
        check_slots(
            sid,
            Timing(every, 60.0, overlap),
            first_slots[sid],
            paused_at,
            [
                SlotRun(r.run_id, r.created_at, r.closed_at)
                for r in slot_runs
                if r.run_id.startswith(f"{sid}@")
            ],
            down,
        )
        for sid, (every, overlap, _) in SCHEDULES.items()
    ]
    limits = check_limits(planned, report)
    ended = time.monotonic()

    print(f"chaos figures (seed {SEED}):")
    print(f"  runs started: {len(planned)}; runs in the journal: {len(all_runs)}")
    print(f"  faults injected: {sum(by_kind.values())} {dict(sorted(by_kind.items()))}")
    print(
        f"  activity attempts journaled: {report.attempts}; executions: {report.executions}; "
        f"outcomes from executions: {report.executed_outcomes}"
    )
    print(
        f"  duplicate executions (beyond 1 per journaled outcome): "
        f"{report.duplicate_executions} (killed mid-flight: {len(executions.open)}, "
        f"attempts run more than once: {report.same_attempt_reruns})"
    )
    print(
        f"  fenced commits logged (lease lost before commit): {lease_lost} "
        f"(of them after a stop: {len(injector.fenced)})"
    )
    print(f"  messages left unacknowledged by killed workers: {stranded}")
    print(f"  executions run in place: {executions.in_place}")
    print(
        f"  no dispatcher up: {sum(b - a for a, b in down):.1f}s in {len(down)} intervals "
        f"{[(round(a - epoch - t0, 1), round(b - a, 1)) for a, b in down]}"
    )
    for slots in slot_reports:
        print(f"  schedule {slots.summary()}")
    for line in limits.figures:
        print(f"  limit {line}")
    for node in cluster.nodes.values():
        for crash in node.crashes:
            print(f"  supervisor restarted {node.name}: {crash}")
    if left == 0:
        print(f"  time to recover after the last fault: {recovered - last_fault:.1f}s")
    else:
        print(f"  NOT recovered {RECOVERY_DEADLINE:.0f}s after the last fault: {left} unfinished")
    print(f"  total time: {ended - began:.1f}s (checks {ended - recovered:.1f}s)")

    problems: list[str] = []
    problems += [f"injector: {e}" for e in injector.errors]
    problems += [f"traffic: {e}" for e in traffic.errors]
    problems += [f"fault {k} never injected" for k in KINDS if not by_kind[k]]
    if cluster.settings.get("eager_activities") and not executions.in_place:
        problems.append("no activity ran in place")
    problems += [f"{i.run_id}: still {i.status} ({i.reason})" for i in stuck]
    if stranded is None:
        problems.append(
            f"not quiet 60s after the runs ended: broker {cluster.broker_state()[0]}, "
            f"activities running {cluster.running_activities()}"
        )
    problems += [f"{run_id}: {why}" for run_id, why in wrong.items()]
    problems += killed
    problems += [f"{r}: in the journal but linked to no run started" for r in strays]
    problems += report.problems
    problems += [p for slots in slot_reports for p in slots.problems]
    problems += limits.problems
    if problems:
        shown_runs = list(wrong)[:2] + [i.run_id for i in stuck][:2]
        tips = [cluster.orc.journal.resolve_tip(r) for r in list(wrong)[:2]]
        shown_runs += [t for t in tips if t and t not in shown_runs]
        evidence = [describe_run(report, r) for r in shown_runs]
        pytest.fail(
            f"{len(problems)} problems (seed {SEED}, logs in {cluster.workdir}):\n  "
            + summarise(problems)
            + "\n"
            + "\n".join(evidence),
            pytrace=False,
        )


def dispatchers_down(
    cluster: Cluster, faults: list[Fault], epoch: float
) -> list[tuple[float, float]]:
    """When no dispatcher could make a pass (wall clock): each dispatcher is down while it is
    killed, while Postgres or Redis restarts, and while its log shows its passes failing and
    backing off; the intervals all of them were down at once."""
    per: dict[str, list[tuple[float, float]]] = {}
    for name in ("d1", "d2"):
        spans = failed_passes(cluster.log_text(name))
        for f in faults:
            hits = f.kind in ("restart_postgres", "restart_redis") or (
                f.kind == "kill_dispatcher" and f.detail.startswith(name)
            )
            if hits and not f.skipped:
                spans.append((f.began + epoch, f.ended + epoch))
        per[name] = spans
    return nobody_up(per)


@dataclass
class Limits:
    problems: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)


def check_limits(planned: list[Planned], report: Report) -> Limits:
    """No more of a limited workflow's runs (per key) held a place at once than its limit."""
    out = Limits()
    groups: dict[str, list[tuple[float, float]]] = {}
    limit_of = {}
    held: list[tuple[str, str]] = []  # (run id, its limit's key)
    for p in planned:
        if p.shape == "limited_parent":  # its children hold places of chaos.limited
            history = report.histories.get(p.run_id, [])
            held += [
                (str(e.data["child_run_id"]), "limited")
                for e in history
                if e.type is EventType.CHILD_STARTED
            ]
        elif p.shape in ("limited", "keyed"):
            held.append((p.run_id, p.shape if p.shape == "limited" else f"keyed {p.args[0]}"))
    for run_id, key in held:
        limit_of[key] = chaosapp.KEYED if key.startswith("keyed") else chaosapp.LIMITED
        span = place_held(report.histories.get(run_id, []))
        if span is None:
            out.problems.append(f"{run_id}: no activity outcome or no end in its history")
            continue
        groups.setdefault(key, []).append(span)
    for key, spans in sorted(groups.items()):
        peak, when = most_at_once(spans)
        out.figures.append(
            f"{key}: {len(spans)} runs, at most {peak} at once (limit {limit_of[key]})"
        )
        if peak > limit_of[key]:
            out.problems.append(
                f"{key}: {peak} runs held a place at once at {when:.3f}, limit {limit_of[key]}"
            )
    return out


def summarise(problems: list[str], examples: int = 3) -> str:
    """Problems grouped by kind (ids and numbers masked), the biggest group first."""
    groups: dict[str, list[str]] = {}
    for problem in problems:
        head = problem.splitlines()[0]
        key = re.sub(r"c\d+-\d{4}-\w+|[0-9a-f]{32}|\d+(\.\d+)?", "#", head)[:160]
        groups.setdefault(key, []).append(problem)
    lines = []
    for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"{len(items)} x {key}")
        lines += [f"    e.g. {item[:400]}" for item in items[:examples]]
    return "\n  ".join(lines)
