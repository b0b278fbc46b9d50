"""`dlock` as an operator on call runs it, as a subprocess against the real database: who holds
what since when, why a tick skipped, clearing a stuck lock, resetting a slot, pruning."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import datetime, timezone

import pytest

from resources import DistributedLock, LockLost
from resources.operations import LogFilter
from support.databases import FAST_TIMEOUTS, Tables, free_port
from support.processes import DLOCK

TICK = "2026-11-28T14:00:00.000000+00:00"
OPERATOR = re.compile(r"Released by operator [^@\s]+@\S+ \(database role \w+\)")


def dlock(url: str | None, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "LOCK_DATABASE_URL"}
    if url is not None:
        env["LOCK_DATABASE_URL"] = url
    return subprocess.run([DLOCK, *args], capture_output=True, text=True, timeout=120, env=env)


def one_line_error(run: subprocess.CompletedProcess, code: int, *phrases: str) -> str:
    assert run.returncode == code, (run.returncode, run.stdout, run.stderr)
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert "Traceback" not in run.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def url(default_databases) -> str:
    """A database of the test's own: status lists every lock in it."""
    return default_databases.create()


def lock(url: str, app_id: str) -> DistributedLock:
    return DistributedLock(url, app_id=app_id, lease_seconds=60, **FAST_TIMEOUTS)


def test_the_three_questions_who_holds_it_since_when_and_why_a_tick_skipped(url):
    with lock(url, "instance-one").hold("heartbeat-queue", "heartbeat_job", TICK, "run-1") as held:
        with lock(url, "instance-two").hold(
            "heartbeat-queue", "heartbeat_job", datetime(2026, 11, 28, 15, tzinfo=timezone.utc)
        ) as other:
            assert not other.acquired
        status = dlock(url, "status")
        assert status.returncode == 0, status.stderr
        line = next(x for x in status.stdout.splitlines() if x.startswith("heartbeat-queue"))
        # Who: app id and run id; since when: the database's time and an age; the lease left.
        assert "instance-one/run-1" in line and f" {held.fence} " in line
        assert held.since.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") in line
        assert re.search(r"\d+s ago", line) and re.search(r"lease left (\d+m )?\d+s", line)
        as_json = json.loads(dlock(url, "status", "--json").stdout)
        [held_lock] = as_json["locks"]
        assert held_lock["holder"] == "instance-one/run-1" and held_lock["fence"] == held.fence
        assert 0 < held_lock["lease_left_seconds"] <= 60 and not held_lock["lapsed"]
        assert as_json["stuck"] == [] and as_json["needs_attention"] is False

    # Why did the 15:00 tick skip? Asked with the tick as the operator types it.
    why = dlock(url, "logs", "--job", "heartbeat_job", "--slot", "2026-11-28T15:00Z", "--json")
    [row] = json.loads(why.stdout)
    assert row["status"] == "Exited" and row["app_id"] == "instance-two"
    assert row["remark"].startswith("Not run: lock held by instance-one/run-1 since")
    table = dlock(url, "logs", "--job", "heartbeat_job", "--slot", "2026-11-28T16:00+01:00")
    assert "Not run: lock held by instance-one/run-1" in table.stdout
    assert table.stdout.splitlines()[0].split() == [
        "ID",
        "CREATED",
        "QUEUE",
        "JOB",
        "STATUS",
        "BY",
        "FENCE",
        "SLOT",
        "REMARK",
    ]


def test_status_marks_a_lapsed_lease_and_stuck_rows_and_exits_1(url):
    tables = Tables(url)
    hold = lock(url, "crashed").hold("q", "lapsed", run_id="run-9")
    held = hold.__enter__()
    tables.query("UPDATE queue_locks SET expires_at = clock_timestamp() - interval '150 s'")
    tables.query(
        "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, fence, slot)"
        " VALUES ('gone', 'q', 'orphan', 'Processing', 'Lock acquired (fence 99)', 99, %s)",
        TICK,
    )
    status = dlock(url, "status")
    assert status.returncode == 1, status.stderr
    assert re.search(r"crashed/run-9 .* LAPSED 2m 3\d?s ago, not taken over", status.stdout)
    assert "Stuck Processing rows: 2" in status.stdout
    assert "no lock row points to it" in status.stdout
    assert "its lock's lease lapsed and nobody took over" in status.stdout
    report = json.loads(dlock(url, "status", "--json", "--limit", "1").stdout)
    assert report["needs_attention"] and report["stuck_total"] == 2 and len(report["stuck"]) == 1
    assert report["locks"][0]["lapsed"] and report["locks"][0]["fence"] == held.fence
    hold.__exit__(None, None, None)  # still ours: an expired lease is released as usual


