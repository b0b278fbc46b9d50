"""Input the lock cannot store as given: refused before anything is written, or made safe.

Issue tracker items 5 (unstorable exception text), 8 (passwords in URLs) and 12 (input gaps).
"""

from __future__ import annotations

import pytest

from conftest import Tables
from resources import DistributedLock


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
def test_body_error_with_unstorable_text_is_recorded_and_releases(lock, db, names, message,
                                                                   readable):
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
