"""The code location: definitions, schedules and the heartbeat work, run in process."""

# No `from __future__ import annotations`: Dagster reads the test assets' annotations.

import importlib
import subprocess
import sys
from datetime import datetime, timezone

import dagster as dg
import pytest

from orchestration.assets import heartbeat
from orchestration.queues import HEARTBEAT_ASSET_QUEUE, HEARTBEAT_QUEUE
from resources import DistributedLock, DistributedLockResource, LockHeld, LockTimeout
from support.databases import Tables
from support.processes import PROJECT_ROOT

TICK_TAG = ".dagster/scheduled_execution_time"
MODULES = ["orchestration.definitions", "orchestration.instance_one", "orchestration.instance_two"]


@pytest.fixture
def lock_url(default_databases) -> str:
    """A lock database of the test's own: the heartbeat's names are fixed."""
    return default_databases.create()


def resource(url: str, **fields) -> DistributedLockResource:
    return DistributedLockResource(database_url=url, app_id="test-instance", **fields)


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_loads_its_definitions(module_name):
    defs = importlib.import_module(module_name).defs
    dg.Definitions.validate_loadable(defs)
    assert defs.resolve_job_def("heartbeat_job").description
    assert defs.resolve_job_def("heartbeat_asset_job").description
    expected_app_id = {
        "orchestration.instance_one": "instance-one",
        "orchestration.instance_two": "instance-two",
    }.get(module_name)
    assert defs.resources["lock"].app_id == expected_app_id


def next_ticks(heartbeat_cron: str | None) -> dict[str, list[str]]:
    """The next two UTC ticks of every schedule after 04:30, loaded in a process whose
    environment sets HEARTBEAT_CRON only as given (the shell's own never leaks in)."""
    code = (
        "from datetime import datetime, timezone\n"
        "from dagster._utils.schedules import cron_string_iterator\n"
        "from orchestration.definitions import defs\n"
        "start = datetime(2026, 11, 28, 4, 30, tzinfo=timezone.utc).timestamp()\n"
        "for s in defs.schedules:\n"
        "    ticks = cron_string_iterator(start, s.cron_schedule, s.execution_timezone)\n"
        "    print(s.name, next(ticks).astimezone(timezone.utc).strftime('%H:%M'),"
        " next(ticks).astimezone(timezone.utc).strftime('%H:%M'))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT)}
    if heartbeat_cron:
        env["HEARTBEAT_CRON"] = heartbeat_cron
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd=PROJECT_ROOT,
        check=True,
    ).stdout
    return {name: ticks for name, *ticks in (line.split() for line in out.splitlines())}


def test_schedules_tick_on_the_hour_in_utc_unless_heartbeat_cron_says_otherwise():
    names = {"heartbeat_job_hourly_schedule", "heartbeat_asset_job_hourly_schedule"}
    hourly = {name: ticks for name, ticks in next_ticks(None).items() if "heartbeat" in name}
    assert set(hourly) == names
    assert all(ticks == ["05:00", "06:00"] for ticks in hourly.values())
    # The override changes the cadence, not the names: tests tick every minute.
    every_minute = {
        name: ticks for name, ticks in next_ticks("* * * * *").items() if "heartbeat" in name
    }
    assert set(every_minute) == names
    assert all(ticks == ["04:30", "04:31"] for ticks in every_minute.values())


@pytest.mark.parametrize(
    ("schedule_name", "job_name"),
    [
        ("heartbeat_job_hourly_schedule", "heartbeat_job"),
        ("heartbeat_asset_job_hourly_schedule", "heartbeat_asset_job"),
    ],
)
def test_schedule_tick_requests_a_run_of_its_job(schedule_name, job_name):
    from orchestration.definitions import defs

    schedule = next(s for s in defs.schedules if s.name == schedule_name)
    tick = datetime(2026, 11, 28, 5, tzinfo=timezone.utc)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=tick)
        data = schedule.evaluate_tick(context)
    assert len(data.run_requests) == 1
    assert schedule.job_name == job_name


def run_heartbeat_job(url: str, tags: dict | None = None, instance=None, **run_config):
    from orchestration.jobs import heartbeat_job

    config = {"ops": {"record_heartbeat": {"config": run_config}}} if run_config else None
    return heartbeat_job.execute_in_process(
        resources={"lock": resource(url)},
        tags=tags or {},
        run_config=config,
        raise_on_error=False,
        instance=instance,
    )


def test_scheduled_run_uses_its_tick_tag_as_the_slot(lock_url):
    result = run_heartbeat_job(lock_url, {TICK_TAG: "2026-11-28T06:00:00+01:00"})
    assert result.success
    tables = Tables(lock_url)
    assert tables.logs(HEARTBEAT_QUEUE, "heartbeat_job")[0][3] == (
        "2026-11-28T05:00:00.000000+00:00"
    )
    [(app_id, fence, slot)] = tables.query("SELECT app_id, fence, slot FROM heartbeats")
    assert app_id == "test-instance" and slot == "2026-11-28T05:00:00.000000+00:00"
    output = result.output_for_node("record_heartbeat")
    assert output["fence"] == fence and output["instance"] == "test-instance"


