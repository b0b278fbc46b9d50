"""The lock's database: URL handling, one engine per process, and the protocol's statements.

Each protocol step is one call of a versioned server-side function (resources/protocol.py), so
acquire and release are one round trip each. Connections stay open in a pool with neither
pre-ping nor reset-on-return, both of which would cost a round trip per cycle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine, exc
from sqlalchemy.engine import URL

from . import protocol
from .errors import LockConnectionError, LockDatabaseError, LockSchemaError
from .renewal import Lease, RenewalWorker
from .urls import DATABASE_URL_ENV, error_summary, safe_url, server_address
from .validation import MAX_LEASE_SECONDS, check_seconds

Row = Any  # a psycopg row tuple



class _Pinned:
    """Holds a thread's pooled connection; gives it back to the pool when the thread ends."""

    def __init__(self, pooled: Any) -> None:
        self.pooled = pooled

    def __del__(self) -> None:
        try:
            self.pooled.close()
        except Exception:  # interpreter shutdown: the pool may be gone already
            pass


class Database:
    """A process's engine for one lock database, checked against the schema on first use."""

    def __init__(
        self, url: URL, connect_timeout_seconds: float, statement_timeout_seconds: float
    ) -> None:
        self.url = url
        self.engine: Engine = create_engine(
            url,
            isolation_level="AUTOCOMMIT",
            pool_pre_ping=False,
            pool_reset_on_return=None,
            pool_use_lifo=True,
            connect_args={
                # libpq takes whole seconds and treats 1 as 2.
                "connect_timeout": max(2, round(connect_timeout_seconds)),
                "options": f"-c statement_timeout={round(statement_timeout_seconds * 1000)}",
                "application_name": "dlock",
            },
        )
        self._schema_checked = False
        self._check_lock = threading.Lock()
        self._local = threading.local()
        self.renewer = RenewalWorker(self._renew_lease)

    def describe(self) -> str:
        return f"PostgreSQL at {server_address(self.url)} (database {self.url.database})"

    def _checkout(self) -> Any:
        """A pooled connection, checked against the schema on the process's first use."""
        try:
            pooled = self.engine.raw_connection()
        except (exc.DBAPIError, psycopg.Error) as error:
            raise LockConnectionError(
                f"Cannot connect to {self.describe()} as user {self.url.username!r}: "
                f"{error_summary(error, self.url)}. Check that the server is running and that "
                f"{DATABASE_URL_ENV} (or database_url) has the right host, port, user and "
                "password."
            ) from None
        if not self._schema_checked:
            try:
                self._check_schema(pooled.driver_connection)
            except BaseException:
                pooled.close()
                raise
        return pooled

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit psycopg connection of its own, returned to the pool afterwards."""
        pooled = self._checkout()
        try:
            yield pooled.driver_connection
        except psycopg.Error:
            if pooled.driver_connection.closed:
                pooled.invalidate()
            raise
        finally:
            pooled.close()

    def _pinned(self) -> psycopg.Connection:
        """This thread's connection for protocol statements, kept across cycles: a checkout
        and check-in per statement cost more than a tenth of a round trip."""
        pinned = getattr(self._local, "pinned", None)
        if pinned is None or pinned.pooled.driver_connection.closed:
            if pinned is not None:
                pinned.pooled.invalidate()
            pinned = self._local.pinned = _Pinned(self._checkout())
        return pinned.pooled.driver_connection

    def _check_schema(self, conn: psycopg.Connection) -> None:
        """Refuse to start unless every table and exact function this code calls exists.

        A newer schema is fine as long as it still has them: migrations add a function's next
        version beside the old one, so several releases can share one database during a rollout.
        """
        with self._check_lock:
            if self._schema_checked:
                return
            missing = [row[0] for row in conn.execute(protocol.MISSING_OBJECTS, {
                "tables": list(protocol.REQUIRED_TABLES),
                "functions": list(protocol.REQUIRED_FUNCTIONS),
            })]
            if missing:
                migrate = f"dlock migrate --database-url '{safe_url(self.url)}'"
                tables = [name for name in missing if name in protocol.REQUIRED_TABLES]
                if tables:
                    raise LockSchemaError(
                        f"The lock tables {' and '.join(tables)} are missing in "
                        f"{self.describe()}. Create them with: {migrate}"
                    )
                raise LockSchemaError(
                    f"The lock schema in {self.describe()} lacks the function(s) this code "
                    f"calls: {', '.join(missing)}. Apply the migrations of this release with: "
                    f"{migrate}"
                )
            self._schema_checked = True

    def call(self, statement: str, params: dict[str, Any], *, what: str) -> Row:
        """Run one protocol statement and return its row (None when it returns no row).

        A pooled connection that the server dropped (a restart, an idle timeout) fails on first
        use without running anything; it is replaced and the statement sent once more.
        """
        for attempt in (1, 2):
            conn: psycopg.Connection | None = None
            try:
                conn = self._pinned()
                return conn.execute(statement, params).fetchone()
            except psycopg.Error as error:
                if attempt == 1 and conn is not None and conn.closed:
                    continue
                raise LockDatabaseError(
                    f"{what} failed in {self.describe()}: {error_summary(error, self.url)}",
                    queue_name=params.get("queue_name"),
                    job_name=params.get("job_name"),
                ) from None
        raise AssertionError("unreachable")

    def acquire(self, **params: Any) -> Row:
        return self.call(protocol.ACQUIRE, params, what="Acquiring the lock")

    def release(self, **params: Any) -> bool:
        return bool(self.call(protocol.RELEASE, params, what="Releasing the lock")[0])

    def abandon(self, **params: Any) -> None:
        self.call(protocol.ABANDON, params, what="Recording the interrupted acquire")

    def still_held(self, **params: Any) -> bool:
        return bool(self.call(protocol.STILL_HELD, params, what="Checking the lock")[0])

    def _renew_lease(self, lease: Lease) -> bool:
        params = {"queue_name": lease.queue_name, "job_name": lease.job_name,
                  "owner": lease.owner, "fence": lease.fence,
                  "lease_seconds": lease.lease_seconds}
        return bool(self.call(protocol.RENEW, params, what="Renewing the lease")[0])


_databases: dict[tuple[str, float, float], Database] = {}
_databases_lock = threading.Lock()


def database_for(
    url: URL, connect_timeout_seconds: float, statement_timeout_seconds: float
) -> Database:
    """The process-wide Database for these settings, made on first use in each process."""
    key = (url.render_as_string(hide_password=False), connect_timeout_seconds,
           statement_timeout_seconds)
    with _databases_lock:
        database = _databases.get(key)
        if database is None:
            database = _databases[key] = Database(
                url, connect_timeout_seconds, statement_timeout_seconds
            )
        return database


def _forget_parent_databases() -> None:
    # A forked child must not use (or close) the parent's sockets; it builds its own engine.
    global _databases_lock
    for database in _databases.values():
        database.engine.dispose(close=False)
    _databases.clear()
    _databases_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_parent_databases)


def check_timeouts(connect_timeout_seconds: object, statement_timeout_seconds: object) -> tuple[
    float, float
]:
    return (
        check_seconds("connect_timeout_seconds", connect_timeout_seconds, maximum=3600),
        # PostgreSQL takes whole milliseconds and reads 0 as "no timeout": refuse what rounds
        # to 0 rather than silently run without one.
        check_seconds("statement_timeout_seconds", statement_timeout_seconds,
                      maximum=MAX_LEASE_SECONDS, minimum=0.001),
    )
