"""The lock protocol (the behaviour listed in the README's "The protocol"), point by point, against
every PostgreSQL at hand."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from resources import DistributedLock, LockLost
from support.databases import FAST_TIMEOUTS


@pytest.fixture
def lock(lock_database_url: str) -> DistributedLock:
    return DistributedLock(lock_database_url, app_id="instance-one", lease_seconds=300)


@pytest.fixture
def other(lock_database_url: str) -> DistributedLock:
    return DistributedLock(lock_database_url, app_id="instance-two", lease_seconds=300)


def worker_args(url: str, queue: str, job: str, *extra: str) -> tuple[str, ...]:
    return ("hold", "--url", url, "--queue", queue, "--job", job, *extra)


# The shortest lease renewal can keep alive is three times connect (at least 2 s) plus statement
# timeout plus a 0.5 s client margin: tests that wait for a lease to lapse lower both.
FAST = FAST_TIMEOUTS
SHORT_LEASE = 9.0
FAST_WORKER = ("--lease", str(SHORT_LEASE), "--connect-timeout", "2", "--statement-timeout", "0.5")


def short_lock(url: str, app_id: str = "instance-one") -> DistributedLock:
    return DistributedLock(url, app_id=app_id, lease_seconds=SHORT_LEASE, **FAST)


def test_acquire_writes_lock_row_and_processing_row_together(lock, tables, names):
    with lock.hold(*names, run_id="run-1") as held:
        assert held.acquired and held.reason is None
        assert isinstance(held.fence, int)
        owner, fence, created, expires = tables.lock_row(*names)
        assert owner.startswith("instance-one/run-1/") and fence == held.fence
        assert expires - created == timedelta(seconds=300)
        assert tables.logs(*names) == [
            ("Processing", "instance-one", held.fence, None, f"Lock acquired (fence {held.fence})")
        ]
    assert tables.lock_row(*names) is None
    [(status, _, _, _, remark)] = tables.logs(*names)
    assert status == "Completed"
    assert remark.startswith(f"Lock acquired (fence {held.fence}); Completed in ")


def test_loser_gets_answer_and_exited_row_naming_holder(lock, other, tables, names):
    with lock.hold(*names) as held:
        with other.hold(*names) as lost:
            assert not lost.acquired and lost.fence is None
            assert lost.reason == "held"
            assert lost.holder.startswith("instance-one")
            assert lost.since == tables.lock_row(*names)[2]
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Completed", "Exited"]
    assert logs[1][1] == "instance-two"
    assert "lock held by instance-one" in logs[1][4]
    assert held.fence == logs[0][2]


def test_timestamps_come_from_the_database_clock(lock, tables, names):
    [(before,)] = tables.query("SELECT clock_timestamp()")
    with lock.hold(*names, lease_seconds=170) as held:
        _, _, created, expires = tables.lock_row(*names)
    [(after,)] = tables.query("SELECT clock_timestamp()")
    assert before <= created <= after and held.since == created
    assert expires - created == timedelta(seconds=170)


def test_lease_is_renewed_while_body_outlives_it(lock_database_url, other, tables, names):
    with short_lock(lock_database_url).hold(*names) as held:
        first_expiry = tables.lock_row(*names)[3]
        for _ in range(4):  # 12 s of body: a lease and a third
            time.sleep(3)
            with other.hold(*names) as rival:
                assert not rival.acquired, "a renewed lease must never be taken over"
        assert tables.lock_row(*names)[3] > first_expiry + timedelta(seconds=3)
        held.ensure_held()
    assert tables.statuses(*names) == ["Completed"] + ["Exited"] * 4


def test_crashed_holder_is_taken_over_after_lease_with_higher_fence(
    lock_database_url, other, tables, names, spawn_worker
):
    worker = spawn_worker(
        *worker_args(
            lock_database_url, *names, *FAST_WORKER, "--body-seconds", "60", "--app-id", "crasher"
        )
    )
    fence = worker.wait_for("acquired")["fence"]
    worker.process.send_signal(signal.SIGKILL)
    worker.process.wait()
    with other.hold(*names) as early:
        assert not early.acquired and early.holder.startswith("crasher")
    time.sleep(SHORT_LEASE + 0.2)
    with other.hold(*names) as taker:
        assert taker.acquired and taker.fence > fence
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Exited", "Exited", "Completed"]
    assert logs[0][1] == "crasher" and "Lease expired" in logs[0][4]
    assert "taken over from crasher" in logs[2][4]


def expire_now(tables, names) -> None:
    """Make the current lease lapse, as if its holder had been paused for a whole lease."""
    tables.query(
        "UPDATE queue_locks SET expires_at = clock_timestamp() - interval '1 second'"
        " WHERE queue_name = %s AND job_name = %s RETURNING 1",
        *names,
    )


def test_fence_strictly_increases_across_grants_releases_and_takeovers(lock, other, tables, names):
    fences = []
    for holder in (lock, other, lock):
        with holder.hold(*names) as held:
            fences.append(held.fence)
    with pytest.raises(LockLost):
        with lock.hold(*names) as held:
            fences.append(held.fence)
            expire_now(tables, names)
            with other.hold(*names) as taker:
                fences.append(taker.fence)
    with other.hold(*names) as held:
        fences.append(held.fence)
    assert fences == sorted(set(fences)) and len(fences) == 6


def test_stale_holder_release_deletes_nothing_of_its_successor(lock, other, tables, names):
    with pytest.raises(LockLost) as lost:
        with lock.hold(*names) as stale:
            expire_now(tables, names)
            successor = other.hold(*names)
            taken = successor.__enter__()
            assert taken.acquired and taken.fence > stale.fence
    # The successor still holds its row, untouched by the stale release.
    owner, fence, _, _ = tables.lock_row(*names)
    assert owner.startswith("instance-two") and fence == taken.fence
    assert "another holder took over" in str(lost.value)
    successor.__exit__(None, None, None)
    assert tables.statuses(*names) == ["Exited", "Completed"], "the lost holder never completes"


def test_paused_holder_is_taken_over_and_told(
    lock_database_url, other, tables, names, spawn_worker
):
    worker = spawn_worker(
        *worker_args(
            lock_database_url, *names, *FAST_WORKER, "--body-seconds", "20", "--app-id", "sleepy"
        )
    )
    fence = worker.wait_for("acquired")["fence"]
    # A stop-the-world pause longer than the lease. The body outlasts any delay before the stop
    # lands: with a one-second body, a test process descheduled under load stopped a worker that
    # had already released, and the "taker" got a free lock (the resumed worker said 'released').
    worker.process.send_signal(signal.SIGSTOP)
    stopped_holding = tables.lock_row(*names)
    assert stopped_holding and stopped_holding[1] == fence, "the worker was stopped while holding"
    time.sleep(SHORT_LEASE + 0.5)
    with other.hold(*names, lease_seconds=200) as taker:
        assert taker.acquired and taker.fence > fence
        worker.process.send_signal(signal.SIGCONT)
        event = worker.wait_for("lock_error")
        assert event["kind"] == "LockLost"
        assert tables.lock_row(*names)[1] == taker.fence
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Exited", "Completed"]
    assert logs[0][1] == "sleepy" and "Lease expired" in logs[0][4]


def test_lost_lease_raises_lock_lost_chained_to_the_body_error(lock, other, tables, names):
    with pytest.raises(LockLost) as lost:
        with lock.hold(*names):
            expire_now(tables, names)
            with other.hold(*names):
                raise ValueError("body broke after losing the lease")
    assert isinstance(lost.value.__cause__, ValueError)
    assert tables.statuses(*names) == ["Exited", "Failed"]


def test_ensure_held_raises_after_takeover(lock, other, tables, names):
    with pytest.raises(LockLost):
        with lock.hold(*names) as held:
            held.ensure_held()
            expire_now(tables, names)
            held.ensure_held()  # expired but still ours: not lost
            with other.hold(*names):
                with pytest.raises(LockLost, match="taken over"):
                    held.ensure_held()


def test_expired_lease_still_ours_is_released_as_usual(lock, tables, names):
    with lock.hold(*names):
        expire_now(tables, names)
    assert tables.statuses(*names) == ["Completed"]
    assert tables.lock_row(*names) is None


TICK = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)


def test_same_slot_twice_in_sequence_second_is_exited(lock, other, tables, names):
    with lock.hold(*names, slot=TICK) as first:
        assert first.acquired
    with other.hold(*names, slot=TICK) as second:
        assert not second.acquired and second.reason == "slot_done"
        assert second.holder.startswith("instance-one/")
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Completed", "Exited"]
    assert logs[0][3] == logs[1][3] == "2026-11-28T04:00:00.000000+00:00"
    assert "already completed by instance-one" in logs[1][4]


def test_failed_slot_may_run_again(lock, other, tables, names):
    with pytest.raises(RuntimeError):
        with lock.hold(*names, slot=TICK):
            raise RuntimeError("transient")
    with other.hold(*names, slot=TICK) as retry:
        assert retry.acquired
    assert tables.statuses(*names) == ["Failed", "Completed"]
    assert "RuntimeError: transient" in tables.logs(*names)[0][4]


def reset_slot(tables, names, slot: str, remark: str):
    [(audit_id,)] = tables.query(
        "SELECT dlock_reset_slot_v1(%s, %s, %s, 'operator@host', %s)", *names, slot, remark
    )
    return audit_id


def test_a_reset_slot_runs_again_once_and_keeps_its_history(lock, other, tables, names):
    slot = "2026-11-28"
    with lock.hold(*names, slot=slot) as first:
        assert first.acquired
    assert reset_slot(tables, names, slot, "recompute after the upstream fix") is not None
    with other.hold(*names, slot=slot) as rerun:
        assert rerun.acquired
    with lock.hold(*names, slot=slot) as late:
        assert not late.acquired and late.reason == "slot_done"
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Reset", "Reset", "Completed", "Exited"]
    retired, audit = logs[0], logs[1]
    assert "; Completed in " in retired[4] and "reset by job log" in retired[4]
    assert "recompute after the upstream fix" in audit[4] and audit[1] == "operator@host"


def test_a_release_resent_after_its_slot_was_reset_still_says_released(lock, tables, names):
    """The release committed, its reply was lost, and an operator reset the slot before the
    client sent the release again: it did release, so it must not report LockLost. (The model
    found this: model/dlock.pml with MAXRESET.)"""
    slot = "2026-12-06"
    with lock.hold(*names, slot=slot) as held:
        assert held.acquired
    [(status, _, _, _, remark, *_)] = tables.logs(*names)
    assert status == "Completed"
    assert reset_slot(tables, names, slot, "recompute") is not None
    resent = lock.database().release(
        queue_name=names[0],
        job_name=names[1],
        owner=held._owner,
        fence=held.fence,
        log_id=held.log_id,
        status="Completed",
        remark=remark.rsplit("; ", 1)[1],  # what the first send appended
    )
    assert resent, "a resent release after a reset said 'lost'"
    assert sorted(row[0] for row in tables.logs(*names)) == ["Reset", "Reset"]
    assert tables.lock_row(*names) is None


def test_resetting_a_slot_that_is_not_completed_writes_nothing(lock, tables, names):
    with lock.hold(*names, slot="running") as held:
        assert held.acquired
        assert reset_slot(tables, names, "running", "too early") is None
        assert reset_slot(tables, names, "never-run", "no such slot") is None
    assert tables.statuses(*names) == ["Completed"]


def test_same_tick_in_two_time_zones_is_one_slot(lock, other, names):
    tokyo = TICK.astimezone(timezone(timedelta(hours=9)))
    with lock.hold(*names, slot=tokyo):
        pass
    with other.hold(*names, slot=TICK.astimezone(timezone(timedelta(hours=-5)))) as again:
        assert not again.acquired and again.reason == "slot_done"


def test_partition_key_slot_runs_once_per_partition(lock, other, tables, names):
    with lock.hold(*names, slot="2026-11-27"):
        pass
    with other.hold(*names, slot="2026-11-27") as duplicate:
        assert duplicate.reason == "slot_done"
    with other.hold(*names, slot="2026-11-28") as next_partition:
        assert next_partition.acquired
    assert [row[3] for row in tables.logs(*names)] == ["2026-11-27"] * 2 + ["2026-11-28"]


def test_slot_being_processed_is_reported_as_running(lock, other, names):
    with lock.hold(*names, slot=TICK):
        with other.hold(*names, slot=TICK) as duplicate:
            assert duplicate.reason == "slot_running"
            assert duplicate.holder.startswith("instance-one")
        with other.hold(*names, slot="another") as other_slot:
            assert other_slot.reason == "held"


def test_crashed_holders_slot_runs_again_after_takeover(lock, other, tables, names):
    with pytest.raises(LockLost):
        with lock.hold(*names, slot=TICK):
            expire_now(tables, names)
            with other.hold(*names, slot=TICK) as retry:
                assert retry.acquired
    assert tables.statuses(*names) == ["Exited", "Completed"]


def test_wait_seconds_acquires_once_holder_releases(lock, other, tables, names):
    release = threading.Event()

    def hold_briefly():
        with lock.hold(*names):
            release.wait(5)

    holder = threading.Thread(target=hold_briefly)
    holder.start()
    while tables.lock_row(*names) is None:
        time.sleep(0.01)
    threading.Timer(0.5, release.set).start()
    with other.hold(*names, wait_seconds=10) as waited:
        assert waited.acquired
    holder.join()
    assert tables.statuses(*names) == ["Completed", "Completed"]


def test_wait_seconds_times_out_with_one_exited_row(lock, other, tables, names):
    with lock.hold(*names):
        started = time.monotonic()
        with other.hold(*names, wait_seconds=1.0) as waited:
            assert not waited.acquired and waited.reason == "held"
        assert time.monotonic() - started >= 1.0
    assert tables.statuses(*names) == ["Completed", "Exited"]


def test_lock_released_when_body_raises(lock, tables, names):
    with pytest.raises(ZeroDivisionError):
        with lock.hold(*names):
            raise ZeroDivisionError("division by zero")
    assert tables.lock_row(*names) is None
    assert tables.statuses(*names) == ["Failed"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_interrupt_in_body_releases_and_records_exited(lock, tables, names, interrupt):
    with pytest.raises(interrupt):
        with lock.hold(*names):
            raise interrupt()
    assert tables.lock_row(*names) is None
    [(status, _, _, _, remark)] = tables.logs(*names)
    assert status == "Exited" and interrupt.__name__ in remark


def test_dagster_interrupt_releases_and_records_exited(lock, tables, names):
    from dagster._core.errors import DagsterExecutionInterruptedError

    with pytest.raises(DagsterExecutionInterruptedError):
        with lock.hold(*names):
            raise DagsterExecutionInterruptedError()
    assert tables.lock_row(*names) is None
    assert tables.statuses(*names) == ["Exited"]


def test_sigint_to_holder_process_releases_and_records_exited(
    lock_database_url, tables, names, spawn_worker
):
    worker = spawn_worker(*worker_args(lock_database_url, *names, "--body-seconds", "60"))
    worker.wait_for("acquired")
    worker.process.send_signal(signal.SIGINT)
    worker.wait_for("interrupted")
    assert tables.lock_row(*names) is None
    [(status, _, _, _, remark)] = tables.logs(*names)
    assert status == "Exited" and "KeyboardInterrupt" in remark


def test_sigint_while_waiting_to_acquire_records_one_exited_row(
    lock, lock_database_url, tables, names, spawn_worker
):
    with lock.hold(*names):
        worker = spawn_worker(
            *worker_args(lock_database_url, *names, "--wait", "60", "--app-id", "waiter")
        )
        worker.wait_for("ready")
        time.sleep(0.5)  # now inside the wait loop
        worker.process.send_signal(signal.SIGINT)
        worker.wait_for("interrupted")
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Completed", "Exited"]
    assert logs[1][1] == "waiter" and "Interrupted while acquiring" in logs[1][4]


def test_sixteen_processes_racing_for_one_slot_one_wins(
    lock_database_url, tables, names, spawn_worker
):
    start_at = time.time() + 8
    workers = [
        spawn_worker(
            *worker_args(
                lock_database_url,
                *names,
                "--slot",
                TICK.isoformat(),
                "--slot-is-time",
                "--body-seconds",
                "0.5",
                "--app-id",
                f"racer-{n}",
                "--start-at",
                str(start_at),
            )
        )
        for n in range(16)
    ]
    outcomes = [
        event["event"]
        for worker in workers
        for event in worker.finish(timeout=120)
        if event["event"] in ("acquired", "not_acquired")
    ]
    assert sorted(outcomes) == ["acquired"] + ["not_acquired"] * 15
    assert sorted(tables.statuses(*names)) == ["Completed"] + ["Exited"] * 15
    assert tables.lock_row(*names) is None


def test_counter_fuzz_eight_processes_count_exactly(
    lock_database_url, tables, names, spawn_worker, tmp_path
):
    counter = tmp_path / "counter"
    counter.write_text("0")
    workers = [
        spawn_worker(
            "fuzz",
            "--url",
            lock_database_url,
            "--queue",
            names[0],
            "--job",
            names[1],
            "--counter",
            str(counter),
            "--iterations",
            "10",
            "--wait",
            "60",
            "--app-id",
            f"fuzzer-{n}",
        )
        for n in range(8)
    ]
    increments = sum(
        event["increments"]
        for worker in workers
        for event in worker.finish(timeout=300)
        if event["event"] == "fuzz_done"
    )
    assert increments == 80
    assert int(counter.read_text()) == 80
    assert tables.statuses(*names) == ["Completed"] * 80


def test_debug_log_lines_pair_attempt_and_acquire(lock, names, caplog):
    with caplog.at_level(logging.DEBUG, logger="resources.lock"):
        with lock.hold(*names):
            pass
    label = "/".join(names)
    messages = [record.getMessage() for record in caplog.records]
    assert f"Attempting to acquire lock {label}" in messages
    assert any(message.startswith(f"Lock {label} acquired") for message in messages)
    assert any(message.startswith(f"Lock {label} released") for message in messages)


@pytest.mark.parametrize("name", ["it's; DROP TABLE queue_locks; --", "名前 ✓ é", "%s %(x)s $1"])
def test_names_with_quotes_unicode_and_sql_are_stored_verbatim(lock, tables, name):
    with lock.hold(name, name):
        pass
    assert tables.statuses(name, name) == ["Completed"]


def drop_lock_connections(tables) -> int:
    """What a database restart or a proxy's idle timeout does to the lock's pooled connections."""
    [(killed,)] = tables.query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE application_name = 'dlock' AND datname = current_database()"
    )
    return killed


def test_dropped_connections_are_replaced_without_losing_a_hold(lock, tables, names):
    with lock.hold(*names):
        pass
    assert drop_lock_connections(tables) >= 1
    with lock.hold(*names) as held:
        assert held.acquired
        assert drop_lock_connections(tables) >= 1
    assert tables.statuses(*names) == ["Completed", "Completed"]
    assert tables.lock_row(*names) is None


def test_renewal_survives_a_dropped_connection(lock_database_url, other, tables, names):
    with short_lock(lock_database_url).hold(*names) as held:
        time.sleep(SHORT_LEASE / 3 + 0.5)  # the renewal thread has its own connection by now
        assert drop_lock_connections(tables) >= 2
        time.sleep(SHORT_LEASE)
        with other.hold(*names) as rival:
            assert not rival.acquired
        held.ensure_held()
    assert tables.statuses(*names) == ["Completed", "Exited"]


def test_slot_of_a_lock_row_deleted_by_hand_is_not_stuck(lock, other, tables, names):
    """An operator deletes a crashed holder's lock row; its slot must be able to run again."""
    with pytest.raises(LockLost):
        with lock.hold(*names, slot=TICK):
            tables.query("DELETE FROM queue_locks WHERE queue_name = %s AND job_name = %s", *names)
            with other.hold(*names, slot=TICK) as retry:
                assert retry.acquired
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Exited", "Completed"]
    assert "lock row was gone" in logs[0][4]


