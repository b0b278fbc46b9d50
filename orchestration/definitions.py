"""Wires the code location. `defs` is the single-location default; the two instances add an id
and a key prefix for their assets."""

from __future__ import annotations

import os

import dagster as dg

from resources import DistributedLockResource

from .assets import build_heartbeat_asset, heartbeat_asset_job
from .checks import stuck_lock_check_job, stuck_lock_check_schedule, stuck_locks_check
from .daily_digest import build_digest
from .jobs import heartbeat_job
from .retention import dlock_prune, dlock_prune_daily_schedule
from .schedules import heartbeat_asset_job_hourly_schedule, heartbeat_job_hourly_schedule


def build_definitions(
    app_id: str | None = None, asset_key_prefix: str | None = None
) -> dg.Definitions:
    heartbeat = build_heartbeat_asset(asset_key_prefix)
    check = stuck_locks_check(heartbeat.key)
    check_job = stuck_lock_check_job([check])
    heartbeats = dg.Definitions(
        assets=[heartbeat],
        asset_checks=[check],
        jobs=[heartbeat_job, heartbeat_asset_job, dlock_prune, check_job],
        schedules=[
            heartbeat_job_hourly_schedule,
            heartbeat_asset_job_hourly_schedule,
            dlock_prune_daily_schedule,
            stuck_lock_check_schedule(check_job),
        ],
        resources={
            "lock": DistributedLockResource(
                database_url=dg.EnvVar("LOCK_DATABASE_URL"), app_id=app_id
            )
        },
    )
    # The guarded example, with the same per-instance asset keys (instance_one/daily_digest).
    return dg.Definitions.merge(heartbeats, build_digest(asset_key_prefix))


def warn_without_lock_database() -> None:
    """`dagster dev` in the repository's root loads this with nothing set: say so once, in one
    line, rather than let the first run fail on a missing environment variable."""
    if not os.environ.get("LOCK_DATABASE_URL"):
        dg.get_dagster_logger().warning(
            "LOCK_DATABASE_URL is not set: guarded runs will fail until it names the lock's "
            "PostgreSQL (postgresql+psycopg://user:password@host:5432/dbname, then "
            "`dlock migrate`); `make dev` starts an embedded one with everything set."
        )


warn_without_lock_database()
defs = build_definitions()
