"""Bad input gets a clear error that says what to do, and writes nothing."""

from __future__ import annotations

import math
import os
import pickle
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import psycopg
import pytest

from resources import (
    DistributedLock,
    LockConfigError,
    LockConnectionError,
    LockDatabaseError,
    LockError,
    LockLost,
    LockSchemaError,
)
from resources.urls import libpq_url
from support.databases import Tables, free_port
from support.processes import DLOCK

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def lock(database_url: str) -> DistributedLock:
    return DistributedLock(database_url, app_id="instance-one")


@pytest.fixture
def db(database_url: str) -> Tables:
    return Tables(database_url)


def nothing_written(db: Tables, before: tuple[int, int]) -> bool:
    return (db.count("queue_locks"), db.count("job_logs")) == before


def counts(db: Tables) -> tuple[int, int]:
    return db.count("queue_locks"), db.count("job_logs")


@pytest.mark.parametrize(
    ("queue_name", "job_name", "expected"),
    [
        ("", "job", "queue_name must be a non-empty string"),
        ("queue", "", "job_name must be a non-empty string"),
        (None, "job", "queue_name must be a non-empty string"),
        ("q" * 101, "job", "queue_name is 101 characters long; the limit is 100"),
        ("queue", "é" * 101, "job_name is 101 characters long; the limit is 100"),
    ],
)
def test_bad_names_are_refused_and_nothing_is_written(lock, db, queue_name, job_name, expected):
    before = counts(db)
    with pytest.raises(LockConfigError, match=expected):
        with lock.hold(queue_name, job_name):
            pytest.fail("the body must not run")
    assert nothing_written(db, before)


def test_hundred_character_unicode_names_fit(lock, db):
    name = "é" * 99 + "✓"
    with lock.hold(name, name) as held:
        assert held.acquired
    assert db.statuses(name, name) == ["Completed"]


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf, 86_401, True, "300"])
def test_bad_lease_is_refused(database_url, lease):
    with pytest.raises(LockConfigError, match="lease_seconds must be"):
        DistributedLock(database_url, lease_seconds=lease)


def test_bad_lease_per_call_is_refused_and_nothing_is_written(lock, db, names):
    before = counts(db)
    with pytest.raises(LockConfigError, match="lease_seconds"):
        with lock.hold(*names, lease_seconds=-5):
            pass
    assert nothing_written(db, before)


def test_naive_datetime_slot_is_refused(lock, db, names):
    before = counts(db)
    with pytest.raises(LockConfigError, match="has no time zone"):
        with lock.hold(*names, slot=datetime(2026, 11, 28, 4)):
            pass
    assert nothing_written(db, before)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("not a url at all", "is not a valid URL"),
        (f"postgresql://user:{SECRET}@localhost:notaport/db", "is not a valid URL"),
        (f"mysql://user:{SECRET}@localhost/db", "needs PostgreSQL"),
        (f"postgresql://user:{SECRET}@localhost:5432", "names no database"),
    ],
)
def test_malformed_url_is_refused_without_echoing_the_password(names, url, expected):
    with pytest.raises(LockConfigError, match=expected) as error:
        with DistributedLock(url).hold(*names):
            pass
    assert SECRET not in str(error.value)


def test_missing_url_names_the_environment_variable(names, monkeypatch):
    monkeypatch.delenv("LOCK_DATABASE_URL", raising=False)
    with pytest.raises(LockConfigError, match="LOCK_DATABASE_URL is not set"):
        with DistributedLock().hold(*names):
            pass


def test_unreachable_server_names_host_and_port_not_password(names):
    port = free_port()
    url = f"postgresql+psycopg://postgres:{SECRET}@127.0.0.1:{port}/postgres"
    with pytest.raises(LockConnectionError) as error:
        with DistributedLock(url, connect_timeout_seconds=2).hold(*names):
            pass
    message = str(error.value)
    assert f"127.0.0.1:{port}" in message and "Check that the server is running" in message
    assert SECRET not in message and SECRET not in repr(error.value)