def _hold_in_child(lock: DistributedLock, queue_name: str, job_name: str) -> None:
    with lock.hold(queue_name, f"{job_name}-{os.getpid()}") as held:
        if not held.acquired:
            raise SystemExit(1)


def test_lock_survives_fork_in_parent_and_children(lock, tables, names):
    """Dagster's multiprocess executor forks: children build their own engine, and the
    parent's pooled connection stays usable (a child never closes it)."""
    with lock.hold(*names):
        pass  # the parent now has an engine, a pinned connection and a renewal thread
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_hold_in_child, args=(lock, *names)) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
    assert [child.exitcode for child in children] == [0] * 4
    with lock.hold(*names) as again:
        assert again.acquired
    [(completed,)] = tables.query(
        "SELECT count(*) FROM job_logs WHERE queue_name = %s AND status = 'Completed'", names[0]
    )
    assert completed == 6


def test_a_rerun_abandoned_after_its_grant_committed_leaves_the_slot_completed(
    lock, other, tables, names
):
    """A re-run's call commits the reset and the grant together; if its reply is lost twice
    (or an interrupt lands), the client abandons. Nothing ran, so the slot must stay
    completed, as a re-run that did not get the lock leaves it."""
    slot = "2026-12-06"
    with lock.hold(*names, slot=slot) as first:
        assert first.acquired
    database = other.database()
    params = dict(
        queue_name=names[0],
        job_name=names[1],
        owner="rerun/-/secret",
        app_id="rerun",
        run_id=None,
        slot=slot,
    )
    rerun = dict(**params, lease_seconds=300.0, record_loser=True, rerun_remark="recompute")
    granted = database.acquire(**rerun)
    assert granted.acquired and granted.reset_id is not None
    # The same call sent again (its first reply lost): the grant, and no second reset.
    again = database.acquire(**rerun)
    assert (again.acquired, again.fence, again.reset_id) == (True, granted.fence, None)
    database.abandon(**params, remark="Interrupted while acquiring")  # the reply never came
    with other.hold(*names, slot=slot) as plain:
        assert not plain.acquired and plain.reason == "slot_done", plain
    rows = dict(
        tables.query(
            "SELECT id, status || ': ' || remark FROM job_logs WHERE queue_name = %s", names[0]
        )
    )
    assert rows[first.log_id].startswith("Completed: ")
    assert rows[first.log_id].endswith(
        f"; reset by job log {granted.reset_id}; reset undone: the re-run (job log "
        f"{granted.log_id}) was abandoned before it ran"
    )
    assert rows[granted.log_id] == (
        f"Exited: Lock acquired (fence {granted.fence}); Interrupted while acquiring; job log "
        f"{first.log_id} is Completed again"
    )
    assert plain.completed_at is not None
