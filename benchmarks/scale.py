"""Does the cycle stay flat with a big lock table and a big job log?"""

from __future__ import annotations

import time
from typing import Any

from resources import DistributedLock

from .cycles import connect, project, project_scheduled
from .stats import interleaved

# Bulk-loaded in one statement each: generate_series on the server, no round trip per row.
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
           'slot-' || g, now(), now()
      FROM generate_series(1, %(logs)s) g
""",
    "SELECT setval('job_logs_id_seq', (SELECT max(id) FROM job_logs))",
    "VACUUM ANALYZE queue_locks",
    "VACUUM ANALYZE job_logs",
)


def fill(url: str, locks: int, logs: int) -> float:
    """Fill the lock table and the job log; the seconds it took."""
    started = time.monotonic()
    with connect(url) as conn:
        for statement in FILL:
            conn.execute(statement, {"locks": locks, "logs": logs} if "%(" in statement else None)
    return time.monotonic() - started


def scale(
    empty_url: str, full_url: str, repetitions: int, locks: int = 100_000, logs: int = 10_000_000
) -> dict[str, Any]:
    """A cycle on an empty database against the same cycle on a full one, interleaved, without
    and with a slot (each slot claim probes the slot index that the full log fills)."""
    fill_seconds = fill(full_url, locks, logs)
    timings = interleaved(
        {
            "empty": project(empty_url, "-scale"),
            "full": project(full_url, "-scale"),
            "empty, with slot": project_scheduled(empty_url, "-scale"),
            "full, with slot": project_scheduled(full_url, "-scale"),
        },
        repetitions,
    )
    return {
        "lock_rows": locks,
        "log_rows": logs,
        "fill_seconds": fill_seconds,
        "empty_median_ms": timings["empty"].median_ms,
        "full_median_ms": timings["full"].median_ms,
        "ratio": timings["full"].median_ms / timings["empty"].median_ms,
        "slot_empty_median_ms": timings["empty, with slot"].median_ms,
        "slot_full_median_ms": timings["full, with slot"].median_ms,
        "slot_ratio": timings["full, with slot"].median_ms / timings["empty, with slot"].median_ms,
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
