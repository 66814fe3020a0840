"""What the harness reads from the operating system: CPU time and memory of process groups.

Each benchmark process (worker, dispatcher) leads its own process group, so summing over the
group counts a prefork worker's pool children with its main process. Figures come from
``/proc`` (Linux only): CPU time from each thread's ``/proc/<pid>/task/<tid>/schedstat``, in
nanoseconds (``utime + stime`` from ``/proc/<pid>/stat`` counts 10 ms clock ticks, too coarse
for an idle dispatcher's few milliseconds a second; it is the fallback where the kernel keeps
no schedstat), ``VmHWM`` (peak resident set) from ``/proc/<pid>/status``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcStat:
    pid: int
    pgrp: int
    cpu_seconds: float


def _stat(pid: int) -> ProcStat | None:
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    pgrp, utime, stime = int(fields[2]), int(fields[11]), int(fields[12])
    cpu = _threads_cpu(pid)
    return ProcStat(pid=pid, pgrp=pgrp, cpu_seconds=(utime + stime) / _TICK if cpu is None else cpu)


def _threads_cpu(pid: int) -> float | None:
    """CPU seconds of the process's live threads, to the nanosecond (``None``: not known)."""
    total = 0
    try:
        for task in (_PROC / str(pid) / "task").iterdir():
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int((task / "schedstat").read_text().split()[0])
    except OSError:
        return None
    return total / 1e9 if total else None


def group_members(pgrp: int) -> list[ProcStat]:
    """Live processes of process group ``pgrp``."""
    members = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat.pgrp == pgrp:
                members.append(stat)
    return members


def group_cpu(pgrp: int) -> float:
    """CPU seconds (user + system) used so far by the live members of a process group.

    A member that exited takes its time with it; the benchmark's processes live throughout.
    """
    return sum(m.cpu_seconds for m in group_members(pgrp))


def cpu_by_pid(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of ``pids`` that is still alive."""
    stats = (_stat(pid) for pid in pids)
    return {s.pid: s.cpu_seconds for s in stats if s is not None}


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two :func:`cpu_by_pid` readings; a process that appeared in
    between counts whole (it started within the window), one that ended is lost."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def self_cpu() -> float:
    """CPU seconds used so far by this process (all its threads)."""
    times = os.times()
    return times.user + times.system


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in (_PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def reset_peak_rss(pgrp: int) -> None:
    """Restart the peak-RSS count of every member (``clear_refs`` 5, Linux 4.0+)."""
    for member in group_members(pgrp):
        with contextlib.suppress(OSError):
            (_PROC / str(member.pid) / "clear_refs").write_text("5")


class PoolMemory:
    """Peak resident memory of a prefork worker's pool children over a measured phase.

    Creating it resets the children's peak counters and notes their current size;
    :meth:`peak_mib` and :meth:`growth_mib` read the largest peak since then, and the largest
    rise over a child's size at the start (what the phase itself cost it).
    """

    def __init__(self, pgrp: int) -> None:
        self.pgrp = pgrp
        reset_peak_rss(pgrp)
        self.start = {pid: _status_kib(pid, "VmRSS") for pid in self._children()}

    def _children(self) -> list[int]:
        return [m.pid for m in group_members(self.pgrp) if m.pid != self.pgrp]

    def peak_mib(self) -> float:
        return max((_status_kib(pid, "VmHWM") for pid in self._children()), default=0) / 1024

    def growth_mib(self) -> float:
        rises = [_status_kib(pid, "VmHWM") - self.start.get(pid, 0) for pid in self._children()]
        return max(rises, default=0) / 1024
