"""Exactly-once guards for Dagster: a lease-based SQL lock with a job log."""

import importlib
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


def __getattr__(name: str) -> object:
    # Dagster takes a second or two to import; plain lock users (workers, the CLI) skip it.
    # dagster_integration imports it lazily, name by name.
    # import_module, not `from . import`: that would ask this very __getattr__ first.
    dagster_integration = importlib.import_module(f"{__name__}.dagster_integration")
    if name in dagster_integration.__all__:
        return getattr(dagster_integration, name)
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
