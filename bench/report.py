"""The environment a result was measured in, the printed table and the JSON file."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import textwrap
from importlib import metadata
from pathlib import Path
from typing import Any

import psycopg
import redis

from bench.cluster import BROKER, ROOT, SERVER
from bench.plan import Sizes
from bench.stats import Figures


def environment(concurrency: int, eager_activities: int = 0) -> dict[str, Any]:
    """Machine, versions and worker settings, for the table's header and the JSON file."""
    with psycopg.connect(SERVER, autocommit=True) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    postgres = row[0] if row else "?"
    client = redis.Redis.from_url(BROKER)
    try:
        redis_version = str(client.info("server").get("redis_version", "?"))
    finally:
        client.close()
    return {
        "machine": {
            "nproc": len(os.sched_getaffinity(0)),
            "memory_gib": round(_meminfo_kib("MemTotal") / 2**20, 1),
            "cpu": _cpu_model(),
            "kernel": platform.release(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "versions": {
            "python": platform.python_version(),
            "celery": metadata.version("celery"),
            "kombu": metadata.version("kombu"),
            "sqlalchemy": metadata.version("sqlalchemy"),
            "psycopg": metadata.version("psycopg"),
            "postgres": postgres,
            "redis": redis_version,
            "continuum": f"{metadata.version('continuum-orchestrator')} ({_git_revision()})",
        },
        "worker": f"prefork -c {concurrency}, prefetch 1, acks_late, JSON, Redis broker+results"
        + (f", {eager_activities} activities in place per message" if eager_activities else ""),
    }


def _meminfo_kib(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return rev or "unknown revision"


def number(value: float) -> str:
    """Three significant digits, without exponents."""
    if math.isnan(value):
        return "-"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


NOTES = [
    "w10 latency: journal created_at (start call) to closed_at; plain chain: apply_async to "
    "the last task's own clock, result kept in Redis (earlier links keep no result).",
    "commits: pg_stat_database xact_commit delta of the journal database over the workflow "
    "half of w10, so it counts every transaction there (client starts, dispatcher passes, "
    "heartbeats); read 11 s after the work, once Postgres has flushed its counters.",
    "messages: counted by every process from Celery's after_task_publish (Redis INFO "
    "commandstats is server-wide and the Redis is shared); SQL statements likewise from "
    "SQLAlchemy's before_cursor_execute (the driver's BEGIN and COMMIT not included).",
    "CPU: utime+stime from /proc over each process group; RSS: largest VmHWM among the "
    "worker's pool children, reset (clear_refs) before the measured phase; its rise is over "
    "that child's VmRSS at the start of the phase.",
]


def table(env: dict[str, Any], sizes: Sizes, results: dict[str, Figures], command: str) -> str:
    machine, versions = env["machine"], env["versions"]
    load = ", ".join(str(x) for x in machine["load_average_at_start"])
    lines = [
        f"command:  {command}",
        f"machine:  {machine['nproc']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, load average at start {load}",
        "versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"worker:   {env['worker']}",
        f"figures:  median of {sizes.repeats} run(s), with min and max",
        "",
    ]
    label_width = max(
        [len(f.label) + len(f.unit) + 3 for figures in results.values() for f in figures] + [20]
    )
    header = f"{'scenario':<9} {'figure':<{label_width}} {'median':>10} {'min':>10} {'max':>10}"
    lines += [header, "-" * len(header)]
    for name, figures in results.items():
        shown = name
        for figure in figures:
            label = f"{figure.label} ({figure.unit})"
            lines.append(
                f"{shown:<9} {label:<{label_width}} {number(figure.median):>10} "
                f"{number(figure.min):>10} {number(figure.max):>10}"
            )
            shown = ""
    lines += ["", "notes:"]
    lines += [
        textwrap.fill(note, 96, initial_indent="- ", subsequent_indent="  ") for note in NOTES
    ]
    return "\n".join(lines)


def write_json(
    path: Path,
    env: dict[str, Any],
    sizes: Sizes,
    results: dict[str, Figures],
    command: str,
) -> None:
    document = {
        "command": command,
        **env,
        "sizes": sizes.as_dict(),
        "notes": NOTES,
        "scenarios": {
            name: {f.label: f.as_dict() for f in figures} for name, figures in results.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
