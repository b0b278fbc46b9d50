"""Reliability scenarios of the lock's database, on clusters the tests own: an outage longer than
the lease (6), a failover to a streaming standby (7), load (8), and load behind PgBouncer (10).
RELIABILITY.md reports what they saw.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from resources import DistributedLock, LockConnectionError, LockError
from resources.lock import UNGUARDED_FOR_TESTS_ENV
from resources.migrate import migrate
from resources.urls import libpq_url
from support.bouncer import PGBOUNCER, Bouncer
from support.clusters import Cluster
from support.databases import FAST_TIMEOUTS, Tables
from support.faults import Proxy
from support.processes import PROJECT_ROOT
from support.reliability import record

pytestmark = [pytest.mark.scenario, pytest.mark.timeout(600)]

LEASE = 9.0
LOAD_WORKER = Path(__file__).parent / "support" / "load_worker.py"


# --- 6: the database down for longer than the lease --------------------------------------------


@pytest.fixture
def cluster(embedded_admin_url) -> Iterator[Cluster]:
    server = Cluster()
    migrate(server.url())
    yield server
    server.remove()


def hold_worker(spawn_worker, url: str, app_id: str, job: str, *extra: str):
    return spawn_worker(
        "hold",
        "--url",
        url,
        "--queue",
        "outage",
        "--job",
        job,
        "--app-id",
        app_id,
        "--slot",
        "tick-6",
        "--lease",
        str(LEASE),
        "--connect-timeout",
        "2",
        "--statement-timeout",
        "0.5",
        *extra,
    )


def test_scenario_6_database_down_longer_than_the_lease(cluster, spawn_worker):
    url = cluster.url()
    tables = Tables(url)
    holder = hold_worker(spawn_worker, url, "holder", "job", "--body-seconds", "30")
    holder.wait_for("ready")
    holder.wait_for("acquired")
    cluster.stop()
    down_at = time.monotonic()
    # Down at acquire: a clear failure, nothing written (checked once it is back).
    refused = DistributedLock(url, app_id="refused", lease_seconds=LEASE, **FAST_TIMEOUTS)
    with pytest.raises(LockConnectionError) as refused_error:
        with refused.hold("outage", "other-job"):
            pytest.fail("the body must not run")
    time.sleep(max(0.0, LEASE + 3 - (time.monotonic() - down_at)))
    cluster.start()
    outage = time.monotonic() - down_at
    # A rival for the same slot right after the restart: it may take over the lapsed lease.
    rival = hold_worker(spawn_worker, url, "rival", "job", "--wait", "60")
    holder_events = holder.finish(timeout=90)
    rival_events = rival.finish(timeout=90)
    holder_end = holder_events[-1]
    assert holder.process.returncode in (0, 3), holder.stderr[-3000:]
    assert rival.process.returncode == 0, rival.stderr[-3000:]
    rows = tables.logs("outage", "job")
    statuses = [row[0] for row in rows]
    assert statuses.count("Completed") == 1, rows
    assert "Processing" not in statuses
    holder_row = next(
        row for row in rows if row[1] == "holder" and row[0] != "Exited" or (row[1] == "holder")
    )
    if holder_end["event"] == "released":
        outcome = "the holder renewed after the restart and completed; the rival found it done"
        assert holder_row[0] == "Completed"
        assert rival_events[-1]["event"] == "not_acquired"
    else:
        assert holder_end == {**holder_end, "event": "lock_error", "kind": "LockLost"}
        assert holder_row[0] == "Exited", "a holder that lost its lease never says Completed"
        outcome = "the rival took over the lapsed lease and completed; the holder got LockLost"
    assert tables.lock_row("outage", "job") is None
    assert tables.logs("outage", "other-job") == [], "a refused acquire wrote rows"
    assert "Check that the server is running" in str(refused_error.value)
    record(
        "6",
        title="Database outage longer than the lease",
        done=f"A holder process (lease {LEASE:g} s) inside a 30 s body; the cluster stopped for "
        f"{outage:.0f} s, started again; a rival process for the same slot right after; a "
        "third process acquiring while the cluster was down.",
        checked="No process crashes or hangs; one Completed row for the slot; a holder told "
        "LockLost has an Exited row; a refused acquire says so and writes nothing.",
        figures={
            "outage": f"{outage:.0f} s",
            "outcome": outcome,
            "rows": ", ".join(statuses),
            "acquire while down": str(refused_error.value),
        },
    )


# --- 7: failover to a streaming standby --------------------------------------------------------


class Workload:
    """Threads that complete one slot after another on locks of their own, recording what the
    client was told: the fence of every grant and every slot completed."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.lock = DistributedLock(url, app_id="workload", lease_seconds=LEASE, **FAST_TIMEOUTS)
        self.threads = threads
        self.phase = "before"
        self.grants: list[tuple[str, str, int]] = []  # (phase, job, fence)
        self.completed: list[tuple[str, str, str]] = []  # (phase, job, slot)
        self.errors = Counter[str]()
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(n,)) for n in range(threads)]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)

    def _run(self, index: int) -> None:
        job, number = f"job-{index}", 0
        while not self._stop.is_set():
            number += 1
            slot = f"slot-{index}-{number}"
            try:
                phase = self.phase
                with self.lock.hold("failover", job, slot=slot) as held:
                    if held.acquired:
                        self.grants.append((phase, job, held.fence))
                        time.sleep(0.01)
                if held.acquired:
                    self.completed.append((phase, job, slot))
            except LockError as error:
                self.errors[f"{self.phase}: {type(error).__name__}"] += 1
                time.sleep(0.1)

    def retry_completed(self) -> list[tuple[str, str]]:
        """Each completed slot once more, as a late duplicate of its tick: those granted again
        (phase, slot) completed twice."""
        twice = []
        for phase, job, slot in self.completed:
            with self.lock.hold("failover", job, slot=slot) as held:
                if held.acquired:
                    twice.append((phase, slot))
        return twice


