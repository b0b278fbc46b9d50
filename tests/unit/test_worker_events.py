"""The harness reads every event a child wrote, however its lines arrive in the pipe."""

from __future__ import annotations

import subprocess
import sys

import pytest

from support.processes import EventStream

TWO_EVENTS_IN_ONE_WRITE = (
    "import sys, time\n"
    'sys.stdout.write(\'{"event": "ready"}\\n{"event": "acquired"}\\n\')\n'
    "sys.stdout.flush()\n"
    "time.sleep(30)\n"
)
CLOSES_STDOUT_THEN_EXITS = "import os, time\nos.close(1)\ntime.sleep(2)\nraise SystemExit(3)\n"


def child(code: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_two_events_written_at_once_are_both_read():
    process = child(TWO_EVENTS_IN_ONE_WRITE)
    try:
        events = EventStream(process)
        assert events.next_event(timeout=10)["event"] == "ready"
        assert events.next_event(timeout=2)["event"] == "acquired"
    finally:
        process.kill()
        process.wait()


def test_a_closed_pipe_reports_the_exit_code_not_silence():
    process = child(CLOSES_STDOUT_THEN_EXITS)
    events = EventStream(process)
    with pytest.raises(AssertionError, match="exited with 3"):
        events.next_event(timeout=10)
