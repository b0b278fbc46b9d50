"""`dlock`: the operator's command for the lock database."""

from __future__ import annotations

import argparse
import sys

from .errors import LockError
from .lock import DistributedLock
from .migrate import migrate
from .urls import DATABASE_URL_ENV, resolve_url, safe_url

_LOCKS = (
    "SELECT queue_name, job_name, owner, fence, created_time, expires_at,"
    " expires_at < clock_timestamp() AS expired FROM queue_locks WHERE owner IS NOT NULL"
    " ORDER BY queue_name, job_name"
)
_RECENT_LOGS = (
    "SELECT id, app_id, queue_name, job_name, status, slot, fence, updated_time, remark"
    " FROM job_logs ORDER BY id DESC LIMIT %(limit)s"
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dlock", description="Manage the exactly-once lock's PostgreSQL tables."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    url_help = f"SQLAlchemy URL of the lock database (default: ${DATABASE_URL_ENV})"

    migrate_cmd = commands.add_parser("migrate", help="create or upgrade queue_locks and job_logs")
    migrate_cmd.add_argument("--database-url", help=url_help)

    status_cmd = commands.add_parser("status", help="show held locks and the latest job logs")
    status_cmd.add_argument("--database-url", help=url_help)
    status_cmd.add_argument("--limit", type=int, default=20, help="job log rows (default 20)")
    return parser


def _print_rows(title: str, rows: list) -> None:
    print(f"{title} ({len(rows)})")
    for row in rows:
        print("  " + " | ".join("" if value is None else str(value) for value in row))


def _status(database_url: str | None, limit: int) -> None:
    with DistributedLock(database_url).connection() as conn:
        _print_rows("queue_locks", list(conn.execute(_LOCKS)))
        _print_rows("job_logs, newest first", list(conn.execute(_RECENT_LOGS, {"limit": limit})))


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
        else:
            _status(args.database_url, args.limit)
    except LockError as error:
        print(f"dlock: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
