"""Two deployments (each its own DAGSTER_HOME, Dagster storage and daemon; one lock database),
run once for every scenario that needs ticks: overlapping backfills launched as the UI launches
them, the inbox sensor of both instances, and a declarative automation evaluation."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestration.queues import DIGEST_QUEUE, INBOX_QUEUE
from support.automated_defs import QUEUE as AUTOMATION_QUEUE
from support.databases import Tables
from support.processes import BIN, PROJECT_ROOT, daemon, dagster, finish, interrupt_all

BACKFILLS = {
    "instance_one": ["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"],
    "instance_two": ["2026-03-03", "2026-03-04", "2026-03-05", "2026-03-06"],
}
INBOX_FILES = ("orders-1.csv", "orders-2.csv")

# What the UI's "Launch backfill" sends; the daemon's backfill loop then launches the runs.
LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}
"""


@dataclass
class Deployment:
    location: str
    env: dict[str, str]
    workspace: Path

    @property
    def storage(self) -> Tables:
        return Tables(self.env["DAGSTER_PG_URL"].replace("+psycopg2", "+psycopg"))

    def cli(self, *args: str) -> str:
        code, out = finish(dagster(self.env, *args))
        assert code == 0, out[-3000:]
        return out

    def unfinished_runs(self) -> int:
        [(count,)] = self.storage.query(
            "SELECT count(*) FROM runs WHERE status NOT IN ('SUCCESS', 'FAILURE', 'CANCELED')"
        )
        return count

    def backfill_statuses(self) -> list[str]:
        return [row[0] for row in self.storage.query("SELECT status FROM bulk_actions")]

    def failures(self) -> list[str]:
        """What failed runs said (their step and run failure events), for a message."""
        rows = self.storage.query(
            "SELECT event FROM event_logs"
            " WHERE dagster_event_type IN ('STEP_FAILURE', 'RUN_FAILURE', 'ENGINE_EVENT')"
        )
        return [
            message[:400]
            for (event,) in rows
            for message in re.findall(r'"message": "((?:[^"\\\\]|\\\\.)*)"', event)
            if message
        ]

    def run_tags(self, key: str) -> list[str]:
        return [
            row[0] for row in self.storage.query("SELECT value FROM run_tags WHERE key = %s", key)
        ]


def make_deployment(dagster_instance_env, location: str, lock_url: str, inbox: Path) -> Deployment:
    env = dagster_instance_env()
    home = Path(env["DAGSTER_HOME"])
    workspace = home / "workspace.yaml"
    modules = [(f"orchestration.{location}", location)]
    if location == "instance_one":
        modules.append(("support.automated_defs", "automation"))
    workspace.write_text(
        "load_from:\n"
        + "".join(
            f"  - python_module:\n      module_name: {module}\n      location_name: {name}\n"
            for module, name in modules
        )
    )
    env = {
        **env,
        "LOCK_DATABASE_URL": lock_url,
        "INBOX_DIR": str(inbox),
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}",
    }
    return Deployment(location, env, workspace)


