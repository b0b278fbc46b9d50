"""Does the cycle stay flat with a big lock table and a big job log?"""

from __future__ import annotations

import time
from typing import Any

from resources import DistributedLock

from .cycles import connect, project
from .stats import Timing, time_each

FILL = (
    """
    INSERT INTO queue_locks (queue_name, job_name, created_time, owner, fence, log_id,
                             expires_at)
    SELECT 'scale-queue', 'job-' || g, clock_timestamp(), 'filler',
           nextval('queue_lock_fence_seq'), 0, clock_timestamp() + interval '1 day'
      FROM generate_series(1, %(locks)s) g
""",
    """
    INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, fence, slot,
                          created_time, updated_time)
    SELECT 'filler', 'scale-queue', 'job-' || (g %% %(locks)s), 'Completed', 'filler', g,
           'slot-' || g, clock_timestamp(), clock_timestamp()
      FROM generate_series(1, %(logs)s) g
""",
    "ANALYZE queue_locks",
    "ANALYZE job_logs",
)


def scale(url: str, repetitions: int, locks: int = 100_000, logs: int = 1_000_000) -> dict:
    cycle = project(url, "scale_job")
    time_each(cycle, 100)
    empty = Timing.of(time_each(cycle, repetitions))
    with connect(url) as conn:
        for statement in FILL:
            conn.execute(statement, {"locks": locks, "logs": logs} if "%(" in statement else None)
    time_each(cycle, 100)
    full = Timing.of(time_each(cycle, repetitions))
    return {
        "lock_rows": locks,
        "log_rows": logs,
        "empty_median_ms": empty.median_ms,
        "full_median_ms": full.median_ms,
        "ratio": full.median_ms / empty.median_ms,
    }


def renewal_traffic(url: str, lease_seconds: float = 9.0, periods: int = 2) -> dict[str, Any]:
    """Lease renewals per lease period, counted by the server (updates of queue_locks while the
    lock is held: acquire and release, which update the row too, fall outside the window)."""
    query = "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'queue_locks'"
    # A short lease needs short timeouts: three renewal attempts must fit in one lease.
    lock = DistributedLock(
        url, app_id="renewal", connect_timeout_seconds=2, statement_timeout_seconds=0.5
    )
    with connect(url) as conn:
        with lock.hold("bench-queue", "renewal_job", lease_seconds=lease_seconds):
            time.sleep(1.5)  # let the acquire's statistics reach the shared counters
            before = conn.execute(query).fetchone()[0]
            time.sleep(lease_seconds * periods)
            after = conn.execute(query).fetchone()[0]
    return {
        "lease_seconds": lease_seconds,
        "held_seconds": lease_seconds * periods,
        "statements_per_lease_period": (after - before) / periods,
    }
