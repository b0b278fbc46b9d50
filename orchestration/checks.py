"""An asset check that turns an asset's page red when a lock is stuck, and the job and schedule
that run it on their own.

The check fails when a lease lapsed with nobody taking over or a Processing row is stuck (as
`dlock status` defines them), and says which. It runs in a check-only job: a check attached to
the asset's own runs would be skipped whenever the guarded asset skips, which is exactly when
something is stuck.
"""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

from collections.abc import Sequence

import dagster as dg

from resources import DistributedLockResource
from resources.operations import read_status

CHECK_NAME = "no_stuck_locks"
# Problems listed in the check's description; the counts cover every one.
_LISTED = 20


def stuck_locks_check(asset_key: dg.AssetKey) -> dg.AssetChecksDefinition:
    """The check on one asset (each instance's heartbeat has its own)."""

    @dg.asset_check(
        asset=asset_key,
        name=CHECK_NAME,
        description=(
            "Fails when a lock's lease lapsed and nobody took over, or a Processing job log row "
            "is stuck (as `dlock status` lists them); clear one with `dlock release`."
        ),
    )
    def no_stuck_locks(lock: DistributedLockResource) -> dg.AssetCheckResult:
        status = read_status(lock.database(), limit=_LISTED)
        problems = status.problems()
        return dg.AssetCheckResult(
            passed=not status.needs_attention,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(problems) if problems else "No lease lapsed, no row stuck.",
            metadata={
                "lapsed_leases": len(status.lapsed),
                "stuck_rows": status.stuck_total,
                "held_locks": status.locks_total,
            },
        )

    return no_stuck_locks


def stuck_lock_check_job(
    checks: Sequence[dg.AssetChecksDefinition],
) -> "dg.UnresolvedAssetJobDefinition":
    return dg.define_asset_job(
        "stuck_lock_check_job",
        selection=dg.AssetSelection.checks(*checks),
        description="Runs the stuck-lock checks alone, so they run even when the asset skips.",
    )


def stuck_lock_check_schedule(
    job: "dg.UnresolvedAssetJobDefinition",
) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=f"{job.name}_quarter_hourly_schedule",
        job=job,
        cron_schedule="*/15 * * * *",
        execution_timezone="UTC",
        description="Every 15 minutes, checks for lapsed leases and stuck job log rows.",
    )
