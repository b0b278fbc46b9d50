"""The lock itself: `DistributedLock.hold()` guards a block with a lease row and a job log row."""

from __future__ import annotations

import logging
import os
import random
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.engine import URL

from .database import Database, database_for
from .errors import LockConfigError, LockDatabaseError, LockLost
from .protocol import AcquireResult
from .renewal import Lease, RenewalWorker, worker_for
from .timeouts import check_lease_fits, check_timeouts
from .urls import resolve_url
from .validation import (
    MAX_LEASE_SECONDS,
    Slot,
    canonical_slot,
    check_app_id,
    check_lease,
    check_name,
    check_run_id,
    check_seconds,
    error_text,
    safe_text,
)

log = logging.getLogger(__name__)

# For tests only (tests/test_scenarios_*.py): set to 1, every body runs whether or not the lock
# is held, which shows that the reliability scenarios catch a missing guard. Never set it in a
# deployment.
UNGUARDED_FOR_TESTS_ENV = "DLOCK_TEST_UNGUARDED"


def _unguarded_for_tests() -> bool:
    return os.environ.get(UNGUARDED_FOR_TESTS_ENV) == "1"


# Backoff while waiting for a holder: start short, double, cap, with jitter so waiters spread out.
_FIRST_WAIT_SECONDS = 0.05
_MAX_WAIT_SECONDS = 1.0


