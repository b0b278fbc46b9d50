"""Where the benchmark runs: a cluster of its own (the pgserver wheel's binaries), or the server
LOCK_BENCH_DATABASE_URL names; each figure on a throwaway, migrated database."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from resources.migrate import migrate
from resources.urls import libpq_url

BENCH_URL_ENV = "LOCK_BENCH_DATABASE_URL"
# Room for the contention test's 256 losers (or 256 SELECT 1 processes), the holder, and
# whatever else the run keeps open.
MAX_CONNECTIONS = 400
# As root, PostgreSQL refuses to run: the cluster runs as the OS user the system's own server
# uses.
CLUSTER_OS_USER = "postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _binary(name: str) -> str:
    import pgserver

    return str(Path(pgserver.__file__).parent / "pginstall" / "bin" / name)


def _as_cluster_user(command: list[str]) -> list[str]:
    return ["runuser", "-u", CLUSTER_OS_USER, "--", *command] if os.geteuid() == 0 else command


@contextmanager
def private_cluster(max_connections: int = MAX_CONNECTIONS) -> Iterator[str]:
    """A fresh cluster on a free loopback port, trust auth, stopped and removed afterwards; its
    postgres database's URL. Durability as shipped (fsync and synchronous_commit on)."""
    folder = Path(tempfile.mkdtemp(prefix="dlock-bench-cluster-"))
    folder.chmod(0o755)
    pgdata = folder / "data"
    pgdata.mkdir()
    if os.geteuid() == 0:
        shutil.chown(pgdata, CLUSTER_OS_USER, CLUSTER_OS_USER)
    subprocess.run(
        _as_cluster_user([_binary("initdb"), "-D", str(pgdata), "--auth=trust", "-U", "postgres"]),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    port = _free_port()
    settings = (
        f"-h 127.0.0.1 -p {port} -k {pgdata} -c max_connections={max_connections} "
        "-c shared_buffers=256MB"
    )
    pg_ctl = [_binary("pg_ctl"), "-D", str(pgdata)]
    subprocess.run(
        _as_cluster_user(
            [*pg_ctl, "-w", "-t", "120", "-o", settings, "-l", str(pgdata / "log"), "start"]
        ),
        stdout=subprocess.DEVNULL,
        check=True,
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_cluster_user([*pg_ctl, "-w", "-m", "fast", "stop"]),
            stdout=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def admin_url() -> Iterator[tuple[str, str]]:
    """(server URL to create databases with, a description of the server)."""
    url = os.environ.get(BENCH_URL_ENV)
    if url:
        parsed = make_url(url)
        yield url, f"PostgreSQL at {parsed.host}:{parsed.port or 5432}"
        return
    with private_cluster() as url:
        yield url, "a PostgreSQL cluster of the benchmark's own (pgserver's binaries, loopback TCP)"


@contextmanager
def throwaway_database(server_url: str) -> Iterator[str]:
    """A new, migrated database; dropped afterwards. Never a configured lock database."""
    name = f"dlock_bench_{secrets.token_hex(6)}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(drivername="postgresql+psycopg", database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        migrate(rendered)
        yield rendered
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