@pytest.mark.parametrize("replication", ["synchronous", "asynchronous"])
def test_scenario_7_failover_to_a_standby(embedded_admin_url, replication):
    settings = {"synchronous_standby_names": "'*'"} if replication == "synchronous" else {}
    primary = Cluster(settings=settings)
    link = Proxy(primary.port)  # the replication connection, which the test can cut
    standby = primary.standby(link.port)
    try:
        migrate(primary.url())
        url = (
            "postgresql+psycopg://postgres@/postgres?host=127.0.0.1,127.0.0.1"
            f"&port={primary.port},{standby.port}&target_session_attrs=read-write"
        )
        held_lock = DistributedLock(url, app_id="long-holder", lease_seconds=LEASE, **FAST_TIMEOUTS)
        work = Workload(url)
        with held_lock.hold("failover", "held-across") as long_hold:
            assert long_hold.acquired
            work.start()
            time.sleep(3)
            # The standby falls behind: with asynchronous replication the primary acknowledges
            # commits it alone has; with synchronous replication it cannot commit at all.
            link.blackhole()
            work.phase = "standby behind"
            time.sleep(3)
            primary.crash()
            link.close()
            work.phase = "failing over"
            standby.promote()
            with psycopg.connect(libpq_url(standby.url()), autocommit=True) as conn:
                # What a failover manager does: the new primary has no standby to wait for.
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = ''")
                conn.execute("SELECT pg_reload_conf()")
            work.phase = "after"
            # Past a lease: a release the standby never saw leaves its lock to lapse first.
            time.sleep(LEASE + 4)
            work.stop()
            long_hold_fence = long_hold.fence
        twice = work.retry_completed()
    finally:
        # Shown by pytest when the test fails: what the new primary went through.
        print((standby.pgdata / "log").read_text()[-5000:])
        link.close()
        standby.remove()
        primary.remove()

    before = {}
    for phase, job, fence in work.grants:
        if phase in ("before", "standby behind"):
            before[job] = max(before.get(job, 0), fence)
    after = [(job, fence) for phase, job, fence in work.grants if phase == "after"]
    backwards = [(job, fence) for job, fence in after if fence <= before.get(job, 0)]
    fence_values = Counter(fence for _, _, fence in work.grants)
    reused = sorted(fence for fence, n in fence_values.items() if n > 1)
    completed = Counter(phase for phase, _, _ in work.completed)
    assert completed["before"] > 0 and completed["after"] > 0, (completed, work.errors)
    if replication == "synchronous":
        assert completed["standby behind"] == 0, "a commit was acknowledged without the standby"
        assert twice == [], f"slots completed twice: {Counter(p for p, _ in twice)} {twice[:3]}"
        assert backwards == [] and reused == [], (backwards, reused)
    else:
        # What the README's production section states: without synchronous replication, a
        # failover loses the commits the standby had not received.
        assert completed["standby behind"] > 0
        assert twice, "the slots completed while the standby was behind must run again"
        assert backwards and reused, "fences handed out again after the promotion"
    record(
        f"7-{replication}",
        title=f"Failover to a standby, {replication} replication",
        done="A primary and a streaming standby (pg_basebackup), the lock's URL naming both "
        "with target_session_attrs=read-write; three threads completing slots and a lock held "
        "throughout; the replication link cut for 3 s, the primary killed "
        "(immediate stop), the standby promoted; then every completed slot tried again.",
        checked=(
            "No slot completes twice, no fence goes backwards or is handed out twice, the held "
            "lock survives the failover."
            if replication == "synchronous"
            else "As the README states: slots completed while the standby was behind run again "
            "after the promotion, and fences are handed out again."
        ),
        figures={
            "slots completed (before / standby behind / after)": "{} / {} / {}".format(
                completed["before"], completed["standby behind"], completed["after"]
            ),
            "slots completed twice": len(twice),
            "fences gone backwards": len(backwards),
            "fence values handed out twice": len(reused),
            "lock errors while failing over": sum(work.errors.values()),
            "held lock's fence": long_hold_fence,
        },
    )


