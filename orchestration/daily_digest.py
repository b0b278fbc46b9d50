"""The example to copy: a daily asset and a sensor-driven op, each guarded in one line.

`daily_digest` counts one day's heartbeats, once per day across every deployment (a lock per
day, so a backfill's days run side by side); its schedule asks for yesterday every morning.
`import_file` imports each file that lands in INBOX_DIR once, whichever deployment's sensor
sees it first (the file name is the run key, and the run key is the slot).
"""

# No `from __future__ import annotations`: Dagster reads these annotations at decoration time.

import os
from pathlib import Path

import dagster as dg
from pydantic import Field

from resources import DistributedLockResource, guarded_asset, guarded_op

from .queues import DIGEST_QUEUE, INBOX_QUEUE

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
INBOX_ENV = "INBOX_DIR"

_BEATS_OF_DAY = """
    SELECT count(*) FROM heartbeats
     WHERE beat_time >= %(day)s::date AND beat_time < %(day)s::date + 1
"""


class ImportConfig(dg.Config):
    """Which file to import."""

    path: str = Field(description="Path of the file to import (the sensor sets it).")


def build_digest(key_prefix: str | None) -> dg.Definitions:
    """The example for one instance: its asset keys carry the instance's prefix, and its locks
    do not (job_name), so every instance contends for the same day and the same file."""

    @guarded_asset(
        queue=DIGEST_QUEUE,
        job_name="daily_digest",
        key_prefix=key_prefix,
        partitions_def=DAILY,
        description="Heartbeats per day; each day materialized once across every deployment.",
    )
    def daily_digest(context: dg.AssetExecutionContext, lock: DistributedLockResource) -> int:
        with lock.connection() as conn:
            [(beats,)] = conn.execute(_BEATS_OF_DAY, {"day": context.partition_key}).fetchall()
        context.add_output_metadata({"beats": beats})
        return beats

    # partitions_def is deprecated here (Dagster infers it from the selection), but without it
    # build_schedule_from_partitioned_job returns an unresolved schedule, with no cron_schedule
    # until the Definitions resolve it: anything reading defs.schedules would break.
    digest_job = dg.define_asset_job(
        "daily_digest_job",
        selection=[daily_digest],
        partitions_def=DAILY,
        description="Materializes one day of the daily digest.",
    )
    digest_schedule = dg.build_schedule_from_partitioned_job(
        digest_job,
        name="daily_digest_job_daily_schedule",
        description="Each morning (UTC), the digest of the day before; once across deployments.",
        hour_of_day=1,
    )

    @guarded_op(queue=INBOX_QUEUE, job_name="import_file")
    def import_file(context: dg.OpExecutionContext, config: ImportConfig) -> int:
        size = Path(config.path).stat().st_size
        context.log.info("Imported %s (%s bytes)", config.path, size)
        return size

    @dg.job(description="Imports one file from the inbox, once across deployments.")
    def import_file_job() -> None:
        import_file()

    @dg.sensor(
        job=import_file_job,
        minimum_interval_seconds=10,
        description=f"A run per file in {INBOX_ENV}, keyed by its name: each imported once.",
    )
    def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason | list[dg.RunRequest]:
        inbox = os.environ.get(INBOX_ENV)
        if not inbox or not Path(inbox).is_dir():
            return dg.SkipReason(f"{INBOX_ENV} does not name a folder")
        return [
            dg.RunRequest(
                run_key=path.name,
                run_config={"ops": {"import_file": {"config": {"path": str(path)}}}},
            )
            for path in sorted(Path(inbox).iterdir())
            if path.is_file()
        ]

    return dg.Definitions(
        assets=[daily_digest],
        jobs=[digest_job, import_file_job],
        schedules=[digest_schedule],
        sensors=[inbox_sensor],
    )