def launch_backfill(deployment: Deployment, days: list[str]) -> str:
    params = {
        "partitionNames": days,
        "assetSelection": [{"path": [deployment.location, "daily_digest"]}],
    }
    code, out = finish(
        dagster(
            deployment.env,
            "-w",
            str(deployment.workspace),
            "-t",
            LAUNCH_BACKFILL,
            "-v",
            json.dumps({"params": params}),
            executable=str(BIN / "dagster-graphql"),
        )
    )
    assert code == 0, out[-3000:]
    response, _ = json.JSONDecoder().raw_decode(out[out.index('{"data"') :])
    result = response["data"]["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


@dataclass
class Scenario:
    deployments: list[Deployment]
    tables: Tables
    storage_id: str


@pytest.fixture(scope="module")
def scenario(dagster_instance_env, default_databases, tmp_path_factory) -> Iterator[Scenario]:
    lock_url = default_databases.create()
    inbox = tmp_path_factory.mktemp("inbox")
    for name in INBOX_FILES:
        (inbox / name).write_text("id,amount\n1,10\n")
    deployments = [
        make_deployment(dagster_instance_env, location, lock_url, inbox) for location in BACKFILLS
    ]
    for deployment in deployments:
        deployment.cli(
            "sensor",
            "start",
            "inbox_sensor",
            "-w",
            str(deployment.workspace),
            "-l",
            deployment.location,
        )
        launch_backfill(deployment, BACKFILLS[deployment.location])
    logs = [d.workspace.with_name("daemon.log") for d in deployments]
    daemons = [
        daemon(d.env, str(d.workspace), log) for d, log in zip(deployments, logs, strict=True)
    ]
    tables = Tables(lock_url)
    deadline = time.monotonic() + 420
    try:
        while not settled(deployments, tables) and time.monotonic() < deadline:
            if any(process.poll() is not None for process in daemons):
                break
            time.sleep(2)
    finally:
        interrupt_all(daemons)
    outputs = [log.read_text() for log in logs]
    assert settled(deployments, tables), (
        [d.backfill_statuses() for d in deployments],
        [out[-4000:] for out in outputs],
    )
    # Written by the automation run's guard (Dagster's id of deployment one's run storage).
    [(storage_id,)] = deployments[0].storage.query("SELECT run_storage_id FROM instance_info")
    yield Scenario(deployments, tables, storage_id)


def settled(deployments: list[Deployment], tables: Tables) -> bool:
    """Both backfills done, each instance's sensor runs and the automation run finished."""
    if any(not d.backfill_statuses()[0].startswith("COMPLETED") for d in deployments):
        return False
    if any(len(d.run_tags("dagster/run_key")) < len(INBOX_FILES) for d in deployments):
        return False
    if not tables.query("SELECT 1 FROM job_logs WHERE queue_name = %s", AUTOMATION_QUEUE):
        return False
    return all(d.unfinished_runs() == 0 for d in deployments)


def test_overlapping_backfills_complete_every_partition_once(scenario):
    # Dagster ends a backfill COMPLETED_FAILED when a partition's run succeeded without
    # materializing it (asset_backfill.py, "no materialization status despite all runs being
    # complete"): the partitions the other deployment did. No run failed.
    for deployment in scenario.deployments:
        [status] = deployment.backfill_statuses()
        assert status in ("COMPLETED_SUCCESS", "COMPLETED_FAILED")
        assert deployment.storage.query("SELECT count(*) FROM runs WHERE status <> 'SUCCESS'") == [
            (0,)
        ], deployment.failures()
    by_day: dict[str, list[tuple[str, str, str]]] = {}
    for status, app_id, _, slot, remark in scenario.tables.query(
        "SELECT status, app_id, fence, slot, remark FROM job_logs WHERE queue_name = %s"
        " ORDER BY id",
        DIGEST_QUEUE,
    ):
        by_day.setdefault(slot, []).append((status, app_id, remark))
    days = sorted({day for days in BACKFILLS.values() for day in days})
    assert sorted(by_day) == days
    for day, rows in by_day.items():
        statuses = [row[0] for row in rows]
        assert statuses.count("Completed") == 1, (day, rows)
        assert "Failed" not in statuses, (day, rows)
    for day in ("2026-03-03", "2026-03-04"):  # in both backfills
        [(_, _, remark)] = [row for row in by_day[day] if row[0] == "Exited"]
        assert "already completed by instance-" in remark, remark
    for day in ("2026-03-01", "2026-03-02", "2026-03-05", "2026-03-06"):
        assert [row[0] for row in by_day[day]] == ["Completed"]


def test_both_instances_sensors_import_each_file_once(scenario):
    rows = scenario.tables.query(
        "SELECT slot, status FROM job_logs WHERE queue_name = %s ORDER BY id", INBOX_QUEUE
    )
    for name in INBOX_FILES:
        statuses = sorted(status for slot, status in rows if slot == name)
        assert statuses == ["Completed", "Exited"], (name, rows)
    for deployment in scenario.deployments:
        assert sorted(deployment.run_tags("dagster/run_key")) == sorted(INBOX_FILES)


def test_an_automation_run_gets_its_evaluation_as_the_slot(scenario):
    one = scenario.deployments[0]
    [evaluation_id, *_] = one.run_tags("dagster/asset_evaluation_id")
    rows = scenario.tables.query(
        "SELECT status, job_name, slot FROM job_logs WHERE queue_name = %s ORDER BY id",
        AUTOMATION_QUEUE,
    )
    storage_id = scenario.storage_id
    print("automation run's job log row:", rows[0])  # the README quotes it
    assert rows[0] == (
        "Completed",
        "automated",
        f"evaluation {evaluation_id} of storage {storage_id}",
    )
