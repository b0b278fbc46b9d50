"""The launcher behind `make run` and `make dev` refuses half a configuration."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from support.processes import PROJECT_ROOT


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("LOCK_DATABASE_URL", "DAGSTER_PG_URL"),
        ("DAGSTER_PG_URL", "LOCK_DATABASE_URL"),
    ],
)
def test_only_one_database_url_is_refused_before_anything_starts(given, missing):
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOCK_DATABASE_URL", "DAGSTER_PG_URL")
    }
    env[given] = "postgresql://postgres@127.0.0.1:1/nowhere"
    result = subprocess.run(
        [sys.executable, "-m", "tools.launcher", "run"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"{given} is set but {missing} is not" in result.stderr
    assert "Starting the embedded PostgreSQL" not in result.stdout
