"""How long one lock call may take, and the lease that leaves renewal room within it.

Every call is bounded on the client side (connect, statement, a margin for the reply), so a
lease can be checked against those bounds when the lock is configured, not when it lapses.
"""

from __future__ import annotations

from .connections import CLIENT_MARGIN_SECONDS, MIN_CONNECT_SECONDS
from .errors import LockConfigError
from .validation import MAX_LEASE_SECONDS, check_seconds

# A lease must leave room for this many renewal attempts, each bounded by connect plus statement
# timeout plus the client margin: the first is due at a third of the lease, and one attempt may
# fail (a restart, a broken connection) with time left for another before the lease lapses.
RENEWAL_ATTEMPTS_PER_LEASE = 3


def check_timeouts(
    connect_timeout_seconds: object, statement_timeout_seconds: object
) -> tuple[float, float]:
    return (
        check_seconds("connect_timeout_seconds", connect_timeout_seconds, maximum=3600),
        # PostgreSQL takes whole milliseconds and reads 0 as "no timeout": refuse what rounds
        # to 0 rather than silently run without one.
        check_seconds(
            "statement_timeout_seconds",
            statement_timeout_seconds,
            maximum=MAX_LEASE_SECONDS,
            minimum=0.001,
        ),
    )


def call_bound_seconds(timeouts: tuple[float, float]) -> float:
    """The longest one attempt of a lock call may take: connect, statement, client margin."""
    connect, statement = timeouts
    return max(MIN_CONNECT_SECONDS, connect) + statement + CLIENT_MARGIN_SECONDS


def check_lease_fits(lease_seconds: float, timeouts: tuple[float, float]) -> float:
    """Refuse a lease too short for renewal to keep it alive within these timeouts."""
    bound = call_bound_seconds(timeouts)
    shortest = RENEWAL_ATTEMPTS_PER_LEASE * bound
    if lease_seconds < shortest:
        connect, statement = timeouts
        raise LockConfigError(
            f"Incorrect config: lease_seconds={lease_seconds:g} is too short for renewal: one "
            f"renewal may take up to {bound:g} s (connect_timeout_seconds={connect:g}, at least "
            f"{MIN_CONNECT_SECONDS:g}, plus statement_timeout_seconds={statement:g} plus a "
            f"{CLIENT_MARGIN_SECONDS:g} s client margin), and a lease must leave room for "
            f"{RENEWAL_ATTEMPTS_PER_LEASE} of them. Use a lease of at least {shortest:g} s or "
            "lower the timeouts."
        )
    return lease_seconds
