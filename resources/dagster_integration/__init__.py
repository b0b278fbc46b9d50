"""The lock in Dagster: the resource ops and assets use, and what a run locks on (its job name,
slot and run id, read from run tags, partition and asset key)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .guard import guarded_asset, guarded_multi_asset, guarded_op
    from .resource import DistributedLockResource

_GUARDS = ("guarded_asset", "guarded_multi_asset", "guarded_op")


def __getattr__(name: str) -> object:
    # Importing this package must not import Dagster (a second or two): the launcher and the
    # plain lock read run_target's constants without it.
    if name == "DistributedLockResource":
        from .resource import DistributedLockResource

        return DistributedLockResource
    if name in _GUARDS:
        from . import guard

        return getattr(guard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DistributedLockResource", "guarded_asset", "guarded_multi_asset", "guarded_op"]
