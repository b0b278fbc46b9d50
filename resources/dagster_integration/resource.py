"""`DistributedLockResource`: the lock as a Dagster resource, configured in the UI or in code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Literal

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr

from ..database import Database
from ..errors import LockHeld, LockLost, LockTimeout
from ..lock import DistributedLock, Held
from ..validation import MAX_LEASE_SECONDS, Slot, check_seconds
from .reporting import RunReport
from .run_target import lock_target

if TYPE_CHECKING:
    from .run_target import ExecutionContext

# What a run without a partition does when another run holds the lock.
OnHeld = Literal["skip", "fail"]


# The docstring is the resource's description, which the UI renders as Markdown.
class DistributedLockResource(dg.ConfigurableResource):
    """Runs a guarded op at most once at a time and once per slot, across every deployment.

    Examples:

    ```python
    defs = dg.Definitions(
        jobs=[heartbeat_job],
        resources={
            "lock": DistributedLockResource(
                database_url=dg.EnvVar("LOCK_DATABASE_URL"), app_id="instance-one"
            )
        },
    )

    @dg.op
    def heartbeat(context: dg.OpExecutionContext, lock: DistributedLockResource):
        with lock.hold_for(context, queue_name="heartbeat-queue") as held:
            if held.acquired:
                ...
    ```
    """

    database_url: str | None = Field(
        default=None,
        description=(
            "SQLAlchemy URL of the PostgreSQL database that holds queue_locks and job_logs, "
            "for example postgresql+psycopg://user:password@host:5432/dbname. When not set, the "
            "LOCK_DATABASE_URL environment variable is read when the lock is first used. Pass "
            "it as dg.EnvVar so the password never shows in the UI."
        ),
    )
    app_id: str | None = Field(
        default=None,
        description=(
            "Name of this instance, written into every job log row and lock owner. Defaults to "
            "the host name and process id of the process that holds the lock."
        ),
    )
    lease_seconds: float = Field(
        default=300.0,
        description=(
            "Length of the lease in seconds (at most 86400; default 300). A background thread "
            "renews it every third of its length while the body runs; a holder that stops "
            "renewing is taken over once it lapses. It must leave room for three renewal "
            "attempts: at least 3 x (connect_timeout_seconds, 2 or more, + "
            "statement_timeout_seconds + 0.5)."
        ),
    )
    connect_timeout_seconds: float = Field(
        default=10.0,
        description="Seconds to wait for a connection to the lock database (default 10).",
    )
    statement_timeout_seconds: float = Field(
        default=30.0,
        description=(
            "Seconds after which the lock database cancels one of the lock's statements "
            "(default 30), so a hung database cannot hang a run."
        ),
    )
    partition_wait_seconds: float = Field(
        default=600.0,
        description=(
            "For a partitioned run, seconds to wait for a holder of another partition to "
            "finish before failing the run (default 600). Partitions are never skipped: a "
            "skipped partition is lost data."
        ),
    )
    on_held: OnHeld = Field(
        default="skip",
        description=(
            "What a run without a partition does when another run holds the lock: 'skip' "
            "(default: succeed without doing the work) or 'fail' (raise, to alert). A slot that "
            "is already running or done always skips."
        ),
    )

    _lock: DistributedLock | None = PrivateAttr(default=None)

    def _core(self) -> DistributedLock:
        if self._lock is None:
            self._lock = DistributedLock(
                database_url=self.database_url,
                app_id=self.app_id,
                lease_seconds=self.lease_seconds,
                connect_timeout_seconds=self.connect_timeout_seconds,
                statement_timeout_seconds=self.statement_timeout_seconds,
            )
        return self._lock

    def hold(
        self,
        queue_name: str,
        job_name: str,
        slot: Slot = None,
        run_id: str | None = None,
        *,
        wait_seconds: float = 0.0,
        lease_seconds: float | None = None,
    ) -> AbstractContextManager[Held]:
        """Hold the lock `(queue_name, job_name)` for a block; see `DistributedLock.hold`."""
        return self._core().hold(
            queue_name,
            job_name,
            slot,
            run_id,
            wait_seconds=wait_seconds,
            lease_seconds=lease_seconds,
        )

    def database(self) -> Database:
        """The lock database's calls, for operator work in the code location (resources/
        operations.py: pruning, the stuck-lock check)."""
        return self._core().database()

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        """A pooled autocommit psycopg connection to the lock database (for fenced writes)."""
        return self._core().connection()

    @contextmanager
    def hold_for(
        self, context: ExecutionContext, queue_name: str, *, job_name: str | None = None
    ) -> Iterator[Held]:
        """Hold the lock for an op or asset, taking job name, slot and run id from `context`,
        and report it to the run (run tags, log lines, asset metadata: see reporting.py)."""
        target = lock_target(context, job_name)
        partitioned = target.slot_kind == "partition"
        wait = (
            check_seconds(
                "partition_wait_seconds",
                self.partition_wait_seconds,
                maximum=MAX_LEASE_SECONDS,
                allow_zero=True,
            )
            if partitioned
            else 0.0
        )
        report = RunReport(context)
        started = time.monotonic()
        hold = self.hold(queue_name, target.job_name, target.slot, target.run_id, wait_seconds=wait)
        held: Held | None = None
        outcome = "completed"
        try:
            with hold as held:
                if not held.acquired:
                    self._not_acquired(report, held, target.slot, wait, partitioned)
                else:
                    report.acquired(held, (time.monotonic() - started) * 1000)
                try:
                    yield held
                except BaseException as error:
                    outcome = "failed" if isinstance(error, Exception) else "interrupted"
                    raise
        except LockLost as lost:
            if held is not None and held.acquired:
                report.lost(held, lost)
            raise
        if held is not None and held.acquired:
            report.released(held, outcome)

    def _not_acquired(
        self, report: RunReport, held: Held, slot: Slot, wait: float, partitioned: bool
    ) -> None:
        """Skip and say why, or fail: a partition is never skipped, nor a run on_held='fail'."""
        summary = describe_not_acquired(held)
        error: LockHeld | LockTimeout | None = None
        if held.reason == "held" and partitioned:
            error = LockTimeout(
                f"{summary}; waited {wait:g} s for it to finish. Partition {slot} was not run: "
                "retry the run once the holder is done.",
                queue_name=held.queue_name,
                job_name=held.job_name,
            )
        elif held.reason == "held" and self.on_held == "fail":
            error = LockHeld(
                f"{summary} (on_held is 'fail')",
                queue_name=held.queue_name,
                job_name=held.job_name,
            )
        if error is not None:
            report.refused(held, error)
            raise error
        report.skipped(held, summary)


def describe_not_acquired(held: Held) -> str:
    """One line for an operator: why the body did not run, and who has it since when, in the
    words of the loser's job log row (written once, in SQL)."""
    return f"Lock {held.label}: {held.note}"
