"""`dlock`: the operator's command for the lock database.

Exit codes (README, "Operating it"):
  0  done; for `status`, no lease lapsed and no row is stuck
  1  nothing changed because the lock or slot is not as named (a moved fence, a lock nobody
     holds, a slot not completed); for `status`, a lapsed lease or a stuck row is listed
  2  bad arguments or configuration (one line on stderr says what to do)
  3  the database could not be used: unreachable, password refused, schema missing, a statement
     failed (one line on stderr, never the password)
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any, NoReturn

from . import operations as ops
from .ages import AGE_EXAMPLES, format_age, parse_age, parse_since
from .database import Database
from .errors import LockConfigError, LockError
from .lock import DistributedLock
from .migrate import migrate
from .urls import DATABASE_URL_ENV, resolve_url, safe_url

OK, NOTHING_CHANGED, USAGE, DATABASE = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse, with its usage errors on one line that points at --help."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= ops.MAX_LIMIT:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {ops.MAX_LIMIT}, got {text!r}"
        )
    return value


def _fence(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"must be the positive whole number `dlock status` shows, got {text!r}"
        )
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dlock",
        description="See, explain and clear the exactly-once lock's locks and job log.",
        epilog="Exit codes: 0 done; 1 nothing changed (or status lists a problem); "
        "2 bad arguments; 3 database unusable.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _Parser(add_help=False)
    common.add_argument(
        "--database-url",
        help=f"SQLAlchemy URL of the lock database (default: ${DATABASE_URL_ENV})",
    )
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON for scripts")

    commands.add_parser(
        "migrate", parents=[common], help="create or upgrade queue_locks and job_logs"
    )

    status = commands.add_parser(
        "status",
        parents=[common, output],
        help="held locks, lapsed leases and stuck Processing rows",
        description="Held locks (holder, fence, since when, lease left), leases that lapsed "
        "with nobody taking over, and Processing rows that are stuck. Exits 1 if any lapsed "
        "or is stuck.",
    )
    status.add_argument("--limit", type=_limit, default=50, help="rows per list (default 50)")

    logs = commands.add_parser(
        "logs",
        parents=[common, output],
        help="job log rows, newest first",
        description="Job log rows, newest first, filtered by queue, job, slot, status and time.",
    )
    logs.add_argument("--queue", help="queue name")
    logs.add_argument("--job", help="job name (the asset key for an asset)")
    logs.add_argument(
        "--slot", help="slot: a tick (any ISO time with an offset), a partition or a run key"
    )
    logs.add_argument("--status", help=f"one of {', '.join(ops.STATUSES)}")
    logs.add_argument(
        "--since",
        help=f"an age ({AGE_EXAMPLES}) or a time (2026-11-28T14:00Z; UTC without an offset)",
    )
    logs.add_argument("--limit", type=_limit, default=50, help="rows (default 50)")

    release = commands.add_parser(
        "release",
        parents=[common, output],
        help="release a lock on purpose, with a reason",
        description="Free a lock on purpose: close its holder's Processing row as Exited (its "
        "slot may run again) and write an audit row naming you and the reason. A holder still "
        "alive gets LockLost naming you at its next ensure_held() or release.",
    )
    release.add_argument("queue")
    release.add_argument("job")
    which = release.add_mutually_exclusive_group()
    which.add_argument(
        "--fence",
        type=_fence,
        help="release only if the lock still carries this fence (as `dlock status` showed it)",
    )
    which.add_argument("--force", action="store_true", help="release whatever holds it")
    release.add_argument("--reason", help="why, for the audit row and the holder (required)")

    slots = commands.add_parser("slots", help="let a completed slot run again")
    slot_commands = slots.add_subparsers(dest="slot_command", required=True, metavar="COMMAND")
    reset = slot_commands.add_parser(
        "reset",
        parents=[common, output],
        help="let a completed slot run again, with a reason",
        description="Let a completed slot (a tick, a partition) run again: its Completed row "
        "becomes Reset, keeping its remark, and an audit row names you and the reason.",
    )
    reset.add_argument("queue")
    reset.add_argument("job")
    reset.add_argument("slot", help="the slot as `dlock logs` shows it (or any ISO time)")
    reset.add_argument("--reason", help="why, for the audit row (required)")

    prune = commands.add_parser(
        "prune",
        parents=[common, output],
        help="delete old finished job log rows",
        description="Delete finished job log rows older than the age, in short batches, never "
        "a Processing row. A pruned Completed row lets its slot run again: keep rows as long "
        "as a slot could still be launched (README, Operating it).",
    )
    prune.add_argument(
        "--older-than", required=True, help=f"an age of at least 1d, e.g. 30d ({AGE_EXAMPLES})"
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument(
        "--batch-size", type=_limit, default=ops.DEFAULT_PRUNE_BATCH, help="rows per transaction"
    )
    return parser


def _table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Columns padded to their widest cell; the last one is left ragged (remarks are long)."""
    cells = [list(headers)] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers) - 1)]
    lines = []
    for row in cells:
        padded = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _utc(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _json_default(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, indent=2))


