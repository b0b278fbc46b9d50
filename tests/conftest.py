"""Real PostgreSQL for every test: an embedded server always, the one LOCK_TEST_DATABASE_URL
names when set. Each test session makes throwaway databases on them and drops them."""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import make_url

from resources.migrate import migrate
from resources.urls import libpq_url

EXTERNAL_URL_ENV = "LOCK_TEST_DATABASE_URL"
# The console scripts of the environment running the tests.
BIN = Path(sys.executable).parent
DLOCK = str(BIN / "dlock")
SERVERS = ["embedded"] + (["external"] if os.environ.get(EXTERNAL_URL_ENV) else [])
# Timeouts short enough for test leases of about ten seconds: a lease must leave room for three
# renewal attempts of connect (at least 2 s) + statement + 0.5 s each.
FAST_TIMEOUTS = {"connect_timeout_seconds": 2, "statement_timeout_seconds": 0.5}


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def lock_url(admin_url: str, database: str) -> str:
    url = make_url(admin_url).set(drivername="postgresql+psycopg", database=database)
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def embedded_admin_url() -> Iterator[str]:
    import pgserver

    # A short folder under /tmp: the server's Unix socket path must stay under 108 bytes.
    pgdata = Path(tempfile.mkdtemp(prefix="dlock-pg-"))
    server = pgserver.get_server(pgdata, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


def _admin_url(request: pytest.FixtureRequest, server: str) -> str:
    if server == "external":
        return os.environ[EXTERNAL_URL_ENV]
    return request.getfixturevalue("embedded_admin_url")


class ThrowawayDatabases:
    """Creates databases on one server and drops them all at the end of the session."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    def create(self, *, migrated: bool = True) -> str:
        name = f"dlock_test_{secrets.token_hex(6)}"
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self.created.append(name)
        url = lock_url(self.admin_url, name)
        if migrated:
            migrate(url)
        return url

    def drop_all(self) -> None:
        with psycopg.connect(libpq_url(self.admin_url), autocommit=True) as conn:
            for name in self.created:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session", params=SERVERS)
def server_databases(request: pytest.FixtureRequest) -> Iterator[ThrowawayDatabases]:
    """Parametrizes a test over every server at hand (the lock's contract runs on each)."""
    databases = ThrowawayDatabases(_admin_url(request, request.param))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def lock_database_url(server_databases: ThrowawayDatabases) -> str:
    """A migrated database on each server, shared by the session's contract tests."""
    return server_databases.create()


@pytest.fixture(scope="session")
def default_databases(request: pytest.FixtureRequest) -> Iterator[ThrowawayDatabases]:
    """One server for tests that need not run twice: the external one if set, else embedded."""
    server = "external" if os.environ.get(EXTERNAL_URL_ENV) else "embedded"
    databases = ThrowawayDatabases(_admin_url(request, server))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def database_url(default_databases: ThrowawayDatabases) -> str:
    return default_databases.create()


@pytest.fixture
def names() -> tuple[str, str]:
    """A queue and job name no other test uses, so tests share a database safely."""
    token = secrets.token_hex(4)
    return f"queue-{token}", f"job-{token}"


class Tables:
    """Reads queue_locks and job_logs the way an operator would, with psql-like queries."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def logs(self, queue_name: str, job_name: str) -> list[tuple]:
        """(status, app_id, fence, slot, remark) rows, oldest first."""
        return self.query(
            "SELECT status, app_id, fence, slot, remark FROM job_logs"
            " WHERE queue_name = %s AND job_name = %s ORDER BY id",
            queue_name, job_name,
        )

    def statuses(self, queue_name: str, job_name: str) -> list[str]:
        return [row[0] for row in self.logs(queue_name, job_name)]

    def lock_row(self, queue_name: str, job_name: str) -> tuple | None:
        """(owner, fence, created_time, expires_at) of the holder, or None when free."""
        rows = self.query(
            "SELECT owner, fence, created_time, expires_at FROM queue_locks"
            " WHERE queue_name = %s AND job_name = %s AND owner IS NOT NULL",
            queue_name, job_name,
        )
        return rows[0] if rows else None

    def count(self, table: str) -> int:
        return self.query(f"SELECT count(*) FROM {table}")[0][0]


@pytest.fixture
def tables(lock_database_url: str) -> Tables:
    return Tables(lock_database_url)


WORKER_SCRIPT = Path(__file__).with_name("lock_worker.py")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """A lock_worker.py process; its JSON events are read line by line."""

    def __init__(self, *args: str) -> None:
        import subprocess
        import sys

        env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER_SCRIPT), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )
        self.seen: list[dict] = []

    def next_event(self, timeout: float = 60.0) -> dict:
        import json
        import select

        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.process.kill()
            raise AssertionError(f"worker said nothing; stderr:\n{self.process.stderr.read()}")
        event = json.loads(line)
        self.seen.append(event)
        return event

    def wait_for(self, name: str, timeout: float = 60.0) -> dict:
        while True:
            event = self.next_event(timeout)
            if event["event"] == name:
                return event

    def finish(self, timeout: float = 60.0) -> list[dict]:
        import json

        out, err = self.process.communicate(timeout=timeout)
        self.seen.extend(json.loads(line) for line in out.splitlines() if line.strip())
        self.stderr = err
        return self.seen


@pytest.fixture
def spawn_worker() -> Iterator:
    workers: list[Worker] = []

    def spawn(*args: str) -> Worker:
        worker = Worker(*args)
        workers.append(worker)
        return worker

    yield spawn
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.kill()
            worker.process.wait()


DAGSTER = str(BIN / "dagster")


@pytest.fixture(scope="module")
def dagster_instance_env(default_databases, tmp_path_factory):
    """Makes a DAGSTER_HOME holding the project's own dagster.yaml, on a throwaway storage
    database, with Dagster's tables created; returns the environment for dagster commands."""
    import shutil
    import subprocess

    def make() -> dict[str, str]:
        storage = make_url(default_databases.create(migrated=False))
        home = tmp_path_factory.mktemp("dagster-home")
        shutil.copy(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": storage.set(drivername="postgresql+psycopg2").render_as_string(
                hide_password=False),
        }
        subprocess.run([DAGSTER, "instance", "migrate"], env=env, check=True,
                       capture_output=True, timeout=300)
        return env

    return make


def dagster(env: dict[str, str], *args: str, executable: str = DAGSTER, **popen):
    """A dagster command run from the project folder, output captured."""
    import subprocess

    return subprocess.Popen([executable, *args], env=env, cwd=PROJECT_ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **popen)


def finish(process, timeout: float = 300) -> tuple[int, str]:
    out, _ = process.communicate(timeout=timeout)
    return process.returncode, out
