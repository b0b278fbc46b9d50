"""Checks run before anything touches the database, so bad input writes nothing."""

from __future__ import annotations

import math
from datetime import datetime, timezone

from .errors import LockConfigError

MAX_NAME_LENGTH = 100
MAX_APP_ID_LENGTH = 200
MAX_LEASE_SECONDS = 86_400.0
MAX_TEXT_LENGTH = 2000
# The unique index on (queue_name, job_name, slot) holds rows up to ~2.7 KB; two 100-character
# names take at most 800 bytes, so a slot of 1,000 bytes always fits.
MAX_SLOT_BYTES = 1000

Slot = datetime | str | None


def check_storable(kind: str, value: str) -> str:
    """Refuse text PostgreSQL cannot store: a NUL, or a lone surrogate that UTF-8 cannot encode.

    The value is not repeated in the message: it would carry the very character at fault.
    """
    position = value.find("\x00")
    if position < 0:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as error:
            position = error.start
    if position >= 0:
        raise LockConfigError(
            f"Incorrect config: {kind} contains a NUL character or an unpaired surrogate (at "
            f"character {position}), which PostgreSQL cannot store. Remove it."
        )
    return value


def check_name(kind: str, value: object) -> str:
    """Return a queue or job name unchanged, or raise if it cannot be stored as given."""
    if not isinstance(value, str) or not value.strip():
        raise LockConfigError(
            f"Incorrect config: {kind} must be a non-empty string that is not only "
            f"whitespace, got {value!r}."
        )
    if len(value) > MAX_NAME_LENGTH:
        raise LockConfigError(
            f"Incorrect config: {kind} is {len(value)} characters long; the limit is "
            f"{MAX_NAME_LENGTH}. Use a shorter name."
        )
    return check_storable(kind, value)


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
    return check_storable("app_id", value)


def check_run_id(value: object) -> str | None:
    """The run id as stored (None for none); any other type would reach the SQL call."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if isinstance(value, str) else f"a {type(value).__name__}"
        raise LockConfigError(
            f"Incorrect config: run_id must be a non-empty string or None (e.g. Dagster's "
            f"context.run_id), got {shown}."
        )
    return check_storable("run_id", value)


def check_seconds(
    kind: str,
    value: object,
    *,
    maximum: float,
    allow_zero: bool = False,
    minimum: float | None = None,
) -> float:
    """Return a duration in seconds as a float, or raise if it is not a sane positive number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise LockConfigError(
            f"Incorrect config: {kind} must be a number of seconds, got {value!r}."
        )
    seconds = float(value)
    if minimum is not None:
        low_ok, bound = seconds >= minimum, f"at least {minimum:g}"
    elif allow_zero:
        low_ok, bound = seconds >= 0, "0 or more"
    else:
        low_ok, bound = seconds > 0, "greater than 0"
    if not math.isfinite(seconds) or not low_ok or seconds > maximum:
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
        size = len(check_storable("slot", slot).encode("utf-8"))
        if size > MAX_SLOT_BYTES:
            raise LockConfigError(
                f"Incorrect config: slot is {size} bytes long in UTF-8; the limit is "
                f"{MAX_SLOT_BYTES}. Use a shorter key for the tick, e.g. its time or a hash."
            )
        return slot
    raise LockConfigError(
        f"Incorrect config: slot must be an aware datetime, a string or None, "
        f"got {type(slot).__name__}."
    )


def safe_text(value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """Free text (a remark built from an exception) as PostgreSQL can store it.

    A NUL is refused by PostgreSQL and a lone surrogate by the UTF-8 encoder, either of which
    would stop the release; both become visible escapes (\\x00, \\ud800). Long text is cut.
    """
    text = value[:limit].replace("\x00", "\\x00")
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(value) > limit or len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def error_text(error: BaseException) -> str:
    """`Type: message` of an exception for a remark; never raises, so the caller's own
    exception is the one that propagates even when its __str__ is broken."""
    try:
        message = str(error)
    except Exception:
        message = "<message could not be read>"
    return safe_text(f"{type(error).__name__}: {message}" if message else type(error).__name__)
