"""The lock in a long-lived process under faults: restarts, lost replies, frozen servers, many
threads, blocked renewals, callers' transactions, terminated sessions and fork().

Tests that stop, restart, freeze or proxy a server use a cluster of their own
(tests/support/faults.py).
Every lock here renews within its bounds: connect 2 s + statement 0.5 s, lease 10 s.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time

import psycopg
import pytest

from resources import DistributedLock, LockConfigError, LockError, LockLost
from resources.migrate import migrate
from resources.urls import libpq_url
from support.databases import FAST_TIMEOUTS, Tables
from support.faults import PrivateServer, Proxy

FAST = FAST_TIMEOUTS
LEASE = 10.0


@pytest.fixture(scope="module")
def private_server(embedded_admin_url):
    # The embedded server's first start makes the OS user a root-run cluster runs as.
    server = PrivateServer()
    migrate(server.url())
    yield server
    server.remove()


def fast_lock(url: str, app_id: str, **extra) -> DistributedLock:
    return DistributedLock(url, app_id=app_id, **{"lease_seconds": LEASE, **FAST, **extra})


def assert_still_ours(url: str, names: tuple[str, str], held) -> None:
    """A rival cannot take the lock, and the holder's fence is still current."""
    with fast_lock(url, "rival").hold(*names) as rival:
        assert not rival.acquired, "the holder's lease lapsed and a rival took over"
    held.ensure_held()


# 1. A failed reconnect must not break a thread's connection for good.
def test_every_connection_recovers_after_the_server_restarts(private_server, names):
    url = private_server.url()
    lock = fast_lock(url, "restart")
    other = (names[0], f"{names[1]}-other")
    with lock.hold(*other), lock.connection() as conn:
        conn.execute("SELECT 1")  # this thread and connection() have been used before
    with lock.hold(*names) as held:
        time.sleep(LEASE / 3 - 1)  # the first renewal falls due while the server is down
        private_server.stop()
        with pytest.raises(LockError):  # this thread's reconnect fails while it is down
            with lock.hold(*other):
                pass
        time.sleep(2.5)
        private_server.start()
        time.sleep(LEASE + 1)  # past the lease: only renewals after the restart keep it
        assert_still_ours(url, names, held)
        with lock.hold(*other) as again:  # this thread recovers
            assert again.acquired
        with lock.connection() as conn:  # and so do the connections it lends
            assert conn.execute("SELECT 1").fetchone() == (1,)
    assert Tables(url).statuses(*names)[0] == "Completed"


# 2. Many threads holding many locks: renewal never waits for a connection behind holders.
@pytest.mark.timeout(120)
def test_fifty_threads_hold_five_hundred_locks_without_a_lapse(database_url, names):
    lock = fast_lock(database_url, "threads")
    all_held = threading.Barrier(51)
    errors: list[BaseException] = []

    def hold_ten(thread: int) -> None:
        try:
            with contextlib.ExitStack() as stack:
                for index in range(10):
                    held = stack.enter_context(lock.hold(names[0], f"{names[1]}-{thread}-{index}"))
                    assert held.acquired
                all_held.wait(120)
                all_held.wait(120)  # the main thread looks past one lease meanwhile
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
            all_held.abort()

    threads = [threading.Thread(target=hold_ten, args=(n,)) for n in range(50)]
    for thread in threads:
        thread.start()
    all_held.wait(120)
    time.sleep(LEASE + 2)
    [(live,)] = Tables(database_url).query(
        "SELECT count(*) FROM queue_locks WHERE queue_name = %s AND owner IS NOT NULL"
        " AND expires_at > clock_timestamp()",
        names[0],
    )
    all_held.wait(120)
    for thread in threads:
        thread.join(120)
    assert not errors, errors[:3]
    assert live == 500
    [(completed,)] = Tables(database_url).query(
        "SELECT count(*) FROM job_logs WHERE queue_name = %s AND status = 'Completed'", names[0]
    )
    assert completed == 500


