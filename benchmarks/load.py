"""A busy machine: CPU-bound processes that keep every core busy while a comparison runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

# Each spinner stops by itself after its bound, even if this process dies without stopping it.
_SPIN = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"


@contextmanager
def busy_cores(per_core: int = 2, seconds: float = 600.0) -> Iterator[int]:
    """`per_core` spinning processes per core for at most `seconds`; stopped on leaving. Yields
    how many run."""
    count = per_core * (os.cpu_count() or 1)
    spinners = [
        subprocess.Popen([sys.executable, "-c", _SPIN.format(seconds=seconds)])
        for _ in range(count)
    ]
    try:
        yield count
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.wait()