def test_same_tick_again_skips_and_says_so_in_run_tags(lock_url):
    tags = {TICK_TAG: "2026-11-28T05:00:00+00:00"}
    with dg.instance_for_test() as instance:
        first = run_heartbeat_job(lock_url, tags, instance)
        again = run_heartbeat_job(lock_url, tags, instance)
        assert first.success and again.success, "a duplicate tick succeeds without the work"
        assert instance.get_run_by_id(first.run_id).tags["dlock/outcome"] == "completed"
        skipped = instance.get_run_by_id(again.run_id).tags
    assert skipped["dlock/outcome"] == "skipped" and skipped["dlock/reason"] == "slot_done"
    assert skipped["dlock/holder"] == f"test-instance/{first.run_id}" and skipped["dlock/since"]
    assert Tables(lock_url).statuses(HEARTBEAT_QUEUE, "heartbeat_job") == ["Completed", "Exited"]
    assert Tables(lock_url).count("heartbeats") == 1


def test_failing_op_leaves_failed_row_and_no_lock(lock_url):
    result = run_heartbeat_job(lock_url, fail=True)
    assert not result.success
    tables = Tables(lock_url)
    assert tables.statuses(HEARTBEAT_QUEUE, "heartbeat_job") == ["Failed"]
    assert tables.lock_row(HEARTBEAT_QUEUE, "heartbeat_job") is None
    assert tables.count("heartbeats") == 0


def failure_causes(result) -> list[str]:
    """Class names along the cause chain of the run's step failure."""
    [event] = [e for e in result.all_events if e.is_step_failure]
    error, names = event.step_failure_data.error, []
    while error is not None:
        names.append(error.cls_name)
        error = error.cause
    return names


def test_on_held_fail_fails_a_run_that_finds_the_lock_held(lock_url):
    from orchestration.jobs import heartbeat_job

    with DistributedLock(lock_url, app_id="other").hold(HEARTBEAT_QUEUE, "heartbeat_job"):
        skipped = run_heartbeat_job(lock_url)
        failed = heartbeat_job.execute_in_process(
            resources={"lock": resource(lock_url, on_held="fail")}, raise_on_error=False
        )
    assert skipped.success
    assert not failed.success
    assert LockHeld.__name__ in failure_causes(failed)


def materializations(lock_url: str, **kwargs) -> list:
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [heartbeat], resources={"lock": resource(lock_url)}, instance=instance, **kwargs
        )
        assert result.success
        return result.asset_materializations_for_node("heartbeat")


def test_asset_locks_on_its_key_whatever_job_runs_it(lock_url):
    [materialization] = materializations(lock_url, tags={TICK_TAG: "2026-11-28T07:00:00+00:00"})
    assert Tables(lock_url).statuses(HEARTBEAT_ASSET_QUEUE, "heartbeat") == ["Completed"]
    assert materialization.metadata["slot"].value == "2026-11-28T07:00:00.000000+00:00"


def test_asset_held_elsewhere_is_not_materialized(lock_url):
    with DistributedLock(lock_url, app_id="other").hold(HEARTBEAT_ASSET_QUEUE, "heartbeat"):
        assert materializations(lock_url) == []
    assert Tables(lock_url).statuses(HEARTBEAT_ASSET_QUEUE, "heartbeat") == ["Completed", "Exited"]


daily = dg.DailyPartitionsDefinition(start_date="2026-11-01")


@dg.asset(partitions_def=daily)
def partitioned_beat(context: dg.AssetExecutionContext, lock: DistributedLockResource) -> None:
    with lock.hold_for(context, queue_name="partition-queue"):
        pass  # the job log says whether it ran


def test_a_partition_runs_beside_another_and_waits_for_itself_then_fails(lock_url):
    other = DistributedLock(lock_url, app_id="other")
    with dg.instance_for_test() as instance:

        def materialize(day: str, **fields):
            return dg.materialize(
                [partitioned_beat],
                partition_key=day,
                raise_on_error=False,
                resources={"lock": resource(lock_url, **fields)},
                instance=instance,
            )

        with other.hold("partition-queue", "partitioned_beat[2026-11-02]", slot="2026-11-02"):
            beside = materialize("2026-11-03")
            same = materialize("2026-11-02", partition_wait_seconds=1)
        assert beside.success, "another partition's holder does not block this one"
        assert not same.success
        assert LockTimeout.__name__ in failure_causes(same)
        assert materialize("2026-11-02").success  # its holder done: the slot is done, skipped
    tables = Tables(lock_url)
    assert [row[0] for row in tables.logs("partition-queue", "partitioned_beat[2026-11-03]")] == [
        "Completed"
    ]
    held_elsewhere = tables.logs("partition-queue", "partitioned_beat[2026-11-02]")
    assert [(row[0], row[1]) for row in held_elsewhere] == [
        ("Completed", "other"),  # the holder, done once it let go
        ("Exited", "test-instance"),  # waited for it, then failed
        ("Exited", "test-instance"),  # the slot done by then: skipped
    ]
    assert "being processed" in held_elsewhere[1][4]
    assert "already completed" in held_elsewhere[2][4]


def test_resource_fields_are_described_and_the_url_stays_out_of_the_schema():
    fields = DistributedLockResource.model_fields
    for name, field in fields.items():
        assert field.description and len(field.description) > 20, name
    assert "default" in fields["lease_seconds"].description
    assert fields["database_url"].default is None
    schema = DistributedLockResource.to_config_schema().as_field().config_type.fields
    assert "LOCK_DATABASE_URL" in schema["database_url"].description
    assert schema["database_url"].default_value is None  # a default would show in the UI