def test_an_absurd_limit_is_refused_in_one_line(url):
    for command, limit in (("status", "-1"), ("status", "ten"), ("logs", "0"), ("logs", "10001")):
        one_line_error(dlock(url, command, "--limit", limit), 2, "--limit", "from 1 to 10000")


def test_logs_filter_by_queue_job_slot_status_and_time(url):
    tables = Tables(url)
    for job, slot in (("a", "p1"), ("a", "p2"), ("b", "p1")):
        with lock(url, "one").hold("q1", job, slot, f"run-{job}-{slot}"):
            pass
    with lock(url, "one").hold("q1", "a", "p1"):
        pass  # a duplicate: Exited, slot done
    with lock(url, "one").hold("q2", "a", "p1"):
        pass
    tables.query("UPDATE job_logs SET created_time = created_time - interval '3 h' WHERE id = 1")

    def ids(*args: str) -> list[int]:
        run = dlock(url, "logs", "--json", *args)
        assert run.returncode == 0, run.stderr
        return [row["id"] for row in json.loads(run.stdout)]

    assert ids() == [5, 4, 3, 2, 1], "newest first"
    assert ids("--queue", "q1", "--job", "a") == [4, 2, 1]
    assert ids("--job", "a", "--slot", "p1") == [5, 4, 1]
    assert ids("--job", "a", "--status", "exited") == [4]
    assert ids("--status", "Completed", "--limit", "2") == [5, 3]
    assert ids("--since", "2h") == [5, 4, 3, 2]
    assert ids("--since", "2h", "--job", "a", "--queue", "q1") == [4, 2]
    moment = tables.query("SELECT created_time FROM job_logs WHERE id = 3")[0][0]
    assert ids("--since", moment.astimezone(timezone.utc).isoformat()) == [5, 4, 3]
    assert "No job log rows match." in dlock(url, "logs", "--job", "nope").stdout


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--status", "Done"), "not a job log status; use one of Processing, Completed"),
        (("--since", "yesterday"), "neither an age"),
        (("--since", "2026-13-45T14:00Z"), "neither an age"),
        (("--slot", ""), "slot must not be an empty string"),
    ],
)
def test_logs_refuses_bad_filters_in_one_line(url, args, phrase):
    one_line_error(dlock(url, "logs", *args), 2, phrase)


def test_release_with_the_fence_frees_a_live_holder_who_is_told_who_and_why(url):
    tables = Tables(url)
    with pytest.raises(LockLost) as lost_at_release:
        with lock(url, "instance-one").hold("q", "j", TICK, "run-1") as held:
            stale = dlock(url, "release", "q", "j", "--fence", str(held.fence + 5), "--reason", "x")
            assert stale.returncode == 1 and "now carries fence" in stale.stdout
            released = dlock(
                url, "release", "q", "j", "--fence", str(held.fence), "--reason", "pod deleted"
            )
            assert released.returncode == 0, released.stderr
            assert f"from instance-one/run-1 (fence {held.fence})" in released.stdout
            with pytest.raises(LockLost) as lost:
                held.ensure_held()
            assert OPERATOR.search(str(lost.value)) and "pod deleted" in str(lost.value)
            assert "not by a lapsed lease" in str(lost.value)
    at_release = str(lost_at_release.value)
    assert OPERATOR.search(at_release) and "pod deleted" in at_release
    assert "taken over" not in at_release
    logs = tables.logs("q", "j")
    assert [row[0] for row in logs] == ["Exited", "Exited"]
    holder_row, audit = logs
    assert OPERATOR.search(holder_row[4]) and holder_row[4].endswith(": pod deleted")
    assert audit[1] == dlock_operator() and audit[3] == TICK and "closed job log" in audit[4]
    assert tables.lock_row("q", "j") is None
    # The slot may run again, and the same command again changes nothing.
    with lock(url, "instance-two").hold("q", "j", TICK) as again:
        assert again.acquired
    repeat = dlock(url, "release", "q", "j", "--fence", str(held.fence), "--reason", "pod deleted")
    assert repeat.returncode == 1 and "nobody holds q/j" in repeat.stdout


def dlock_operator() -> str:
    import getpass
    import socket

    return f"{getpass.getuser()}@{socket.gethostname()}"


