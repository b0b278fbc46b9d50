"""Medians and p99s of repeated timings."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p99_ms: float
    samples: int

    @classmethod
    def of(cls, seconds: list[float]) -> Timing:
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return cls(statistics.median(ordered) * 1000, p99 * 1000, len(ordered))


def time_each(cycle: Callable[[], object], repetitions: int) -> list[float]:
    samples = []
    for _ in range(repetitions):
        started = time.perf_counter()
        cycle()
        samples.append(time.perf_counter() - started)
    return samples


def interleaved(
    cycles: dict[str, Callable[[], object]], repetitions: int, rounds: int = 10, warmup: int = 50
) -> dict[str, Timing]:
    """Time each approach in alternating blocks, so drift on a shared machine hits all alike."""
    for cycle in cycles.values():
        time_each(cycle, warmup)
    samples: dict[str, list[float]] = {name: [] for name in cycles}
    per_round = max(1, repetitions // rounds)
    for _ in range(rounds):
        for name, cycle in cycles.items():
            samples[name] += time_each(cycle, per_round)
    return {name: Timing.of(values) for name, values in samples.items()}
