"""Input the lock cannot store as given: refused before anything is written, or made safe.

Issue tracker items 5 (unstorable exception text), 8 (passwords in URLs) and 12 (input gaps).
"""

from __future__ import annotations

import secrets
import subprocess

import pytest
from sqlalchemy import make_url

from resources import DistributedLock, LockConfigError, LockSchemaError
from support.databases import Tables, free_port
from support.processes import DLOCK

SECRET = "s3cr3t-Pa55"


@pytest.fixture
def lock(database_url: str) -> DistributedLock:
    return DistributedLock(database_url, app_id="instance-one")


@pytest.fixture
def db(database_url: str) -> Tables:
    return Tables(database_url)


def counts(db: Tables) -> tuple[int, int]:
    return db.count("queue_locks"), db.count("job_logs")


# --- Item 5: an exception whose text PostgreSQL cannot store still releases the lock ---------


@pytest.mark.parametrize(
    ("message", "readable"),
    [
        pytest.param("a\x00b", "ValueError: a\\x00b", id="nul"),
        pytest.param("\ud800", "ValueError: \\ud800", id="lone-surrogate"),
        pytest.param("x" * 5_000_000, "ValueError: xxx", id="5-MB"),
    ],
)
def test_body_error_with_unstorable_text_is_recorded_and_releases(
    lock, db, names, message, readable
):
    error = ValueError(message)
    with pytest.raises(ValueError) as caught:
        with lock.hold(*names, slot="tick-1") as held:
            assert held.acquired
            raise error
    assert caught.value is error, "the caller's own exception propagates unchanged"
    assert db.lock_row(*names) is None
    [(status, _, _, _, remark)] = db.logs(*names)
    assert status == "Failed" and readable in remark and len(remark) < 5000
    with lock.hold(*names, slot="tick-1") as held:
        assert held.acquired, "the same slot may run again at once"
    assert db.statuses(*names) == ["Failed", "Completed"]


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ is broken")


def test_body_error_that_cannot_be_printed_still_propagates(lock, db, names):
    error = Unprintable()
    with pytest.raises(Unprintable) as caught:
        with lock.hold(*names):
            raise error
    assert caught.value is error
    assert db.lock_row(*names) is None
    assert db.statuses(*names) == ["Failed"]


# --- Item 8: a password in the query string or with an unescaped @ is never shown -------------


def query_password_url(url: str) -> str:
    """The same database, with the password given as ?password= (the server trusts locals)."""
    with_query = make_url(url).set(password=None).update_query_dict({"password": SECRET})
    return with_query.render_as_string(hide_password=False)


def dlock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DLOCK, *args], capture_output=True, text=True, timeout=120)


def test_dlock_never_prints_a_query_string_password(default_databases):
    url = query_password_url(default_databases.create(migrated=False))
    before = dlock("status", "--database-url", url)
    migrated = dlock("migrate", "--database-url", url)
    after = dlock("status", "--database-url", url)
    assert before.returncode == 3 and "dlock migrate" in before.stderr
    assert migrated.returncode == 0 and "Applied" in migrated.stdout
    assert after.returncode == 0 and "Held locks: 0" in after.stdout
    for run in (before, migrated, after):
        assert SECRET not in run.stdout + run.stderr


def test_schema_error_hides_a_query_string_password(default_databases, names):
    url = query_password_url(default_databases.create(migrated=False))
    with pytest.raises(LockSchemaError, match="dlock migrate") as error:
        with DistributedLock(url).hold(*names):
            pass
    assert SECRET not in str(error.value)


# "s3cr3t@Pa55" unescaped: a URL parser takes "s3cr3t" as the password and "Pa55@..." as the host.
AT_PASSWORD = "s3cr3t@Pa55"


