"""What a Dagster run locks on: the lock's job name, and the slot from its partition, its
schedule tick or its sensor run key (bodies invoked directly, with the run tags Dagster sets)."""

# No `from __future__ import annotations`: Dagster reads the test bodies' annotations.

import dagster as dg
import pytest

from resources import DistributedLockResource
from resources.dagster_integration.run_target import (
    RUN_KEY_TAG,
    SCHEDULED_TIME_TAG,
    LockTarget,
    lock_target,
)

DAILY = dg.DailyPartitionsDefinition(start_date="2026-01-01")


@dg.op
def op_target(context: dg.OpExecutionContext) -> LockTarget:
    # A directly invoked op has no job; the lock's job name is given, as hold_for allows.
    return lock_target(context, job_name="nightly_load")


@dg.asset(key_prefix="instance_one")
def heartbeat(context: dg.AssetExecutionContext) -> LockTarget:
    return lock_target(context)


@dg.asset(partitions_def=DAILY)
def daily_table(context: dg.AssetExecutionContext) -> LockTarget:
    return lock_target(context)


def run_with_tags(tags: dict[str, str]) -> LockTarget:
    return op_target(dg.build_op_context(run_tags=tags))


def test_a_scheduled_run_locks_its_tick_as_one_utc_instant():
    tokyo = run_with_tags({SCHEDULED_TIME_TAG: "2026-11-28T13:00:00+09:00"})
    utc = run_with_tags({SCHEDULED_TIME_TAG: "2026-11-28T04:00:00+00:00"})
    assert tokyo.slot == utc.slot and tokyo.slot_kind == "tick"
    assert tokyo.job_name == "nightly_load"


def test_a_sensor_run_locks_its_run_key():
    target = run_with_tags({RUN_KEY_TAG: "s3://bucket/file-7.csv"})
    assert (target.slot, target.slot_kind) == ("s3://bucket/file-7.csv", "run_key")


def test_a_tick_wins_over_a_run_key():
    target = run_with_tags({SCHEDULED_TIME_TAG: "2026-11-28T04:00:00+00:00", RUN_KEY_TAG: "k"})
    assert target.slot_kind == "tick"


def test_a_manual_run_has_no_slot():
    target = run_with_tags({})
    assert (target.slot, target.slot_kind) == (None, None)


def test_a_partitioned_asset_locks_its_partition_under_its_asset_key():
    target = daily_table(dg.build_asset_context(partition_key="2026-01-03"))
    assert (target.job_name, target.slot, target.slot_kind) == (
        "daily_table",
        "2026-01-03",
        "partition",
    )


def test_an_asset_locks_on_its_whole_key():
    assert heartbeat(dg.build_asset_context()).job_name == "instance_one/heartbeat"


def test_a_wrong_on_held_is_refused_when_the_resource_is_built():
    with pytest.raises(Exception, match="'skip', 'fail' or 'wait'"):
        DistributedLockResource(database_url="postgresql+psycopg://u@h/db", on_held="retry")
