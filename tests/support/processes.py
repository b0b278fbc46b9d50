"""Child processes the tests run: lock workers, dagster commands, the dlock CLI."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

# The console scripts of the environment running the tests.
BIN = Path(sys.executable).parent
DLOCK = str(BIN / "dlock")
DAGSTER = str(BIN / "dagster")


WORKER_SCRIPT = Path(__file__).with_name("lock_worker.py")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
# How long a child that closed its output may take to exit before we call it hung.
EXIT_AFTER_EOF = 10.0
# How long a dagster process may take to stop after SIGINT: on a loaded two-core machine a
# daemon waits for its threads' current iteration.
STOP_SECONDS = 120.0


class EventStream:
    """The JSON lines a child process writes on stdout, one event each.

    The pipe is read unbuffered into a buffer of our own: select() on a buffered text pipe misses
    lines that arrived in the same read as the one returned (they wait in Python's buffer while
    select() waits on an empty pipe)."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process
        self.fd = process.stdout.fileno()
        self.pending = b""
        self.closed = False
        self.seen: list[dict] = []

    def _line(self, timeout: float) -> bytes | None:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return None
            chunk = os.read(self.fd, 65536)
            self.pending += chunk
            self.closed = not chunk
        if b"\n" not in self.pending:
            return None
        line, self.pending = self.pending.split(b"\n", 1)
        return line

    def next_event(self, timeout: float = 60.0) -> dict:
        line = self._line(timeout)
        while line is not None and not line.strip():
            line = self._line(timeout)
        if line is None:
            raise AssertionError(
                f"worker said nothing more ({self._why(timeout)}); events so far: "
                f"{self.seen}; stderr:\n{self._stderr()}"
            )
        event = json.loads(line)
        self.seen.append(event)
        return event

    def _why(self, timeout: float) -> str:
        # Under load a closed pipe comes seconds before the exit code: wait for it.
        try:
            exited = self.process.wait(timeout=EXIT_AFTER_EOF if self.closed else 0)
        except subprocess.TimeoutExpired:
            exited = None
        self.process.kill()
        if exited is not None:
            return f"exited with {exited}"
        return "closed its output but did not exit" if self.closed else f"silent for {timeout:g} s"

    def _stderr(self) -> str:
        if self.process.stderr is None:
            return ""
        self.process.wait()
        err = self.process.stderr.read()
        return err.decode(errors="replace") if isinstance(err, bytes) else err

    def rest(self, timeout: float) -> tuple[list[dict], str]:
        """Waits for the process to end; every event, and what it wrote on stderr."""
        out, err = self.process.communicate(timeout=timeout)
        lines = (self.pending + (out or b"")).decode().splitlines()
        self.pending = b""
        self.seen.extend(json.loads(line) for line in lines if line.strip())
        return self.seen, (err or b"").decode(errors="replace")


class Worker:
    """A lock_worker.py process; its JSON events are read as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.events = EventStream(self.process)
        self.seen = self.events.seen

    def next_event(self, timeout: float = 60.0) -> dict:
        return self.events.next_event(timeout)

    def wait_for(self, name: str, timeout: float = 60.0) -> dict:
        while True:
            event = self.next_event(timeout)
            if event["event"] == name:
                return event

    def finish(self, timeout: float = 60.0) -> list[dict]:
        _, self.stderr = self.events.rest(timeout)
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


def daemon(env: dict[str, str], workspace: str, log_path: Path) -> subprocess.Popen:
    """A dagster-daemon writing to a file: a pipe nobody reads until the end fills up over a
    long test and stalls the daemon on its next log line."""
    with log_path.open("w") as log:
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", workspace],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def interrupt_all(
    processes: list[subprocess.Popen], seconds: float = STOP_SECONDS, *, kill_group: bool = False
) -> None:
    """SIGINT to every process at once, as Ctrl-C; SIGKILL to any still running after
    `seconds` (the wait is shared: under load each daemon takes its time to stop), or to its
    whole process group with `kill_group` (processes started with start_new_session)."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + seconds
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            if kill_group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
            process.wait()


def finish(process, timeout: float = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out
