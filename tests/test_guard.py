"""The one-line guard in process, on real PostgreSQL: what reaches Dagster, each policy, a lock
per partition, shared lock keys and re-runs on purpose (tests/support/guarded_defs.py)."""

# No `from __future__ import annotations`: Dagster reads the test bodies' annotations.

import threading
import time

import dagster as dg
import pytest

from resources import DistributedLock, DistributedLockResource, LockConfigError, guarded_asset
from support import guarded_defs as defs
from support.databases import Tables

QUEUE = defs.QUEUE


@pytest.fixture
def lock_url(default_databases) -> str:
    return default_databases.create()


def lock(url: str, **fields) -> DistributedLockResource:
    return DistributedLockResource(database_url=url, app_id="test", **fields)


def materialize(url: str, assets, instance, *, fields=None, config=None, **kwargs):
    return dg.materialize(
        assets,
        resources={"lock": lock(url, **(fields or {}))},
        instance=instance,
        run_config=config,
        raise_on_error=False,
        **kwargs,
    )


def run_job(url: str, job, instance, *, fields=None, config=None, tags=None):
    resolved = dg.Definitions(jobs=[job], resources={"lock": lock(url, **(fields or {}))})
    return resolved.resolve_job_def(job.name).execute_in_process(
        instance=instance, run_config=config, tags=tags, raise_on_error=False
    )


def work_rows(url: str) -> list[tuple]:
    return Tables(url).query("SELECT app_id, job_name, slot FROM heartbeats ORDER BY id")


def step_error(result) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure]
    error = event.step_failure_data.error
    while error.cause is not None:
        error = error.cause
    return f"{error.cls_name}: {error.message}"


def test_what_dagster_sees_is_the_users_function():
    asset = defs.plain_asset
    assert asset.key == dg.AssetKey("plain_asset")
    assert asset.descriptions_by_key[asset.key] == "A plain guarded asset."
    assert asset.group_names_by_key[asset.key] == "guarded"
    assert "lock" in asset.required_resource_keys
    config_fields = asset.op.config_schema.config_type.fields
    assert set(config_fields) == {"seconds", "fail", "gate"}
    assert config_fields["seconds"].description == "Seconds the work takes."
    assert asset.op.outs["result"].dagster_type.typing_type is int
    assert not asset.op.outs["result"].is_required
    daily = defs.daily_asset
    assert daily.descriptions_by_key[daily.key].startswith("One day's work")
    assert daily.partitions_def == defs.DAILY
    assert set(defs.pair.keys) == {dg.AssetKey("left"), dg.AssetKey("right")}
    assert not any(out.is_required for out in defs.pair.op.outs.values())
    assert not defs.load_orders_a.outs["result"].is_required
    assert defs.load_orders_a.outs["result"].dagster_type.typing_type is int


def test_a_skipped_asset_succeeds_unmaterialized_and_says_why(lock_url):
    with dg.instance_for_test() as instance:
        with DistributedLock(lock_url, app_id="other").hold(QUEUE, "plain_asset"):
            skipped = materialize(lock_url, [defs.plain_asset], instance)
        done = materialize(lock_url, [defs.plain_asset], instance)
        assert skipped.success and done.success
        assert skipped.get_asset_materialization_events() == []
        assert len(done.get_asset_materialization_events()) == 1
        [(work_id,)] = Tables(lock_url).query("SELECT id FROM heartbeats")
        assert done.output_for_node("plain_asset") == work_id
        logs = instance.all_logs(skipped.run_id)
    assert any(
        "Skipped: Lock guard-test/plain_asset: lock held by other" in e.message for e in logs
    )
    assert work_rows(lock_url) == [("plain_asset", "plain_asset", None)]


def test_config_and_resources_reach_the_body_and_a_failure_is_failed(lock_url):
    with dg.instance_for_test() as instance:
        failed = materialize(
            lock_url,
            [defs.plain_asset],
            instance,
            config={"ops": {"plain_asset": {"config": {"fail": True}}}},
        )
    assert not failed.success
    assert "plain_asset failed on purpose" in step_error(failed)
    [(status, _, _, _, remark)] = Tables(lock_url).logs(QUEUE, "plain_asset")
    assert status == "Failed" and "failed on purpose" in remark
    assert Tables(lock_url).lock_row(QUEUE, "plain_asset") is None


