"""Wires the code location. `defs` is the single-location default; the two instances add an id."""

from __future__ import annotations

import dagster as dg

from resources import DistributedLockResource

from .assets import heartbeat, heartbeat_asset_job
from .daily_digest import build_digest
from .jobs import heartbeat_job
from .schedules import heartbeat_asset_job_hourly_schedule, heartbeat_job_hourly_schedule


def build_definitions(app_id: str | None = None) -> dg.Definitions:
    heartbeats = dg.Definitions(
        assets=[heartbeat],
        jobs=[heartbeat_job, heartbeat_asset_job],
        schedules=[heartbeat_job_hourly_schedule, heartbeat_asset_job_hourly_schedule],
        resources={
            "lock": DistributedLockResource(
                database_url=dg.EnvVar("LOCK_DATABASE_URL"), app_id=app_id
            )
        },
    )
    # The guarded example's asset keys carry the instance's name (instance_one/daily_digest).
    key_prefix = app_id.replace("-", "_") if app_id else None
    return dg.Definitions.merge(heartbeats, build_digest(key_prefix))


defs = build_definitions()
