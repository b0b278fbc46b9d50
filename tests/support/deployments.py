"""Whole Dagster deployments for the reliability scenarios: a DAGSTER_HOME on a storage database
of its own, a workspace, schedules, daemons, code servers and a webserver, all real processes,
and what Dagster recorded (runs, ticks, events) read back from its storage as an operator would.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import make_url

from resources.urls import libpq_url
from support.databases import ThrowawayDatabases, free_port
from support.processes import BIN, DAGSTER, PROJECT_ROOT, interrupt_all

TICK_TAG = ".dagster/scheduled_execution_time"
SCHEDULE_TAG = "dagster/schedule_name"
FINISHED = {"SUCCESS", "FAILURE", "CANCELED"}


@dataclass
class Run:
    """One run as Dagster's storage holds it."""

    run_id: str
    job: str
    status: str
    location: str | None
    tags: dict[str, str]
    # How many times a step of the run started, by the run's event log. Two daemons can both
    # dequeue a run and launch two run workers for it (each sees it STARTING before the other
    # marks it STARTED), so one run can execute its op twice, and hold the guard twice.
    step_starts: int = 0

    @property
    def tick(self) -> str | None:
        return self.tags.get(TICK_TAG)


def _find(value: Any, key: str) -> Any:
    """The first value under `key` anywhere in a deserialized JSON document."""
    if isinstance(value, dict):
        if key in value:
            return value[key]
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            found = _find(item, key)
            if found is not None:
                return found
    return None