def test_release_with_a_stale_fence_leaves_the_new_grant_alone(url):
    """The holder releases and takes the lock again between the operator's look and act."""
    holder = lock(url, "instance-one")
    with holder.hold("q", "j") as first:
        seen = json.loads(dlock(url, "status", "--json").stdout)["locks"][0]["fence"]
        assert seen == first.fence
    with holder.hold("q", "j") as second:
        run = dlock(url, "release", "q", "j", "--fence", str(seen), "--reason", "stuck?", "--json")
        assert run.returncode == 1
        result = json.loads(run.stdout)
        assert result["outcome"] == "fence_moved" and result["fence"] == second.fence
        second.ensure_held()  # untouched
    assert Tables(url).statuses("q", "j") == ["Completed", "Completed"]


def test_force_clears_a_stuck_lock_and_its_rows_and_writes_the_audit_row(url):
    tables = Tables(url)
    hold = lock(url, "crashed").hold("q", "j", TICK, "run-7")
    hold.__enter__()
    tables.query("UPDATE queue_locks SET expires_at = clock_timestamp() - interval '1 hour'")
    tables.query(
        "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, fence)"
        " VALUES ('older', 'q', 'j', 'Processing', 'left by a hand-deleted lock row', 1)"
    )
    assert dlock(url, "status").returncode == 1
    run = dlock(url, "release", "q", "j", "--force", "--reason", "node lost at 13:58")
    assert run.returncode == 0, run.stderr
    assert "closed 2 Processing row(s)" in run.stdout
    status = dlock(url, "status")
    assert status.returncode == 0 and "Stuck Processing rows: 0" in status.stdout
    [audit] = json.loads(dlock(url, "logs", "--json", "--limit", "1").stdout)
    assert audit["app_id"] == dlock_operator() and audit["status"] == "Exited"
    assert "node lost at 13:58" in audit["remark"] and "holder crashed/run-7" in audit["remark"]
    again = dlock(url, "release", "q", "j", "--force", "--reason", "node lost at 13:58")
    assert again.returncode == 0 and "Already released" in again.stdout
    other = dlock(url, "release", "q", "j", "--force", "--reason", "another try")
    assert other.returncode == 1 and "nobody holds q/j" in other.stdout
    with pytest.raises(LockLost, match="Released by operator"):
        hold.__exit__(None, None, None)


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--fence", "1"), "--reason is required"),
        (("--fence", "1", "--reason", "  "), "--reason is required"),
        (("--reason", "why"), "needs --fence N"),
        (("--fence", "0", "--reason", "why"), "positive whole number"),
        (("--fence", "1", "--force", "--reason", "why"), "not allowed with argument"),
    ],
)
def test_release_refuses_what_it_cannot_do_safely(url, args, phrase):
    with lock(url, "one").hold("q", "j") as held:
        one_line_error(dlock(url, "release", "q", "j", *args), 2, phrase)
        held.ensure_held()


def test_slots_reset_lets_a_completed_slot_run_again_once(url):
    holder = lock(url, "one")
    with holder.hold("q", "j", TICK) as held:
        assert held.acquired
    no_reason = dlock(url, "slots", "reset", "q", "j", TICK)
    one_line_error(no_reason, 2, "--reason is required")
    run = dlock(url, "slots", "reset", "q", "j", "2026-11-28T15:00+01:00", "--reason", "rerun")
    assert run.returncode == 0, run.stderr
    assert f"Slot {TICK} of q/j may run again" in run.stdout
    again = dlock(url, "slots", "reset", "q", "j", TICK, "--reason", "rerun", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["already"] is True
    ran = []
    for _ in range(2):
        with holder.hold("q", "j", TICK) as held:
            ran.append(held.acquired)
    assert ran == [True, False], "the reset slot runs again, once"
    statuses = Tables(url).statuses("q", "j")
    assert statuses == ["Reset", "Reset", "Completed", "Exited"]
    never = dlock(url, "slots", "reset", "q", "j", "never-ran", "--reason", "why")
    assert never.returncode == 1 and "has no Completed row" in never.stdout


def insert_logs(tables: Tables, rows: list[tuple[str, str]]) -> None:
    """(status, age) rows for job q/j, created that long ago."""
    for status, age in rows:
        tables.query(
            "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, created_time,"
            " updated_time) VALUES ('old', 'q', 'j', %s, 'seeded',"
            " clock_timestamp() - %s::interval, clock_timestamp() - %s::interval)",
            status,
            age,
            age,
        )


def test_prune_deletes_old_finished_rows_in_batches_never_processing(url):
    tables = Tables(url)
    old = [("Completed", "40 days"), ("Exited", "35 days"), ("Failed", "31 days")] * 3
    insert_logs(tables, old + [("Processing", "60 days"), ("Completed", "29 days")])
    dry = dlock(url, "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0 and dry.stdout.startswith("Would delete 9 job log row(s)")
    assert tables.count("job_logs") == 11
    run = dlock(url, "prune", "--older-than", "30d", "--batch-size", "4", "--json")
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["rows"] == 9 and result["batches"] == 3 and not result["dry_run"]
    left = tables.query(
        "SELECT status, created_time < clock_timestamp() - interval '30 days'"
        " FROM job_logs ORDER BY id"
    )
    assert left == [("Processing", True), ("Completed", False)]
    assert "Deleted 0 job log row(s)" in dlock(url, "prune", "--older-than", "6w").stdout


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (("--older-than", "12h"), "at least 1 day"),
        (("--older-than", "thirty days"), "is not an age"),
        (("--older-than", "30d", "--batch-size", "0"), "--batch-size"),
        ((), "--older-than"),
    ],
)
def test_prune_refuses_a_short_or_malformed_age(url, args, phrase):
    one_line_error(dlock(url, "prune", *args), 2, phrase)


