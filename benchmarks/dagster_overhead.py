"""A guarded heartbeat run against its unguarded twin: wall time and the process tree's peak
memory, through execute_in_process and through the `dagster` CLI, after one warm-up run."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

JOBS = {"guarded": "heartbeat_job", "unguarded": "unguarded_heartbeat_job"}
DAGSTER = str(Path(sys.executable).with_name("dagster"))


def _peak_tree_rss(process: subprocess.Popen) -> int:
    """Poll the process and its descendants until it exits; the largest summed RSS seen."""
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.01)
    return peak


def _run(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    # Output goes to a file: a pipe nobody reads while polling would fill up and stall the run.
    with tempfile.TemporaryFile("w+") as output:
        started = time.perf_counter()
        process = subprocess.Popen(
            command, env=env, stdout=output, stderr=subprocess.STDOUT, text=True
        )
        peak = _peak_tree_rss(process)
        wall = time.perf_counter() - started
        output.seek(0)
        out = output.read()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{out[-2000:]}")
    return wall, peak, out


def _in_process_script(jobs: list[str], runs: int) -> list[str]:
    """A Python process that runs the jobs alternately (so drift hits both alike) after one
    warm-up run each, and prints each job's run times as JSON."""
    code = (
        "import json, time\n"
        "from benchmarks.dagster_twin import defs\n"
        f"jobs = {{name: defs.resolve_job_def(name) for name in {jobs!r}}}\n"
        "for job in jobs.values(): job.execute_in_process()\n"
        "times = {name: [] for name in jobs}\n"
        f"for _ in range({runs}):\n"
        "    for name, job in jobs.items():\n"
        "        started = time.perf_counter(); job.execute_in_process()\n"
        "        times[name].append(time.perf_counter() - started)\n"
        "print('TIMES ' + json.dumps(times))\n"
    )
    return [sys.executable, "-c", code]


def measure(url: str, in_process_runs: int, cli_runs: int) -> dict[str, Any]:
    home = tempfile.mkdtemp(prefix="dlock-bench-home-")
    env = {**os.environ, "LOCK_DATABASE_URL": url, "DAGSTER_HOME": home}
    results: dict[str, Any] = {}
    _, _, out = _run(_in_process_script(list(JOBS.values()), in_process_runs), env)
    times = json.loads(out.split("TIMES ", 1)[1].splitlines()[0])
    for variant, job in JOBS.items():
        # Peak memory needs a process of its own per variant.
        _, peak, _ = _run(_in_process_script([job], 5), env)
        results[f"in_process_{variant}"] = {
            "median_ms": statistics.median(times[job]) * 1000,
            "peak_mib": peak / 2**20,
        }
    cli: dict[str, dict[str, list[float]]] = {v: {"wall": [], "peak": []} for v in JOBS}
    for job in JOBS.values():  # warm-up: byte-compile, first storage writes
        _run([DAGSTER, "job", "execute", "-m", "benchmarks.dagster_twin", "-j", job], env)
    for _ in range(cli_runs):
        for variant, job in JOBS.items():
            wall, peak, _ = _run(
                [DAGSTER, "job", "execute", "-m", "benchmarks.dagster_twin", "-j", job], env
            )
            cli[variant]["wall"].append(wall)
            cli[variant]["peak"].append(peak)
    for variant in JOBS:
        results[f"cli_{variant}"] = {
            "median_ms": statistics.median(cli[variant]["wall"]) * 1000,
            "peak_mib": statistics.median(cli[variant]["peak"]) / 2**20,
        }
    for mode in ("in_process", "cli"):
        guarded, unguarded = results[f"{mode}_guarded"], results[f"{mode}_unguarded"]
        results[f"{mode}_wall_overhead"] = guarded["median_ms"] / unguarded["median_ms"] - 1
        results[f"{mode}_memory_overhead"] = guarded["peak_mib"] / unguarded["peak_mib"] - 1
    return results
