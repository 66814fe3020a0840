"""``python -m bench``: run the scenarios, print the table, write the JSON file.

Scenarios run in a fixed order, each on its own fresh database and freshly started worker and
dispatcher (see :mod:`bench.cluster`). Whatever happens (an error, Ctrl-C, SIGTERM), the
processes are stopped, the database dropped and the Redis keys deleted.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from bench import (
    canvas,
    fanout,
    growth,
    idle,
    journal_step,
    latency,
    long_run,
    report,
    schedules,
    throughput,
    tracing,
)
from bench import metrics as metrics_scrape
from bench.cluster import CONCURRENCY, ROOT, Cluster
from bench.plan import Sizes
from bench.stats import Figures

Run = Callable[[Cluster, Sizes, set[str]], dict[str, Figures]]

#: Scenario groups in the order they run; a group measures several scenarios at once.
GROUPS: list[tuple[tuple[str, ...], Run]] = [
    (throughput.NAMES, throughput.run),
    (latency.NAMES, latency.run),
    (journal_step.NAMES, journal_step.run),
    (fanout.NAMES, fanout.run),
    (long_run.NAMES, long_run.run),
    (idle.NAMES, idle.run),
    (schedules.NAMES, schedules.run),
    (canvas.NAMES, canvas.run),
    (tracing.NAMES, tracing.run),
    (growth.NAMES, growth.run),
    (metrics_scrape.NAMES, metrics_scrape.run),
]
SCENARIOS = [name for names, _ in GROUPS for name in names]
RESULTS = ROOT / "bench" / "results"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmarks of Continuum on Postgres, Redis, Celery."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repetition, a 1,000-step long run and 2,000 idle waiting runs",
    )
    parser.add_argument(
        "--only", nargs="+", choices=SCENARIOS, metavar="NAME", help=f"of {', '.join(SCENARIOS)}"
    )
    parser.add_argument(
        "--json", type=Path, default=RESULTS / "latest.json", help="where to write the figures"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive,
        default=CONCURRENCY,
        help=f"pool processes of the worker, workflows and chains alike (default {CONCURRENCY})",
    )
    parser.add_argument(
        "--eager-activities",
        type=_whole,
        default=0,
        metavar="N",
        help="activities a worker process may run in place per message "
        "(orchestrator_eager_activities; default 0, every activity sent through the broker)",
    )
    parser.add_argument(
        "--tracing",
        action="store_true",
        help="also measure w10 with OpenTelemetry tracing off and on, in alternation "
        "(w10_untraced, w10_traced)",
    )
    parser.add_argument("--repeats", type=_positive, help="repetitions per figure (default 3)")
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every workload count (to try the harness out; figures are not comparable)",
    )
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    """A count of at least one (argparse names the option when this raises)."""
    return _whole(text, least=1)


def _whole(text: str, least: int = 0) -> int:
    """A whole number of at least ``least``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < least:
        raise argparse.ArgumentTypeError(f"must be at least {least}, not {value}")
    return value


def main(argv: list[str]) -> int:
    args = parse(argv)
    sizes = Sizes.quick() if args.quick else Sizes()
    if args.scale != 1.0:
        sizes = sizes.scaled(args.scale)
    if args.repeats:
        sizes = dataclasses.replace(sizes, repeats=args.repeats)
    wanted = set(args.only or [s for s in SCENARIOS if s not in tracing.NAMES])
    if args.tracing:
        wanted |= set(tracing.NAMES)
    command = shlex.join([".venv/bin/python", "-m", "bench", *argv])

    def terminate(signum: int, _frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
    # Ctrl-C raises KeyboardInterrupt even where SIGINT was inherited ignored (``cmd &``).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    env = report.environment(args.concurrency, args.eager_activities)
    results: dict[str, Figures] = {}
    cluster = Cluster(RESULTS, args.concurrency, args.eager_activities)
    try:
        for names, run in GROUPS:
            chosen = wanted.intersection(names)
            if not chosen:
                continue
            label = "+".join(n for n in names if n in chosen)
            print(f"{label}: starting a fresh database, worker and dispatcher", file=sys.stderr)
            cluster.fresh(label)
            measured = run(cluster, sizes, chosen)
            results.update({name: measured[name] for name in names if name in measured})
    finally:
        cluster.close()
    print(report.table(env, sizes, results, command))
    report.write_json(args.json, env, sizes, results, command)
    print(f"\nwritten to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
