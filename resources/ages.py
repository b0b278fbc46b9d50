"""Ages as operators type and read them: "30d", "2h", "1h30m" in, "4m 12s" out."""

from __future__ import annotations

import re
from datetime import datetime, timezone

from .errors import LockConfigError

_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_AGE = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
AGE_EXAMPLES = "90s, 15m, 2h, 1h30m, 30d or 2w"


def parse_age(option: str, text: str) -> float:
    """Seconds in an age such as "2h" or "1h30m"; a one-line LockConfigError otherwise."""
    value = text.strip().lower()
    if not _AGE.fullmatch(value):
        raise LockConfigError(
            f"{option} {text!r} is not an age: write a number and a unit, e.g. {AGE_EXAMPLES}."
        )
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))


def parse_since(option: str, text: str) -> float | datetime:
    """An age ("2h": that long before now, by the database clock) or a point in time (ISO
    8601, "2026-11-28T14:00Z"; without an offset it is read as UTC)."""
    if _AGE.fullmatch(text.strip().lower()):
        return parse_age(option, text)
    value = text.strip()
    if value.endswith(("Z", "z")):  # Python 3.10 reads no "Z"
        value = value[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise LockConfigError(
            f"{option} {text!r} is neither an age ({AGE_EXAMPLES}) nor a time such as "
            "2026-11-28T14:00Z."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def format_age(seconds: float) -> str:
    """The two largest units: "12s", "4m 12s", "2h 3m", "3d 4h"."""
    total = int(abs(seconds))
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"
