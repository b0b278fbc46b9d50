"""What the lock refuses before it touches a database, and how it stores slots and remarks."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import pytest

from resources import DistributedLock, LockConfigError
from resources.timeouts import check_lease_fits
from resources.validation import (
    MAX_SLOT_BYTES,
    canonical_slot,
    check_name,
    check_run_id,
    safe_text,
)

TICK = datetime(2026, 11, 28, 4, 0, tzinfo=timezone.utc)


def test_one_instant_is_one_slot_whatever_its_time_zone():
    tokyo = TICK.astimezone(timezone(timedelta(hours=9)))
    assert canonical_slot(tokyo) == canonical_slot(TICK) == "2026-11-28T04:00:00.000000+00:00"


def test_a_string_slot_is_stored_verbatim():
    assert canonical_slot("2026-11-28|us-east") == "2026-11-28|us-east"
    assert canonical_slot(None) is None


@pytest.mark.parametrize(
    ("slot", "match"),
    [
        (datetime(2026, 11, 28, 4, 0), "no time zone"),
        ("", "empty string"),
        ("é" * (MAX_SLOT_BYTES // 2 + 1), "bytes long in UTF-8"),
        ("a\x00b", "NUL character"),
        (42, "aware datetime, a string or None"),
    ],
)
def test_a_slot_that_cannot_be_stored_as_one_key_is_refused(slot, match):
    with pytest.raises(LockConfigError, match=match):
        canonical_slot(slot)


def test_the_largest_slot_is_accepted():
    assert canonical_slot("x" * MAX_SLOT_BYTES) == "x" * MAX_SLOT_BYTES


@pytest.mark.parametrize("name", ["", "   ", None, 7, "q" * 101])
def test_names_must_be_short_non_blank_strings(name):
    with pytest.raises(LockConfigError, match="queue_name"):
        check_name("queue_name", name)


@pytest.mark.parametrize("run_id", ["", " ", 42, b"run"])
def test_run_id_is_a_non_blank_string_or_none(run_id):
    assert check_run_id(None) is None
    with pytest.raises(LockConfigError, match="run_id must be a non-empty string"):
        check_run_id(run_id)


def test_remarks_are_made_storable_and_cut():
    assert safe_text("a\x00b\ud800") == "a\\x00b\\ud800"
    cut = safe_text("x" * 5000, limit=100)
    assert len(cut) == 100 and cut.endswith("…")


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf, 86_401, "300", True])
def test_a_lease_that_is_not_a_sane_duration_is_refused(lease):
    with pytest.raises(LockConfigError, match="lease_seconds"):
        DistributedLock("postgresql+psycopg://u@h/db", lease_seconds=lease)


def test_a_lease_must_leave_room_for_three_renewal_attempts():
    # One attempt may take max(2, connect) + statement + 0.5 s: 2 + 0.5 + 0.5 = 3 s here.
    assert check_lease_fits(9.0, (2.0, 0.5)) == 9.0
    with pytest.raises(LockConfigError, match="at least 9 s"):
        check_lease_fits(8.9, (2.0, 0.5))


def test_configuring_a_lock_opens_no_connection():
    # A host that does not resolve: nothing is contacted until the lock is first used.
    lock = DistributedLock("postgresql+psycopg://u@no-such-host.invalid/db", app_id="a")
    assert lock.app_id == "a"