# 3. A reply lost after the server committed: the retry must not do the work twice.
@pytest.fixture
def proxy(private_server):
    proxy = Proxy(private_server.port)
    yield proxy
    proxy.close()


def test_a_lost_reply_to_acquire_still_grants_the_lock(private_server, proxy, names):
    lock = fast_lock(private_server.url(proxy.port), "lost-acquire")
    with lock.hold("warm-up", names[1]):
        pass
    proxy.drop_next_reply()
    with lock.hold(*names, slot="tick-1") as held:
        assert proxy.dropped.is_set(), "the proxy must have dropped the acquire's reply"
        assert held.acquired, held
    tables = Tables(private_server.url())
    assert tables.statuses(*names) == ["Completed"]
    assert tables.lock_row(*names) is None


def test_a_lost_reply_to_release_reports_what_the_release_did(private_server, proxy, names):
    lock = fast_lock(private_server.url(proxy.port), "lost-release")
    with lock.hold(*names, slot="tick-1") as held:
        assert held.acquired
        proxy.drop_next_reply()
    assert proxy.dropped.is_set()
    tables = Tables(private_server.url())
    assert tables.statuses(*names) == ["Completed"]
    assert tables.lock_row(*names) is None


# 4. The later grant of a lock always carries the higher fence.
def test_a_delayed_insert_is_granted_a_higher_fence(default_databases, names):
    url = default_databases.create()
    # Delays the insert of one acquirer after it drew its fence, as a wait on a concurrent
    # holder's uncommitted row does.
    Tables(url).query("""
        CREATE FUNCTION delay_slow_inserts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.owner LIKE 'slow/%%' THEN PERFORM pg_sleep(2); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER delay_slow_inserts BEFORE INSERT ON queue_locks
            FOR EACH ROW EXECUTE FUNCTION delay_slow_inserts();
    """)
    fences: dict[str, int] = {}
    patient = {"statement_timeout_seconds": 5, "lease_seconds": 30}

    def hold_slowly() -> None:
        with fast_lock(url, "slow", **patient).hold(*names) as held:
            fences["slow"] = held.fence

    slow = threading.Thread(target=hold_slowly)
    slow.start()
    time.sleep(0.5)  # the slow acquirer has drawn its fence and sleeps in the trigger
    with fast_lock(url, "quick", **patient).hold(*names) as quick:
        assert quick.acquired
        fences["quick"] = quick.fence
    slow.join(30)
    assert fences["slow"] > fences["quick"], fences


# 6. A server that stops answering cannot hang a lock call.
@pytest.mark.timeout(60)
def test_a_frozen_server_cannot_hang_hold(private_server, proxy, names):
    lock = fast_lock(private_server.url(proxy.port), "frozen")
    with lock.hold("warm-up", names[1]):
        pass
    proxy.blackhole()
    started = time.monotonic()
    try:
        with pytest.raises(LockError):
            with lock.hold(*names):
                pytest.fail("the body must not run")
    finally:
        elapsed = time.monotonic() - started
        proxy.blackhole(False)
    # Two attempts, each bounded by connect plus statement timeout and a margin.
    assert elapsed < 12, f"hold() took {elapsed:.1f} s against a frozen server"


# 7. Renewals do not wait on each other, and a lease too short for them is refused.
def test_a_lease_too_short_for_renewal_is_refused(database_url):
    with pytest.raises(LockConfigError, match="too short") as error:
        DistributedLock(database_url, lease_seconds=4)  # default timeouts: 10 s + 30 s
    assert "statement_timeout_seconds" in str(error.value)


