"""Counts the Celery messages every benchmark process publishes, without a broker round trip.

Redis's ``INFO commandstats`` would count pushes, but it is server-wide and the Redis the
benchmark uses is shared with other users, so its deltas would include their traffic. Instead
each process (client, dispatcher, worker and its pool children) counts its own publishes from
Celery's ``after_task_publish`` signal into a small memory-mapped file named after its pid;
the harness sums the files. Counting costs a few memory writes per message.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from pathlib import Path
from typing import Any

COUNTS_ENV = "CONTINUUM_BENCH_COUNTS"
KINDS = ("replay", "activity", "other")
_LAYOUT = struct.Struct(f"<{len(KINDS)}q")


class PublishCounter:
    """Per-process message counts, by kind, in ``<directory>/<pid>.count``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._pid = -1
        self._map: mmap.mmap | None = None
        self._counts = [0] * len(KINDS)

    @classmethod
    def from_env(cls) -> PublishCounter | None:
        directory = os.environ.get(COUNTS_ENV)
        return cls(Path(directory)) if directory else None

    def count(self, task_name: str | None, headers: Any) -> None:
        if task_name == "orchestrator.replay":
            kind = 0
        elif isinstance(headers, dict) and "continuum_run_id" in headers:
            kind = 1
        else:
            kind = 2
        with self._lock:
            if self._pid != os.getpid():  # first publish here, or a forked pool child
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


def published(directory: Path) -> dict[str, int]:
    """Messages published so far by every process that counted into ``directory``."""
    totals = dict.fromkeys(KINDS, 0)
    for path in directory.glob("*.count"):
        data = path.read_bytes()
        if len(data) == _LAYOUT.size:
            for kind, value in zip(KINDS, _LAYOUT.unpack(data), strict=True):
                totals[kind] += value
    return totals
