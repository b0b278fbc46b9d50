"""A throwaway database for the run: on LOCK_BENCH_DATABASE_URL's server, else embedded."""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from sqlalchemy import make_url

from resources.migrate import migrate
from resources.urls import libpq_url

BENCH_URL_ENV = "LOCK_BENCH_DATABASE_URL"


@contextmanager
def admin_url() -> Iterator[tuple[str, str]]:
    """(server URL to create databases with, a description of the server)."""
    url = os.environ.get(BENCH_URL_ENV)
    if url:
        parsed = make_url(url)
        yield url, f"PostgreSQL at {parsed.host}:{parsed.port or 5432}"
        return
    import pgserver

    server = pgserver.get_server(
        Path(tempfile.mkdtemp(prefix="dlock-bench-")), cleanup_mode="delete"
    )
    try:
        yield server.get_uri(), "embedded PostgreSQL (pgserver, Unix socket)"
    finally:
        server.cleanup()


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
