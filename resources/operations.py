"""What an operator asks of the lock database, and the deliberate changes they may make.

Read: who holds which lock since when and for how much longer, which locks lapsed without a
take-over, which `Processing` rows are stuck, and the job log by queue, job, slot, status and
time. Change, each through a server function that writes its own audit row: release a lock,
reset a completed slot, prune old job log rows in batches. `dlock` (resources/cli.py) prints
these; the code location's retention schedule and asset check call them too. Every time is the
database's clock, as in the protocol.
"""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from . import protocol
from .database import Database
from .errors import LockConfigError
from .validation import MAX_TEXT_LENGTH, canonical_slot, check_name, check_storable

STATUSES = ("Processing", "Completed", "Failed", "Exited", "Reset")
MAX_LIMIT = 10_000
DEFAULT_PRUNE_BATCH = 1000
# A pruned Completed row lets its slot run again; the server function refuses less than this.
MIN_PRUNE_SECONDS = 86_400.0

# Held means the lock row points at its holder's Processing row; the holder (app id and run id)
# is read from that row, not from queue_locks.owner, which a lock user may not read (the code
# location's check runs as one).
_HELD_LOCKS = """
    SELECT q.queue_name, q.job_name, coalesce(l.app_id || '/' || coalesce(l.run_id, '-'), '?'),
           q.fence, q.log_id, l.slot, q.created_time, q.expires_at,
           extract(epoch FROM clock_timestamp() - q.created_time)::float8,
           extract(epoch FROM q.expires_at - clock_timestamp())::float8,
           count(*) OVER ()
      FROM queue_locks q
      LEFT JOIN job_logs l ON l.id = q.log_id
     WHERE q.log_id IS NOT NULL
     ORDER BY q.expires_at < clock_timestamp() DESC, q.queue_name, q.job_name
     LIMIT %(limit)s
"""

# A Processing row is stuck when no lock row points to it (its lock row was deleted or freed
# without closing it) or its lock's lease lapsed with nobody taking over. Acquire writes the lock
# row and the Processing row in one transaction, so a live hold never shows here.
_STUCK_ROWS = """
    SELECT l.id, l.queue_name, l.job_name, l.app_id || '/' || coalesce(l.run_id, '-'), l.slot,
           l.fence, l.created_time,
           extract(epoch FROM clock_timestamp() - l.created_time)::float8,
           extract(epoch FROM clock_timestamp() - q.expires_at)::float8,
           count(*) OVER ()
      FROM job_logs l
      LEFT JOIN queue_locks q
        ON q.queue_name = l.queue_name AND q.job_name = l.job_name AND q.log_id = l.id
     WHERE l.status = 'Processing'
       AND (q.log_id IS NULL OR q.expires_at < clock_timestamp())
     ORDER BY l.id
     LIMIT %(limit)s
"""

_LOG_COLUMNS = """
    SELECT id, queue_name, job_name, status, app_id, run_id, slot, fence, remark,
           created_time, updated_time,
           extract(epoch FROM clock_timestamp() - created_time)::float8
      FROM job_logs
"""

_RESET_AUDIT = """
    SELECT id FROM job_logs
     WHERE queue_name = %(queue_name)s AND job_name = %(job_name)s AND slot = %(slot)s
       AND status = 'Reset' AND app_id = %(operator)s AND remark LIKE 'Slot reset: %%'
       AND right(remark, length(%(reason)s) + 1) = ' ' || %(reason)s
       AND id > coalesce((SELECT max(id) FROM job_logs
                           WHERE queue_name = %(queue_name)s AND job_name = %(job_name)s
                             AND slot = %(slot)s AND claims_slot), 0)
     ORDER BY id DESC LIMIT 1
"""

_CUTOFF = "SELECT clock_timestamp() - make_interval(secs => %(seconds)s)"


