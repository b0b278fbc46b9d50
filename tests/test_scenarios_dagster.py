"""Reliability scenarios with whole Dagster deployments: duplicate daemons (1), two deployments
sharing only the lock database (2), duplicate code servers (3), a killed run worker (4), a run
terminated from the UI (5), bad input (9) and scenario 4 behind PgBouncer (10).
RELIABILITY.md reports what they saw.

Scenarios 1, 2 and 3 wait for real per-minute schedule ticks. They run side by side on the same
ticks: one fixture starts every deployment they need when this module starts, and the scenarios
that need no tick (4, 5, 9, 10) run meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

from orchestration.queues import HEARTBEAT_QUEUE
from resources.lock import UNGUARDED_FOR_TESTS_ENV
from resources.migrate import migrate
from support.bouncer import PGBOUNCER, Bouncer
from support.clusters import Cluster
from support.databases import Tables, free_port
from support.deployments import (
    FINISHED,
    TICK_TAG,
    Deployment,
    Run,
    StorageTemplate,
    finish_all,
    graphql,
)
from support.processes import DAGSTER, PROJECT_ROOT
from support.reliability import record

pytestmark = [pytest.mark.scenario, pytest.mark.timeout(900)]

# The op job: its lock's job name is the Dagster job's name.
JOB = "heartbeat_job"
SCHEDULE = "heartbeat_job_hourly_schedule"
EVERY_MINUTE = {"HEARTBEAT_CRON": "* * * * *"}
UNGUARDED = {UNGUARDED_FOR_TESTS_ENV: "1"}
TICKS_WANTED = 3
INSTANCES = {
    "instance_one": "orchestration.instance_one",
    "instance_two": "orchestration.instance_two",
}
# Short enough to wait out, long enough that a run started right after the kill still meets it
# on a loaded two-core machine: a `dagster job execute` takes 5 to 15 s to reach its body when
# quiet, and CI saw 35 to 42 s while the tick scenarios' deployments ran beside it.
KILL_LEASE = 90
OUTCOME_TAG = "dlock/outcome"
FAST_LOCK = {"connect_timeout_seconds": 2, "statement_timeout_seconds": 0.5}


def tick_key(text: str) -> datetime:
    """A tick as a run tag or a job log slot writes it, as one comparable instant."""
    return datetime.fromisoformat(text)


# --- The deployments that wait for ticks, started once for this module -----------------------


class TickWindow:
    """Every deployment of scenarios 1, 2 (with and without the guard) and 3, on the same ticks."""

    def __init__(self, databases, storages: StorageTemplate, folder: Path) -> None:
        def deployment(name: str, lock_url: str, **env: str) -> Deployment:
            return Deployment.create(name, storages, folder / name, lock_url, **env)

        one_instance = databases.create()
        self.duplicate_daemons = deployment("daemons", one_instance, **EVERY_MINUTE)
        self.duplicate_daemons.load_modules(INSTANCES)
        shared = databases.create()
        self.two_deployments = [
            deployment(f"deployment-{n}", shared, **EVERY_MINUTE) for n in ("one", "two")
        ]
        unguarded = databases.create()
        self.unguarded = [
            deployment(f"unguarded-{n}", unguarded, **EVERY_MINUTE, **UNGUARDED)
            for n in ("one", "two")
        ]
        for pair in (self.two_deployments, self.unguarded):
            pair[0].load_modules({"instance_one": INSTANCES["instance_one"]})
            pair[1].load_modules({"instance_two": INSTANCES["instance_two"]})
        self.code_servers = deployment("code-servers", databases.create(), **EVERY_MINUTE)
        self.ports = {"copy_a": free_port(), "copy_b": free_port()}
        self.code_servers.load_grpc_servers(self.ports)
        self.all = [
            self.duplicate_daemons,
            *self.two_deployments,
            *self.unguarded,
            self.code_servers,
        ]
        self.started_at = 0.0
        self.stopped_at = 0.0
        self.error: str | None = None

    def start(self) -> None:
        for location, port in self.ports.items():
            # The same module served twice, as two locations.
            self.code_servers.code_server(INSTANCES["instance_one"], port, f"grpc-{location}")
        finish_all(
            [self.duplicate_daemons.start_schedule(loc, SCHEDULE) for loc in INSTANCES]
            + [d.start_schedule(loc, SCHEDULE) for d, loc in self.single_locations()]
            + [self.code_servers.start_schedule(loc, SCHEDULE) for loc in self.ports]
        )
        self.duplicate_daemons.daemon("daemon-1")
        self.duplicate_daemons.daemon("daemon-2")
        for d in (*self.two_deployments, *self.unguarded, self.code_servers):
            d.daemon()
        self.started_at = time.time()

    def single_locations(self) -> list[tuple[Deployment, str]]:
        pairs = (self.two_deployments, self.unguarded)
        return [(pair[0], "instance_one") for pair in pairs] + [
            (pair[1], "instance_two") for pair in pairs
        ]

    def groups(self) -> list[tuple[str, list[Deployment]]]:
        """Deployments that share a lock database."""
        return [
            ("daemons", [self.duplicate_daemons]),
            ("deployments", self.two_deployments),
            ("unguarded", self.unguarded),
            ("code servers", [self.code_servers]),
        ]

    def finish(self) -> None:
        """Wait until every group has TICKS_WANTED ticks launched more than once with every
        run of them finished, stop the daemons between two ticks, then wait for the runs still
        going (their run workers outlive the daemon). Done once."""
        if self.stopped_at:
            assert self.error is None, self.error
            return
        deadline = time.monotonic() + 60 * (TICKS_WANTED + 4)
        try:
            while not self._enough_ticks():
                for d in self.all:
                    for process in d.processes:
                        assert process.poll() is None, f"{d.name} lost a process:\n{d.output()}"
                assert time.monotonic() < deadline, "too few ticks:\n" + "\n".join(
                    f"{name}: {sorted(_runs_by_tick(ds))}" for name, ds in self.groups()
                )
                time.sleep(5)
        except AssertionError as error:
            self.error = str(error)
            raise
        finally:
            for d in self.all:
                d.stop()
            self.stopped_at = time.time()
        settle = time.monotonic() + 180
        while (
            any(run.status not in FINISHED for d in self.all for run in d.runs())
            and time.monotonic() < settle
        ):
            time.sleep(3)

    def _enough_ticks(self) -> bool:
        if not 15 <= datetime.now().second <= 50:  # stop between ticks, not during one
            return False
        for _, deployments in self.groups():
            settled = [
                runs
                for runs in _runs_by_tick(deployments).values()
                if len(runs) >= 2 and all(run.status in FINISHED for run in runs)
            ]
            if len(settled) < TICKS_WANTED:
                return False
        return True


def _runs_by_tick(deployments: list[Deployment]) -> dict[datetime, list[Run]]:
    by_tick: dict[datetime, list[Run]] = {}
    for deployment in deployments:
        for run in deployment.runs():
            if run.tick:
                by_tick.setdefault(tick_key(run.tick), []).append(run)
    return by_tick


@pytest.fixture(scope="module")
def storages(default_databases, tmp_path_factory) -> StorageTemplate:
    return StorageTemplate(default_databases, tmp_path_factory.mktemp("storage-template"))


@pytest.fixture(scope="module")
def ticks(request, default_databases, storages, tmp_path_factory) -> Iterator[TickWindow]:
    window = TickWindow(default_databases, storages, tmp_path_factory.mktemp("ticks"))
    try:
        window.start()
        yield window
    finally:
        for d in window.all:
            d.stop()


@pytest.fixture(scope="module", autouse=True)
def _start_ticking_first(request) -> None:
    """Starts the tick deployments before this module's first test when any selected test
    waits for ticks, so that the scenarios needing none run while the ticks come."""
    if any(
        "ticks" in item.fixturenames and item.module is request.module
        for item in request.session.items
    ):
        request.getfixturevalue("ticks")


# --- What "once per tick" means, checked on the lock's tables and on Dagster's runs ----------


def check_once_per_tick(lock_url: str, deployments: list[Deployment]) -> dict:
    """Every tick that Dagster launched: one Completed job log row, every other row Exited
    naming that holder, one row per hold (a run Dagster executed twice holds twice), one run
    whose body ran (the rest skipped), one beat, no lock left."""
    tables = Tables(lock_url)
    rows: dict[datetime, list[tuple]] = {}
    for row in tables.query(
        "SELECT status, app_id, run_id, fence, slot, remark FROM job_logs"
        " WHERE queue_name = %s AND job_name = %s ORDER BY id",
        HEARTBEAT_QUEUE,
        JOB,
    ):
        rows.setdefault(tick_key(row[4]), []).append(row)
    by_tick = _runs_by_tick(deployments)
    shared = sorted(tick for tick, runs in by_tick.items() if len(runs) >= 2)
    assert len(shared) >= TICKS_WANTED, f"only {len(shared)} ticks launched twice or more"
    beats = Counter(
        tick_key(slot)
        for (slot,) in tables.query("SELECT slot FROM heartbeats WHERE job_name = %s", JOB)
    )
    failed_before_the_op = 0
    executed_twice = 0
    for tick, launched in sorted(by_tick.items()):
        # A run still queued when the daemons stopped was never dequeued: nothing of it ran.
        runs = [run for run in launched if run.status != "QUEUED"]
        # Under load Dagster can fail a run before its op starts (the code server's start_run
        # timing out): the guard never saw it, so it carries no outcome and no job log row.
        guarded = [run for run in runs if OUTCOME_TAG in run.tags]
        never_guarded = [run for run in runs if OUTCOME_TAG not in run.tags]
        assert all(run.status == "FAILURE" for run in never_guarded), (
            f"tick {tick}: a run ended without reaching the guard: {_stories(never_guarded)}"
        )
        failed_before_the_op += len(never_guarded)
        if not guarded:
            continue
        # A run Dagster executed twice holds the guard twice; its tags are the last writer's.
        executed_twice += sum(run.step_starts > 1 for run in guarded)
        ran = [run for run in guarded if run.tags[OUTCOME_TAG] != "skipped"]
        assert len(ran) == 1 or (not ran and any(run.step_starts > 1 for run in guarded)), (
            f"tick {tick}: the body ran in {len(ran)} runs of {len(runs)}; only one may "
            f"(statuses {[run.status for run in ran]}): {_stories(runs)}"
        )
        assert all(run.status == "SUCCESS" for run in guarded), _stories(guarded)
        tick_rows = rows.get(tick, [])
        holds = [run.run_id for run in guarded for _ in range(max(run.step_starts, 1))]
        assert sorted(row[2] for row in tick_rows) == sorted(holds), (
            f"tick {tick}: one job log row per hold of the guard: rows {tick_rows}, "
            f"runs {_stories(guarded)}"
        )
        completed = [row for row in tick_rows if row[0] == "Completed"]
        assert len(completed) == 1, f"tick {tick}: {len(completed)} Completed rows"
        holder = completed[0][2]
        assert all(run.run_id == holder for run in ran), _stories(runs)
        for status, _, _, _, _, remark in tick_rows:
            if status != "Completed":
                assert status == "Exited" and holder in remark, (status, remark)
        assert beats[tick] == 1, f"tick {tick}: {beats[tick]} beats"
    assert tables.query("SELECT count(*) FROM queue_locks WHERE owner IS NOT NULL") == [(0,)]
    statuses = Counter(row[0] for tick_rows in rows.values() for row in tick_rows)
    fences = [row[3] for tick_rows in rows.values() for row in tick_rows if row[3] is not None]
    return {
        "ticks launched more than once": len(shared),
        "ticks": len(by_tick),
        "runs launched": sum(run.status != "QUEUED" for runs in by_tick.values() for run in runs),
        "runs still queued at the stop": sum(
            run.status == "QUEUED" for runs in by_tick.values() for run in runs
        ),
        "runs Dagster failed before the op started": failed_before_the_op,
        "runs Dagster executed twice": executed_twice,
        "Completed rows": statuses["Completed"],
        "Exited rows": statuses["Exited"],
        "beats": sum(beats.values()),
        "fences": f"{min(fences)}..{max(fences)}" if fences else "-",
        "lock rows left": 0,
    }


def _stories(runs: list[Run]) -> str:
    """What a failed check needs to tell a guard's mistake from Dagster's: each run's status
    and the guard's tags."""
    return "; ".join(
        f"{run.run_id[:8]} {run.status} step starts {run.step_starts} "
        + " ".join(f"{k}={v}" for k, v in sorted(run.tags.items()) if k.startswith("dlock/"))
        for run in runs
    )


