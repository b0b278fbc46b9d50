"""The lock's contract through PgBouncer in transaction pooling mode (Debian's `pgbouncer`).

PgBouncer refuses the `options` startup parameter that carries the lock's statement_timeout,
and (1.18) keeps no prepared statement from one transaction to the next. With ?pgbouncer=true
the lock sends neither; without it, the lock refuses with a message that says so.

The bouncer has one server connection (default_pool_size = 1), so every client shares it: a
statement one client prepared there clashes with another client's of the same name.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from resources import DistributedLock, LockConfigError, LockLost
from resources.migrate import migrate
from support.bouncer import PGBOUNCER, Bouncer
from support.databases import FAST_TIMEOUTS, Tables
from support.faults import PrivateServer

pytestmark = pytest.mark.skipif(
    PGBOUNCER is None, reason="the pgbouncer binary is missing (apt-get install pgbouncer)"
)

# As in tests/test_lock.py: the shortest lease renewal can keep alive with these timeouts.
FAST = FAST_TIMEOUTS
SHORT_LEASE = 9.0
TICK = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def setup(embedded_admin_url):
    # The embedded server's first start makes the OS user a root-run cluster runs as.
    server = PrivateServer()
    try:
        migrate(server.url())
        bouncer = Bouncer(server.port, server.owner)
    except BaseException:
        server.remove()
        raise
    yield server, bouncer
    bouncer.stop()
    server.remove()


@pytest.fixture(scope="module")
def url(setup) -> str:
    """The lock URL through PgBouncer, flagged as such."""
    server, bouncer = setup
    return server.url(bouncer.port) + "?pgbouncer=true"


@pytest.fixture(scope="module")
def tables(setup) -> Tables:
    """The tables as read on the server itself, past the bouncer."""
    server, _ = setup
    return Tables(server.url())


def make_lock(url: str, app_id: str, lease_seconds: float = 300) -> DistributedLock:
    return DistributedLock(url, app_id=app_id, lease_seconds=lease_seconds, **FAST)


def expire_now(tables: Tables, names) -> None:
    tables.query(
        "UPDATE queue_locks SET expires_at = clock_timestamp() - interval '1 second'"
        " WHERE queue_name = %s AND job_name = %s RETURNING 1",
        *names,
    )


def test_acquire_and_release_write_the_job_log(url, tables, names):
    with make_lock(url, "one").hold(*names, run_id="run-1") as held:
        assert held.acquired
        owner, fence, created, expires = tables.lock_row(*names)
        assert owner.startswith("one/run-1/") and fence == held.fence
        assert expires - created == timedelta(seconds=300)
        assert tables.statuses(*names) == ["Processing"]
    assert tables.lock_row(*names) is None
    [(status, app_id, fence, _, remark)] = tables.logs(*names)
    assert (status, app_id, fence) == ("Completed", "one", held.fence)
    assert remark.startswith(f"Lock acquired (fence {held.fence}); Completed in ")


def test_loser_gets_exited_naming_the_holder(url, tables, names):
    with make_lock(url, "one").hold(*names):
        with make_lock(url, "two").hold(*names) as lost:
            assert not lost.acquired and lost.reason == "held"
            assert lost.holder.startswith("one")
    logs = tables.logs(*names)
    assert [row[0] for row in logs] == ["Completed", "Exited"]
    assert logs[1][1] == "two" and "lock held by one" in logs[1][4]


def test_a_slot_completes_once(url, tables, names):
    with make_lock(url, "one").hold(*names, slot=TICK) as first:
        assert first.acquired
    with make_lock(url, "two").hold(*names, slot=TICK) as second:
        assert not second.acquired and second.reason == "slot_done"
        assert second.holder.startswith("one/")
    assert tables.statuses(*names) == ["Completed", "Exited"]


def test_renewal_keeps_the_lease_past_its_length(url, tables, names):
    rival = make_lock(url, "rival")
    with make_lock(url, "one", lease_seconds=SHORT_LEASE).hold(*names) as held:
        first_expiry = tables.lock_row(*names)[3]
        for _ in range(4):  # 12 s of body: a lease and a third
            time.sleep(3)
            with rival.hold(*names) as other:
                assert not other.acquired, "a renewed lease must never be taken over"
        assert tables.lock_row(*names)[3] > first_expiry + timedelta(seconds=3)
        held.ensure_held()
    assert tables.statuses(*names) == ["Completed"] + ["Exited"] * 4


def test_ensure_held_raises_after_a_takeover(url, tables, names):
    with pytest.raises(LockLost):
        with make_lock(url, "one").hold(*names) as held:
            held.ensure_held()
            expire_now(tables, names)
            with make_lock(url, "two").hold(*names) as taker:
                assert taker.acquired and taker.fence > held.fence
                with pytest.raises(LockLost, match="taken over"):
                    held.ensure_held()
    assert tables.statuses(*names) == ["Exited", "Completed"]


# The fenced write of orchestration/heartbeat.py.
FENCED_BEAT = """
    INSERT INTO heartbeats (app_id, queue_name, job_name, fence)
    SELECT %(app_id)s::varchar, %(queue_name)s::varchar, %(job_name)s::varchar,
           %(fence)s::bigint
     WHERE dlock_fence_is_current_v1(%(queue_name)s, %(job_name)s, %(fence)s)
    RETURNING id
