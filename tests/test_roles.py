"""A lock user (sql/roles.sql's dlock_user) can use the lock only through its functions: no
direct writes, no reading the owner token, no lease beyond the code's bound, and no renewing,
releasing or expiring another holder's lock without its owner token."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from resources import DistributedLock, LockLost
from resources.urls import libpq_url
from support.databases import FAST_TIMEOUTS, Tables

ROLES_SQL = Path(__file__).resolve().parent.parent / "sql" / "roles.sql"
FAST = {**FAST_TIMEOUTS, "lease_seconds": 9}


@pytest.fixture
def as_lock_user(default_databases) -> Iterator[tuple[str, str]]:
    """(owner's URL, a lock user's URL) on a database migrated by its owner."""
    url = default_databases.create()
    owner = Tables(url)
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(ROLES_SQL.read_text().encode())  # bytes: no placeholders to parse
    login = f"lock_app_{secrets.token_hex(4)}"
    owner.query(f'CREATE ROLE "{login}" LOGIN IN ROLE dlock_user')
    user_url = make_url(url).set(username=login).render_as_string(hide_password=False)
    yield url, user_url
    owner.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", login)
    owner.query(f'DROP OWNED BY "{login}"; DROP ROLE "{login}"')


def test_a_lock_user_holds_renews_and_releases_through_the_functions(as_lock_user, names):
    owner_url, user_url = as_lock_user
    lock = DistributedLock(user_url, app_id="restricted", **FAST)
    with lock.hold(*names, slot="tick-1") as held:
        assert held.acquired
        held.ensure_held()
        with DistributedLock(user_url, app_id="rival", **FAST).hold(*names) as rival:
            assert not rival.acquired and rival.holder.startswith("restricted/")
    assert Tables(owner_url).statuses(*names) == ["Completed", "Exited"]


REFUSED = [
    "INSERT INTO queue_locks (queue_name, job_name, owner, fence, log_id, expires_at)"
    " VALUES ('q', 'forged', 'me', 1, 1, 'infinity')",
    "UPDATE queue_locks SET expires_at = 'infinity'",
    "UPDATE queue_locks SET expires_at = clock_timestamp() - interval '1 hour'",
    "DELETE FROM queue_locks",
    "INSERT INTO job_logs (app_id, queue_name, job_name, status, remark)"
    " VALUES ('me', 'q', 'j', 'Completed', 'forged')",
    "UPDATE job_logs SET status = 'Completed'",
    "DELETE FROM job_logs",
    "SELECT owner FROM queue_locks",
    "SELECT * FROM queue_locks",
]


@pytest.mark.parametrize("statement", REFUSED)
def test_a_lock_user_cannot_write_the_tables_or_read_the_owner_token(
    as_lock_user, names, statement
):
    _, user_url = as_lock_user
    with psycopg.connect(libpq_url(user_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_a_lock_user_cannot_take_a_lease_beyond_the_bound(as_lock_user, names):
    _, user_url = as_lock_user
    ninety_five_years = 95 * 365 * 86_400.0
    with psycopg.connect(libpq_url(user_url), autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="at most 86400"):
            conn.execute(
                "SELECT * FROM dlock_acquire_v2(%s, %s, 'me/-/x', 'me', NULL, NULL, %s, false)",
                (*names, ninety_five_years),
            )


def test_without_the_owner_token_nobody_renews_releases_or_expires_a_lock(as_lock_user, names):
    owner_url, user_url = as_lock_user
    tables = Tables(owner_url)
    with DistributedLock(owner_url, app_id="holder", **FAST).hold(*names, slot="s") as held:
        before = tables.lock_row(*names)
        with psycopg.connect(libpq_url(user_url), autocommit=True) as conn:
            # What a lock user can read: the lock, its fence and its log row, not the owner.
            fence, log_id = conn.execute(
                "SELECT fence, log_id FROM queue_locks WHERE queue_name = %s AND job_name = %s",
                names,
            ).fetchone()
            guess = f"holder/-/{'0' * 32}"
            assert conn.execute(
                "SELECT dlock_release_v2(%s, %s, %s, %s, %s, 'Completed', 'x')",
                (*names, guess, fence, log_id),
            ).fetchone() == ("lost",)
            assert conn.execute(
                "SELECT outcome FROM dlock_renew_all_v1(%s, %s, %s, %s, %s)",
                ([names[0]], [names[1]], [guess], [fence], [0.001]),
            ).fetchone() == ("lost",)
            conn.execute(
                "SELECT dlock_abandon_v2(%s, %s, %s, 'me', NULL, 's', 'x')", (*names, guess)
            )
            assert conn.execute(
                "SELECT dlock_still_held_v1(%s, %s, %s, %s)", (*names, guess, fence)
            ).fetchone() == (False,)
        assert tables.lock_row(*names) == before, "the live lock was touched"
        assert tables.statuses(*names)[0] == "Processing"
        held.ensure_held()
    assert tables.statuses(*names)[0] == "Completed"


def test_a_lock_user_reads_status_and_prunes_but_cannot_release_others(as_lock_user, names):
    """The code location's check and retention schedule run as a lock user."""
    from resources import operations as ops

    owner_url, user_url = as_lock_user
    database = DistributedLock(user_url, **FAST).database()
    with DistributedLock(user_url, app_id="restricted", **FAST).hold(*names, run_id="r1"):
        status = ops.read_status(database)
        assert [lock.holder for lock in status.locks] == ["restricted/r1"]
        assert ops.prune(database, 30 * 86_400.0).rows == 0
        with psycopg.connect(libpq_url(user_url), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(
                    "SELECT * FROM dlock_operator_release_v1(%s, %s, NULL, 'me', 'why')", names
                )
            with pytest.raises(psycopg.errors.InvalidParameterValue, match="at least 1 day"):
                conn.execute("SELECT * FROM dlock_prune_batch_v1(3600, 0, 10, false)")


def test_an_operator_releases_resets_and_prunes_through_the_functions_only(as_lock_user, names):
    import subprocess

    from support.processes import DLOCK

    owner_url, _ = as_lock_user
    login = f"oncall_{secrets.token_hex(4)}"
    owner = Tables(owner_url)
    owner.query(f'CREATE ROLE "{login}" LOGIN IN ROLE dlock_operator')
    operator_url = make_url(owner_url).set(username=login).render_as_string(hide_password=False)
    try:
        with DistributedLock(owner_url, app_id="holder", **FAST).hold(*names, slot="s1"):
            pass
        with (
            pytest.raises(LockLost, match="released on purpose"),
            DistributedLock(owner_url, app_id="holder", **FAST).hold(*names) as held,
        ):
            for args in (
                ("status",),
                ("release", *names, "--fence", str(held.fence), "--reason", "drill"),
                ("slots", "reset", *names, "s1", "--reason", "drill"),
                ("prune", "--older-than", "30d"),
            ):
                run = subprocess.run(
                    [DLOCK, *args, "--database-url", operator_url], capture_output=True, text=True
                )
                assert run.returncode == 0, (args, run.stderr)
            with pytest.raises(LockLost, match=f"database role {login}"):
                held.ensure_held()
        with psycopg.connect(libpq_url(operator_url), autocommit=True) as conn:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM job_logs")
    finally:
        owner.query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", login
        )
        owner.query(f'DROP OWNED BY "{login}"; DROP ROLE "{login}"')