def default_app_id() -> str:
    """Host and pid of the process that holds the lock (not the one that configured it)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Held:
    """What `hold()` yields: whether the body may run, and who holds the lock if not."""

    queue_name: str
    job_name: str
    slot: str | None
    acquired: bool
    fence: int | None = None
    # Whoever has the lock or the slot, as app id and run id; since when that holder started;
    # completed_at when a done slot completed; note: why not acquired, as the job log says it.
    holder: str | None = None
    reason: str | None = None
    since: datetime | None = None
    completed_at: datetime | None = None
    note: str | None = None
    # A re-run on purpose that reset the slot's Completed row: the audit row's id.
    reset_id: int | None = None
    app_id: str = ""
    # This hold's row in job_logs: the holder's Processing row, or a loser's Exited row.
    log_id: int | None = None
    _owner: str = field(default="", repr=False)
    _database: Database | None = field(default=None, repr=False)
    # The process that holds it: a forked child shares the memory, never the hold.
    _pid: int = field(default_factory=os.getpid, repr=False)

    @property
    def in_holding_process(self) -> bool:
        return os.getpid() == self._pid

    @property
    def label(self) -> str:
        return f"{self.queue_name}/{self.job_name}"

    def ensure_held(self) -> None:
        """Ask the database whether this holder still has the lock; raise LockLost if not."""
        if not self.acquired or self._database is None:
            raise LockLost(
                f"Lock {self.label} is not held here: it was {self.reason or 'not acquired'} "
                f"(holder {self.holder}).",
                queue_name=self.queue_name,
                job_name=self.job_name,
            )
        if not self.in_holding_process:
            raise LockLost(
                f"Lock {self.label} is held by process {self._pid}, not by this forked child "
                f"({os.getpid()}): a child may take a lock of its own, never use its parent's.",
                queue_name=self.queue_name,
                job_name=self.job_name,
            )
        if not self._database.still_held(
            queue_name=self.queue_name, job_name=self.job_name, owner=self._owner, fence=self.fence
        ):
            released = _operator_release(self._database, self)
            if released:
                raise released
            raise LockLost(
                f"Lock {self.label} was taken over by another holder; fence {self.fence} is no "
                "longer valid. Stop writing: the successor owns the work now.",
                queue_name=self.queue_name,
                job_name=self.job_name,
            )


def _operator_release(database: Database, held: Held) -> LockLost | None:
    """The LockLost to raise when an operator released this hold (`dlock release`), naming them
    and their reason; None when it was lost otherwise (taken over after the lease lapsed)."""
    if held.log_id is None:
        return None
    note = database.operator_release_note(log_id=held.log_id, fence=held.fence)
    if note is None:
        return None
    return LockLost(
        f"Lock {held.label} was released on purpose, not by a lapsed lease: {note}. Fence "
        f"{held.fence} is no longer valid; stop writing.",
        queue_name=held.queue_name,
        job_name=held.job_name,
    )


def _renewer(database: Database) -> RenewalWorker:
    """The lock renews its leases itself, a batch per round trip, through the database's
    connection kept for renewal."""
    return worker_for(database, database.renew_leases)


class GiveBack(BaseException):
    """Raised into a held block to give the lock back unused: its row says Exited with this
    message as the remark (a run that holds one of several locks it needs, and cannot get the
    rest). A BaseException, like an interrupt, so no `except Exception` in between swallows it."""


def _ending(error: BaseException, elapsed: float) -> tuple[str, str]:
    """The job log status and remark for a body that left by raising."""
    if isinstance(error, GiveBack):
        return "Exited", safe_text(f"Given back unused after {elapsed:.3f} s: {error}")
    # Made safe: a remark the database refuses would stop the release and hide the caller's error.
    if isinstance(error, Exception):
        return "Failed", safe_text(f"Failed after {elapsed:.3f} s: {error_text(error)}")
    if isinstance(error, GeneratorExit):
        return "Exited", f"Abandoned after {elapsed:.3f} s: the guarded block was closed early"
    return "Exited", safe_text(
        f"Interrupted after {elapsed:.3f} s ({type(error).__name__}); lock released"
    )


class DistributedLock:
    """A lease-based lock in PostgreSQL with a job log, usable from any Python process.

    Examples:
        lock = DistributedLock(database_url="postgresql+psycopg://...", app_id="instance-one")
        with lock.hold("heartbeat-queue", "heartbeat_job") as held:
            if held.acquired:
                do_the_work()
    """

    def __init__(
        self,
        database_url: str | None = None,
        app_id: str | None = None,
        lease_seconds: float = 300.0,
        connect_timeout_seconds: float = 10.0,
        statement_timeout_seconds: float = 30.0,
    ) -> None:
        self._database_url = database_url
        self._url: URL | None = None
        # The process's Database for this lock, and the process it was looked up in: looking it
        # up renders the URL, a fifth of a hold's own CPU; a forked child looks it up again.
        self._database: tuple[int, Database] | None = None
        self._app_id = check_app_id(app_id) if app_id is not None else None
        self._timeouts = check_timeouts(connect_timeout_seconds, statement_timeout_seconds)
        self.lease_seconds = check_lease_fits(check_lease(lease_seconds), self._timeouts)

    @property
    def app_id(self) -> str:
        return self._app_id or default_app_id()

    def database(self) -> Database:
        cached = self._database
        if cached is not None and cached[0] == os.getpid():
            return cached[1]
        if self._url is None:
            self._url = resolve_url(self._database_url)
        database = database_for(self._url, *self._timeouts)
        self._database = (os.getpid(), database)
        return database

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A pooled autocommit connection to the lock database, for writes fenced by the lock."""
        with self.database().connect() as conn:
            yield conn

    @contextmanager
    def hold(
        self,
        queue_name: str,
        job_name: str,
        slot: Slot = None,
        run_id: str | None = None,
        *,
        wait_seconds: float = 0.0,
        lease_seconds: float | None = None,
        rerun_remark: str | None = None,
    ) -> Iterator[Held]:
        """Hold the lock for the block; `held.acquired` says whether the body should run.

        `rerun_remark` re-runs a completed slot on purpose: its Completed row is reset (the job
        log keeps it, as Reset, with an audit row saying this) in the acquire's transaction.
        """
        check_name("queue_name", queue_name)
        check_name("job_name", job_name)
        check_run_id(run_id)
        stored_slot = canonical_slot(slot)
        if rerun_remark is not None:
            if stored_slot is None:
                raise LockConfigError(
                    f"Incorrect config: a re-run on purpose of {queue_name}/{job_name} needs a "
                    "slot (a run without one is never skipped as done, so it runs anyway)."
                )
            rerun_remark = safe_text(rerun_remark) or "re-run on purpose"
        lease = (
            check_lease_fits(check_lease(lease_seconds), self._timeouts)
            if lease_seconds is not None
            else self.lease_seconds
        )
        wait = check_seconds(
            "wait_seconds", wait_seconds, maximum=MAX_LEASE_SECONDS, allow_zero=True
        )
        if _unguarded_for_tests():
            wait = 0.0  # nor waits for the holder
        database = self.database()
        app_id = self.app_id
        # Unique per hold, so a late release or renewal can never match a later grant; its last
        # part is a 128-bit secret that the database never shows to lock users.
        owner = f"{app_id}/{run_id or '-'}/{secrets.token_hex(16)}"
        names = {"queue_name": queue_name, "job_name": job_name}
        label = f"{queue_name}/{job_name}"

        log.debug("Attempting to acquire lock %s", label)
        try:
            row = self._acquire(
                database,
                wait,
                owner=owner,
                app_id=app_id,
                run_id=run_id,
                slot=stored_slot,
                lease_seconds=lease,
                rerun_remark=rerun_remark,
                **names,
            )
        except BaseException as error:
            # An interrupt, or a database error after the call was sent, may leave a grant we
            # never saw; release it now rather than leave it to expire.
            if isinstance(error, LockDatabaseError) or not isinstance(error, Exception):
                self._abandon(
                    database,
                    error,
                    owner=owner,
                    app_id=app_id,
                    run_id=run_id,
                    slot=stored_slot,
                    **names,
                )
            raise

        held = Held(
            queue_name,
            job_name,
            stored_slot,
            acquired=row.acquired,
            fence=row.fence,
            holder=row.holder,
            reason=row.reason,
            since=row.since,
            completed_at=row.completed_at,
            note=row.note,
            reset_id=row.reset_id,
            app_id=app_id,
            log_id=row.log_id,
            _owner=owner,
            _database=database,
        )
        if not held.acquired:
            log.info("Lock %s not acquired (%s): %s", label, held.reason, held.note)
            if _unguarded_for_tests():
                yield replace(held, acquired=True)  # the body runs anyway: no guard
                return
            yield held
            return

        # A grant always carries its fence and its Processing row (dlock_acquire_v3).
        assert row.fence is not None and row.log_id is not None
        log_id = row.log_id
        log.debug("Lock %s acquired (fence %s)", label, held.fence)
        lease_entry = Lease(queue_name, job_name, owner, row.fence, lease)
        renewer = _renewer(database)
        renewer.track(lease_entry)
        started = time.monotonic()
        try:
            yield held
        except BaseException as error:
            if not held.in_holding_process:
                raise  # a forked child leaving the block (sys.exit): the parent still holds it
            status, remark = _ending(error, time.monotonic() - started)
            self._release(database, renewer, held, lease_entry, log_id, status, remark, cause=error)
            raise
        if not held.in_holding_process:
            return
        remark = f"Completed in {time.monotonic() - started:.3f} s"
        self._release(database, renewer, held, lease_entry, log_id, "Completed", remark, cause=None)

    def _acquire(self, database: Database, wait: float, **params: Any) -> AcquireResult:
        deadline = time.monotonic() + wait
        pause = _FIRST_WAIT_SECONDS
        while True:
            remaining = deadline - time.monotonic()
            # Only the last attempt writes the loser's Exited row: one per hold.
            row = database.acquire(record_loser=remaining <= 0, **params)
            if row.acquired or remaining <= 0:
                return row
            if row.reason == "slot_done":  # waiting cannot help: record it now
                return database.acquire(record_loser=True, **params)
            time.sleep(min(pause * random.uniform(0.5, 1.5), remaining))
            pause = min(pause * 2, _MAX_WAIT_SECONDS)

    @staticmethod
    def _abandon(database: Database, error: BaseException, **params: Any) -> None:
        if isinstance(error, Exception):
            remark = safe_text(f"Acquire failed ({error_text(error)}); nothing ran")
        else:
            remark = safe_text(f"Interrupted while acquiring ({type(error).__name__}); nothing ran")
        try:
            database.abandon(remark=remark, **params)
        except Exception as cleanup_error:  # the lease expires on its own
            log.warning(
                "Could not record the interrupted acquire of %s/%s: %s",
                params["queue_name"],
                params["job_name"],
                cleanup_error,
            )

    @staticmethod
    def _release(
        database: Database,
        renewer: RenewalWorker,
        held: Held,
        lease: Lease,
        log_id: int,
        status: str,
        remark: str,
        *,
        cause: BaseException | None,
    ) -> None:
        renewer.untrack(lease)
        released = database.release(
            queue_name=held.queue_name,
            job_name=held.job_name,
            owner=lease.owner,
            fence=lease.fence,
            log_id=log_id,
            status=status,
            remark=remark,
        )
        if released:
            log.debug("Lock %s released (%s)", held.label, status)
            return
        by_operator = _operator_release(database, held)
        if by_operator is not None:
            raise by_operator from cause
        raise LockLost(
            f"Lock {held.label} was lost while its body ran: another holder took over after the "
            f"lease lapsed (fence {held.fence} is stale). The job log says Exited, not {status}.",
            queue_name=held.queue_name,
            job_name=held.job_name,
        ) from cause