def test_a_multi_asset_materializes_both_or_neither(lock_url):
    with dg.instance_for_test() as instance:
        both = materialize(lock_url, [defs.pair], instance)
        with DistributedLock(lock_url, app_id="other").hold(QUEUE, "pair"):
            neither = materialize(lock_url, [defs.pair], instance)
    assert both.success and neither.success
    keys = {event.asset_key for event in both.get_asset_materialization_events()}
    assert keys == {dg.AssetKey("left"), dg.AssetKey("right")}
    assert neither.get_asset_materialization_events() == []


def test_a_skipped_op_skips_what_depends_on_it(lock_url):
    with dg.instance_for_test() as instance:
        with DistributedLock(lock_url, app_id="other").hold(QUEUE, "orders_table"):
            skipped = run_job(lock_url, defs.loader_a_job, instance)
        ran = run_job(lock_url, defs.loader_a_job, instance)
    assert skipped.success and ran.success
    assert [e.step_key for e in skipped.all_events if e.is_step_skipped] == ["after_load"]
    assert ran.output_for_node("after_load") == ran.output_for_node("load_orders_a") + 1


def test_partitions_have_a_lock_each_and_complete_once(lock_url):
    with dg.instance_for_test() as instance:
        with DistributedLock(lock_url, app_id="other").hold(
            QUEUE, "daily_asset[2026-01-01]", slot="2026-01-01"
        ):
            beside = materialize(lock_url, [defs.daily_asset], instance, partition_key="2026-01-02")
        again = materialize(lock_url, [defs.daily_asset], instance, partition_key="2026-01-02")
        logs = instance.all_logs(again.run_id)
    assert beside.success and len(beside.get_asset_materialization_events()) == 1
    assert again.success and again.get_asset_materialization_events() == []
    skip_line = next(e.message for e in logs if "Skipped:" in e.message)
    assert "already completed by test/" in skip_line and "dlock/rerun=<why>" in skip_line
    assert Tables(lock_url).statuses(QUEUE, "daily_asset[2026-01-02]") == ["Completed", "Exited"]


def test_a_completed_slot_runs_again_with_the_rerun_tag_and_only_then(lock_url):
    day = {"partition_key": "2026-01-05"}
    with dg.instance_for_test() as instance:
        first = materialize(lock_url, [defs.daily_asset], instance, **day)
        plain_again = materialize(lock_url, [defs.daily_asset], instance, **day)
        rerun = materialize(
            lock_url, [defs.daily_asset], instance, tags={"dlock/rerun": "fixed input"}, **day
        )
    assert [len(r.get_asset_materialization_events()) for r in (first, plain_again, rerun)] == [
        1,
        0,
        1,
    ]
    rows = Tables(lock_url).logs(QUEUE, "daily_asset[2026-01-05]")
    assert [row[0] for row in rows] == ["Reset", "Exited", "Reset", "Completed"]
    audit = rows[2][4]
    assert "Re-run on purpose by run" in audit and "dlock/rerun=fixed input" in audit
    assert "reset by job log" in rows[0][4]
    completed = Tables(lock_url).query(
        "SELECT count(*) FROM job_logs WHERE status = 'Completed' AND slot = '2026-01-05'"
    )
    assert completed == [(1,)], "a slot never has two Completed rows"


def test_a_rerun_that_cannot_run_leaves_the_slot_completed(lock_url):
    other = DistributedLock(lock_url, app_id="other")
    with dg.instance_for_test() as instance:
        materialize(lock_url, [defs.daily_asset], instance, partition_key="2026-01-06")
        with other.hold(QUEUE, "daily_asset[2026-01-06]", slot="another"):
            refused = materialize(
                lock_url,
                [defs.daily_asset],
                instance,
                fields={"partition_wait_seconds": 0},
                partition_key="2026-01-06",
                tags={"dlock/rerun": "try"},
            )
    assert not refused.success
    statuses = Tables(lock_url).statuses(QUEUE, "daily_asset[2026-01-06]")
    assert statuses[0] == "Completed" and "Reset" not in statuses


