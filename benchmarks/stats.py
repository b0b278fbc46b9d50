"""Medians and p99s of repeated timings, with the CPU each cycle costs the client and the server."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from .cpu import client_cpu, server_cpu
from .cycles import Approach


@dataclass(frozen=True)
class Timing:
    median_ms: float
    p99_ms: float
    samples: int
    # Per cycle, averaged over the timed blocks; server_cpu_ms is None when the server's
    # backends cannot be read from this host.
    client_cpu_ms: float | None = None
    server_cpu_ms: float | None = None

    @classmethod
    def of(
        cls,
        seconds: list[float],
        client_cpu_s: float | None = None,
        server_cpu_s: float | None = None,
    ) -> Timing:
        ordered = sorted(seconds)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        per_cycle = 1000 / len(ordered)
        return cls(
            statistics.median(ordered) * 1000,
            p99 * 1000,
            len(ordered),
            None if client_cpu_s is None else client_cpu_s * per_cycle,
            None if server_cpu_s is None else server_cpu_s * per_cycle,
        )

    @property
    def cpu_ms(self) -> float | None:
        if self.client_cpu_ms is None or self.server_cpu_ms is None:
            return None
        return self.client_cpu_ms + self.server_cpu_ms


def time_each(cycle: Callable[[], object], repetitions: int) -> list[float]:
    samples = []
    for _ in range(repetitions):
        started = time.perf_counter()
        cycle()
        samples.append(time.perf_counter() - started)
    return samples


def interleaved(
    approaches: dict[str, Approach],
    repetitions: int,
    rounds: int = 10,
    warmup: int = 50,
    server_local: bool = True,
) -> dict[str, Timing]:
    """Time each approach in alternating blocks, so drift on a shared machine hits all alike;
    the CPU of each block is read around it (client) and from its backends (server)."""
    for approach in approaches.values():
        time_each(approach.cycle, warmup)
    samples: dict[str, list[float]] = {name: [] for name in approaches}
    client: dict[str, float] = dict.fromkeys(approaches, 0.0)
    server: dict[str, float | None] = dict.fromkeys(approaches, 0.0 if server_local else None)
    per_round = max(1, repetitions // rounds)
    for _ in range(rounds):
        for name, approach in approaches.items():
            pids = approach.backends()
            server_before = server_cpu(pids)
            client_before = client_cpu()
            samples[name] += time_each(approach.cycle, per_round)
            client[name] += client_cpu() - client_before
            server_after = server_cpu(pids)
            if server_before is None or server_after is None or server[name] is None:
                server[name] = None
            else:
                server[name] += server_after - server_before
    return {name: Timing.of(values, client[name], server[name]) for name, values in samples.items()}