def record_unguarded(scenario: str, caught: str) -> None:
    record(
        f"{scenario}-unguarded",
        title=f"Scenario {scenario} without the guard",
        done=f"Scenario {scenario} with {UNGUARDED_FOR_TESTS_ENV}=1: every body runs whether "
        "or not the lock is held.",
        checked="The scenario's checks fail, as they must.",
        figures={"assertion that failed": caught},
    )


# --- 4: a run worker killed mid-body -----------------------------------------------------------


@pytest.fixture(scope="module")
def home(storages, tmp_path_factory) -> Deployment:
    """A Dagster instance for `dagster job execute` runs; each scenario brings its lock URL."""
    return Deployment.create(
        "runs", storages, tmp_path_factory.mktemp("runs"), "postgresql://unset/unset"
    )


def run_config(folder: Path, name: str, work_seconds: float, **lock: object) -> Path:
    """A run config file. Dagster's run config for a resource replaces every value the code
    gave it (app_id included), so the lock's settings are given in full here."""
    path = folder / f"{name}.yaml"
    config = {
        "ops": {"record_heartbeat": {"config": {"work_seconds": work_seconds}}},
        "resources": {"lock": {"config": lock}},
    }
    # Dagster reads the file as YAML, of which JSON is a part, except that YAML's NaN is .nan.
    path.write_text(json.dumps(config).replace("NaN", ".nan"))
    return path