def operator_name() -> str:
    """The OS user and host running the command, as audit rows name the operator."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container user with no passwd entry
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def check_limit(value: int) -> int:
    if not 1 <= value <= MAX_LIMIT:
        raise LockConfigError(f"--limit must be between 1 and {MAX_LIMIT}, got {value}.")
    return value


def check_reason(text: str | None) -> str:
    if text is None or not text.strip():
        raise LockConfigError(
            "--reason is required: say why, in words the next person on call understands "
            '(e.g. --reason "holder pod was deleted at 14:02"); it is written to the audit row.'
        )
    if len(text) > MAX_TEXT_LENGTH // 2:
        raise LockConfigError(
            f"--reason is {len(text)} characters long; keep it under {MAX_TEXT_LENGTH // 2}."
        )
    return check_storable("--reason", text.strip())


def check_status(text: str) -> str:
    for status in STATUSES:
        if text.lower() == status.lower():
            return status
    raise LockConfigError(
        f"--status {text!r} is not a job log status; use one of {', '.join(STATUSES)}."
    )


def stored_slot(text: str) -> str:
    """The slot as runs store it: an ISO time with an offset becomes the canonical UTC text a
    scheduled tick is stored as; anything else (a partition or run key) is kept verbatim."""
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        moment = None
    if moment is not None and moment.tzinfo is not None:
        return str(canonical_slot(moment))
    return str(canonical_slot(text))


@dataclass(frozen=True)
class HeldLock:
    queue_name: str
    job_name: str
    holder: str
    fence: int
    log_id: int | None
    slot: str | None
    acquired_at: datetime
    expires_at: datetime
    held_seconds: float
    lease_left_seconds: float  # negative once lapsed

    @property
    def lapsed(self) -> bool:
        return self.lease_left_seconds < 0


@dataclass(frozen=True)
class StuckRow:
    log_id: int
    queue_name: str
    job_name: str
    holder: str
    slot: str | None
    fence: int | None
    started_at: datetime
    age_seconds: float
    lapsed_seconds: float | None  # None: no lock row points to it

    @property
    def why(self) -> str:
        if self.lapsed_seconds is None:
            return "no lock row points to it (deleted or freed by hand?)"
        return "its lock's lease lapsed and nobody took over"


@dataclass(frozen=True)
class Status:
    locks: list[HeldLock]
    stuck: list[StuckRow]
    locks_total: int
    stuck_total: int

    @property
    def lapsed(self) -> list[HeldLock]:
        return [lock for lock in self.locks if lock.lapsed]

    @property
    def needs_attention(self) -> bool:
        return bool(self.lapsed) or self.stuck_total > 0

    def problems(self) -> list[str]:
        """One line per lapsed lock and stuck row, for a check's description."""
        lines = [
            f"lock {lock.queue_name}/{lock.job_name}: lease of {lock.holder} (fence "
            f"{lock.fence}) lapsed {int(-lock.lease_left_seconds)} s ago, not taken over"
            for lock in self.lapsed
        ]
        lines += [
            f"job log {row.log_id} ({row.queue_name}/{row.job_name}, {row.holder}) is stuck in "
            f"Processing: {row.why}"
            for row in self.stuck
        ]
        return lines


def read_status(database: Database, limit: int = 50) -> Status:
    params = {"limit": check_limit(limit)}
    lock_rows = database.call(_HELD_LOCKS, params, what="Reading the held locks")
    stuck_rows = database.call(_STUCK_ROWS, params, what="Reading the stuck job log rows")
    return Status(
        locks=[HeldLock(*row[:10]) for row in lock_rows],
        stuck=[StuckRow(*row[:9]) for row in stuck_rows],
        locks_total=lock_rows[0][10] if lock_rows else 0,
        stuck_total=stuck_rows[0][9] if stuck_rows else 0,
    )


@dataclass(frozen=True)
class LogRow:
    id: int
    queue_name: str
    job_name: str
    status: str
    app_id: str
    run_id: str | None
    slot: str | None
    fence: int | None
    remark: str
    created_at: datetime
    updated_at: datetime
    age_seconds: float


