"""Real PostgreSQL for every test: an embedded server always, the one LOCK_TEST_DATABASE_URL
names when set. Each test session makes throwaway databases on them and drops them."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from support.databases import Tables, ThrowawayDatabases
from support.processes import DAGSTER, PROJECT_ROOT, Worker

EXTERNAL_URL_ENV = "LOCK_TEST_DATABASE_URL"
# Tests here need no server and start no process: `pytest -m "not slow"` runs just them.
UNIT_TESTS = Path(__file__).parent / "unit"
SERVERS = ["embedded"] + (["external"] if os.environ.get(EXTERNAL_URL_ENV) else [])


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if UNIT_TESTS not in item.path.parents:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def tables(lock_database_url: str) -> Tables:
    return Tables(lock_database_url)


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


@pytest.fixture(scope="module")
def dagster_instance_env(default_databases, tmp_path_factory):
    """Makes a DAGSTER_HOME holding the project's deploy/dagster.yaml, on a throwaway storage
    database, with Dagster's tables created; returns the environment for dagster commands."""

    def make() -> dict[str, str]:
        storage = make_url(default_databases.create(migrated=False))
        home = tmp_path_factory.mktemp("dagster-home")
        shutil.copy(PROJECT_ROOT / "deploy" / "dagster.yaml", home / "dagster.yaml")
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_URL": storage.set(drivername="postgresql+psycopg2").render_as_string(
                hide_password=False
            ),
        }
        subprocess.run(
            [DAGSTER, "instance", "migrate"], env=env, check=True, capture_output=True, timeout=300
        )
        return env

    return make
