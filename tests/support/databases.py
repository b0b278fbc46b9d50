"""Throwaway databases and the lock's tables read as an operator reads them."""

from __future__ import annotations

import secrets
import socket

import psycopg
from sqlalchemy import make_url

from resources.migrate import migrate
from resources.urls import libpq_url

# Timeouts short enough for test leases of about ten seconds: a lease must leave room for three
# renewal attempts of connect (at least 2 s) + statement + 0.5 s each.
FAST_TIMEOUTS = {"connect_timeout_seconds": 2, "statement_timeout_seconds": 0.5}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lock_url(admin_url: str, database: str) -> str:
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


class ThrowawayDatabases:
    """Creates databases on one server and drops them all at the end of the session."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self, *, migrated: bool = True) -> str:
        name = f"dlock_test_{secrets.token_hex(6)}"
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = lock_url(self.admin_url, name)
        if migrated:
            migrate(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Tables:
    """Reads queue_locks and job_logs the way an operator would, with psql-like queries."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def logs(self, queue_name: str, job_name: str) -> list[tuple]:
        """(status, app_id, fence, slot, remark) rows, oldest first."""
        return self.query(
            "SELECT status, app_id, fence, slot, remark FROM job_logs"
            " WHERE queue_name = %s AND job_name = %s ORDER BY id",
            queue_name,
            job_name,
        )

    def statuses(self, queue_name: str, job_name: str) -> list[str]:
        return [row[0] for row in self.logs(queue_name, job_name)]

    def lock_row(self, queue_name: str, job_name: str) -> tuple | None:
        """(owner, fence, created_time, expires_at) of the holder, or None when free."""
        rows = self.query(
            "SELECT owner, fence, created_time, expires_at FROM queue_locks"
            " WHERE queue_name = %s AND job_name = %s AND owner IS NOT NULL",
            queue_name,
            job_name,
        )
        return rows[0] if rows else None

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) FROM {table}")[0][0]
