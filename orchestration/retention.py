"""Retention: a daily job that prunes old job log rows, itself guarded by the lock, so that
duplicate daemons or deployments prune once a day."""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

import os

import dagster as dg
from pydantic import Field

from resources import DistributedLockResource, LockConfigError
from resources.operations import MIN_PRUNE_SECONDS, prune

from .queues import MAINTENANCE_QUEUE

log = dg.get_dagster_logger()

RETENTION_DAYS_ENV = "DLOCK_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30.0
_DAY = 86_400.0


class RetentionConfig(dg.Config):
    """How old a finished job log row must be before it is pruned."""

    older_than_days: float = Field(
        default=DEFAULT_RETENTION_DAYS,
        description=(
            "Delete finished job log rows created more than this many days ago (default 30, at "
            "least 1). Processing rows are never deleted. A pruned Completed row lets its slot "
            "run again: keep rows as long as a slot could still be launched (re-executions, "
            "backfills of old partitions, schedules catching up)."
        ),
    )
    dry_run: bool = Field(
        default=False, description="Count the rows that would go and delete nothing."
    )


def retention_days() -> float:
    """DLOCK_RETENTION_DAYS, when set, is the schedule's age; the Launchpad may override it."""
    text = os.environ.get(RETENTION_DAYS_ENV)
    if not text:
        return DEFAULT_RETENTION_DAYS
    try:
        days = float(text)
    except ValueError:
        days = 0.0
    if not days * _DAY >= MIN_PRUNE_SECONDS:
        raise LockConfigError(
            f"Incorrect config: {RETENTION_DAYS_ENV} must be a number of days, at least 1, got "
            f"{text!r}."
        )
    return days


@dg.op(description="Deletes job log rows older than the configured age, once per tick.")
def prune_job_logs(
    context: dg.OpExecutionContext, config: RetentionConfig, lock: DistributedLockResource
) -> None:
    with lock.hold_for(context, queue_name=MAINTENANCE_QUEUE) as held:
        if not held.acquired:
            return
        result = prune(lock.database(), config.older_than_days * _DAY, dry_run=config.dry_run)
    log.info(
        "%s %d job log row(s) created before %s, in %d batch(es)",
        "Would delete" if result.dry_run else "Deleted",
        result.rows,
        result.cutoff.isoformat(timespec="seconds"),
        result.batches,
    )


@dg.job(description="Prunes old job_logs rows; guarded, so duplicate daemons prune once.")
def dlock_prune() -> None:
    prune_job_logs()


dlock_prune_daily_schedule = dg.ScheduleDefinition(
    name="dlock_prune_daily_schedule",
    job=dlock_prune,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    run_config={"ops": {"prune_job_logs": {"config": {"older_than_days": retention_days()}}}},
    description=(
        f"Every day at 03:30 UTC, prunes job log rows older than {RETENTION_DAYS_ENV} days "
        "(default 30); never a Processing row."
    ),
)
