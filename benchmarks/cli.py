"""`python -m benchmarks [--quick]`: every figure in one run, on a throwaway database."""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict
from pathlib import Path

import psutil

from .concurrency import contention, throughput
from .cycles import APPROACHES
from .report import markdown, svg_chart
from .scale import renewal_traffic, scale
from .server import admin_url, throwaway_database
from .stats import interleaved

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return (
        f"{psutil.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="cycle comparison and throughput, fewer repetitions; no goals judged",
    )
    parser.add_argument(
        "--out", type=Path, default=RESULTS, help="folder for results.json and cycle-costs.svg"
    )
    args = parser.parse_args(argv)
    repetitions = 400 if args.quick else 4000
    started = time.monotonic()
    results: dict = {"machine": machine(), "quick": args.quick}
    with admin_url() as (server_url, where):
        results["server"] = where
        with throwaway_database(server_url) as url:
            cycles = interleaved(
                {name: make(url) for name, make in APPROACHES.items()}, repetitions
            )
            results["cycles"] = {name: asdict(timing) for name, timing in cycles.items()}
            workers = (1, 8) if args.quick else (1, 8, 32)
            results["throughput"] = [
                throughput(url, n, 1.0 if args.quick else 3.0) for n in workers
            ]
            if not args.quick:
                results["contention"] = [contention(url, n, 200) for n in (16, 64)]
                results["renewal"] = renewal_traffic(url)
                from .dagster_overhead import measure

                results["dagster"] = measure(url, in_process_runs=40, cli_runs=5)
        if not args.quick:
            with throwaway_database(server_url) as url:
                results["scale"] = scale(url, repetitions=2000)
    results["seconds"] = time.monotonic() - started
    table = markdown(results, judge=not args.quick)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "cycle-costs.svg").write_text(svg_chart(results["cycles"]))
    print(
        f"Wrote {args.out / 'results.json'} and {args.out / 'cycle-costs.svg'} "
        f"({results['seconds']:.0f} s)"
    )
    return 0
