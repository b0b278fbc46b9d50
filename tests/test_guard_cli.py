"""The one-line guard under contention: real `dagster asset materialize` / `dagster job execute`
processes on a PostgreSQL-backed instance, every scenario side by side."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from support.databases import Tables
from support.guarded_defs import QUEUE
from support.processes import PROJECT_ROOT, dagster, finish

MODULE = ["-m", "support.guarded_defs"]
SELECTIONS = {"pair": "left,right"}  # a multi-asset is selected by its assets' keys


@pytest.fixture(scope="module")
def env(dagster_instance_env, default_databases) -> dict[str, str]:
    instance = dagster_instance_env()
    return {
        **instance,
        "LOCK_DATABASE_URL": default_databases.create(),
        "GUARD_APP_ID": "cli",
        "PYTHONPATH": f"{PROJECT_ROOT}:{PROJECT_ROOT / 'tests'}",
    }


class Runs:
    """dagster processes of one test; a first run's work waits for its gate file, which the
    test opens once the competing run has made its move."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env, self.folder = env, folder
        self.lock_tables = Tables(env["LOCK_DATABASE_URL"])
        self.storage = Tables(env["DAGSTER_PG_URL"].replace("+psycopg2", "+psycopg"))

    def gate(self, name: str) -> Path:
        return self.folder / f"{name}.open"

    def _config(self, node: str, name: str, gate: str | None) -> str:
        config = {"gate": str(self.gate(gate)) if gate else ""}
        # dagster reads -c as a glob: no brackets in the name.
        path = self.folder / f"{name.replace('[', '-').replace(']', '')}.json"
        path.write_text(json.dumps({"ops": {node: {"config": config}}}))
        return str(path)

    def materialize(self, node: str, name: str, *extra: str, gate: str | None = None):
        selection = SELECTIONS.get(node, node)
        config = self._config(node, name, gate)
        return dagster(
            self.env, "asset", "materialize", *MODULE, "--select", selection, "-c", config, *extra
        )

    def execute(self, job: str, node: str, name: str, gate: str | None = None):
        config = self._config(node, name, gate)
        return dagster(self.env, "job", "execute", *MODULE, "-j", job, "-c", config)

    def statuses(self, job_name: str) -> list[str]:
        return self.lock_tables.statuses(QUEUE, job_name)

    def step_starts(self, step_key: str) -> int:
        [(count,)] = self.storage.query(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'STEP_START'"
            " AND step_key = %s",
            step_key,
        )
        return count

    def materializations(self, asset: str) -> int:
        [(count,)] = self.storage.query(
            "SELECT count(*) FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION'"
            " AND asset_key = %s",
            json.dumps([asset]),
        )
        return count


def key_lines(output: str) -> str:
    """What a dagster run said about its lock and steps, without the noise."""
    keys = ("Lock", "Skipped", "STEP_", "Error")
    return "\n".join(line[-300:] for line in output.splitlines() if any(k in line for k in keys))


def wait_until(check, processes, what: str, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for process in processes:
            assert process.poll() is None, (what, key_lines(finish(process)[1]))
        assert time.monotonic() < deadline, what
        time.sleep(0.3)


def test_contention_on_every_kind_of_guard_side_by_side(env, tmp_path):
    runs = Runs(env, tmp_path)
    firsts = {
        "plain": runs.materialize("plain_asset", "plain-1", gate="plain"),
        "partition": runs.materialize(
            "daily_asset", "day-1", "--partition", "2026-02-01", gate="partition"
        ),
        "pair": runs.materialize("pair", "pair-1", gate="pair"),
        "loader": runs.execute("loader_a_job", "load_orders_a", "a", gate="loader"),
    }
    day_names = [f"daily_asset[{day}]" for day in ("2026-02-02", "2026-02-03", "2026-02-04")]
    days = [
        runs.materialize("daily_asset", name, "--partition", name[12:22], gate="days")
        for name in day_names
    ]
    for kind, job_name in (
        ("plain", "plain_asset"),
        ("partition", "daily_asset[2026-02-01]"),
        ("pair", "pair"),
        ("loader", "orders_table"),
    ):
        wait_until(
            lambda name=job_name: "Processing" in runs.statuses(name), [firsts[kind]], job_name
        )
    seconds = {
        "plain": runs.materialize("plain_asset", "plain-2"),
        "partition": runs.materialize("daily_asset", "day-2", "--partition", "2026-02-01"),
        "pair": runs.materialize("pair", "pair-2"),
        "wait": runs.execute("loader_b_wait_job", "load_orders_b_wait", "b-wait"),
        "fail": runs.execute("loader_b_fail_job", "load_orders_b_fail", "b-fail"),
    }
    # Every day's work is under way at once before any of them may finish.
    wait_until(
        lambda: all(runs.statuses(name) == ["Processing"] for name in day_names), days, "days"
    )
    runs.gate("days").touch()
    # Each second run has made its move (refused, or waiting) before the first lets go.
    wait_until(lambda: "Exited" in runs.statuses("plain_asset"), [seconds["plain"]], "plain")
    wait_until(lambda: "Exited" in runs.statuses("pair"), [seconds["pair"]], "pair")
    wait_until(lambda: seconds["fail"].poll() is not None, [], "fail")
    wait_until(
        lambda: runs.step_starts("daily_asset") >= 5 and runs.step_starts("load_orders_b_wait"),
        [seconds["partition"], seconds["wait"]],
        "the waiting runs",
    )
    time.sleep(2)  # they are inside their wait now
    for gate in ("plain", "partition", "pair", "loader"):
        runs.gate(gate).touch()
    outcomes = {
        name: finish(process)
        for name, process in [
            *(("first " + k, p) for k, p in firsts.items()),
            *(("second " + k, p) for k, p in seconds.items()),
            *((f"day {i}", p) for i, p in enumerate(days)),
        ]
    }

    failing = {name: out for name, (code, out) in outcomes.items() if code != 0}
    assert set(failing) == {"second fail"}, {name: key_lines(out) for name, out in failing.items()}
    assert "lock held by cli/" in failing["second fail"]

    # Two materializations raced: one did the work, the other succeeded without it.
    for job_name in ("plain_asset", "pair"):
        assert runs.statuses(job_name) == ["Completed", "Exited"]
    assert runs.materializations("plain_asset") == 1
    assert runs.materializations("left") == runs.materializations("right") == 1
    assert "Skipped: Lock guard-test/plain_asset: lock held by cli/" in outcomes["second plain"][1]

    # The same partition twice at once: the second waited for the first, then found it done.
    rows = runs.lock_tables.logs(QUEUE, "daily_asset[2026-02-01]")
    assert [row[0] for row in rows] == ["Completed", "Exited"]
    assert "already completed by cli/" in rows[1][4]
    assert runs.materializations("daily_asset") == 4  # 2026-02-01 once, and the three days

    # Other partitions ran at the same moment and all completed.
    assert all(runs.statuses(name) == ["Completed"] for name in day_names)

    # Two jobs sharing the lock key: wait ran after the first let go, fail did not run.
    loaders = runs.lock_tables.query(
        "SELECT status, created_time, updated_time FROM job_logs"
        " WHERE job_name = 'orders_table' ORDER BY id"
    )
    assert [row[0] for row in loaders] == ["Completed", "Exited", "Completed"], loaders
    assert loaders[2][1] >= loaders[0][2], "the waiting job ran only once the first released"
    assert runs.lock_tables.query(
        "SELECT count(*) FROM heartbeats WHERE job_name = 'orders_table'"
    ) == [(2,)]