"""


def beat(lock: DistributedLock, held) -> list[tuple]:
    params = {
        "app_id": held.app_id,
        "queue_name": held.queue_name,
        "job_name": held.job_name,
        "fence": held.fence,
    }
    with lock.connection() as conn, conn.transaction():
        return conn.execute(FENCED_BEAT, params).fetchall()


def test_fenced_write_through_lock_connection(url, tables, names):
    lock = make_lock(url, "one")
    with pytest.raises(LockLost):
        with lock.hold(*names) as held:
            assert len(beat(lock, held)) == 1
            expire_now(tables, names)
            with make_lock(url, "two").hold(*names) as taker:
                assert taker.acquired
                assert beat(lock, held) == [], "a stale fence must write nothing"
    [(count,)] = tables.query("SELECT count(*) FROM heartbeats WHERE queue_name = %s", names[0])
    assert count == 1


def test_many_cycles_on_one_thread_prepare_nothing(url, tables, names):
    """psycopg prepares a statement on its 5th run; through the shared server connection,
    the protocol's and the lent connection's prepared statements would clash."""
    lock = make_lock(url, "one")
    for _ in range(30):
        with lock.hold(*names) as held:
            assert held.acquired
            assert len(beat(lock, held)) == 1
    assert tables.statuses(*names) == ["Completed"] * 30


def test_without_the_flag_the_lock_says_what_it_needs(setup, names):
    server, bouncer = setup
    lock = make_lock(server.url(bouncer.port), "one")
    with pytest.raises(LockConfigError, match=r"pgbouncer=true") as refused:
        with lock.hold(*names):
            pass
    assert "refused the startup parameter 'options'" in str(refused.value)
    assert "statement_timeout" in str(refused.value)


def test_url_options_are_refused_with_the_flag(url, names):
    lock = make_lock(url + "&options=-c%20search_path%3Dlocks", "one")
    with pytest.raises(LockConfigError, match=r"ALTER ROLE .* SET search_path"):
        with lock.hold(*names):
            pass


def test_a_flag_other_than_true_or_false_is_refused(setup, names):
    server, bouncer = setup
    lock = make_lock(server.url(bouncer.port) + "?pgbouncer=yes", "one")
    with pytest.raises(LockConfigError, match=r"pgbouncer='yes'; use pgbouncer=true"):
        with lock.hold(*names):
            pass


def test_migrate_ignores_the_flag(setup):
    server, _ = setup
    assert migrate(server.url() + "?pgbouncer=true") == []  # already current, and it connects
