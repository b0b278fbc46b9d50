"""The code location's upkeep: the daily prune schedule (guarded, so duplicate daemons prune
once) and the stuck-lock check, which runs in a job of its own."""

# No `from __future__ import annotations`: Dagster reads these modules' annotations.

import re
from datetime import datetime, timezone
from typing import NamedTuple

import dagster as dg
import pytest

from orchestration.assets import heartbeat
from orchestration.definitions import build_definitions
from orchestration.queues import MAINTENANCE_QUEUE
from resources import DistributedLock
from support.databases import FAST_TIMEOUTS, Tables

TICK = datetime(2026, 11, 28, 3, 30, tzinfo=timezone.utc)


class Location(NamedTuple):
    defs: dg.Definitions
    url: str


@pytest.fixture
def location(default_databases, monkeypatch) -> Location:
    """The code location on a lock database of the test's own."""
    url = default_databases.create()
    monkeypatch.setenv("LOCK_DATABASE_URL", url)
    return Location(build_definitions(app_id="test-instance"), url)


def seed(tables: Tables, rows: list[tuple[str, str]]) -> None:
    for status, age in rows:
        tables.query(
            "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, created_time)"
            " VALUES ('seed', 'q', 'j', %s, 'seeded', clock_timestamp() - %s::interval)",
            status,
            age,
        )


def run_tick(defs: dg.Definitions, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    schedule = defs.resolve_schedule_def("dlock_prune_daily_schedule")
    context = dg.build_schedule_context(instance=instance, scheduled_execution_time=TICK)
    [request] = schedule.evaluate_tick(context).run_requests
    return defs.resolve_job_def("dlock_prune").execute_in_process(
        run_config=request.run_config,
        tags={".dagster/scheduled_execution_time": TICK.isoformat()},
        instance=instance,
    )


def test_the_prune_schedule_deletes_old_rows_keeps_young_and_processing_once_per_tick(location):
    defs, tables = location.defs, Tables(location.url)
    seed(tables, [("Completed", "45 days"), ("Exited", "31 days"), ("Failed", "400 days")])
    seed(tables, [("Processing", "90 days"), ("Completed", "29 days"), ("Exited", "1 hour")])
    # Resolved inside the instance's block: loading definitions outside one can meet a dangling
    # instance reference left by an earlier test of the same worker process.
    with dg.instance_for_test() as instance:
        schedule = defs.resolve_schedule_def("dlock_prune_daily_schedule")
        assert schedule.cron_schedule == "30 3 * * *" and schedule.execution_timezone == "UTC"
        first, duplicate = run_tick(defs, instance), run_tick(defs, instance)
        assert first.success and duplicate.success
        tags = instance.get_run_by_id(duplicate.run_id).tags
    left = tables.query("SELECT status, remark FROM job_logs WHERE queue_name = 'q' ORDER BY id")
    assert left == [("Processing", "seeded"), ("Completed", "seeded"), ("Exited", "seeded")]
    assert tags["dlock/outcome"] == "skipped" and tags["dlock/reason"] == "slot_done"
    assert tables.statuses(MAINTENANCE_QUEUE, "dlock_prune") == ["Completed", "Exited"]


def test_the_retention_age_comes_from_the_environment(monkeypatch):
    from orchestration import retention

    monkeypatch.setenv(retention.RETENTION_DAYS_ENV, "90")
    assert retention.retention_days() == 90.0
    monkeypatch.setenv(retention.RETENTION_DAYS_ENV, "0.5")
    with pytest.raises(ValueError, match="DLOCK_RETENTION_DAYS must be a number of days"):
        retention.retention_days()


def run_check(defs: dg.Definitions) -> dg.AssetCheckEvaluation:
    with dg.instance_for_test() as instance:
        result = defs.resolve_job_def("stuck_lock_check_job").execute_in_process(instance=instance)
    assert result.success
    assert not result.get_asset_materialization_events(), "a check-only job"
    [evaluation] = result.get_asset_check_evaluations()
    return evaluation


def test_the_check_fails_on_a_lapsed_lease_and_a_stuck_row_and_says_which(location):
    defs, tables = location.defs, Tables(location.url)
    healthy = run_check(defs)
    assert healthy.passed and healthy.asset_key == heartbeat.key
    hold = DistributedLock(location.url, app_id="crashed", **FAST_TIMEOUTS).hold("q", "j")
    hold.__enter__()
    tables.query("UPDATE queue_locks SET expires_at = clock_timestamp() - interval '10 min'")
    seed(tables, [("Processing", "2 hours")])
    stuck = run_check(defs)
    assert not stuck.passed and stuck.severity == dg.AssetCheckSeverity.ERROR
    assert "lock q/j: lease of crashed/- (fence" in stuck.description
    assert re.search(r"lapsed 6\d\d s ago, not taken over", stuck.description)
    assert "is stuck in Processing: no lock row points to it" in stuck.description
    assert stuck.metadata["stuck_rows"].value == 2 and stuck.metadata["lapsed_leases"].value == 1
    hold.__exit__(None, None, None)