def test_a_ranged_run_holds_each_partition_or_none(lock_url):
    def ranged(start: str, end: str, instance, **tags):
        range_tags = {
            "dagster/asset_partition_range_start": start,
            "dagster/asset_partition_range_end": end,
        }
        return materialize(lock_url, [defs.ranged_asset], instance, tags={**range_tags, **tags})

    with dg.instance_for_test() as instance:
        first = ranged("2026-01-01", "2026-01-03", instance)
        overlapping = ranged("2026-01-03", "2026-01-04", instance)
        rerun = ranged("2026-01-03", "2026-01-04", instance, **{"dlock/rerun": "overlap"})
    assert first.success and not overlapping.success and rerun.success
    assert "Partitions 2026-01-03 of this range were already completed" in step_error(overlapping)
    tables = Tables(lock_url)
    assert tables.statuses(QUEUE, "ranged_asset[2026-01-04]") == ["Exited", "Completed"]
    assert "Given back unused" in tables.logs(QUEUE, "ranged_asset[2026-01-04]")[0][4]
    assert tables.statuses(QUEUE, "ranged_asset[2026-01-03]") == [
        "Reset",
        "Exited",
        "Reset",
        "Completed",
    ]


def test_a_shared_lock_key_excludes_and_keeps_each_jobs_slots(lock_url):
    tick = {".dagster/scheduled_execution_time": "2026-11-28T08:00:00+00:00"}
    with dg.instance_for_test() as instance:
        a = run_job(lock_url, defs.loader_a_job, instance, tags=tick)
        b = run_job(lock_url, defs.loader_b_skip_job, instance, tags=tick)
    assert a.success and b.success
    # Both ran: one lock, but each job's tick is its own slot (an op's work is its job's).
    rows = Tables(lock_url).logs(QUEUE, "orders_table")
    assert [(row[0], row[3]) for row in rows] == [
        ("Completed", "loader_a_job@2026-11-28T08:00:00.000000+00:00"),
        ("Completed", "loader_b_skip_job@2026-11-28T08:00:00.000000+00:00"),
    ]


def release_after(seconds: float, url: str, name: str) -> threading.Thread:
    """Holds (QUEUE, name) now and lets go after `seconds`, from another thread."""
    ready = threading.Event()

    def hold() -> None:
        with DistributedLock(url, app_id="first").hold(QUEUE, name):
            ready.set()
            time.sleep(seconds)

    thread = threading.Thread(target=hold)
    thread.start()
    ready.wait(30)
    return thread


def test_policies_skip_wait_and_fail(lock_url):
    with dg.instance_for_test() as instance:
        holder = release_after(4, lock_url, "orders_table")
        started = time.monotonic()
        skipped = run_job(lock_url, defs.loader_b_skip_job, instance)
        failed = run_job(lock_url, defs.loader_b_fail_job, instance)
        assert work_rows(lock_url) == [], "neither ran while the lock was held"
        waited = run_job(lock_url, defs.loader_b_wait_job, instance)
        waited_for = time.monotonic() - started
        holder.join()
    assert skipped.success
    assert not failed.success
    assert "lock held by first/-" in step_error(failed) and "'fail'" in step_error(failed)
    assert waited.success and waited_for >= 3.5
    assert work_rows(lock_url) == [("load_orders_b", "orders_table", None)]


def test_wait_then_apply_after_wait(lock_url):
    @guarded_asset(queue=QUEUE, on_held="wait", wait_seconds=1, after_wait="skip")
    def patient() -> None:
        pass

    @guarded_asset(queue=QUEUE, job_name="patient", on_held="wait", wait_seconds=1)
    def patient_failing() -> None:
        pass

    with dg.instance_for_test() as instance:
        with DistributedLock(lock_url, app_id="other").hold(QUEUE, "patient"):
            skipped = materialize(lock_url, [patient], instance)
            failed = materialize(lock_url, [patient_failing], instance)
    assert skipped.success and skipped.get_asset_materialization_events() == []
    assert not failed.success
    assert "waited 1 s (on_held is 'wait')" in step_error(failed)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"on_held": "retry"}, "on_held must be 'skip', 'fail' or 'wait'"),
        ({"after_wait": "wait"}, "after_wait must be 'skip' or 'fail'"),
        ({"wait_seconds": -1}, "wait_seconds must be 0 or more"),
        ({"lease_seconds": 0}, "lease_seconds must be greater than 0"),
        ({"queue": ""}, "queue must be a non-empty string"),
        ({"lock_key": "x" * 101}, "lock_key is 101 characters long"),
        ({"resource_key": "my-lock"}, "resource_key must be a Python identifier"),
    ],
)
def test_bad_guard_arguments_are_refused_when_decorating(arguments, message):
    with pytest.raises(LockConfigError, match=message):

        @guarded_asset(**arguments)
        def nothing() -> None:
            pass


def test_an_async_body_is_refused_with_what_to_do():
    with pytest.raises(LockConfigError, match="is async"):

        @guarded_asset
        async def later() -> None:
            pass
