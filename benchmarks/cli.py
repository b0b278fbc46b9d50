"""`python -m benchmarks [--quick]`: every figure in one run, on throwaway databases."""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import psutil
from sqlalchemy import make_url

from .concurrency import contention, throughput
from .cycles import APPROACHES
from .load import busy_cores
from .report import markdown, svg_chart
from .scale import renewal_traffic, scale
from .server import BENCH_URL_ENV, admin_url, private_cluster, throwaway_database
from .stats import interleaved

RESULTS = Path(__file__).resolve().parent / "results"
# Under load the comparison leaves out the advisory lock: it writes nothing, so it says nothing
# about what a busy machine does to a durable cycle.
LOADED = ("floor (2 INSERT commits)", "reference design", "this project", "this project, with slot")


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def server_is_local(url: str) -> bool:
    """Whether the server's backends are processes of this host, whose CPU /proc shows."""
    return make_url(url).host in (None, "", "127.0.0.1", "localhost", "::1")


def compare(url: str, names: tuple[str, ...] | None, repetitions: int) -> dict:
    approaches = {
        name: make(url) for name, make in APPROACHES.items() if not names or name in names
    }
    timings = interleaved(approaches, repetitions, server_local=server_is_local(url))
    return {name: asdict(timing) for name, timing in timings.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="cycle comparison (quiet and loaded) and throughput, fewer repetitions; "
        "no goals judged",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for results.json and cycle-costs.svg"
    )
    args = parser.parse_args(argv)
    quick = args.quick
    repetitions = 400 if quick else 3000
    started = time.monotonic()
    results: dict = {"machine": machine(), "quick": quick, "load_before": load_average()}
    with admin_url() as (server_url, where):
        results["server"] = where
        with throwaway_database(server_url) as url:
            results["cycles"] = compare(url, None, repetitions)
            results["load_after_cycles"] = load_average()
            with busy_cores(per_core=2, seconds=120 if quick else 900) as spinners:
                results["loaded_spinners"] = spinners
                loaded_repetitions = repetitions // 2 if quick else repetitions
                results["loaded_cycles"] = compare(url, LOADED, loaded_repetitions)
                results["load_under_spinners"] = load_average()
            workers = (8,) if quick else (1, 8, 32)
            results["throughput"] = [
                throughput(url, n, 1.0 if quick else 3.0, rounds=1 if quick else 2) for n in workers
            ]
            if not quick:
                results["renewal"] = renewal_traffic(url)
                from .dagster_overhead import measure

                results["dagster"] = measure(url, in_process_runs=40, cli_runs=5)
        if not quick:
            # Contention needs hundreds of connections: a cluster of the benchmark's own, unless
            # the run already is on one.
            own = private_cluster() if os.environ.get(BENCH_URL_ENV) else nullcontext(server_url)
            with own as contention_url, throwaway_database(contention_url) as url:
                results["contention"] = [
                    contention(url, n, 200 if n < 256 else 100) for n in (16, 64, 256)
                ]
            with (
                throwaway_database(server_url) as empty_url,
                throwaway_database(server_url) as full_url,
            ):
                results["scale"] = scale(empty_url, full_url, repetitions=2000)
    results["load_after"] = load_average()
    results["seconds"] = time.monotonic() - started
    table = markdown(results, judge=not quick)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "cycle-costs.svg").write_text(svg_chart(results["cycles"]))
    print(
        f"Wrote {args.out / 'results.json'} and {args.out / 'cycle-costs.svg'} "
        f"({results['seconds']:.0f} s)"
    )
    return 0