@dataclass(frozen=True)
class LogFilter:
    queue_name: str | None = None
    job_name: str | None = None
    slot: str | None = None
    status: str | None = None
    since: float | datetime | None = None  # seconds before now, or a point in time
    limit: int = 50

    def query(self) -> tuple[str, dict[str, Any]]:
        """The statement and its parameters: only the filters given, so the planner can use
        job_logs_job_time for a job and a time (a catch-all `%s IS NULL OR ...` could not)."""
        conditions: list[str] = []
        params: dict[str, Any] = {"limit": check_limit(self.limit)}
        for column, value in (
            ("queue_name", self.queue_name),
            ("job_name", self.job_name),
            ("slot", self.slot),
            ("status", self.status),
        ):
            if value is not None:
                conditions.append(f"{column} = %({column})s")
                params[column] = value
        if isinstance(self.since, datetime):
            conditions.append("created_time >= %(since)s")
            params["since"] = self.since
        elif self.since is not None:
            conditions.append("created_time >= clock_timestamp() - make_interval(secs => %(ago)s)")
            params["ago"] = float(self.since)
        where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
        order = " ORDER BY created_time DESC, id DESC LIMIT %(limit)s"
        return _LOG_COLUMNS + where + order, params


def read_logs(database: Database, wanted: LogFilter) -> list[LogRow]:
    statement, params = wanted.query()
    return [LogRow(*row) for row in database.call(statement, params, what="Reading job_logs")]


@dataclass(frozen=True)
class Release:
    outcome: str  # 'released', 'already_released', 'fence_moved' or 'not_held'
    fence: int | None
    holder: str | None
    closed: int
    audit_id: int | None


def release(
    database: Database,
    queue_name: str,
    job_name: str,
    *,
    fence: int | None,
    reason: str,
    operator: str | None = None,
) -> Release:
    """Free the lock on purpose (see dlock_operator_release_v1): with `fence`, only while the
    lock still carries it; with None, whatever holds it."""
    params = {
        "queue_name": check_name("queue", queue_name),
        "job_name": check_name("job", job_name),
        "fence": fence,
        "operator": operator or operator_name(),
        "reason": check_reason(reason),
    }
    [row] = database.call(protocol.OPERATOR_RELEASE, params, what="Releasing the lock")
    return Release(*row)


@dataclass(frozen=True)
class SlotReset:
    slot: str
    audit_id: int | None  # None: the slot had no Completed row; nothing changed
    already: bool = False  # this very reset happened before (a repeated command)


def reset_slot(
    database: Database,
    queue_name: str,
    job_name: str,
    slot: str,
    *,
    reason: str,
    operator: str | None = None,
) -> SlotReset:
    """Let a completed slot run again (dlock_reset_slot_v1 writes the audit row)."""
    params = {
        "queue_name": check_name("queue", queue_name),
        "job_name": check_name("job", job_name),
        "slot": stored_slot(slot),
        "operator": operator or operator_name(),
        "reason": check_reason(reason),
    }
    [(audit_id,)] = database.call(protocol.RESET_SLOT, params, what="Resetting the slot")
    if audit_id is not None:
        return SlotReset(params["slot"], audit_id)
    # A repeat of a reset that happened (its reply may have been lost) says so, not "not done".
    earlier = database.call(_RESET_AUDIT, params, what="Reading the slot's resets")
    if earlier:
        return SlotReset(params["slot"], earlier[0][0], already=True)
    return SlotReset(params["slot"], None)


@dataclass
class Prune:
    older_than_seconds: float
    cutoff: datetime
    dry_run: bool
    rows: int = 0
    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list, repr=False)


def prune(
    database: Database,
    older_than_seconds: float,
    *,
    dry_run: bool = False,
    batch_size: int = DEFAULT_PRUNE_BATCH,
) -> Prune:
    """Delete finished job log rows older than the age, a short transaction per batch of ids,
    never a Processing row; with dry_run, count them instead."""
    if older_than_seconds < MIN_PRUNE_SECONDS:
        raise LockConfigError(
            "The age to prune at must be at least 1 day: a pruned Completed row lets its slot "
            "run again (README: Operating it)."
        )
    [(cutoff,)] = database.call(_CUTOFF, {"seconds": older_than_seconds}, what="Reading the time")
    result = Prune(older_than_seconds, cutoff, dry_run)
    after_id = 0
    while True:
        params = {
            "older_than_seconds": older_than_seconds,
            "after_id": after_id,
            "batch_size": batch_size,
            "dry_run": dry_run,
        }
        [(deleted, last_id, done)] = database.call(
            protocol.PRUNE_BATCH, params, what="Pruning job_logs"
        )
        result.rows += deleted
        result.batches += 1
        result.batch_sizes.append(deleted)
        if done or last_id is None:
            return result
        after_id = last_id