class StorageTemplate:
    """Dagster's storage tables made once (`dagster instance migrate` takes seconds of CPU), then
    copied for each deployment with CREATE DATABASE ... TEMPLATE."""

    def __init__(self, databases: ThrowawayDatabases, folder: Path) -> None:
        self.databases = databases
        self.url = make_url(databases.create(migrated=False))
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", folder / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(folder),
            "DAGSTER_PG_URL": self.url.set(drivername="postgresql+psycopg2").render_as_string(
                hide_password=False
            ),
        }
        subprocess.run(
            [DAGSTER, "instance", "migrate"], env=env, check=True, capture_output=True, timeout=300
        )

    def copy(self) -> str:
        name = f"dlock_test_{secrets.token_hex(6)}"
        with psycopg.connect(libpq_url(self.databases.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{self.url.database}"')
        self.databases.created.append(name)
        return self.url.set(database=name).render_as_string(hide_password=False)


@dataclass
class Deployment:
    """A Dagster deployment: its home, storage, lock database and the processes it runs."""

    name: str
    env: dict[str, str]
    folder: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        name: str,
        storages: StorageTemplate,
        folder: Path,
        lock_database_url: str,
        **extra_env: str,
    ) -> Deployment:
        """A home with the project's dagster.yaml on a storage database of its own, made with
        Dagster's tables already in it."""
        storage = make_url(storages.copy())
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", folder / "dagster.yaml")
        env = {
            **os.environ,
            "PYTHONPATH": str(PROJECT_ROOT),
            "DAGSTER_HOME": str(folder),
            "DAGSTER_PG_URL": storage.set(drivername="postgresql+psycopg2").render_as_string(
                hide_password=False
            ),
            "LOCK_DATABASE_URL": lock_database_url,
            # Dagster's default of 60 s fails runs at start_run when every deployment's schedule
            # ticks at once on two cores; production code servers are not this loaded.
            "DAGSTER_GRPC_TIMEOUT_SECONDS": "300",
            **extra_env,
        }
        return cls(name, env, folder)

    @property
    def workspace(self) -> Path:
        return self.folder / "workspace.yaml"

    def load_modules(self, locations: dict[str, str]) -> None:
        """Workspace entries that the daemon and webserver serve themselves: location -> module."""
        entries = "".join(
            f"  - python_module:\n      module_name: {module}\n"
            f"      location_name: {location}\n      working_directory: {PROJECT_ROOT}\n"
            for location, module in locations.items()
        )
        self.workspace.write_text("load_from:\n" + entries)

    def load_grpc_servers(self, locations: dict[str, int]) -> None:
        """Workspace entries for code servers started apart: location -> port."""
        entries = "".join(
            f"  - grpc_server:\n      host: 127.0.0.1\n      port: {port}\n"
            f"      location_name: {location}\n"
            for location, port in locations.items()
        )
        self.workspace.write_text("load_from:\n" + entries)

    def spawn(self, label: str, *args: str, executable: str = DAGSTER) -> subprocess.Popen:
        """A long-lived process of this deployment, its output kept in a log file."""
        log_path = self.folder / f"{label}.log"
        self.logs.append(log_path)
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [executable, *args],
                env=self.env,
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def command(self, *args: str) -> subprocess.Popen:
        """A short dagster command; pass it to `finish_all`."""
        return subprocess.Popen(
            [DAGSTER, *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def start_schedule(self, location: str, schedule: str) -> subprocess.Popen:
        return self.command(
            "schedule", "start", schedule, "-w", str(self.workspace), "-l", location
        )

    def daemon(self, label: str = "daemon") -> subprocess.Popen:
        return self.spawn(
            label, "run", "-w", str(self.workspace), executable=str(BIN / "dagster-daemon")
        )

    def code_server(self, module: str, port: int, label: str) -> subprocess.Popen:
        process = self.spawn(label, "api", "grpc", "-m", module, "-h", "127.0.0.1", "-p", str(port))
        wait_listening(port, process, self.folder / f"{label}.log")
        return process

    def webserver(self) -> int:
        port = free_port()
        process = self.spawn(
            "webserver",
            "-w",
            str(self.workspace),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            executable=str(BIN / "dagster-webserver"),
        )
        deadline = time.monotonic() + 180
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=10)
                return port
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"webserver did not start:\n{self.output()}") from None
                time.sleep(1)

    def stop(self) -> None:
        """SIGINT, as an operator's Ctrl-C; SIGKILL to the process group of any still running
        after STOP_SECONDS (all of them stop together, so the wait is shared)."""
        interrupt_all(self.processes, kill_group=True)
        self.processes.clear()

    def output(self, tail: int = 4000) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-tail:]}" for p in self.logs if p.exists())

    def storage(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(libpq_url(self.env["DAGSTER_PG_URL"]), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def runs(self) -> list[Run]:
        tags: dict[str, dict[str, str]] = {}
        for run_id, key, value in self.storage("SELECT run_id, key, value FROM run_tags"):
            tags.setdefault(run_id, {})[key] = value
        step_starts = dict(
            self.storage(
                "SELECT run_id, count(*) FROM event_logs"
                " WHERE dagster_event_type = 'STEP_START' GROUP BY run_id"
            )
        )
        found = []
        for run_id, job, status, body in self.storage(
            "SELECT run_id, pipeline_name, status, run_body FROM runs ORDER BY id"
        ):
            location = _find(json.loads(body), "location_name")
            found.append(
                Run(run_id, job, status, location, tags.get(run_id, {}), step_starts.get(run_id, 0))
            )
        return found

    def ticks(self) -> list[dict[str, Any]]:
        """Schedule ticks in the tick history: schedule, origin (one per location), timestamp,
        runs launched."""
        found = []
        for (body,) in self.storage("SELECT tick_body FROM job_ticks WHERE type = 'SCHEDULE'"):
            data = json.loads(body)
            data = data.get("tick_data", data)
            found.append(
                {
                    "schedule": data.get("instigator_name") or data.get("job_name"),
                    "origin": data.get("instigator_origin_id") or data.get("job_origin_id"),
                    "timestamp": data["timestamp"],
                    "run_ids": data.get("run_ids") or [],
                }
            )
        return found

    def events(self, run_id: str) -> list[dict[str, Any]]:
        return [
            json.loads(event)
            for (event,) in self.storage(
                "SELECT event FROM event_logs WHERE run_id = %s ORDER BY id", run_id
            )
        ]

    def run_worker_pid(self, run_id: str) -> int | None:
        """The pid Dagster reports for the process that runs the run (its run worker)."""
        for (text,) in self.storage(
            "SELECT event FROM event_logs WHERE run_id = %s AND event LIKE %s ORDER BY id",
            run_id,
            "%Started process for run (pid: %",
        ):
            found = re.search(r"Started process for run \(pid: (\d+)\)", text)
            if found:
                return int(found.group(1))
        return None


def finish_all(commands: list[subprocess.Popen], timeout: float = 300) -> None:
    """Wait for short commands run side by side; fail with the output of any that failed."""
    for command in commands:
        out, _ = command.communicate(timeout=timeout)
        assert command.returncode == 0, f"{command.args}:\n{out[-4000:]}"


def wait_listening(port: int, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"no server on port {port}:\n{log.read_text()[-4000:]}"
                ) from None
            time.sleep(0.5)


def graphql(port: int, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """A GraphQL request as the UI sends it."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.load(response)
    assert "errors" not in answer, answer
    return answer["data"]