def _more(shown: int, total: int) -> str:
    return f" ({total - shown} more not shown; raise --limit)" if total > shown else ""


def _lease(lock: ops.HeldLock) -> str:
    if lock.lapsed:
        return f"LAPSED {format_age(lock.lease_left_seconds)} ago, not taken over"
    return f"lease left {format_age(lock.lease_left_seconds)}"


def _status(database: Database, args: argparse.Namespace) -> int:
    status = ops.read_status(database, args.limit)
    if args.json:
        _print_json(
            {
                "locks": [{**asdict(lock), "lapsed": lock.lapsed} for lock in status.locks],
                "locks_total": status.locks_total,
                "stuck": [{**asdict(row), "why": row.why} for row in status.stuck],
                "stuck_total": status.stuck_total,
                "needs_attention": status.needs_attention,
            }
        )
        return NOTHING_CHANGED if status.needs_attention else OK
    print(f"Held locks: {status.locks_total}{_more(len(status.locks), status.locks_total)}")
    if status.locks:
        rows = [
            (
                lock.queue_name,
                lock.job_name,
                lock.holder,
                lock.fence,
                lock.slot,
                _utc(lock.acquired_at),
                f"{format_age(lock.held_seconds)} ago",
                _lease(lock),
            )
            for lock in status.locks
        ]
        headers = ("QUEUE", "JOB", "HOLDER", "FENCE", "SLOT", "SINCE (UTC)", "AGE", "LEASE")
        print(_table(headers, rows))
    total = status.stuck_total
    print(f"\nStuck Processing rows: {total}{_more(len(status.stuck), total)}")
    if status.stuck:
        stuck_rows = [
            (
                row.log_id,
                row.queue_name,
                row.job_name,
                row.holder,
                row.fence,
                row.slot,
                f"{format_age(row.age_seconds)} ago",
                row.why,
            )
            for row in status.stuck
        ]
        headers = ("LOG ID", "QUEUE", "JOB", "HOLDER", "FENCE", "SLOT", "STARTED", "WHY")
        print(_table(headers, stuck_rows))
    if status.needs_attention:
        print(
            "\nTo clear one: dlock release QUEUE JOB --fence FENCE --reason TEXT "
            "(--force for a stuck row with no holder)."
        )
    return NOTHING_CHANGED if status.needs_attention else OK


def _logs(database: Database, args: argparse.Namespace) -> int:
    wanted = ops.LogFilter(
        queue_name=args.queue,
        job_name=args.job,
        slot=ops.stored_slot(args.slot) if args.slot is not None else None,
        status=ops.check_status(args.status) if args.status is not None else None,
        since=parse_since("--since", args.since) if args.since is not None else None,
        limit=args.limit,
    )
    rows = ops.read_logs(database, wanted)
    if args.json:
        _print_json([asdict(row) for row in rows])
        return OK
    if not rows:
        print("No job log rows match.")
        return OK
    table = [
        (
            row.id,
            f"{format_age(row.age_seconds)} ago",
            row.queue_name,
            row.job_name,
            row.status,
            f"{row.app_id}/{row.run_id or '-'}",
            row.fence,
            row.slot,
            row.remark,
        )
        for row in rows
    ]
    headers = ("ID", "CREATED", "QUEUE", "JOB", "STATUS", "BY", "FENCE", "SLOT", "REMARK")
    print(_table(headers, table))
    return OK