def test_a_blocked_renewal_does_not_delay_another_lease(database_url, names):
    # A statement timeout of 3 s: long enough that a renewal waiting on a row lock would hold
    # up the next lease's renewal past the moment looked at below.
    lease = 20.0
    lock = fast_lock(database_url, "renewals", statement_timeout_seconds=3, lease_seconds=lease)
    tables = Tables(database_url)
    blocked, free = (names[0], f"{names[1]}-blocked"), (names[0], f"{names[1]}-free")
    with lock.hold(*blocked), psycopg.connect(libpq_url(database_url)) as operator:
        # An operator's open transaction holds the first lock's row.
        operator.execute(
            "SELECT 1 FROM queue_locks WHERE queue_name = %s AND job_name = %s FOR UPDATE", blocked
        )
        time.sleep(1)
        with lock.hold(*free) as held:
            first_expiry = tables.lock_row(*free)[3]
            time.sleep(lease / 3 + 1)  # the free lock's renewal is due 1 s after the other's
            assert tables.lock_row(*free)[3] > first_expiry, "renewal waited on the blocked one"
            held.ensure_held()
        operator.rollback()


# 10. The protocol never runs inside a caller's transaction.
@pytest.mark.parametrize("leftover", ["BEGIN", "aborted"])
def test_a_connection_left_in_a_transaction_cannot_hide_or_break_a_grant(
    database_url, names, leftover
):
    lock = fast_lock(database_url, f"leftover-{leftover}", statement_timeout_seconds=0.49)
    with lock.connection() as conn:
        conn.execute("BEGIN")
        if leftover == "aborted":
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0")
    outcome: list[object] = []

    def hold_in_a_new_thread() -> None:
        try:
            with lock.hold(*names) as held:
                with fast_lock(database_url, "rival").hold(*names) as rival:
                    outcome.append((held.acquired, rival.acquired))
        except BaseException as error:  # noqa: BLE001 - reported below
            outcome.append(error)

    thread = threading.Thread(target=hold_in_a_new_thread)
    thread.start()
    thread.join(30)
    assert outcome == [(True, False)]
    assert Tables(database_url).statuses(*names) == ["Completed", "Exited"]


# 11. Connections handed out are as healthy as the protocol's own.
def test_connection_recovers_after_the_server_ends_idle_sessions(database_url, names):
    lock = fast_lock(database_url, "terminated", statement_timeout_seconds=0.48)
    with lock.hold(*names), lock.connection() as conn:
        conn.execute("SELECT 1")
    database = psycopg.conninfo.conninfo_to_dict(libpq_url(database_url))["dbname"]
    Tables(database_url).query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND application_name = 'dlock' AND pid <> pg_backend_pid()",
        database,
    )
    time.sleep(0.2)
    with lock.connection() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with lock.hold(*names) as held:
        assert held.acquired


def _exit_code(pid: int, timeout: float) -> int | None:
    """The child's exit code, or None after killing it when it hangs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


# 13. A forked child neither uses nor releases its parent's hold.
def test_a_forked_child_neither_uses_nor_releases_the_parents_hold(lock_database_url, names):
    tables = Tables(lock_database_url)
    parent, child_code = os.getpid(), 0
    try:
        with fast_lock(lock_database_url, "parent").hold(*names) as held:
            pid = os.fork()
            if pid == 0:  # the child: ensure_held() must refuse; sys.exit() leaves the block
                try:
                    held.ensure_held()
                    child_code = 3
                except LockLost:
                    pass
                except BaseException:
                    child_code = 4
                sys.exit(0)
            assert _exit_code(pid, timeout=30) == 0
            assert tables.lock_row(*names) is not None, "the child released the parent's lock"
            held.ensure_held()
    finally:
        if os.getpid() != parent:
            os._exit(child_code)
    assert tables.statuses(*names) == ["Completed"]


def test_a_connection_numbered_past_1024_is_still_seen_as_healthy(database_url):
    """A long-lived process with many files open: the health check must not mistake a high
    descriptor number for a dead session (and reconnect on every call)."""
    import resource

    from resources.connections import usable

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the hard limit on open files ({hard}) is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    filler = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        with psycopg.connect(libpq_url(database_url), autocommit=True) as conn:
            assert conn.fileno() >= 1024
            assert usable(conn)
    finally:
        for fd in filler:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
