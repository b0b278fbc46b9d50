"""CPU time: the benchmark process's own, and the server backends' that serve an approach.

The server runs on this host, so a backend's CPU time is read from /proc/<pid>/schedstat (the
scheduler's nanosecond count of time on a CPU), or from /proc/<pid>/stat's utime and stime in
clock ticks where schedstat is missing. A server on another host gives no server figure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

_TICK = 1 / os.sysconf("SC_CLK_TCK")


def client_cpu() -> float:
    """Seconds of CPU used by this process, every thread included (the renewal worker's work
    counts; a thread asleep costs nothing)."""
    return time.process_time()


def _one_backend(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/schedstat") as schedstat:
            return int(schedstat.read().split()[0]) / 1e9
    except OSError:
        with open(f"/proc/{pid}/stat") as stat:
            # Fields after the command name, which may hold spaces: utime and stime are 14, 15.
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * _TICK


def server_cpu(pids: Iterable[int]) -> float | None:
    """Seconds of CPU the backends with these process ids have used, or None if any of them is
    not readable here (a server on another host)."""
    try:
        return sum(_one_backend(pid) for pid in pids)
    except OSError:
        return None
