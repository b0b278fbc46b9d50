"""Checks run before anything touches the database, so bad input writes nothing."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .errors import LockConfigError

MAX_NAME_LENGTH = 100
MAX_APP_ID_LENGTH = 200
MAX_LEASE_SECONDS = 86_400.0

Slot = datetime | str | None


def check_name(kind: str, value: object) -> str:
    """Return a queue or job name unchanged, or raise if it cannot be stored as given."""
    if not isinstance(value, str) or not value:
        raise LockConfigError(
            f"Incorrect config: {kind} must be a non-empty string, got {value!r}."
        )
    if len(value) > MAX_NAME_LENGTH:
        raise LockConfigError(
            f"Incorrect config: {kind} is {len(value)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}. Use a shorter name."
        )
    return value


def check_app_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise LockConfigError(
            f"Incorrect config: app_id must be a non-empty string, got {value!r}."
        )
    if len(value) > MAX_APP_ID_LENGTH:
        raise LockConfigError(
            f"Incorrect config: app_id is {len(value)} characters long; the limit is "
            f"{MAX_APP_ID_LENGTH}."
        )
    return value


def check_seconds(kind: str, value: object, *, maximum: float, allow_zero: bool = False) -> float:
    """Return a duration in seconds as a float, or raise if it is not a sane positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LockConfigError(
            f"Incorrect config: {kind} must be a number of seconds, got {value!r}."
        )
    seconds = float(value)
    low_ok = seconds >= 0 if allow_zero else seconds > 0
    if not math.isfinite(seconds) or not low_ok or seconds > maximum:
        bound = "0 or more" if allow_zero else "greater than 0"
        raise LockConfigError(
            f"Incorrect config: {kind} must be {bound} and at most {maximum:g} seconds, "
            f"got {value!r}."
        )
    return seconds


def check_lease(value: object) -> float:
    return check_seconds("lease_seconds", value, maximum=MAX_LEASE_SECONDS)


def canonical_slot(slot: Slot) -> str | None:
    """The slot as stored: an aware datetime as UTC ISO text with microseconds, a string verbatim.

    Equal instants give equal text whatever their time zone, so every deployment agrees on
    which tick a run belongs to.
    """
    if slot is None:
        return None
    if isinstance(slot, datetime):
        if slot.tzinfo is None or slot.utcoffset() is None:
            raise LockConfigError(
                f"Incorrect config: slot {slot.isoformat()} has no time zone; pass an aware "
                "datetime (e.g. with tzinfo=timezone.utc) so every deployment agrees on the tick."
            )
        return slot.astimezone(timezone.utc).isoformat(timespec="microseconds")
    if isinstance(slot, str):
        if not slot:
            raise LockConfigError("Incorrect config: slot must not be an empty string; use None.")
        return slot
    raise LockConfigError(
        f"Incorrect config: slot must be an aware datetime, a string or None, "
        f"got {type(slot).__name__}."
    )
