"""Child processes the tests run: lock workers, dagster commands, the dlock CLI."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from pathlib import Path

# The console scripts of the environment running the tests.
BIN = Path(sys.executable).parent
DLOCK = str(BIN / "dlock")
DAGSTER = str(BIN / "dagster")


WORKER_SCRIPT = Path(__file__).with_name("lock_worker.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class Worker:
    """A lock_worker.py process; its JSON events are read line by line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.seen: list[dict] = []

    def next_event(self, timeout: float = 60.0) -> dict:
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            exited = self.process.poll()
            self.process.kill()
            why = f"exited with {exited}" if exited is not None else f"silent for {timeout:g} s"
            raise AssertionError(
                f"worker said nothing more ({why}); events so far: {self.seen}; stderr:\n"
                f"{self.process.stderr.read()}"
            )
        event = json.loads(line)
        self.seen.append(event)
        return event

    def wait_for(self, name: str, timeout: float = 60.0) -> dict:
        while True:
            event = self.next_event(timeout)
            if event["event"] == name:
                return event

    def finish(self, timeout: float = 60.0) -> list[dict]:
        out, err = self.process.communicate(timeout=timeout)
        self.seen.extend(json.loads(line) for line in out.splitlines() if line.strip())
        self.stderr = err
        return self.seen


def dagster(env: dict[str, str], *args: str, executable: str = DAGSTER, **popen):
    """A dagster command run from the project folder, output captured."""
    return subprocess.Popen(
        [executable, *args],
        env=env,
        cwd=PROJECT_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **popen,
    )


def finish(process, timeout: float = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out
