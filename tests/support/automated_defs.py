"""A guarded asset that declarative automation materializes (tests/test_guard_daemon.py)."""

# No `from __future__ import annotations`: Dagster reads these annotations.

import dagster as dg

from resources import DistributedLockResource, guarded_asset

QUEUE = "automation-test"


@guarded_asset(
    queue=QUEUE,
    automation_condition=dg.AutomationCondition.missing() & ~dg.AutomationCondition.in_progress(),
)
def automated(context: dg.AssetExecutionContext) -> None:
    """Materialized when missing, by the automation sensor's evaluation."""
    context.log.info("automated ran")


automation_sensor = dg.AutomationConditionSensorDefinition(
    "guard_automation_sensor",
    target=[automated],
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=5,
)

defs = dg.Definitions(
    assets=[automated],
    sensors=[automation_sensor],
    resources={
        "lock": DistributedLockResource(
            database_url=dg.EnvVar("LOCK_DATABASE_URL"), app_id="automation"
        )
    },
)
