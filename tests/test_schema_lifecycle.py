"""The schema's life after release: the SQL ships in the wheel, protocol functions are versioned,
and old and new code run side by side on one migrated database."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest

from resources import DistributedLock, LockSchemaError
from resources.protocol import REQUIRED_FUNCTIONS
from support.databases import Tables
from support.processes import PROJECT_ROOT

# A migration used by tests only: the next version of one function, added beside the current one
# the way a real protocol change lands.
NEXT_VERSION_MIGRATION = Path(__file__).with_name("sql") / "next_version_of_release.sql"

# Earlier releases still supported side by side, by tag; the commit stands in where a clone
# carries no tags. 0.1.0 calls the unversioned functions, 0.2.0 version 1.
EARLIER_RELEASES = [
    ("v0.1.0", "678085a85a268a9ac72d66d0f40b14ab27ca1052"),
    ("v0.2.0", "68abdc74dd536f0a224a1b2ea910c5162165404c"),
]


def test_a_built_wheel_migrates_outside_the_checkout(default_databases, tmp_path):
    # Built from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    source = tmp_path / "source"
    shutil.copytree(
        PROJECT_ROOT,
        source,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "*.egg-info", "__pycache__", ".embedded-pg", ".dagster-home"
        ),
    )
    wheels = tmp_path / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = wheels.glob("*.whl")
    shipped = zipfile.ZipFile(wheel).namelist()
    assert "resources/sql/schema.sql" in shipped
    assert "resources/sql/migrations/0001_create_queue_locks.sql" in shipped

    # A fresh environment that reuses the installed dependencies through a .pth line, which
    # adds their folder but runs none of its .pth files (so not the checkout's editable hook).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    # Nothing may lead the new environment back to the checkout.
    clean_env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
        env=clean_env,
    ).stdout.strip()
    Path(site, "reuse_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
        env=clean_env,
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [python, "-c", "import resources; print(resources.__file__)"],
        cwd=elsewhere,
        check=True,
        capture_output=True,
        text=True,
        env=clean_env,
    )
    assert where.stdout.startswith(site), "the test must exercise the installed wheel"

    url = default_databases.create(migrated=False)
    migrated = subprocess.run(
        [venv / "bin" / "dlock", "migrate", "--database-url", url],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env,
    )
    assert migrated.returncode == 0, migrated.stderr
    shipped = len(list((PROJECT_ROOT / "sql" / "migrations").glob("*.sql")))
    assert f"Applied {shipped} migration(s)" in migrated.stdout
    assert Tables(url).query("SELECT count(*) FROM pg_proc WHERE proname = 'dlock_acquire_v1'")


def test_current_code_works_beside_a_next_version(default_databases, names):
    url = default_databases.create()
    tables = Tables(url)
    tables.query(NEXT_VERSION_MIGRATION.read_text())
    assert tables.query("SELECT count(*) FROM pg_proc WHERE proname = 'dlock_release_v5'") == [(1,)]
    with DistributedLock(url, app_id="current").hold(*names, slot="tick-1") as held:
        assert held.acquired
    assert tables.statuses(*names) == ["Completed"]


@pytest.mark.parametrize("function", REQUIRED_FUNCTIONS)
def test_a_missing_function_is_refused_before_any_lock_call(default_databases, names, function):
    url = default_databases.create()
    tables = Tables(url)
    tables.query(f"DROP FUNCTION {function}")
    with pytest.raises(LockSchemaError) as error:
        with DistributedLock(url).hold(*names):
            pytest.fail("the body must not run")
    message = str(error.value)
    assert function in message and "`dlock migrate`" in message
    assert tables.count("job_logs") == 0 and tables.count("queue_locks") == 0


def _release_source(release: tuple[str, str], destination: Path) -> Path:
    tag, commit = release
    for ref in (tag, commit):
        archive = subprocess.run(
            ["git", "-C", str(PROJECT_ROOT), "archive", ref], capture_output=True
        )
        if archive.returncode == 0:
            destination.mkdir()
            subprocess.run(["tar", "-x", "-C", str(destination)], input=archive.stdout, check=True)
            return destination
    pytest.fail(f"release {tag} ({commit}) is not in this clone's history")


@pytest.mark.parametrize("release", EARLIER_RELEASES, ids=[tag for tag, _ in EARLIER_RELEASES])
def test_an_earlier_release_runs_against_a_database_migrated_to_head(
    default_databases, names, tmp_path, release
):
    """During a rollout the old code servers keep running on the migrated schema, on locks the
    new code has used (and freed) too."""
    url = default_databases.create()
    used_by_new = (names[0], f"{names[1]}-shared")
    with DistributedLock(url, app_id="current").hold(*used_by_new) as held:
        assert held.acquired
    old_code = _release_source(release, tmp_path / "previous")
    cycle = textwrap.dedent(f"""
        import resources
        assert resources.__file__.startswith({str(old_code)!r}), resources.__file__
        from resources import DistributedLock
        lock = DistributedLock({url!r}, app_id="previous-release", lease_seconds=3)
        with lock.hold({names[0]!r}, {names[1]!r}, slot="tick-1") as held:
            assert held.acquired
            import time; time.sleep(1.5)  # long enough for one renewal
            held.ensure_held()
        with lock.hold({names[0]!r}, {names[1]!r}, slot="tick-1") as again:
            assert again.reason == "slot_done", again
        with lock.hold({used_by_new[0]!r}, {used_by_new[1]!r}) as shared:
            assert shared.acquired, shared
    """)
    result = subprocess.run(
        [sys.executable, "-c", cycle],
        cwd=old_code,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(old_code), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr
    assert Tables(url).statuses(*names) == ["Completed", "Exited"]
    # The new code sees the old code's slot as done: both speak one protocol.
    with DistributedLock(url, app_id="current").hold(*names, slot="tick-1") as held:
        assert held.reason == "slot_done"
    with DistributedLock(url, app_id="current").hold(*used_by_new) as held:
        assert held.acquired
    fences = [row[2] for row in Tables(url).logs(*used_by_new)]
    assert fences == sorted(fences) and len(set(fences)) == 3
