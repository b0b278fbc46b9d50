"""One Dagster run executed by two run workers at once: the body runs once.

Two daemons on one instance can both dequeue a queued run and launch it (each reads it QUEUED
before the other marks it launched), and both run workers then pass Dagster's own check (each
reads it NOT_STARTED or STARTING before the other marks it STARTED). Scenario 1 saw it in CI:
one run held the guard twice. Here it happens on purpose: two real worker processes load the
same run, wait at a gate so neither starts before the other has read it, then execute it.
"""

# No `from __future__ import annotations`: kept like the other tests that touch Dagster.

import subprocess
import sys
import time

from support.databases import Tables
from support.deployments import Deployment, StorageTemplate
from support.processes import dagster, finish

TICK = "2026-12-06T18:42:00+00:00"

# A run worker, as `dagster api execute_run` is one: it reads the run, then executes it. The
# gate holds it between the two, where the real race is.
WORKER = """
import sys, time
from pathlib import Path
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository
from dagster._core.execution.api import execute_run

run_id, gate, ready = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
with dg.DagsterInstance.get() as instance:
    run = instance.get_run_by_id(run_id)
    ready.touch()
    while not gate.exists():
        time.sleep(0.01)
    job = ReconstructableRepository.for_module(
        "orchestration.instance_one", "defs"
    ).get_reconstructable_job(run.job_name)
    result = execute_run(job, run, instance)
    print("worker result:", result.success)
"""

CREATE_RUN = """
import sys
import dagster as dg
from orchestration.instance_one import defs

with dg.DagsterInstance.get() as instance:
    job = defs.resolve_job_def("heartbeat_job")
    run = instance.create_run_for_job(
        job,
        run_config={"ops": {"record_heartbeat": {"config": {"work_seconds": 3.0}}}},
        tags={".dagster/scheduled_execution_time": sys.argv[1]},
    )
    print(run.run_id)
"""


def python(env: dict[str, str], code: str, *args: str) -> subprocess.Popen:
    """Python code in a process of its own, from the project folder, output captured."""
    return dagster(env, "-c", code, *args, executable=sys.executable)


def test_one_run_executed_by_two_workers_runs_its_body_once(default_databases, tmp_path):
    lock_url = default_databases.create()
    storages = StorageTemplate(default_databases, tmp_path / "template")
    deployment = Deployment.create("one", storages, tmp_path / "home", lock_url)
    code, out = finish(python(deployment.env, CREATE_RUN, TICK))
    assert code == 0, out
    run_id = out.strip().splitlines()[-1]

    gate = tmp_path / "gate"
    ready = [tmp_path / "ready-1", tmp_path / "ready-2"]
    workers = [python(deployment.env, WORKER, run_id, str(gate), str(r)) for r in ready]
    deadline = time.monotonic() + 300
    while not all(r.exists() for r in ready):
        assert all(w.poll() is None for w in workers), [w.communicate()[0] for w in workers]
        assert time.monotonic() < deadline, "the workers did not load the run"
        time.sleep(0.1)
    gate.touch()  # both have read the run as not started: both will execute it
    finished = [finish(w) for w in workers]
    outputs = [out for _, out in finished]
    assert [code for code, _ in finished] == [0, 0], outputs
    # Each execution succeeded: one ran the body, the other skipped it (without the guard the
    # second body's fenced beat is refused, and its step fails; the event log below says so
    # even when that worker's result reads the other's success).
    assert all("worker result: True" in out for out in outputs), outputs

    # Dagster really did execute it twice: two starts of its one step, and both succeeded. The
    # event log says so per execution; a worker's result reads the run's status, which the
    # execution that finished last decides.
    steps = dict(
        deployment.storage(
            "SELECT dagster_event_type, count(*) FROM event_logs"
            " WHERE run_id = %s AND dagster_event_type LIKE 'STEP_%%' GROUP BY 1",
            run_id,
        )
    )
    assert steps.get("STEP_START") == 2, outputs
    assert steps.get("STEP_SUCCESS") == 2 and "STEP_FAILURE" not in steps, steps
    # The guard let one execution run the body; the other skipped, naming the holder.
    tables = Tables(lock_url)
    rows = tables.query("SELECT status, run_id, remark FROM job_logs ORDER BY id")
    assert sorted(status for status, _, _ in rows) == ["Completed", "Exited"], rows
    assert all(row_run == run_id for _, row_run, _ in rows), rows
    [exited] = [remark for status, _, remark in rows if status == "Exited"]
    assert exited.startswith("Not run: slot ") and run_id in exited, exited
    assert tables.query("SELECT count(*) FROM heartbeats") == [(1,)]
    assert tables.query("SELECT count(*) FROM queue_locks WHERE owner IS NOT NULL") == [(0,)]
    [(status,)] = deployment.storage("SELECT status FROM runs WHERE run_id = %s", run_id)
    assert status == "SUCCESS"
