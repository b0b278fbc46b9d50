"""`DistributedLockResource`: the lock as a Dagster resource, configured in the UI or in code."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import dagster as dg
import psycopg
from pydantic import Field, PrivateAttr

from ..database import Database
from ..errors import LockConfigError, LockError, LockHeld, LockLost, LockTimeout
from ..lock import DistributedLock, GiveBack, Held
from ..validation import MAX_LEASE_SECONDS, Slot, check_seconds
from .lock_scope import LockRequest, lock_requests
from .reporting import RunReport
from .run_target import RERUN_TAG, LockTarget, lock_target

if TYPE_CHECKING:
    from .run_target import ExecutionContext

# What a run without a partition does when another run holds the lock: succeed without the
# work, fail to alert, or wait for the holder and then run (or, past the wait, skip or fail).
OnHeld = Literal["skip", "fail", "wait"]
AfterWait = Literal["skip", "fail"]
_ON_HELD = ("skip", "fail", "wait")
_AFTER_WAIT = ("skip", "fail")


@dataclass(frozen=True)
class Policy:
    """What a guard does when its lock is held, the resource's defaults overridden per guard."""

    on_held: OnHeld
    wait_seconds: float
    after_wait: AfterWait

    @property
    def waits(self) -> float:
        return self.wait_seconds if self.on_held == "wait" else 0.0

    @property
    def when_still_held(self) -> AfterWait:
        return self.after_wait if self.on_held == "wait" else self.on_held


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
            "(default: succeed without doing the work), 'fail' (raise, to alert) or 'wait' (wait "
            "up to wait_seconds for the holder, then run; past that, do what after_wait says). A "
            "slot that is already running or done always skips. Each guard may override it."
        ),
    )
    wait_seconds: float = Field(
        default=60.0,
        description=(
            "With on_held 'wait': seconds to wait for the holder before giving up (default 60, "
            "at most 86400)."
        ),
    )
    after_wait: AfterWait = Field(
        default="fail",
        description=(
            "With on_held 'wait': what a run does when the lock is still held after "
            "wait_seconds: 'fail' (default: raise, to alert) or 'skip'."
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
        rerun_remark: str | None = None,
    ) -> AbstractContextManager[Held]:
        """Hold the lock `(queue_name, job_name)` for a block; see `DistributedLock.hold`."""
        return self._core().hold(
            queue_name,
            job_name,
            slot,
            run_id,
            wait_seconds=wait_seconds,
            lease_seconds=lease_seconds,
            rerun_remark=rerun_remark,
        )

    def database(self) -> Database:
        """The lock database's calls, for operator work in the code location (resources/
        operations.py: pruning, the stuck-lock check)."""
        return self._core().database()

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        """A pooled autocommit psycopg connection to the lock database (for fenced writes)."""
        return self._core().connection()

    def policy(
        self,
        on_held: OnHeld | None = None,
        wait_seconds: float | None = None,
        after_wait: AfterWait | None = None,
    ) -> Policy:
        """The resource's policy with a guard's overrides, checked (a bad one writes nothing)."""
        chosen = on_held or self.on_held
        after = after_wait or self.after_wait
        if chosen not in _ON_HELD or after not in _AFTER_WAIT:
            raise LockConfigError(
                f"Incorrect config: on_held must be one of {', '.join(_ON_HELD)} and after_wait "
                f"'skip' or 'fail', got on_held={chosen!r}, after_wait={after!r}."
            )
        wait = check_seconds(
            "wait_seconds",
            self.wait_seconds if wait_seconds is None else wait_seconds,
            maximum=MAX_LEASE_SECONDS,
            allow_zero=True,
        )
        return Policy(chosen, wait, after)

    @contextmanager
    def hold_for(
        self,
        context: ExecutionContext,
        queue_name: str,
        *,
        job_name: str | None = None,
        lock_key: str | None = None,
        on_held: OnHeld | None = None,
        wait_seconds: float | None = None,
        after_wait: AfterWait | None = None,
        lease_seconds: float | None = None,
    ) -> Iterator[Held]:
        """Hold the lock for an op or asset, taking job name, slot and run id from `context`,
        and report it to the run (run tags, log lines, asset metadata: see reporting.py).

        A partition (or a sensor run key) has a lock of its own, so partitions run side by
        side; a ranged run holds each of its partitions. `lock_key` names a lock shared on
        purpose with other jobs; `on_held`, `wait_seconds` and `after_wait` override the
        resource's policy; a run tagged dlock/rerun re-runs its completed slot on purpose.
        """
        target = lock_target(context, job_name)
        requests = lock_requests(target, lock_key)
        policy = self.policy(on_held, wait_seconds, after_wait)
        if len(requests) == 1:
            with self._hold_one(
                context, queue_name, target, requests[0], policy, lease_seconds
            ) as held:
                yield held
            return
        with self._hold_range(context, queue_name, target, requests, policy, lease_seconds) as held:
            yield held

    @contextmanager
    def _hold_one(
        self,
        context: ExecutionContext,
        queue_name: str,
        target: LockTarget,
        request: LockRequest,
        policy: Policy,
        lease_seconds: float | None,
    ) -> Iterator[Held]:
        """One lock row: acquire, apply the policy to a refusal, report."""
        if request.per_slot:
            wait = check_seconds(
                "partition_wait_seconds",
                self.partition_wait_seconds,
                maximum=MAX_LEASE_SECONDS,
                allow_zero=True,
            )
        else:
            wait = policy.waits
        rerun = rerun_remark(context, target, request)
        report = RunReport(context)
        started = time.monotonic()
        hold = self.hold(
            queue_name,
            request.job_name,
            request.slot,
            target.run_id,
            wait_seconds=wait,
            lease_seconds=lease_seconds,
            rerun_remark=rerun,
        )
        held: Held | None = None
        outcome = "completed"
        try:
            with hold as held:
                if held.reset_id is not None:
                    context.log.info(
                        "Re-running slot %s of %s on purpose (run tag %s): its Completed row is "
                        "now Reset (audit row %s in job_logs).",
                        held.slot,
                        held.label,
                        RERUN_TAG,
                        held.reset_id,
                    )
                if not held.acquired:
                    self._not_acquired(report, held, request, policy, wait)
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
        self, report: RunReport, held: Held, request: LockRequest, policy: Policy, wait: float
    ) -> None:
        """Skip and say why, or fail: a partition (or run key) still held after its wait is
        never skipped (a skipped partition is lost data), nor a run whose policy says fail."""
        summary = describe_not_acquired(held)
        error: LockHeld | LockTimeout | None = None
        if held.reason != "slot_done" and request.per_slot:
            error = LockTimeout(
                f"{summary}; waited {wait:g} s for it to finish. {request.slot} was not run: "
                "retry the run once the holder is done.",
                queue_name=held.queue_name,
                job_name=held.job_name,
            )
        elif held.reason == "held" and policy.when_still_held == "fail":
            waited = f"; waited {wait:g} s" if wait else ""
            error = LockHeld(
                f"{summary}{waited} (on_held is {policy.on_held!r})",
                queue_name=held.queue_name,
                job_name=held.job_name,
            )
        if error is not None:
            report.refused(held, error)
            raise error
        report.skipped(held, summary)

    @contextmanager
    def _hold_range(
        self,
        context: ExecutionContext,
        queue_name: str,
        target: LockTarget,
        requests: list[LockRequest],
        policy: Policy,
        lease_seconds: float | None,
    ) -> Iterator[Held]:
        """A ranged run: every partition's lock, or none. Yields the first partition's hold
        (acquired only when all are); the others complete or fail with it."""
        done: list[Held] = []
        refused: LockError | None = None
        try:
            with ExitStack() as stack:
                holds: list[Held] = []
                for request in requests:
                    try:
                        held = stack.enter_context(
                            self._hold_one(
                                context, queue_name, target, request, policy, lease_seconds
                            )
                        )
                    except LockError as error:  # held past the wait: give the others back
                        refused = error
                        raise GiveBack(
                            f"{request.slot} of the same range was not acquired"
                        ) from error
                    (holds if held.acquired else done).append(held)
                if done and holds:
                    raise GiveBack(
                        f"{len(done)} partitions of the same range were already completed"
                    )
                yield holds[0] if holds else done[0]
        except GiveBack:
            if refused is not None:
                raise refused from None
            slots = ", ".join(str(held.slot) for held in done)
            raise LockHeld(
                f"Partitions {slots} of this range were already completed, so the range cannot "
                f"run as one (it would complete them twice). Run the other partitions alone, or "
                f"re-run the whole range on purpose with the run tag {RERUN_TAG}=<why>.",
                queue_name=queue_name,
                job_name=requests[0].job_name,
            ) from None


def describe_not_acquired(held: Held) -> str:
    """One line for an operator: why the body did not run, and who has it since when, in the
    words of the loser's job log row (written once, in SQL)."""
    summary = f"Lock {held.label}: {held.note}"
    if held.reason == "slot_done":
        summary += (
            f". To run it again on purpose, launch the run with the tag {RERUN_TAG}=<why> "
            "(recorded in the job log)"
        )
    return summary


def rerun_remark(context: ExecutionContext, target: LockTarget, request: LockRequest) -> str | None:
    """The job log's words for a re-run on purpose, or None; a run without a slot always runs,
    so its tag changes nothing (and says so)."""
    if target.rerun is None:
        return None
    if request.slot is None:
        context.log.info(
            "Run tag %s ignored: this run has no slot, so it is never skipped as done.", RERUN_TAG
        )
        return None
    return f"Re-run on purpose by run {target.run_id} ({RERUN_TAG}={target.rerun})"