# --- 8: load -----------------------------------------------------------------------------------

PROCESSES = 5
HOLDERS = 200
CONTENDERS = 50
LOAD_SECONDS = 60
BOUNCER_POOL = 20
# 250 threads connect in the same instant: on a shared two-core machine the server once took
# over 2 s to answer some of them (CI saw 105 connect timeouts at connect_timeout=2), which
# failed the scenario on the machine's speed, not the lock's. 5 s leaves room; the lease is the
# shortest the timeouts allow (3 renewal attempts of 5 + 2 + 0.5 s) with a margin.
LOAD_LOCK = {"lease": 25, "connect_timeout": 5, "statement_timeout": 2}


def connections(admin_url: str) -> int:
    with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
        [(count,)] = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
        ).fetchall()
    return count - 1  # this one


def run_load(
    url: str, read_url: str, folder: Path, seconds: float, env: dict[str, str], pooled: int = 0
) -> dict:
    """Scenario 8: holders on distinct locks and contenders on one counter lock, side by side
    in several processes; returns the figures, failing on any error or overlap."""
    tables = Tables(read_url)
    queue = f"load-{int(time.time())}"
    counter = folder / "counter"
    counter.write_text("0")
    baseline = connections(read_url)
    start_at = time.time() + 5  # every process connected and ready
    workers = [
        subprocess.Popen(
            [sys.executable, str(LOAD_WORKER), "--url", url, "--queue", queue]
            + ["--app-id", f"load-{n}", "--holders", str(HOLDERS // PROCESSES)]
            + ["--contenders", str(CONTENDERS // PROCESSES), "--seconds", str(seconds)]
            + ["--start-at", str(start_at), "--counter", str(counter)]
            + [f"--{key.replace('_', '-')}={value}" for key, value in LOAD_LOCK.items()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "PYTHONPATH": str(PROJECT_ROOT)},
        )
        for n in range(PROCESSES)
    ]
    peak = 0
    try:
        while time.time() < start_at + seconds:
            peak = max(peak, connections(read_url) - baseline)
            time.sleep(2)
        reports = []
        for worker in workers:
            line = worker.stdout.readline()
            assert line, worker.stderr.read()[-3000:]
            reports.append(json.loads(line))
        kept_alive = connections(read_url) - baseline  # threads done, processes still alive
        for worker in workers:
            worker.communicate("exit\n", timeout=60)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    time.sleep(1)
    after = connections(read_url)
    total = Counter()
    errors = []
    for report in reports:
        errors += report.pop("errors")
        total.update(report)
    value = int(counter.read_text())
    assert value == total["increments"], (
        f"the counter says {value}, the contenders counted {total['increments']}: holds overlapped"
    )
    assert errors == [], errors[:5]
    [(processing, completed, exited)] = tables.query(
        "SELECT count(*) FILTER (WHERE status = 'Processing'),"
        " count(*) FILTER (WHERE status = 'Completed'), count(*) FILTER (WHERE status = 'Exited')"
        " FROM job_logs WHERE queue_name = %s",
        queue,
    )
    assert processing == 0
    assert tables.query(
        "SELECT count(*) FROM queue_locks WHERE queue_name = %s AND owner IS NOT NULL", queue
    ) == [(0,)]
    # Behind PgBouncer, its pool keeps up to `pooled` server connections open on purpose.
    assert after <= baseline + pooled, f"{after} connections after the load, {baseline} before"
    assert kept_alive <= PROCESSES + pooled, f"{kept_alive} connections kept by finished threads"
    return {
        "seconds": seconds,
        "processes": PROCESSES,
        "holders / contenders": f"{HOLDERS} / {CONTENDERS}",
        "holds (short / past the lease)": f"{total['holds']} / {total['renewed holds']}",
        "counter": value,
        "contender waits that gave up": total["gave up"],
        "Completed / Exited rows": f"{completed} / {exited}",
        "errors": 0,
        "peak connections": peak,
        "connections after (baseline)": f"{after} ({baseline})",
    }


@pytest.fixture(scope="module")
def load_cluster(embedded_admin_url) -> Iterator[Cluster]:
    server = Cluster(settings={"max_connections": "400"})
    migrate(server.url())
    yield server
    server.remove()


def test_scenario_8_load(load_cluster, tmp_path):
    figures = run_load(load_cluster.url(), load_cluster.url(), tmp_path, LOAD_SECONDS, {})
    record(
        "8",
        title="Load",
        done=f"{LOAD_SECONDS} s on a cluster of the test's own with max_connections 400: "
        f"{HOLDERS} holder threads on distinct locks (a fifth of their bodies outlive the "
        f"{LOAD_LOCK['lease']} s lease) and {CONTENDERS} contender threads on one lock guarding "
        f"a read-sleep-write counter in a file, across {PROCESSES} processes.",
        checked="Zero errors; the counter equals the increments counted (no overlapping "
        "holds); no Processing row and no lock row left; connections back to the baseline.",
        figures=figures,
    )


def test_without_the_guard_scenario_8_fails(load_cluster, tmp_path):
    import os

    env = {**os.environ, UNGUARDED_FOR_TESTS_ENV: "1"}
    with pytest.raises(AssertionError, match="holds overlapped") as caught:
        run_load(load_cluster.url(), load_cluster.url(), tmp_path, 15, env)
    record(
        "8-unguarded",
        title="Scenario 8 without the guard",
        done=f"Scenario 8 for 15 s with {UNGUARDED_FOR_TESTS_ENV}=1: every body runs whether "
        "or not the lock is held.",
        checked="The scenario's checks fail, as they must.",
        figures={"assertion that failed": str(caught.value).splitlines()[0]},
    )


def test_scenario_10_load_behind_pgbouncer(load_cluster, tmp_path):
    if PGBOUNCER is None:
        pytest.skip("the pgbouncer binary is missing (apt-get install pgbouncer)")
    front = Bouncer(
        load_cluster.port, load_cluster.owner, pool_size=BOUNCER_POOL, max_client_conn=600
    )
    try:
        through = f"postgresql+psycopg://postgres@127.0.0.1:{front.port}/postgres?pgbouncer=true"
        figures = run_load(
            through, load_cluster.url(), tmp_path, LOAD_SECONDS, {}, pooled=BOUNCER_POOL
        )
    finally:
        front.stop()
    record(
        "10-8",
        title="Behind PgBouncer: load",
        done="Scenario 8 with the lock's URL pointing at PgBouncer 1.18 in transaction pooling "
        "mode (?pgbouncer=true, 20 server connections for 250 clients).",
        checked="The same as scenario 8; connections counted on the server.",
        figures=figures,
    )
