"""Hourly schedules; HEARTBEAT_CRON overrides the cadence (tests run a tick a minute)."""

from __future__ import annotations

import os

import dagster as dg

from .assets import heartbeat_asset_job
from .jobs import heartbeat_job

HOURLY = "0 * * * *"


def heartbeat_cron() -> str:
    return os.environ.get("HEARTBEAT_CRON") or HOURLY


heartbeat_job_hourly_schedule = dg.ScheduleDefinition(
    name="heartbeat_job_hourly_schedule",
    job=heartbeat_job,
    cron_schedule=heartbeat_cron(),
    execution_timezone="UTC",
    description="Runs heartbeat_job every hour; the lock keeps duplicate daemons to one beat.",
)

heartbeat_asset_job_hourly_schedule = dg.ScheduleDefinition(
    name="heartbeat_asset_job_hourly_schedule",
    job=heartbeat_asset_job,
    cron_schedule=heartbeat_cron(),
    execution_timezone="UTC",
    description="Materializes the heartbeat asset every hour, once per tick.",
)
