"""Exactly-once guards for Dagster: a lease-based SQL lock with a job log."""

from typing import TYPE_CHECKING

from .errors import (
    LockConfigError,
    LockConnectionError,
    LockDatabaseError,
    LockError,
    LockHeld,
    LockLost,
    LockSchemaError,
    LockTimeout,
)
from .lock import DistributedLock, Held

if TYPE_CHECKING:
    from .dagster_integration.guard import guarded_asset, guarded_multi_asset, guarded_op
    from .dagster_integration.resource import DistributedLockResource

_GUARDS = ("guarded_asset", "guarded_multi_asset", "guarded_op")


def __getattr__(name: str) -> object:
    # Dagster takes a second or two to import; plain lock users (workers, the CLI) skip it.
    if name == "DistributedLockResource":
        from .dagster_integration.resource import DistributedLockResource

        return DistributedLockResource
    if name in _GUARDS:
        from .dagster_integration import guard

        return getattr(guard, name)
    raise AttributeError(f"module 'resources' has no attribute {name!r}")


__all__ = [
    "DistributedLock",
    "DistributedLockResource",
    "Held",
    "LockConfigError",
    "LockConnectionError",
    "LockDatabaseError",
    "LockError",
    "LockHeld",
    "LockLost",
    "LockSchemaError",
    "LockTimeout",
    "guarded_asset",
    "guarded_multi_asset",
    "guarded_op",
]