def _release(database: Database, args: argparse.Namespace) -> int:
    reason = ops.check_reason(args.reason)
    if args.fence is None and not args.force:
        raise LockConfigError(
            "dlock release needs --fence N (the fence `dlock status` shows: releases only that "
            "grant) or --force (releases whatever holds the lock)."
        )
    result = ops.release(database, args.queue, args.job, fence=args.fence, reason=reason)
    if args.json:
        _print_json(asdict(result))
    else:
        print(_release_line(args, result))
    return OK if result.outcome in ("released", "already_released") else NOTHING_CHANGED


def _release_line(args: argparse.Namespace, result: ops.Release) -> str:
    lock = f"{args.queue}/{args.job}"
    if result.outcome == "fence_moved":
        return (
            f"Not released: {lock} now carries fence {result.fence} (held by {result.holder}), "
            f"not {args.fence}; it was granted again after you looked. Nothing changed; run "
            "`dlock status` again."
        )
    if result.outcome == "not_held":
        stuck = "" if args.fence else " and has no stuck Processing row"
        return f"Not released: nobody holds {lock}{stuck}. Nothing changed."
    if result.outcome == "already_released":
        return (
            f"Already released: {lock} was released with this reason before (audit row "
            f"{result.audit_id}) and nobody took it since. Nothing changed."
        )
    holder = f"from {result.holder} (fence {result.fence})" if result.holder else "(no holder)"
    return (
        f"Released {lock} {holder}: closed {result.closed} Processing row(s) as Exited; audit "
        f"row {result.audit_id}. A holder still running gets LockLost naming you."
    )


def _slots(database: Database, args: argparse.Namespace) -> int:
    reason = ops.check_reason(args.reason)
    result = ops.reset_slot(database, args.queue, args.job, args.slot, reason=reason)
    if args.json:
        _print_json(asdict(result))
    lock = f"{args.queue}/{args.job}"
    if result.audit_id is None:
        if not args.json:
            print(
                f"Nothing reset: slot {result.slot} of {lock} has no Completed row (it never "
                "completed, is running, or was reset already); see `dlock logs --queue "
                f"{args.queue} --job {args.job}` for its slots as stored."
            )
        return NOTHING_CHANGED
    if not args.json:
        if result.already:
            print(
                f"Slot {result.slot} of {lock} was already reset with this reason (audit row "
                f"{result.audit_id}); nothing changed."
            )
        else:
            print(
                f"Slot {result.slot} of {lock} may run again: its Completed row is now Reset; "
                f"audit row {result.audit_id}."
            )
    return OK


def _prune(database: Database, args: argparse.Namespace) -> int:
    seconds = parse_age("--older-than", args.older_than)
    result = ops.prune(database, seconds, dry_run=args.dry_run, batch_size=args.batch_size)
    if args.json:
        _print_json(
            {
                "dry_run": result.dry_run,
                "rows": result.rows,
                "batches": result.batches,
                "cutoff": result.cutoff,
                "older_than_seconds": result.older_than_seconds,
            }
        )
        return OK
    verb = "Would delete" if result.dry_run else "Deleted"
    print(
        f"{verb} {result.rows} job log row(s) created before {_utc(result.cutoff)} UTC (older "
        f"than {args.older_than}), in {result.batches} batch(es); Processing rows are never "
        "pruned."
    )
    return OK


_COMMANDS = {"status": _status, "logs": _logs, "release": _release, "prune": _prune}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "migrate":
            applied = migrate(args.database_url)
            where = safe_url(resolve_url(args.database_url))
            if applied:
                print(f"Applied {len(applied)} migration(s) to {where}: {', '.join(applied)}")
            else:
                print(f"Schema already up to date in {where}")
            return OK
        command = _slots if args.command == "slots" else _COMMANDS[args.command]
        return command(DistributedLock(args.database_url).database(), args)
    except LockConfigError as error:
        print(f"dlock {args.command}: error: {error}", file=sys.stderr)
        return USAGE
    except LockError as error:
        print(f"dlock {args.command}: error: {error}", file=sys.stderr)
        return DATABASE
    except KeyboardInterrupt:
        print(f"dlock {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
