"""Real `dagster` processes on a PostgreSQL-backed instance, as users and daemons run them."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from orchestration.queues import HEARTBEAT_ASSET_QUEUE, HEARTBEAT_QUEUE
from support.databases import Tables
from support.processes import dagster, finish

TICK_TAG = ".dagster/scheduled_execution_time"


@pytest.fixture(scope="module")
def dagster_home(dagster_instance_env) -> dict[str, str]:
    return dagster_instance_env()


@pytest.fixture
def env(dagster_home, default_databases) -> dict[str, str]:
    """The instance's environment plus a lock database of this test's own."""
    return {**dagster_home, "LOCK_DATABASE_URL": default_databases.create()}


def test_workspace_validates_with_the_dagster_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    code, out = finish(dagster(env, "definitions", "validate", "-w", "workspace.yaml"))
    assert code == 0, out
    assert "instance_one" in out and "instance_two" in out


@pytest.mark.parametrize(
    ("job", "queue", "lock_job"),
    [
        ("heartbeat_job", HEARTBEAT_QUEUE, "heartbeat_job"),
        ("heartbeat_asset_job", HEARTBEAT_ASSET_QUEUE, "heartbeat"),
    ],
)
def test_both_instances_on_one_tick_one_completes_one_exits(env, job, queue, lock_job):
    tags = json.dumps({TICK_TAG: "2026-11-28T08:00:00+00:00"})
    runs = [
        dagster(env, "job", "execute", "-m", f"orchestration.{instance}", "-j", job, "--tags", tags)
        for instance in ("instance_one", "instance_two")
    ]
    for code, out in map(finish, runs):
        assert code == 0, out
    tables = Tables(env["LOCK_DATABASE_URL"])
    logs = tables.logs(queue, lock_job)
    assert sorted(row[0] for row in logs) == ["Completed", "Exited"]
    assert {row[1] for row in logs} == {"instance-one", "instance-two"}
    assert {row[3] for row in logs} == {"2026-11-28T08:00:00.000000+00:00"}
    exited = next(row for row in logs if row[0] == "Exited")
    winner = next(row for row in logs if row[0] == "Completed")
    assert winner[1] in exited[4], "the loser's remark names the holder"
    assert tables.count("heartbeats") == 1


def test_asset_materialize_from_the_cli_writes_one_completed_row(env):
    code, out = finish(
        dagster(
            env, "asset", "materialize", "-m", "orchestration.definitions", "--select", "heartbeat"
        )
    )
    assert code == 0, out
    tables = Tables(env["LOCK_DATABASE_URL"])
    [(status, app_id, fence, slot, _)] = tables.logs(HEARTBEAT_ASSET_QUEUE, "heartbeat")
    assert status == "Completed" and slot is None and ":" in app_id  # host:pid by default
    assert tables.lock_row(HEARTBEAT_ASSET_QUEUE, "heartbeat") is None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_leaves_exited_row_and_no_lock(env, tmp_path, sig):
    config = tmp_path / "slow.yaml"
    config.write_text("ops:\n  record_heartbeat:\n    config:\n      work_seconds: 120\n")
    run = dagster(
        env,
        "job",
        "execute",
        "-m",
        "orchestration.instance_one",
        "-j",
        "heartbeat_job",
        "-c",
        str(config),
    )
    tables = Tables(env["LOCK_DATABASE_URL"])
    deadline = time.monotonic() + 120
    while tables.statuses(HEARTBEAT_QUEUE, "heartbeat_job") != ["Processing"]:
        assert run.poll() is None and time.monotonic() < deadline, run.stdout.read()
        time.sleep(0.2)
    run.send_signal(sig)
    finish(run)
    [(status, _, _, _, remark)] = tables.logs(HEARTBEAT_QUEUE, "heartbeat_job")
    assert status == "Exited" and "Interrupted" in remark
    assert tables.lock_row(HEARTBEAT_QUEUE, "heartbeat_job") is None