@pytest.fixture(scope="module")
def password_cluster(embedded_admin_url) -> Iterator[str]:
    """A PostgreSQL of our own that demands a password (the shared ones trust everybody)."""
    from pgserver import _commands

    owner = "pgserver" if os.geteuid() == 0 else None
    folder = Path(tempfile.mkdtemp(prefix="dlock-pw-"))
    folder.chmod(0o755)
    pgdata, pwfile = folder / "data", folder / "pwfile"
    pgdata.mkdir()
    pwfile.write_text(SECRET)
    if owner:
        pgserver_user = pwd.getpwnam(owner)  # made by the embedded server's first start
        for path in (pgdata, pwfile):
            os.chown(path, pgserver_user.pw_uid, pgserver_user.pw_gid)
    _commands.initdb(
        ["--auth=scram-sha-256", f"--pwfile={pwfile}", "-U", "postgres"], pgdata=pgdata, user=owner
    )
    port = free_port()
    _commands.pg_ctl(
        ["-w", "-o", f"-h 127.0.0.1 -p {port} -k {pgdata}", "-l", str(pgdata / "log"), "start"],
        pgdata=pgdata,
        user=owner,
        timeout=60,
    )
    yield f"127.0.0.1:{port}"
    _commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=owner)
    shutil.rmtree(folder, ignore_errors=True)


def test_wrong_password_names_host_and_port_not_password(
    password_cluster, names, embedded_admin_url
):
    right = f"postgresql+psycopg://postgres:{SECRET}@{password_cluster}/postgres"
    subprocess.run([DLOCK, "migrate", "--database-url", right], check=True, capture_output=True)
    with DistributedLock(right).hold(*names) as held:
        assert held.acquired, "the right password works"
    wrong = f"postgresql+psycopg://postgres:not-{SECRET}@{password_cluster}/postgres"
    with pytest.raises(LockConnectionError) as error:
        with DistributedLock(wrong).hold(*names):
            pass
    message = str(error.value)
    assert password_cluster in message and "password authentication failed" in message
    assert SECRET not in message


def test_dlock_commands_with_a_wrong_password_say_so_in_one_line(password_cluster):
    wrong = f"postgresql+psycopg://postgres:not-{SECRET}@{password_cluster}/postgres"
    for args in (
        ("status",),
        ("logs", "--json"),
        ("release", "q", "j", "--force", "--reason", "r"),
    ):
        run = subprocess.run(
            [DLOCK, *args, "--database-url", wrong], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 3 and run.stdout == "", run
        [line] = run.stderr.splitlines()
        assert "password authentication failed" in line and password_cluster in line
        assert SECRET not in run.stderr


def test_missing_tables_say_to_run_dlock_migrate(default_databases, names):
    empty = default_databases.create(migrated=False)
    with pytest.raises(LockSchemaError, match="queue_locks and job_logs are missing") as error:
        with DistributedLock(empty).hold(*names):
            pass
    # The suggested command works as written, with the variable the lock itself reads.
    command = re.search(r"`(dlock migrate)`", str(error.value)).group(1).split()
    env = {**os.environ, "LOCK_DATABASE_URL": empty}
    subprocess.run([DLOCK, *command[1:]], env=env, check=True, capture_output=True)
    with DistributedLock(empty).hold(*names) as held:
        assert held.acquired


@pytest.mark.parametrize("error_type", [LockError, LockConfigError, LockLost, LockSchemaError])
def test_errors_carry_names_read_well_and_pickle(error_type):
    error = error_type("Lock q/j was lost", queue_name="q", job_name="j")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is error_type and isinstance(copy, LockError)
    assert str(copy) == "Lock q/j was lost"
    assert (copy.queue_name, copy.job_name) == ("q", "j")


def test_hung_database_cannot_hang_a_run(database_url, db, names):
    """A statement that waits too long is cancelled by the server and reported; nothing stays."""
    impatient = DistributedLock(database_url, app_id="impatient", statement_timeout_seconds=1)
    with impatient.hold("warm-up", "warm-up"):
        pass  # connect and check the schema while nothing blocks
    before = counts(db)
    with psycopg.connect(libpq_url(database_url)) as blocker:
        blocker.execute("LOCK TABLE queue_locks IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        with pytest.raises(LockDatabaseError, match="statement timeout"):
            with impatient.hold(*names):
                pytest.fail("the body must not run")
        assert time.monotonic() - started < 10
        blocker.rollback()
    assert nothing_written(db, before)
    assert db.lock_row(*names) is None
