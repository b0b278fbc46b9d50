"""Hourly schedules, in UTC.

HEARTBEAT_CRON overrides the cadence (tests run a tick a minute). It changes only the cron: the
schedules keep their `*_hourly_schedule` names, so commands and the UI find them either way.
"""

from __future__ import annotations

import os

import dagster as dg

from .assets import heartbeat_asset_job
from .jobs import heartbeat_job

HOURLY = "0 * * * *"


def heartbeat_cron() -> str:
    return os.environ.get("HEARTBEAT_CRON") or HOURLY


def hourly_schedule(
    job: dg.JobDefinition | dg.UnresolvedAssetJobDefinition, description: str
) -> dg.ScheduleDefinition:
    """`<job>_hourly_schedule`, in UTC, so every deployment agrees on the tick."""
    return dg.ScheduleDefinition(
        name=f"{job.name}_hourly_schedule",
        job=job,
        cron_schedule=heartbeat_cron(),
        execution_timezone="UTC",
        description=description,
    )


heartbeat_job_hourly_schedule = hourly_schedule(
    heartbeat_job,
    "Runs heartbeat_job every hour; the lock keeps duplicate daemons to one beat.",
)
heartbeat_asset_job_hourly_schedule = hourly_schedule(
    heartbeat_asset_job,
    "Materializes the heartbeat asset every hour, once per tick.",
)
