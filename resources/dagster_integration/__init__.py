"""The lock in Dagster: the resource ops and assets use, and what a run locks on (its job name,
slot and run id, read from run tags, partition and asset key)."""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .resource import DistributedLockResource


def __getattr__(name: str) -> object:
    # Importing this package must not import Dagster (a second or two): the launcher and the
    # plain lock read run_target's constants without it.
    if name == "DistributedLockResource":
        from .resource import DistributedLockResource

        return DistributedLockResource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DistributedLockResource"]
