"""The protocol's server functions as this code calls them: each by its versioned name.

A migration that changes a function's signature or meaning adds its next version beside the old
one (sql/migrations/0005 explains), so code of an earlier release keeps calling what it knows.
`REQUIRED_FUNCTIONS` is what this code checks for at start-up: the exact signatures below.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

# Each statement runs on a psycopg connection itself: SQLAlchemy's Connection and Result
# layers cost about 0.13 ms a statement, a quarter of a durable commit. Acquire and release, the
# two calls of every guarded cycle, take positional parameters (in the order of these
# signatures): psycopg maps named ones on every call, which costs a tenth of the call's CPU.
ACQUIRE = (
    "SELECT acquired, fence, log_id, reason, holder, since, completed_at, note"
    " FROM dlock_acquire_v3(%s, %s, %s, %s, %s, %s, %s, %s)"
)
# The same, after resetting the slot's Completed row in the same transaction (a re-run on
# purpose); the reset is undone when the acquire does not succeed, or when it is abandoned.
ACQUIRE_RERUN = (
    "SELECT acquired, fence, log_id, reason, holder, since, completed_at, note, reset_id"
    " FROM dlock_acquire_rerun_v2(%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


class AcquireResult(NamedTuple):
    """dlock_acquire_v3's row (version 2's). holder is the app id and run id of whoever has the
    lock or the slot, since when that holder started, completed_at when a done slot completed;
    note says why the caller did not get it, in the words its Exited row uses; reset_id is the
    audit row of a re-run on purpose that reset a completed slot (dlock_acquire_rerun_v2)."""

    acquired: bool
    fence: int | None
    log_id: int | None
    reason: str | None
    holder: str | None
    since: datetime | None
    completed_at: datetime | None
    note: str | None
    # A re-run's audit row (the slot's Completed row it reset), else None.
    reset_id: int | None = None


RELEASE = "SELECT dlock_release_v4(%s, %s, %s, %s, %s, %s, %s)"
ABANDON = (
    "SELECT dlock_abandon_v3(%(queue_name)s, %(job_name)s, %(owner)s, %(app_id)s, %(run_id)s,"
    " %(slot)s, %(remark)s)"
)
RENEW_ALL = (
    "SELECT lease_index, outcome FROM dlock_renew_all_v1(%(queue_names)s::text[],"
    " %(job_names)s::text[], %(owners)s::text[], %(fences)s::bigint[],"
    " %(lease_seconds)s::float8[])"
)
STILL_HELD = "SELECT dlock_still_held_v1(%(queue_name)s, %(job_name)s, %(owner)s, %(fence)s)"
# Asked only once a hold is found lost: whether an operator released it, and why.
OPERATOR_RELEASE_NOTE = "SELECT dlock_operator_release_note_v1(%(log_id)s, %(fence)s)"

# The operator's calls (resources/operations.py).
OPERATOR_RELEASE = (
    "SELECT outcome, fence, holder, closed, audit_id FROM dlock_operator_release_v1("
    "%(queue_name)s, %(job_name)s, %(fence)s, %(operator)s, %(reason)s)"
)
RESET_SLOT = (
    "SELECT dlock_reset_slot_v1(%(queue_name)s, %(job_name)s, %(slot)s, %(operator)s, %(reason)s)"
)
PRUNE_BATCH = (
    "SELECT deleted, last_id, done FROM dlock_prune_batch_v1(%(older_than_seconds)s,"
    " %(after_id)s, %(batch_size)s, %(dry_run)s)"
)

# The signatures as to_regprocedure() reads them: a function whose arguments changed is another
# function, so an exact match is what tells that this code's calls will resolve.
REQUIRED_FUNCTIONS = (
    "dlock_acquire_v3(text, text, text, text, text, text, double precision, boolean)",
    "dlock_release_v4(text, text, text, bigint, bigint, text, text)",
    "dlock_abandon_v3(text, text, text, text, text, text, text)",
    "dlock_renew_all_v1(text[], text[], text[], bigint[], double precision[])",
    "dlock_still_held_v1(text, text, text, bigint)",
    "dlock_operator_release_note_v1(bigint, bigint)",
    "dlock_operator_release_v1(text, text, bigint, text, text)",
    "dlock_reset_slot_v1(text, text, text, text, text)",
    "dlock_prune_batch_v1(double precision, bigint, integer, boolean)",
    "dlock_acquire_rerun_v2(text, text, text, text, text, text, double precision, boolean, text)",
)
REQUIRED_TABLES = ("queue_locks", "job_logs")

# One round trip names whatever is missing, tables and functions alike.
MISSING_OBJECTS = (
    "SELECT name FROM unnest(%(tables)s::text[]) AS name WHERE to_regclass(name) IS NULL"
    " UNION ALL"
    " SELECT name FROM unnest(%(functions)s::text[]) AS name"
    " WHERE to_regprocedure(name) IS NULL"
)
