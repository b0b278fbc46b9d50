"""Every error the lock raises sits under LockError, so callers can catch "any lock error".

The errors cross process boundaries (Dagster ships them from the op's process to the run's
log), so each carries plain data and pickles back to the same message and fields.
"""

from __future__ import annotations

from typing import Any


class LockError(Exception):
    """Base of every lock error; carries the lock's queue and job names when it has them."""

    def __init__(
        self, message: str, *, queue_name: str | None = None, job_name: str | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.queue_name = queue_name
        self.job_name = job_name

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.message,), self.__dict__.copy())


class LockConfigError(LockError, ValueError):
    """A name, lease, slot or database URL is not usable; nothing was written."""


class LockConnectionError(LockError):
    """The database cannot be reached or refused the credentials."""


class LockSchemaError(LockError):
    """The lock tables or a protocol function this code calls are missing: `dlock migrate`."""


class LockDatabaseError(LockError):
    """A statement of the lock protocol failed in the database."""


class LockLost(LockError):
    """The lease was taken over by another holder while this one still ran its body."""


class LockTimeout(LockError):
    """Waiting for another holder to finish ran past its deadline."""


class LockHeld(LockError):
    """Another holder has the lock and the caller asked to fail rather than skip."""
