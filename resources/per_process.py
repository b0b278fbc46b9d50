"""Objects made once per process and key: a forked child starts with none of its parent's.

A child shares its parent's memory but must never use the parent's connections or rely on its
threads (which do not exist in the child), so it makes its own on first use.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Made = TypeVar("Made")


class PerProcess(Generic[Made]):
    def __init__(self) -> None:
        self._made: dict[Hashable, Made] = {}
        self._lock = threading.Lock()
        os.register_at_fork(after_in_child=self._forget)

    def get(self, key: Hashable, make: Callable[[], Made]) -> Made:
        """The object for `key` in this process, made by `make()` the first time."""
        with self._lock:
            made = self._made.get(key)
            if made is None:
                made = self._made[key] = make()
            return made

    def _forget(self) -> None:
        # The lock may have been held by a parent thread at fork time: the child gets a new one.
        self._made = {}
        self._lock = threading.Lock()
