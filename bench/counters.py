"""Counts what every benchmark process sends: Celery messages and SQL statements.

Redis's ``INFO commandstats`` would count pushes, and ``pg_stat_statements`` statements, but
the Redis is shared with other users and the extension is not loaded everywhere. Instead each
process (client, dispatcher, worker and its pool children) counts its own into a small
memory-mapped file named after its pid; the harness sums the files. Messages are counted from
Celery's ``after_task_publish`` signal, statements from SQLAlchemy's ``before_cursor_execute``
(a BEGIN or COMMIT the driver sends is not a statement here). Counting costs a few memory
writes per event.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Any

COUNTS_ENV = "CONTINUUM_BENCH_COUNTS"
KINDS = ("replay", "activity", "other", "sql")
_LAYOUT = struct.Struct(f"<{len(KINDS)}q")


class ProcessCounter:
    """Per-process counts, by kind, in ``<directory>/<pid>.count``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._pid = -1
        self._map: mmap.mmap | None = None
        self._counts = [0] * len(KINDS)

    @classmethod
    def from_env(cls) -> ProcessCounter | None:
        directory = os.environ.get(COUNTS_ENV)
        return cls(Path(directory)) if directory else None

    def count_publish(self, task_name: str | None, headers: Any) -> None:
        if task_name == "orchestrator.replay":
            self._add(0)
        elif isinstance(headers, dict) and "continuum_run_id" in headers:
            self._add(1)
        else:
            self._add(2)

    def count_statement(self) -> None:
        self._add(3)

    def _add(self, kind: int) -> None:
        with self._lock:
            if self._pid != os.getpid():  # first count here, or a forked pool child
                self._open()
            self._counts[kind] += 1
            assert self._map is not None
            _LAYOUT.pack_into(self._map, 0, *self._counts)

    def _open(self) -> None:
        self._pid = os.getpid()
        self._counts = [0] * len(KINDS)
        path = self.directory / f"{self._pid}.count"
        with path.open("wb+") as fh:
            fh.write(bytes(_LAYOUT.size))
            fh.flush()
            self._map = mmap.mmap(fh.fileno(), _LAYOUT.size)


def totals(directory: Path) -> dict[str, int]:
    """Counts so far of every process that counted into ``directory``, by kind."""
    found = dict.fromkeys(KINDS, 0)
    for path in directory.glob("*.count"):
        data = path.read_bytes()
        if len(data) == _LAYOUT.size:
            for kind, value in zip(KINDS, _LAYOUT.unpack(data), strict=True):
                found[kind] += value
    return found
