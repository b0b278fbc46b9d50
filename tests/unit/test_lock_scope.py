"""Which lock rows a run takes: a lock per partition or run key, ranges in order, shared keys."""

from __future__ import annotations

from datetime import datetime, timezone

from resources.dagster_integration.lock_scope import LockRequest, lock_requests, per_slot_name
from resources.dagster_integration.run_target import LockTarget
from resources.validation import MAX_NAME_LENGTH


def target(slot=None, kind=None, keys=()) -> LockTarget:
    return LockTarget("daily_orders", slot, kind, "run-1", keys)


def test_a_partition_has_a_lock_of_its_own():
    assert lock_requests(target("2026-01-02", "partition")) == [
        LockRequest("daily_orders[2026-01-02]", "2026-01-02", True)
    ]


def test_a_tick_shares_the_jobs_lock():
    tick = datetime(2026, 11, 28, 5, tzinfo=timezone.utc)
    assert lock_requests(target(tick, "tick")) == [LockRequest("daily_orders", tick, False)]


def test_a_range_takes_each_partition_in_order_once():
    keys = ("2026-01-03", "2026-01-01", "2026-01-02", "2026-01-01")
    names = [r.job_name for r in lock_requests(target(None, "partition_range", keys))]
    assert names == [f"daily_orders[2026-01-0{day}]" for day in (1, 2, 3)]


def test_a_shared_key_keeps_each_jobs_slots_apart():
    tick = datetime(2026, 11, 28, 6, tzinfo=timezone.utc)
    [request] = lock_requests(target(tick, "tick"), lock_key="orders_table")
    assert request == LockRequest(
        "orders_table", "daily_orders@2026-11-28T06:00:00.000000+00:00", False
    )
    [manual] = lock_requests(target(), lock_key="orders_table")
    assert manual == LockRequest("orders_table", None, False)  # a manual run claims no slot


def test_a_long_per_slot_name_fits_and_stays_distinct():
    long_key = "s3://bucket/" + "x" * 200
    first = per_slot_name("import_file", long_key + "1")
    second = per_slot_name("import_file", long_key + "2")
    assert len(first) == len(second) == MAX_NAME_LENGTH
    assert first != second and first.startswith("import_file[s3://bucket/")
