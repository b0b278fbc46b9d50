"""Clicking through the Dagster UI as a user does: a real webserver and daemon on the test
PostgreSQL, and a headless Chromium driven by Playwright.

    with dagster_services(env) as dagster, browser(tmp_path, dagster.url) as ui:
        ui.page.goto("/assets")
        ui.page.get_by_role("button", name="Materialize").click()
        ui.shot("after-click")

`env` is what the `dagster_instance_env` fixture returns (a temporary DAGSTER_HOME holding
deploy/dagster.yaml, on a throwaway storage database) plus LOCK_DATABASE_URL. Screenshots go
into the test's tmp_path; a failing block leaves `failure.png` there too.

The browser is Debian's Chromium (`executable_path`): Playwright may not download its own here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest

from .databases import free_port
from .processes import BIN, PROJECT_ROOT

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root in containers, where the sandbox cannot start
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Seconds a Playwright action or expectation waits before it fails (the UI loads lazily).
ACTION_TIMEOUT_SECONDS = 30
# How long the webserver and the daemon may take to answer (each loads both code locations).
START_TIMEOUT_SECONDS = 180


def _playwright_missing() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return True
    return False


requires_browser = pytest.mark.skipif(
    not CHROMIUM.exists() or _playwright_missing(),
    reason="needs /usr/bin/chromium (.ci/run installs it) and playwright (the dev extra)",
)


@dataclass
class Dagster:
    """A running webserver (and daemon), reachable at `url`."""

    port: int
    processes: list[subprocess.Popen] = field(default_factory=list)
    outputs: list[IO[str]] = field(default_factory=list)  # each process's, in the same order

    def output(self, index: int = 0) -> str:
        """What the webserver (0) or the daemon (1) printed so far."""
        self.outputs[index].seek(0)
        return self.outputs[index].read()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """What the UI sends; returns `data`, failing on GraphQL errors."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        assert not body.get("errors"), body["errors"]
        return body["data"]


# What the UI sends when its "Join the Dagster community" dialog is skipped: without it, the
# dialog covers the page on 127.0.0.1 for a new instance, and clicks land on it.
_NUX_SEEN = "mutation { setNuxSeen }"
_DAEMON_HEALTH = """
{ instance { daemonHealth { allDaemonStatuses { daemonType required healthy } } } }
"""


def _wait_until(ready: Callable[[], bool], running: Dagster, what: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not ready():
        for index, process in enumerate(running.processes):
            if process.poll() is not None:
                out = running.output(index)[-5000:]
                raise AssertionError(f"{what}: {process.args[0]} exited early:\n{out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not ready within {START_TIMEOUT_SECONDS} s")
        time.sleep(1)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=10).close()
    except OSError:
        return False
    return True


def _daemons_healthy(dagster_ui: Dagster) -> bool:
    statuses = dagster_ui.graphql(_DAEMON_HEALTH)["instance"]["daemonHealth"]["allDaemonStatuses"]
    return all(status["healthy"] for status in statuses if status["required"])


def _stop(processes: list[subprocess.Popen]) -> None:
    """SIGINT to all at once (each stops its code servers and run workers), a wait, then
    SIGKILL to whatever is left in their process groups."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 60
    for process in processes:
        try:
            process.communicate(timeout=max(deadline - time.monotonic(), 1))
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


@contextmanager
def dagster_services(
    env: dict[str, str], *, daemon: bool = True, workspace: str = "workspace.yaml"
) -> Iterator[Dagster]:
    """`dagster-webserver` (and `dagster-daemon run`, which launches what the UI queues) from
    the project folder on a free port, once both answer; stopped, process groups and all,
    afterwards."""
    port = free_port()
    running = Dagster(port)
    with ExitStack() as stack:
        stack.callback(_stop, running.processes)
        commands = [
            (
                "dagster-webserver",
                ["-w", workspace, "-h", "127.0.0.1", "-p", str(port)],
            )
        ]
        if daemon:
            commands.append(("dagster-daemon", ["run", "-w", workspace]))
        for executable, args in commands:
            # Output into a file, not a pipe nobody reads while the test clicks: a full pipe
            # would stall the daemon. Read back when one of them dies early.
            output = tempfile.TemporaryFile(mode="w+")
            stack.callback(output.close)
            process = subprocess.Popen(
                [str(BIN / executable), *args],
                env=env,
                cwd=PROJECT_ROOT,
                text=True,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            running.processes.append(process)
            running.outputs.append(output)
        _wait_until(lambda: _answers(f"{running.url}/server_info"), running, "webserver")
        running.graphql(_NUX_SEEN)
        if daemon:
            _wait_until(lambda: _daemons_healthy(running), running, "daemon")
        yield running


@dataclass
class Browser:
    """One page of a headless Chromium; `shot(name)` saves `<name>.png` in the test's folder."""

    page: Any  # playwright.sync_api.Page, imported lazily so collection works without it
    screenshots: Path

    def see(self, text: str) -> None:
        """Wait until `text` shows on the page (the UI renders after its queries answer)."""
        from playwright.sync_api import expect

        expect(self.page.get_by_text(text).first).to_be_visible()

    def shot(self, name: str) -> Path:
        path = self.screenshots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@contextmanager
def browser(tmp_path: Path, base_url: str) -> Iterator[Browser]:
    """A headless Chromium page whose relative `goto("/assets")` lands on `base_url`."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=ACTION_TIMEOUT_SECONDS * 1000)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            context = chromium.new_context(
                base_url=base_url, viewport={"width": 1400, "height": 1000}
            )
            context.set_default_timeout(ACTION_TIMEOUT_SECONDS * 1000)
            opened = Browser(context.new_page(), tmp_path)
            try:
                yield opened
            except BaseException:
                opened.shot("failure")
                raise
        finally:
            chromium.close()
