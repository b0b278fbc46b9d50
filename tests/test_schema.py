"""sql/schema.sql and sql/migrations/ describe the same schema; `dlock migrate` builds it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import psycopg
import pytest

from resources.protocol import REQUIRED_FUNCTIONS
from resources.urls import libpq_url
from support.databases import Tables
from support.processes import DLOCK

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"

# The catalog, minus yoyo's own bookkeeping tables, in a form two databases can be compared by.
SNAPSHOT_QUERIES = {
    "columns": """
        SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
               column_default, is_identity
          FROM information_schema.columns
         WHERE table_schema = 'public' AND table_name NOT LIKE '%%yoyo%%'
         ORDER BY 1, 2""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
         WHERE schemaname = 'public' AND tablename NOT LIKE '%%yoyo%%' ORDER BY 1, 2""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
         WHERE connamespace = 'public'::regnamespace
           AND conrelid::regclass::text NOT LIKE '%%yoyo%%' ORDER BY 1, 2""",
    "functions": """
        SELECT proname, pg_get_function_arguments(oid), pg_get_function_result(oid), prosrc,
               prosecdef, proconfig, proacl::text
          FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1""",
    "sequences": """
        SELECT sequencename, data_type, start_value, increment_by FROM pg_sequences
         WHERE schemaname = 'public' ORDER BY 1""",
}


def snapshot(url: str) -> dict[str, list[tuple]]:
    tables = Tables(url)
    return {name: tables.query(sql) for name, sql in SNAPSHOT_QUERIES.items()}


def test_migrations_build_exactly_schema_sql(default_databases):
    migrated = default_databases.create()
    from_schema = default_databases.create(migrated=False)
    with psycopg.connect(libpq_url(from_schema), autocommit=True) as conn:
        conn.execute((SQL_DIR / "schema.sql").read_text())
    expected = snapshot(from_schema)
    assert snapshot(migrated) == expected
    assert {row[0] for row in expected["columns"]} == {"queue_locks", "job_logs", "heartbeats"}
    # Not vacuous: schema.sql has every function this code calls.
    called = {signature.split("(")[0] for signature in REQUIRED_FUNCTIONS}
    assert called <= {row[0] for row in expected["functions"]}


def test_migration_names_follow_the_pattern():
    names = sorted(path.name for path in (SQL_DIR / "migrations").iterdir())
    assert names, "no migrations found"
    for number, name in enumerate(names, start=1):
        assert re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name), name
        assert name.startswith(f"{number:04d}_"), f"{name}: numbers must run 0001, 0002, ..."


def run_dlock(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([DLOCK, *args], capture_output=True, text=True, timeout=120)


def test_dlock_migrate_creates_the_schema_and_is_harmless_twice(default_databases):
    url = default_databases.create(migrated=False)
    first = run_dlock("migrate", "--database-url", url)
    assert first.returncode == 0, first.stderr
    applied = len(list((SQL_DIR / "migrations").glob("*.sql")))
    assert f"Applied {applied} migration(s)" in first.stdout
    second = run_dlock("migrate", "--database-url", url)
    assert second.returncode == 0 and "already up to date" in second.stdout
    assert Tables(url).count("queue_locks") == 0


def test_dlock_reads_the_url_from_the_environment(default_databases, monkeypatch):
    url = default_databases.create(migrated=False)
    monkeypatch.setenv("LOCK_DATABASE_URL", url)
    assert run_dlock("migrate").returncode == 0
    status = run_dlock("status")
    assert status.returncode == 0, status.stderr
    assert "Held locks: 0" in status.stdout


@pytest.mark.parametrize("args", [("migrate",), ("status",)])
def test_dlock_without_a_url_says_what_to_set(monkeypatch, args):
    monkeypatch.delenv("LOCK_DATABASE_URL", raising=False)
    result = run_dlock(*args)
    assert result.returncode == 2
    assert "LOCK_DATABASE_URL is not set" in result.stderr