def test_unescaped_at_in_password_is_refused_without_echoing_it(names):
    url = f"postgresql+psycopg://postgres:{AT_PASSWORD}@127.0.0.1:{free_port()}/postgres"
    with pytest.raises(LockConfigError, match="percent-encode") as error:
        with DistributedLock(url, connect_timeout_seconds=2).hold(*names):
            pass
    assert "%40" in str(error.value)
    run = dlock("migrate", "--database-url", url)
    assert run.returncode == 2 and "%40" in run.stderr
    for text in (str(error.value), run.stdout + run.stderr):
        assert "s3cr3t" not in text and "Pa55" not in text


# --- Item 12: input gaps, each refused with a clear LockConfigError before any write ----------


def refused(db: Tables, match: str, call) -> LockConfigError:
    """Runs `call()` (which holds the lock) and checks it is refused and wrote nothing."""
    before = counts(db)
    with pytest.raises(LockConfigError, match=match) as error:
        call()
    assert counts(db) == before
    return error.value


def holding(lock: DistributedLock, *args, **kwargs):
    def call() -> None:
        with lock.hold(*args, **kwargs):
            pytest.fail("the body must not run")

    return call


@pytest.mark.parametrize(
    ("queue_name", "job_name", "kind"), [(" ", "job", "queue_name"), ("queue", "\t\n", "job_name")]
)
def test_whitespace_only_names_are_refused(lock, db, queue_name, job_name, kind):
    refused(db, f"{kind} must be a non-empty string", holding(lock, queue_name, job_name))


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        ("queue_name", "q\x00"),
        ("job_name", "j\x00"),
        ("queue_name", "q\ud800"),
        ("job_name", "\udfff"),
        ("slot", "tick\x00"),
        ("slot", "tick\ud83d"),
        ("run_id", "run\x00"),
        ("run_id", "run\udc80"),
    ],
)
def test_nul_and_lone_surrogates_are_refused(lock, db, names, field, bad):
    args = {"queue_name": names[0], "job_name": names[1], field: bad}
    error = refused(
        db, f"{field} contains a NUL character or an unpaired surrogate", holding(lock, **args)
    )
    assert "\x00" not in str(error) and bad not in str(error)


@pytest.mark.parametrize("app_id", ["host\x00", "host\ud800"])
def test_nul_and_lone_surrogates_in_app_id_are_refused(database_url, app_id):
    with pytest.raises(LockConfigError, match="app_id contains a NUL character"):
        DistributedLock(database_url, app_id=app_id)


@pytest.mark.parametrize(
    "slot",
    [
        pytest.param(secrets.token_hex(1500), id="3000-bytes"),
        pytest.param("é" * 500 + "x", id="1001-bytes"),
    ],
)
def test_too_long_slot_is_refused(lock, db, names, slot):
    refused(
        db, "slot is .* bytes long in UTF-8; the limit is 1000", holding(lock, *names, slot=slot)
    )


def random_text(length: int, first: int, span: int) -> str:
    """Incompressible text, so the index really stores every byte."""
    return "".join(chr(first + secrets.randbelow(span)) for _ in range(length))


def test_largest_slot_fits_beside_the_longest_names(lock, db):
    queue_name = random_text(100, 0x10000, 0x1000)  # 4 bytes a character: 400 bytes
    job_name = random_text(100, 0x10000, 0x1000)
    slot = random_text(500, 0x400, 0x400)  # 2 bytes a character: 1,000 bytes, the limit
    with lock.hold(queue_name, job_name, slot=slot) as held:
        assert held.acquired
    assert db.statuses(queue_name, job_name) == ["Completed"]


@pytest.mark.parametrize("run_id", [42, b"run", "", "   "])
def test_run_id_must_be_a_non_blank_string_or_none(lock, db, names, run_id):
    refused(db, "run_id must be a non-empty string or None", holding(lock, *names, run_id=run_id))


@pytest.mark.parametrize("seconds", [0.0004, 0.0009])
def test_statement_timeout_below_a_millisecond_is_refused(database_url, seconds):
    with pytest.raises(LockConfigError, match="statement_timeout_seconds must be at least 0.001"):
        DistributedLock(database_url, statement_timeout_seconds=seconds)


def test_statement_timeout_of_a_millisecond_is_accepted(database_url):
    DistributedLock(database_url, statement_timeout_seconds=0.001)