def execute(env: dict[str, str], instance: str, tick: str, config: Path) -> subprocess.Popen:
    """`dagster job execute` of heartbeat_job for one tick: this process is the run worker."""
    return subprocess.Popen(
        [DAGSTER, "job", "execute", "-m", f"orchestration.{instance}", "-j", JOB]
        + ["-c", str(config), "--tags", json.dumps({TICK_TAG: tick})],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def job_log(tables: Tables, slot: str) -> list[dict]:
    return [
        dict(zip(("status", "app_id", "run_id", "fence", "remark", "created"), row, strict=True))
        for row in tables.query(
            "SELECT status, app_id, run_id, fence, remark, created_time FROM job_logs"
            " WHERE queue_name = %s AND job_name = %s AND slot = %s ORDER BY id",
            HEARTBEAT_QUEUE,
            JOB,
            slot,
        )
    ]


def wait_for(condition, what: str, timeout: float = 180, process=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the run ended first:\n{process.stdout.read()[-4000:]}")
        assert time.monotonic() < deadline, f"{what}: not within {timeout} s"
        time.sleep(0.3)


def kill_run_worker(home: Deployment, lock_url: str, read_url: str, folder: Path) -> dict:
    """Scenario 4: SIGKILL a run mid-body; a run started at once skips, naming the killed run;
    once the lease lapses the next run takes over with a higher fence."""
    env = {**home.env, "LOCK_DATABASE_URL": lock_url}
    tables = Tables(read_url)
    tick, slot = "2026-11-28T06:00:00+00:00", "2026-11-28T06:00:00.000000+00:00"
    lock = {"lease_seconds": KILL_LEASE, **FAST_LOCK}
    slow = run_config(folder, "slow", 600, app_id="instance-one", **lock)
    quick = run_config(folder, "quick", 0, app_id="instance-two", **lock)

    killed = execute(env, "instance_one", tick, slow)
    wait_for(
        lambda: [r["status"] for r in job_log(tables, slot)] == ["Processing"],
        "the first run's body",
        process=killed,
    )
    os.killpg(killed.pid, signal.SIGKILL)  # the run worker and its step process
    killed.wait()
    [victim] = job_log(tables, slot)
    [(expires_at,)] = tables.query(
        "SELECT expires_at FROM queue_locks WHERE queue_name = %s AND job_name = %s",
        HEARTBEAT_QUEUE,
        JOB,
    )

    early = execute(env, "instance_two", tick, quick)
    early_out = early.communicate(timeout=300)[0]
    early_row = job_log(tables, slot)[1]
    assert early_row["created"] < expires_at, (
        "the second run came after the killed run's lease lapsed; it must come within it"
    )
    [early_run] = [run for run in home.runs() if run.run_id == early_row["run_id"]]
    assert early_run.tags.get("dlock/outcome") == "skipped", (
        f"the run started after the kill ran its body while the killed run's lease was live "
        f"(run {early_run.status}, row {early_row['status']}: {early_row['remark']})"
    )
    assert early.returncode == 0, early_out[-4000:]
    assert early_row["status"] == "Exited" and victim["run_id"] in early_row["remark"]

    wait_for(
        lambda: (
            tables.query(
                "SELECT expires_at < clock_timestamp() FROM queue_locks"
                " WHERE queue_name = %s AND job_name = %s",
                HEARTBEAT_QUEUE,
                JOB,
            )
            == [(True,)]
        ),
        "the killed run's lease to lapse",
        timeout=KILL_LEASE + 30,
    )
    taker = execute(env, "instance_two", tick, quick)
    taker_out = taker.communicate(timeout=300)[0]
    assert taker.returncode == 0, taker_out[-4000:]
    victim_after, _, successor = job_log(tables, slot)
    assert victim_after["status"] == "Exited", victim_after
    assert "Lease expired" in victim_after["remark"] and "taken over by" in victim_after["remark"]
    assert successor["status"] == "Completed" and successor["fence"] > victim["fence"]
    assert tables.lock_row(HEARTBEAT_QUEUE, JOB) is None
    [(beats,)] = tables.query("SELECT count(*) FROM heartbeats WHERE slot = %s", slot)
    assert beats == 1
    [(lapse,)] = tables.query(
        "SELECT extract(epoch FROM %s::timestamptz - %s::timestamptz)",
        successor["created"],
        victim["created"],
    )
    return {
        "lease": f"{KILL_LEASE} s",
        "killed run's fence": victim["fence"],
        "run during the lease": "skipped (Exited, naming the killed run)",
        "successor's fence": successor["fence"],
        "kill to take-over": f"{float(lapse):.0f} s",
        "Completed rows": 1,
        "beats": beats,
    }


def test_scenario_4_run_worker_killed(home, default_databases, tmp_path):
    figures = kill_run_worker(home, *[default_databases.create()] * 2, tmp_path)
    record(
        "4",
        title="Run worker killed",
        done=f"`dagster job execute` of heartbeat_job for one tick, lease {KILL_LEASE} s; "
        "SIGKILL to its run worker and step process mid-body; a second run of the tick at once; "
        "a third once the lease lapsed.",
        checked="The second run skips, naming the killed run; the third takes over with a higher "
        "fence and completes; the killed run's row says Exited, 'Lease expired ... taken over'; "
        "one beat; no lock row left.",
        figures=figures,
    )


def test_without_the_guard_scenario_4_fails(home, default_databases, tmp_path):
    url = default_databases.create()
    home = Deployment(home.name, {**home.env, **UNGUARDED}, home.folder)
    with pytest.raises(AssertionError, match="ran its body") as caught:
        kill_run_worker(home, url, url, tmp_path)
    record_unguarded("4", str(caught.value).splitlines()[0])


@pytest.fixture(scope="module")
def bouncer(embedded_admin_url) -> Iterator[tuple[Cluster, Bouncer]]:
    if PGBOUNCER is None:
        pytest.skip("the pgbouncer binary is missing (apt-get install pgbouncer)")
    server = Cluster(settings={"max_connections": "400"})
    try:
        migrate(server.url())
        front = Bouncer(server.port, server.owner, max_client_conn=600, pool_size=20)
    except BaseException:
        server.remove()
        raise
    yield server, front
    front.stop()
    server.remove()


def test_scenario_10_run_worker_killed_behind_pgbouncer(home, bouncer, tmp_path):
    server, front = bouncer
    through = f"postgresql+psycopg://postgres@127.0.0.1:{front.port}/postgres?pgbouncer=true"
    figures = kill_run_worker(home, through, server.url(), tmp_path)
    record(
        "10-4",
        title="Behind PgBouncer: run worker killed",
        done="Scenario 4 with the lock's URL pointing at PgBouncer 1.18 in transaction pooling "
        "mode (?pgbouncer=true).",
        checked="The same as scenario 4, read on the server behind the bouncer.",
        figures=figures,
    )


# --- 5: a run terminated from the UI ----------------------------------------------------------

LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""

# What the UI's Terminate button sends (dagster-webserver's TERMINATE_MUTATION).
TERMINATE = """
mutation Terminate($runIds: [String!]!, $terminatePolicy: TerminateRunPolicy) {
  terminateRuns(runIds: $runIds, terminatePolicy: $terminatePolicy) {
    __typename
    ... on TerminateRunsResult { terminateRunResults { __typename } }
  }
}
"""


@pytest.fixture(scope="module")
def webserver(default_databases, storages, tmp_path_factory) -> Iterator[tuple[Deployment, int]]:
    deployment = Deployment.create(
        "ui", storages, tmp_path_factory.mktemp("ui"), default_databases.create()
    )
    deployment.load_modules({"instance_one": INSTANCES["instance_one"]})
    try:
        deployment.daemon()  # dequeues the runs the UI launches
        yield deployment, deployment.webserver()
    finally:
        deployment.stop()


def test_scenario_5_run_terminated_from_the_ui(webserver):
    deployment, port = webserver
    tables = Tables(deployment.env["LOCK_DATABASE_URL"])
    launched = graphql(
        port,
        LAUNCH_RUN,
        {
            "executionParams": {
                "selector": {
                    "repositoryLocationName": "instance_one",
                    "repositoryName": "__repository__",
                    "jobName": JOB,
                },
                "runConfigData": {"ops": {"record_heartbeat": {"config": {"work_seconds": 600}}}},
            }
        },
    )["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]

    def statuses() -> list[str]:
        return [
            row[0]
            for row in tables.query(
                "SELECT status FROM job_logs WHERE run_id = %s ORDER BY id", run_id
            )
        ]

    wait_for(lambda: statuses() == ["Processing"], "the launched run's body", timeout=300)
    worker = deployment.run_worker_pid(run_id)
    assert worker is not None
    answer = graphql(port, TERMINATE, {"runIds": [run_id], "terminatePolicy": "SAFE_TERMINATE"})
    assert answer["terminateRuns"]["terminateRunResults"] == [
        {"__typename": "TerminateRunSuccess"}
    ], answer
    wait_for(lambda: not psutil.pid_exists(worker), "the run worker to exit", timeout=300)
    # Checked once the run worker is gone: what it left is all there is.
    [(status, remark, released)] = tables.query(
        "SELECT status, remark, updated_time FROM job_logs WHERE run_id = %s", run_id
    )
    assert status == "Exited" and "Interrupted" in remark, (status, remark)
    assert tables.lock_row(HEARTBEAT_QUEUE, JOB) is None, "the lock was not released"
    wait_for(lambda: _status(deployment, run_id) in FINISHED, "the run's end in Dagster")
    assert _status(deployment, run_id) == "CANCELED"
    [(canceled_at,)] = deployment.storage(
        "SELECT timestamp FROM event_logs WHERE run_id = %s AND dagster_event_type = "
        "'PIPELINE_CANCELED'",
        run_id,
    )
    # Same machine, same clock: the release came before Dagster recorded the run as canceled
    # (event_logs keeps naive UTC).
    margin = canceled_at.replace(tzinfo=timezone.utc) - released
    assert margin.total_seconds() >= 0, margin
    record(
        "5",
        title="Run terminated from the UI",
        done="dagster-webserver and a daemon; a run launched with the UI's launchRun mutation "
        "(600 s of work), then the UI's Terminate mutation (SAFE_TERMINATE) mid-body.",
        checked="Once the run worker has exited: the row says Exited ('Interrupted ...; lock "
        "released'), no lock row is held, and the release precedes Dagster's RUN_CANCELED.",
        figures={
            "run status": "CANCELED",
            "job log row": f"{status}: {remark}",
            "release before RUN_CANCELED": f"{margin.total_seconds():.2f} s",
        },
    )


def _status(deployment: Deployment, run_id: str) -> str:
    return next(run.status for run in deployment.runs() if run.run_id == run_id)


# --- 9: bad input through Dagster --------------------------------------------------------------

SECRET = "Sc3nario-9-Pa55"


@pytest.fixture(scope="module")
def password_server(embedded_admin_url) -> Iterator[Cluster]:
    server = Cluster(auth="scram-sha-256", password=SECRET)
    migrate(server.url())
    yield server
    server.remove()


def test_scenario_9_bad_input_through_dagster(home, default_databases, password_server, tmp_path):
    good = default_databases.create()
    unmigrated = default_databases.create(migrated=False)
    wrong = password_server.url(password=f"not-{SECRET}")
    cases = {
        # name: (LOCK_DATABASE_URL, resource config, what the message must say)
        "negative lease": (good, {"lease_seconds": -5}, "lease_seconds must be"),
        "NaN lease": (good, {"lease_seconds": float("nan")}, "lease_seconds must be"),
        "empty app_id": (good, {"app_id": ""}, "app_id must be a non-empty string"),
        "malformed URL": (
            f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:notaport/x",
            {},
            "database_url is not a valid URL",
        ),
        "no tables": (unmigrated, {}, "dlock migrate"),
        "wrong password": (wrong, {}, "password authentication failed"),
    }
    runs = {}
    for name, (url, lock, _) in cases.items():
        config = run_config(tmp_path, name.replace(" ", "-"), 0, **lock)
        env = {**home.env, "LOCK_DATABASE_URL": url}
        runs[name] = execute(env, "instance_one", "2026-11-28T09:00:00+00:00", config)
    outputs = {name: run.communicate(timeout=300)[0] for name, run in runs.items()}
    secrets = (SECRET, f"not-{SECRET}")
    figures = {}
    for name, (_, _, expected) in cases.items():
        out = outputs[name]
        assert runs[name].returncode != 0, f"{name}: the run succeeded:\n{out[-3000:]}"
        assert expected in out, f"{name}: no '{expected}' in:\n{out[-3000:]}"
        assert not any(secret in out for secret in secrets), f"{name}: the password was shown"
        line = next(line for line in out.splitlines() if expected in line)
        figures[name] = line.split("Error: ", 1)[-1].strip()
    # Nothing written anywhere, and the password in no Dagster event or run tag.
    for url in (good, unmigrated):
        tables = Tables(url)
        if url == good:
            assert tables.count("job_logs") == 0 and tables.count("queue_locks") == 0
        else:
            assert tables.query("SELECT count(*) FROM pg_tables WHERE tablename = 'job_logs'") == [
                (0,)
            ]
    server_tables = Tables(password_server.url())
    assert server_tables.count("job_logs") == 0 and server_tables.count("queue_locks") == 0
    [(events,)] = home.storage(
        "SELECT count(*) FROM event_logs WHERE event LIKE %s OR event LIKE %s",
        *[f"%{s}%" for s in secrets],
    )
    [(tags,)] = home.storage(
        "SELECT count(*) FROM run_tags WHERE value LIKE %s OR value LIKE %s",
        *[f"%{s}%" for s in secrets],
    )
    assert (events, tags) == (0, 0)
    figures["password in output, events, tags, job logs"] = "none"
    record(
        "9",
        title="Bad input through Dagster",
        done="`dagster job execute` of heartbeat_job with a negative lease, a NaN lease, an empty "
        "app_id (run config), a malformed URL, a database without the tables, a wrong "
        "password on a password-auth cluster (LOCK_DATABASE_URL).",
        checked="Each run fails with a message that says what to fix; no row is written; "
        "the password is in no output, Dagster event, run tag or job log row.",
        figures=figures,
    )


# --- 1, 2 and 3: they wait for the ticks, so they run last ---------------------------------------


def test_scenario_1_two_daemons_on_one_instance(ticks):
    ticks.finish()
    deployment = ticks.duplicate_daemons
    figures = check_once_per_tick(deployment.env["LOCK_DATABASE_URL"], [deployment])
    per_location_tick = Counter(
        (run.location, tick_key(run.tick)) for run in deployment.runs() if run.tick
    )
    history = Counter(
        (tick["origin"], tick["schedule"], tick["timestamp"])
        for tick in deployment.ticks()
        if tick["run_ids"]
    )
    assert set(per_location_tick.values()) <= {1, 2}, per_location_tick  # at most one per daemon
    ticks_seen = sorted({tick for _, tick in per_location_tick})
    runs_table = ", ".join(
        f"{tick:%H:%M} " + "/".join(str(per_location_tick[(loc, tick)]) for loc in INSTANCES)
        for tick in ticks_seen
    )
    duplicated = sum(1 for n in per_location_tick.values() if n > 1)
    figures.update(
        {
            "runs per tick (instance_one/instance_two)": runs_table,
            "location ticks launched twice": f"{duplicated} of {len(per_location_tick)}",
            "ticks twice in the tick history": sum(1 for n in history.values() if n > 1),
        }
    )
    record(
        "1",
        title="Duplicate daemons on one instance",
        done="Two dagster-daemon processes on one instance and storage; two locations "
        "(instance_one, instance_two) with heartbeat_job's schedule every minute.",
        checked="Runs Dagster launched per location and tick, and ticks recorded twice; one "
        "Completed row per tick, the others Exited naming the holder; one beat per tick; "
        "every run succeeded; no lock row left.",
        figures=figures,
    )


def test_scenario_2_two_deployments_share_only_the_lock_database(ticks):
    ticks.finish()
    figures = check_once_per_tick(
        ticks.two_deployments[0].env["LOCK_DATABASE_URL"], ticks.two_deployments
    )
    record(
        "2",
        title="Two deployments sharing only the lock database",
        done="Two DAGSTER_HOMEs, each with its own storage database and one daemon "
        "(instance_one in one, instance_two in the other), one lock database, heartbeat_job "
        "every minute.",
        checked="Per tick: one Completed row, the rest Exited naming the holder, one run whose "
        "body ran (the others skipped), one beat; every run succeeded; no lock row left.",
        figures=figures,
    )


def test_without_the_guard_scenario_2_fails(ticks):
    """The same two deployments with the guard switched off (DLOCK_TEST_UNGUARDED=1): the
    checks of scenario 2 must see the duplicate bodies."""
    ticks.finish()
    with pytest.raises(AssertionError, match=r"the body ran in [2-9] runs") as caught:
        check_once_per_tick(ticks.unguarded[0].env["LOCK_DATABASE_URL"], ticks.unguarded)
    record_unguarded("2", str(caught.value).splitlines()[0])


def test_scenario_3_duplicate_code_servers(ticks):
    ticks.finish()
    deployment = ticks.code_servers
    figures = check_once_per_tick(deployment.env["LOCK_DATABASE_URL"], [deployment])
    record(
        "3",
        title="Duplicate code servers",
        done="orchestration.instance_one served by two `dagster api grpc` processes, loaded as "
        "two locations (grpc_server entries), one daemon, heartbeat_job every minute in both.",
        checked="As scenario 2: one Completed row and one body per tick, the rest Exited "
        "naming the holder; every run succeeded; no lock row left.",
        figures=figures,
    )
