"""The lock's database: one `Database` per process and settings, and the protocol's calls.

Each protocol step is one call of a versioned server-side function (resources/protocol.py), so
acquire and release are one round trip each. Every call is idempotent for its owner, so a call
whose connection broke (a restart, a lost reply, a frozen server past the client deadline) is
sent once more on a fresh connection without doing its work twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from . import protocol
from .connections import (
    BoundedConnection,
    ConnectionFactory,
    LentConnections,
    ThreadConnections,
)
from .errors import (
    LockConfigError,
    LockConnectionError,
    LockDatabaseError,
    LockError,
)
from .per_process import PerProcess
from .renewal import Lease
from .schema_check import check_schema
from .urls import (
    DATABASE_URL_ENV,
    PGBOUNCER_PARAM,
    behind_pgbouncer,
    error_summary,
    libpq_url,
    safe_url,
    server_address,
)

Row = Any  # a psycopg row tuple


class Database:
    """A process's connections to one lock database, checked against the schema on first use."""

    def __init__(
        self, url: URL, connect_timeout_seconds: float, statement_timeout_seconds: float
    ) -> None:
        self.url = url
        options = url.query.get("options")
        if isinstance(options, tuple):
            options = " ".join(options)
        pgbouncer = behind_pgbouncer(url)
        if pgbouncer and options:
            raise LockConfigError(
                f"Incorrect config: database_url ({safe_url(url)}) has both options= and "
                f"{PGBOUNCER_PARAM}=true, but PgBouncer passes no options to the server; set "
                "them on the lock's role instead (ALTER ROLE ... SET search_path = ...)."
            )
        factory = ConnectionFactory(
            libpq_url(url.difference_update_query(["options", PGBOUNCER_PARAM])),
            connect_timeout_seconds,
            statement_timeout_seconds,
            options,
            pgbouncer,
        )
        self._factory = factory
        self._protocol = ThreadConnections(factory)
        self._lent = LentConnections(factory)
        self._schema_checked = False
        self._check_lock = threading.Lock()
        # Renewal has a connection of its own: it never waits for one behind the holders.
        self._renewal = ThreadConnections(factory)

    def describe(self) -> str:
        return f"PostgreSQL at {server_address(self.url)} (database {self.url.database})"

    def _connection_error(self, error: BaseException) -> LockError:
        if "unsupported startup parameter: options" in str(error):
            # PgBouncer's answer to the statement_timeout the lock sends with each connection.
            # Refused rather than retried without it: that would drop the server-side timeout
            # (and a URL's own options) without the operator's say, and a bouncer set to
            # ignore_startup_parameters = options gives no such error to detect anyway.
            return LockConfigError(
                f"{self.describe()} refused the startup parameter 'options' that sets the "
                f"lock's statement_timeout: it is PgBouncer (or a pooler like it). Add "
                f"{PGBOUNCER_PARAM}=true to {DATABASE_URL_ENV} (or database_url), and set "
                'statement_timeout on the lock\'s role (README, "Behind PgBouncer").'
            )
        return LockConnectionError(
            f"Cannot connect to {self.describe()} as user {self.url.username!r}: "
            f"{error_summary(error, self.url)}. Check that the server is running and that "
            f"{DATABASE_URL_ENV} (or database_url) has the right host, port, user and password."
        )

    def _checked(self, connections: ThreadConnections) -> BoundedConnection:
        """A usable connection of this thread, checked against the schema on first use."""
        try:
            conn = connections.get()
        except psycopg.Error as error:
            raise self._connection_error(error) from None
        if not self._schema_checked:
            self._check_schema(conn)
        return conn

    @contextmanager
    def connect(self) -> Iterator[psycopg.Connection]:
        """An autocommit connection of the caller's own, apart from the protocol's; given back
        rolled back and healthy, or dropped."""
        try:
            conn = self._lent.take()
        except psycopg.Error as error:
            raise self._connection_error(error) from None
        try:
            if not self._schema_checked:
                self._check_schema(conn)
            yield conn
        finally:
            self._lent.give_back(conn)

    def _check_schema(self, conn: psycopg.Connection) -> None:
        with self._check_lock:
            if not self._schema_checked:
                check_schema(conn, self.describe())
                self._schema_checked = True

    def call(
        self,
        statement: str,
        params: dict[str, Any] | tuple[Any, ...],
        *,
        what: str,
        queue_name: str | None = None,
        job_name: str | None = None,
        connections: ThreadConnections | None = None,
    ) -> list[Row]:
        """Run one protocol statement and return its rows.

        A connection that broke under the call (the server restarted, the reply was lost, the
        server froze past the client deadline) is replaced and the statement sent once more:
        every protocol call is idempotent for its owner, so the second send cannot do the work
        twice.
        """
        connections = connections or self._protocol
        for attempt in (1, 2):
            conn = self._checked(connections)
            try:
                cursor = conn.protocol_cursor()
                cursor.execute(statement, params)
                return cursor.fetchall()
            except psycopg.Error as error:
                broken = conn.closed or conn.broken
                if broken:
                    connections.discard(conn)
                if attempt == 1 and broken:
                    continue
                if isinstance(params, dict):
                    queue_name = params.get("queue_name", queue_name)
                    job_name = params.get("job_name", job_name)
                raise LockDatabaseError(
                    f"{what} failed in {self.describe()}: {error_summary(error, self.url)}",
                    queue_name=queue_name,
                    job_name=job_name,
                ) from None
        raise AssertionError("unreachable")

    def acquire(
        self,
        *,
        queue_name: str,
        job_name: str,
        owner: str,
        app_id: str,
        run_id: str | None,
        slot: str | None,
        lease_seconds: float,
        record_loser: bool,
        rerun_remark: str | None = None,
    ) -> protocol.AcquireResult:
        """dlock_acquire_v3, or dlock_acquire_rerun_v2 when `rerun_remark` says why the slot is
        re-run on purpose."""
        params: tuple[object, ...] = (
            queue_name,
            job_name,
            owner,
            app_id,
            run_id,
            slot,
            lease_seconds,
            record_loser,
        )
        statement, what = protocol.ACQUIRE, "Acquiring the lock"
        if rerun_remark:
            statement, what = protocol.ACQUIRE_RERUN, "Acquiring the lock to re-run its slot"
            params = (*params, rerun_remark)
        rows = self.call(statement, params, what=what, queue_name=queue_name, job_name=job_name)
        return protocol.AcquireResult(*rows[0])

    def release(
        self,
        *,
        queue_name: str,
        job_name: str,
        owner: str,
        fence: int,
        log_id: int,
        status: str,
        remark: str,
    ) -> bool:
        """True when released (now or by an earlier send of this very call), False when lost."""
        [(outcome,)] = self.call(
            protocol.RELEASE,
            (queue_name, job_name, owner, fence, log_id, status, remark),
            what="Releasing the lock",
            queue_name=queue_name,
            job_name=job_name,
        )
        return outcome == "released"

    def abandon(self, **params: Any) -> None:
        self.call(protocol.ABANDON, params, what="Recording the interrupted acquire")

    def still_held(self, **params: Any) -> bool:
        return bool(self.call(protocol.STILL_HELD, params, what="Checking the lock")[0][0])

    def operator_release_note(self, **params: Any) -> str | None:
        """Who released this hold on purpose and why, or None if no operator did."""
        [(note,)] = self.call(
            protocol.OPERATOR_RELEASE_NOTE, params, what="Reading why the lock was lost"
        )
        return note

    def renew_leases(self, leases: list[Lease]) -> list[str]:
        """One round trip for every due lease: 'renewed', 'busy' (its row is held by another
        transaction; try again soon) or 'lost', in the order given."""
        params = {
            "queue_names": [lease.queue_name for lease in leases],
            "job_names": [lease.job_name for lease in leases],
            "owners": [lease.owner for lease in leases],
            "fences": [lease.fence for lease in leases],
            "lease_seconds": [lease.lease_seconds for lease in leases],
        }
        rows = self.call(
            protocol.RENEW_ALL, params, what="Renewing leases", connections=self._renewal
        )
        outcomes = dict(rows)
        return [outcomes[index] for index in range(1, len(leases) + 1)]


# A forked child builds its own connections (connections.py blinds the inherited sockets).
_databases: PerProcess[Database] = PerProcess()


def database_for(
    url: URL, connect_timeout_seconds: float, statement_timeout_seconds: float
) -> Database:
    """The process-wide Database for these settings, made on first use in each process."""
    key = (
        url.render_as_string(hide_password=False),
        connect_timeout_seconds,
        statement_timeout_seconds,
    )
    return _databases.get(
        key, lambda: Database(url, connect_timeout_seconds, statement_timeout_seconds)
    )
