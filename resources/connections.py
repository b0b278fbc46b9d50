"""Connections to the lock database that a long-lived process can trust.

- Every wait on the server ends by a client-side deadline (`BoundedConnection`): the server's
  statement_timeout cannot help when the server or the network stops answering.
- A connection is checked before each use without a round trip (`usable`): a session the server
  ended (a restart, a failover, idle_session_timeout) has sent its goodbye and reads as ready.
- Each thread keeps its own protocol connection (`ThreadConnections`), made on first use and
  replaced whenever it broke, so a failed reconnect is never permanent and no thread waits for
  a pooled connection behind others.
- Connections lent to callers (`LentConnections`) come back rolled back to autocommit, or are
  dropped, so the protocol never runs inside a caller's transaction.
- After fork() a child neither uses nor closes its parent's sockets (`_blind_inherited`).
"""

from __future__ import annotations

import os
import select
import threading
import weakref
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

# psycopg enforces at least 2 s for connect_timeout (as libpq does): a 1 s setting waits 2 s.
MIN_CONNECT_SECONDS = 2.0
# The server cancels a statement at statement_timeout; the client waits this much longer for
# that answer before it gives the connection up as frozen.
CLIENT_MARGIN_SECONDS = 0.5
# Idle connections kept for callers of connection(); more are closed when given back.
MAX_IDLE_LENT = 4

_WaitTimeout = getattr(pg_errors, "_WaitTimeout", pg_errors.OperationalError)


class DeadlineExceeded(pg_errors.OperationalError):
    """The server did not answer within the client-side deadline; the connection is closed."""


class BoundedConnection(psycopg.Connection):
    """A psycopg connection whose every wait on the server ends by `call_timeout` seconds."""

    call_timeout: float | None = None
    _protocol_cursor: psycopg.Cursor[Any] | None = None

    def protocol_cursor(self) -> psycopg.Cursor[Any]:
        """The one cursor the protocol's calls reuse: a fresh cursor per call costs a tenth of
        a call's client CPU. Calls on a connection never overlap (one per thread)."""
        cursor = self._protocol_cursor
        if cursor is None or cursor.closed:
            cursor = self._protocol_cursor = self.cursor()
        return cursor

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        try:
            bound = timeout if timeout is not None else self.call_timeout
            return super().wait(gen, interval, bound)
        except _WaitTimeout:
            # Mid-statement, the connection's state is unknown: it cannot be used again.
            self.pgconn.finish()
            raise DeadlineExceeded(
                f"the server did not answer within {self.call_timeout:g} s (client deadline)"
            ) from None


def usable(conn: psycopg.Connection) -> bool:
    """Open, outside any transaction, and with nothing unread: a session the server ended has
    sent its error and EOF, which makes the socket readable. No round trip is spent."""
    if conn.closed or conn.broken:
        return False
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return False
    # poll(), not select(): select() cannot watch a descriptor numbered 1024 or more, which a
    # long-lived process with many files and threads reaches.
    poller = select.poll()
    try:
        poller.register(conn.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, ValueError, psycopg.Error):
        return False


def close_quietly(conn: psycopg.Connection) -> None:
    try:
        conn.close()
    except Exception:  # already broken: nothing to tell the server
        pass


class ConnectionFactory:
    """Makes autocommit connections with the lock's timeouts and the URL's own options."""

    def __init__(
        self,
        conninfo: str,
        connect_timeout: float,
        statement_timeout: float,
        options: str | None,
        pgbouncer: bool = False,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = max(MIN_CONNECT_SECONDS, connect_timeout)
        self.call_timeout = statement_timeout + CLIENT_MARGIN_SECONDS
        statement_ms = max(1, round(statement_timeout * 1000))
        # The URL's own options (a search_path, say) are kept, with the timeout added.
        self.options = " ".join(filter(None, [options, f"-c statement_timeout={statement_ms}"]))
        if pgbouncer:
            # PgBouncer refuses the options startup parameter, so the server's statement_timeout
            # is the role's or database's own; the client deadline still bounds every call. In
            # transaction pooling, consecutive statements may run on different server sessions,
            # where a statement psycopg prepared on one is missing (or clashes with another
            # client's of the same name): prepare none.
            self.connect_args: dict[str, Any] = {"prepare_threshold": None}
        else:
            self.connect_args = {"options": self.options}

    def connect(self) -> BoundedConnection:
        conn = BoundedConnection.connect(
            self.conninfo,
            autocommit=True,
            connect_timeout=max(2, round(self.connect_timeout)),
            application_name="dlock",
            **self.connect_args,
        )
        conn.call_timeout = self.call_timeout
        _track(conn)
        return conn


class _ThreadSlot:
    """A thread's connection; closed when the thread ends and its locals are collected."""

    def __init__(self) -> None:
        self.conn: BoundedConnection | None = None

    def __del__(self) -> None:
        if self.conn is not None:
            close_quietly(self.conn)


class ThreadConnections:
    """One protocol connection per thread, made on first use and replaced when unusable."""

    def __init__(self, factory: ConnectionFactory) -> None:
        self._factory = factory
        self._local = threading.local()

    def get(self) -> BoundedConnection:
        slot = getattr(self._local, "slot", None)
        if slot is None:
            slot = self._local.slot = _ThreadSlot()
        if slot.conn is not None and not usable(slot.conn):
            close_quietly(slot.conn)
            slot.conn = None
        if slot.conn is None:
            slot.conn = self._factory.connect()  # raises; the next call simply tries again
        return slot.conn

    def discard(self, conn: psycopg.Connection) -> None:
        slot = getattr(self._local, "slot", None)
        if slot is not None and slot.conn is conn:
            slot.conn = None
        close_quietly(conn)


class LentConnections:
    """Connections for callers' own statements (fenced writes), apart from the protocol's."""

    def __init__(self, factory: ConnectionFactory) -> None:
        self._factory = factory
        self._idle: list[BoundedConnection] = []
        self._guard = threading.Lock()

    def take(self) -> BoundedConnection:
        while True:
            with self._guard:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                return self._factory.connect()
            if usable(conn):
                return conn
            close_quietly(conn)

    def give_back(self, conn: BoundedConnection) -> None:
        if not conn.closed and not conn.broken:
            try:
                if conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()  # a transaction the caller left open or aborted
                if not conn.autocommit:
                    conn.autocommit = True
            except psycopg.Error:
                close_quietly(conn)
        if not usable(conn):
            close_quietly(conn)
            return
        with self._guard:
            if len(self._idle) < MAX_IDLE_LENT:
                self._idle.append(conn)
                return
        close_quietly(conn)


# Every connection this process opened, so that a forked child can blind its copies.
_open: weakref.WeakSet[BoundedConnection] = weakref.WeakSet()


def _track(conn: BoundedConnection) -> None:
    _open.add(conn)


def _blind_inherited() -> None:
    """In a forked child: point each inherited socket at /dev/null, so that nothing the child
    does (using, closing or collecting a connection) reaches the parent's sessions."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in list(_open):
            try:
                os.dup2(devnull, conn.fileno())
            except (OSError, psycopg.Error):
                pass
            try:
                conn.pgconn.finish()  # writes its goodbye to /dev/null
            except Exception:
                pass
    finally:
        os.close(devnull)
    _open.clear()


os.register_at_fork(after_in_child=_blind_inherited)
