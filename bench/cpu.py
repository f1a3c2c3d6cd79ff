"""CPU time of a process tree, from ``/proc``: what a tool spent to move the bytes it moved.

A mounted tool's cost is its own process plus every helper it started (threads are already folded into
their process's figures). For each process the kernel reports ``utime + stime`` and, for children it has
already waited for, ``cutime + cstime``; the sum over a process and its live descendants, taken before and
after an operation, is the CPU that operation cost the tool. Programs run to completion by the harness
(curl) are measured from ``getrusage(RUSAGE_CHILDREN)`` instead.
"""

from __future__ import annotations

import contextlib
import os
import resource
from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["ProcStat", "children_cpu_seconds", "cpu_ms_per_mib", "parse_stat", "tree_cpu_seconds"]

MIB = 1 << 20
_TICKS = os.sysconf("SC_CLK_TCK")


class ProcStat(NamedTuple):
    """One process: its id, its parent's, and clock ticks of its own CPU plus that of children it reaped."""

    pid: int
    ppid: int
    ticks: int


def parse_stat(text: str) -> ProcStat:
    """One ``/proc/PID/stat`` line. The command name sits in parentheses and may hold spaces or ``)``, so
    the fields are counted from the last ``)``."""
    pid = int(text.split(" ", 1)[0])
    fields = text[text.rindex(")") + 2:].split()
    # After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17), 1-based as in proc(5).
    ppid = int(fields[1])
    utime, stime, cutime, cstime = (int(f) for f in fields[11:15])
    return ProcStat(pid, ppid, utime + stime + cutime + cstime)


def _all_stats() -> Iterable[ProcStat]:
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{entry.name}/stat") as f:
            yield parse_stat(f.read())


def tree_ticks(root: int, stats: Iterable[ProcStat]) -> int | None:
    """Clock ticks of ``root`` and all its descendants in ``stats``; None when ``root`` is not there."""
    by_parent: dict[int, list[ProcStat]] = {}
    top = None
    for stat in stats:
        by_parent.setdefault(stat.ppid, []).append(stat)
        if stat.pid == root:
            top = stat
    if top is None:
        return None
    total, todo, seen = 0, [top], set()
    while todo:
        stat = todo.pop()
        if stat.pid in seen:
            continue
        seen.add(stat.pid)
        total += stat.ticks
        todo += by_parent.get(stat.pid, [])
    return total


def tree_cpu_seconds(root: int) -> float | None:
    """CPU seconds (user + system) used so far by process ``root`` and its helpers; None once it is gone."""
    ticks = tree_ticks(root, _all_stats())
    return None if ticks is None else ticks / _TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of every child process this process has waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_ms_per_mib(cpu_seconds: float | None, nbytes: int) -> float | None:
    if cpu_seconds is None or nbytes <= 0:
        return None
    return cpu_seconds * 1000 / (nbytes / MIB)
