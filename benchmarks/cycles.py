"""One guarded cycle (acquire, log, release, log) for each approach, on one open connection."""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Callable
from dataclasses import dataclass

import psycopg

from resources import DistributedLock
from resources.urls import libpq_url

REFERENCE_TABLES = """
    CREATE TABLE IF NOT EXISTS ref_queue_locks (
        queue_name varchar(100) NOT NULL, job_name varchar(100) NOT NULL,
        created_time timestamptz NOT NULL, PRIMARY KEY (queue_name, job_name));
    CREATE TABLE IF NOT EXISTS ref_job_logs (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, app_id varchar(200) NOT NULL,
        job_name varchar(100) NOT NULL, status varchar(35) NOT NULL, remark text NOT NULL,
        created_time timestamptz NOT NULL, updated_time timestamptz NOT NULL);
    CREATE TABLE IF NOT EXISTS floor_rows (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL,
        created_time timestamptz NOT NULL DEFAULT clock_timestamp());
"""


@dataclass(frozen=True)
class Approach:
    """One guarded cycle, and the server backends (process ids) that serve it."""

    cycle: Callable[[], None]
    backends: Callable[[], list[int]]


def connect(url: str) -> psycopg.Connection:
    return psycopg.connect(libpq_url(url), autocommit=True)


def create_reference_tables(url: str) -> None:
    """Before workers start: CREATE TABLE IF NOT EXISTS races with itself in parallel."""
    with connect(url) as conn:
        conn.execute(REFERENCE_TABLES)


def floor(url: str, key: str = "") -> Approach:
    """Two single-row INSERT commits: a durable acquire record and a durable release record."""
    conn = connect(url)
    conn.execute(REFERENCE_TABLES)

    def cycle() -> None:
        conn.execute("INSERT INTO floor_rows (note) VALUES ('acquired')")
        conn.execute("INSERT INTO floor_rows (note) VALUES ('released')")

    return Approach(cycle, lambda: [conn.info.backend_pid])


def advisory(url: str, key: str = "") -> Approach:
    """pg_try_advisory_lock and unlock: no lease, no fence, no log, a pinned connection."""
    conn = connect(url)
    lock_key = (f"advisory{key}",)

    def cycle() -> None:
        if not conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", lock_key).fetchone()[0]:
            raise RuntimeError("advisory lock unexpectedly held")
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", lock_key)

    return Approach(cycle, lambda: [conn.info.backend_pid])


def reference(url: str, key: str = "") -> Approach:
    """The .NET reference design on the floor's driver: insert, catch the violation, read and
    delete a stale row, log Processing, then log Completed and delete on completion."""
    conn = connect(url)
    conn.execute(REFERENCE_TABLES)
    lock_key = ("bench-queue", f"reference_job{key}")

    def acquire() -> bool:
        try:
            conn.execute("INSERT INTO ref_queue_locks VALUES (%s, %s, clock_timestamp())", lock_key)
            return True
        except psycopg.errors.UniqueViolation:
            row = conn.execute(
                "SELECT created_time < clock_timestamp() - interval '5 minutes'"
                " FROM ref_queue_locks WHERE queue_name = %s AND job_name = %s",
                lock_key,
            ).fetchone()
            if row and row[0]:
                conn.execute(
                    "DELETE FROM ref_queue_locks WHERE queue_name = %s AND job_name = %s", lock_key
                )
            return False

    def cycle() -> None:
        if not acquire():
            raise RuntimeError("reference lock unexpectedly held")
        log_id = conn.execute(
            "INSERT INTO ref_job_logs (app_id, job_name, status, remark, created_time,"
            " updated_time) VALUES ('bench', %s, 'Processing', 'started', clock_timestamp(),"
            " clock_timestamp()) RETURNING id",
            lock_key[1:],
        ).fetchone()[0]
        conn.execute(
            "UPDATE ref_job_logs SET status = 'Completed', remark = 'done',"
            " updated_time = clock_timestamp() WHERE id = %s",
            (log_id,),
        )
        conn.execute(
            "DELETE FROM ref_queue_locks WHERE queue_name = %s AND job_name = %s", lock_key
        )

    return Approach(cycle, lambda: [conn.info.backend_pid])


def _lock_backends(url: str) -> Callable[[], list[int]]:
    """The lock's own connections in this process (its protocol connection and its renewal
    worker's), found by the application name it gives them; the database is this run's own."""

    def backends() -> list[int]:
        with connect(url) as conn:
            rows = conn.execute(
                "SELECT pid FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = 'dlock'"
            ).fetchall()
        return [pid for (pid,) in rows]

    return backends


def project(url: str, key: str = "") -> Approach:
    """DistributedLock.hold() end to end, job log included."""
    lock = DistributedLock(url, app_id="bench")
    job_name = f"project_job{key}"

    def cycle() -> None:
        with lock.hold("bench-queue", job_name) as held:
            if not held.acquired:
                raise RuntimeError("project lock unexpectedly held")

    return Approach(cycle, _lock_backends(url))


def project_scheduled(url: str, key: str = "") -> Approach:
    """The same with a fresh slot every cycle, as each scheduled tick has."""
    lock = DistributedLock(url, app_id="bench")
    ticks = itertools.count()
    job_name = f"scheduled_job{key}"
    run = secrets.token_hex(4)  # slots of its own: another instance's ticks are done

    def cycle() -> None:
        with lock.hold("bench-queue", job_name, slot=f"tick-{run}-{next(ticks)}") as held:
            if not held.acquired:
                raise RuntimeError("project lock unexpectedly held")

    return Approach(cycle, _lock_backends(url))


FLOOR = "floor (2 INSERT commits)"
REFERENCE = "reference design"
PROJECT = "this project"
APPROACHES: dict[str, Callable[..., Approach]] = {
    FLOOR: floor,
    "advisory lock": advisory,
    REFERENCE: reference,
    PROJECT: project,
    "this project, with slot": project_scheduled,
}
