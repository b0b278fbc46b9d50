"""Many processes at once: losers' answer times under contention, and throughput."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from resources import DistributedLock

from .cycles import APPROACHES, PROJECT, REFERENCE, connect, create_reference_tables
from .stats import Timing

# fork: workers start in milliseconds; the lock builds a fresh engine in each child.
_CONTEXT = multiprocessing.get_context("fork")


def _sleep_until(start_at: float) -> None:
    time.sleep(max(0.0, start_at - time.time()))


def _loser(url: str, attempts: int, start_at: float, out: Any) -> None:
    lock = DistributedLock(url, app_id=f"loser-{os.getpid()}")
    samples, errors = [], 0
    try:
        with lock.hold("bench-queue", "contended_job"):
            pass  # warm-up: connect and check the schema
        _sleep_until(start_at)
        for _ in range(attempts):
            started = time.perf_counter()
            with lock.hold("bench-queue", "contended_job") as held:
                samples.append(time.perf_counter() - started)
                errors += held.acquired  # the holder never lets go: winning is an error
    except Exception:
        errors += 1
    out.put((samples, errors))


def _select_one(url: str, attempts: int, start_at: float, out: Any) -> None:
    samples, errors = [], 0
    try:
        with connect(url) as conn:
            conn.execute("SELECT 1").fetchone()
            _sleep_until(start_at)
            for _ in range(attempts):
                started = time.perf_counter()
                conn.execute("SELECT 1").fetchone()
                samples.append(time.perf_counter() - started)
    except Exception:
        errors += 1
    out.put((samples, errors))


def _cycles_for(
    url: str, approach: str, worker: int, seconds: float, start_at: float, out: Any
) -> None:
    count, errors = 0, 0
    try:
        cycle = APPROACHES[approach](url, key=f"-{worker}").cycle
        cycle()  # warm-up: connect (and check the schema)
        _sleep_until(start_at)
        deadline = start_at + seconds
        while time.time() < deadline:
            cycle()
            count += 1
    except Exception as error:
        print(f"{approach} worker {worker}: {error!r}", file=sys.stderr)
        errors += 1
    out.put(([count], errors))


def _fan_out(target: Callable[..., None], argument_sets: list[tuple]) -> tuple[list, int]:
    out = _CONTEXT.Queue()
    processes = [_CONTEXT.Process(target=target, args=(*args, out)) for args in argument_sets]
    for process in processes:
        process.start()
    results = [out.get(timeout=600) for _ in processes]
    for process in processes:
        process.join()
    samples = [value for values, _ in results for value in values]
    return samples, sum(errors for _, errors in results)


def contention(url: str, processes: int, attempts: int) -> dict[str, Any]:
    """One holder throughout; `processes` losers each try `attempts` times."""
    holder = DistributedLock(url, app_id="holder")
    with holder.hold("bench-queue", "contended_job", lease_seconds=3600):
        start_at = time.time() + 2 + processes * 0.05
        losers, errors = _fan_out(_loser, [(url, attempts, start_at)] * processes)
    start_at = time.time() + 2 + processes * 0.05
    selects, select_errors = _fan_out(_select_one, [(url, attempts, start_at)] * processes)
    loser, select = Timing.of(losers), Timing.of(selects)
    return {
        "processes": processes,
        "attempts": len(losers),
        "loser_p50_ms": loser.median_ms,
        "loser_p99_ms": loser.p99_ms,
        "select1_p99_ms": select.p99_ms,
        "errors": errors + select_errors,
        "p99_ratio": loser.p99_ms / select.p99_ms,
    }


def throughput(url: str, workers: int, seconds: float, rounds: int = 2) -> dict[str, Any]:
    """Guarded cycles per second of `workers` processes on distinct locks, for this project and
    for the reference design, in alternating rounds so drift hits both alike."""
    create_reference_tables(url)
    counts = {PROJECT: 0, REFERENCE: 0}
    errors = 0
    for _ in range(rounds):
        for approach in counts:
            start_at = time.time() + 1 + workers * 0.05
            done, failed = _fan_out(
                _cycles_for, [(url, approach, n, seconds, start_at) for n in range(workers)]
            )
            counts[approach] += sum(done)
            errors += failed
    project, reference = (counts[name] / (seconds * rounds) for name in (PROJECT, REFERENCE))
    return {
        "workers": workers,
        "cycles_per_second": project,
        "reference_cycles_per_second": reference,
        "ratio": project / reference,
        "errors": errors,
    }