def test_every_command_says_in_one_line_that_the_database_is_unreachable():
    secret = "s3cr3t-Pa55"
    url = f"postgresql+psycopg://postgres:{secret}@127.0.0.1:{free_port()}/postgres"
    for args in (
        ("status",),
        ("logs", "--job", "j"),
        ("release", "q", "j", "--force", "--reason", "r"),
        ("slots", "reset", "q", "j", "s", "--reason", "r"),
        ("prune", "--older-than", "30d"),
    ):
        line = one_line_error(dlock(url, *args), 3, "Cannot connect to PostgreSQL at 127.0.0.1")
        assert secret not in line


def test_commands_on_an_unmigrated_database_name_the_migrate_command(default_databases):
    url = default_databases.create(migrated=False)
    one_line_error(dlock(url, "status"), 3, "dlock migrate")
    one_line_error(dlock(None, "status"), 2, "LOCK_DATABASE_URL is not set")


def test_reading_by_job_and_time_uses_the_index_among_many_rows(url):
    tables = Tables(url)
    # 400,000 rows over 400 jobs and a year, as a long-lived deployment accumulates them.
    tables.query(
        "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark, created_time)"
        " SELECT 'seed', 'q', 'job-' || (i %% 400), 'Completed', 'seeded',"
        " clock_timestamp() - make_interval(secs => i * 80)"
        " FROM generate_series(1, 400000) AS i"
    )
    tables.query("ANALYZE job_logs")
    for wanted in (
        LogFilter(job_name="job-7", limit=50),
        LogFilter(job_name="job-7", queue_name="q", since=7200.0, limit=50),
        LogFilter(job_name="job-7", since=datetime(2026, 1, 1, tzinfo=timezone.utc)),
    ):
        statement, params = wanted.query()
        plan = "\n".join(row[0] for row in tables_explain(tables, statement, params))
        assert "job_logs_job_time" in plan and "Seq Scan" not in plan, plan
    # Rows i = 7, 407 and 807 of job-7 are under a day old (i * 80 s).
    run = dlock(url, "logs", "--job", "job-7", "--since", "1d", "--json")
    assert [row["remark"] for row in json.loads(run.stdout)] == ["seeded"] * 3


def tables_explain(tables: Tables, statement: str, params: dict) -> list[tuple]:
    import psycopg

    with psycopg.connect(tables.url, autocommit=True) as conn:
        return conn.execute("EXPLAIN " + statement, params).fetchall()


def test_completing_a_job_stays_a_hot_update(url):
    """No index covers status, remark or updated_time, so Processing -> Completed writes no index
    entry (a HOT update) whatever indexes the operator's reads added."""
    tables = Tables(url)
    with lock(url, "one").hold("q", "j", TICK) as held:
        log_id = held.log_id
    assert tables.statuses("q", "j") == ["Completed"]
    import psycopg

    with psycopg.connect(tables.url) as conn:  # one transaction: its own counters are exact
        conn.execute(
            "UPDATE job_logs SET status = 'Processing', remark = 'again',"
            " updated_time = clock_timestamp() WHERE id = %s",
            (log_id,),
        )
        conn.execute(
            "UPDATE job_logs SET status = 'Completed', remark = remark || '; done',"
            " updated_time = clock_timestamp() WHERE id = %s",
            (log_id,),
        )
        [(updates, hot)] = conn.execute(
            "SELECT pg_stat_get_xact_tuples_updated('job_logs'::regclass),"
            " pg_stat_get_xact_tuples_hot_updated('job_logs'::regclass)"
        ).fetchall()
        conn.rollback()
    assert (updates, hot) == (2, 2)
