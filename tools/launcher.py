"""`make run` and `make dev`: one process owns the embedded PostgreSQL and runs dagster as children.

With neither LOCK_DATABASE_URL nor DAGSTER_PG_URL set, it starts pgserver (data in
.embedded-pg/), gives both URLs to its children only, and stops the server when it exits,
SIGTERM included. With both set it uses them; with one, it refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.engine import URL

from orchestration.queues import HEARTBEAT_QUEUE
from resources.dagster_integration.run_target import SCHEDULED_TIME_TAG
from resources.migrate import migrate
from resources.urls import libpq_url, safe_url
from resources.validation import canonical_slot

PROJECT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA = PROJECT / ".embedded-pg"
DAGSTER_HOME = PROJECT / ".dagster-home"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
INSTANCES = ("instance_one", "instance_two")
# How long dagster may take to stop its webserver, daemon and code servers before it is killed.
STOP_TIMEOUT_SECONDS = 60

_JOB_LOGS_FOR_SLOT = """
    SELECT app_id, status, fence, remark FROM job_logs
     WHERE queue_name = %s AND job_name = 'heartbeat_job' AND slot = %s ORDER BY id
"""


class Shutdown(Exception):
    """SIGTERM, turned into a normal exit so children are waited for and pgserver stops."""


def _on_sigterm(signum: int, frame: object) -> None:
    raise Shutdown()


@contextmanager
def database_urls() -> Iterator[tuple[str, str]]:
    """(lock URL for psycopg 3, Dagster storage URL for psycopg2), from the environment or
    from an embedded PostgreSQL that lives as long as this block."""
    lock_url = os.environ.get("LOCK_DATABASE_URL")
    dagster_url = os.environ.get("DAGSTER_PG_URL")
    if lock_url and dagster_url:
        yield lock_url, dagster_url
        return
    if lock_url or dagster_url:
        have, missing = (
            ("LOCK_DATABASE_URL", "DAGSTER_PG_URL")
            if lock_url
            else ("DAGSTER_PG_URL", "LOCK_DATABASE_URL")
        )
        raise SystemExit(
            f"launcher: {have} is set but {missing} is not. Set both (the lock's database and "
            "Dagster's storage), or neither to use the embedded PostgreSQL."
        )
    # pgserver falls back to /tmp for its lock file when XDG_RUNTIME_DIR is unset; that is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    import pgserver

    print(f"Starting the embedded PostgreSQL (data in {EMBEDDED_DATA.name}/) ...", flush=True)
    server = pgserver.get_server(EMBEDDED_DATA, cleanup_mode="stop")
    try:
        # pgserver picks its Unix-socket folder at start; the URI carries it as ?host=...
        given = make_url(server.get_uri())
        # pgserver's URI carries an empty password, which would print as a masked one.
        uri = URL.create(
            given.drivername,
            username=given.username,
            host=given.host,
            port=given.port,
            database=given.database,
            query=given.query,
        )
        yield (
            uri.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            uri.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
        )
    finally:
        server.cleanup()


def prepare_dagster_home() -> Path:
    """A git-ignored DAGSTER_HOME holding the project's dagster.yaml (shared PostgreSQL)."""
    DAGSTER_HOME.mkdir(exist_ok=True)
    shutil.copy(PROJECT / "dagster.yaml", DAGSTER_HOME / "dagster.yaml")
    return DAGSTER_HOME


def child_env(lock_url: str, dagster_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "LOCK_DATABASE_URL": lock_url,
        "DAGSTER_PG_URL": dagster_url,
        "DAGSTER_HOME": str(DAGSTER_HOME),
    }


def _default_signals() -> None:
    # A launcher started in the background (`make run &`) inherits an ignored SIGINT, and so
    # would dagster, which then could never be stopped gracefully: restore the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def spawn(command: list[str], **popen: Any) -> subprocess.Popen:
    """A child in a process group of its own, so stopping it reaches its whole tree."""
    return subprocess.Popen(
        command, start_new_session=True, preexec_fn=_default_signals, cwd=PROJECT, **popen
    )


def _stop_group(child: subprocess.Popen) -> None:
    try:
        os.killpg(child.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_all(children: list[subprocess.Popen]) -> list[int]:
    """Wait for children; on Ctrl-C or SIGTERM, pass it on and still wait, so nothing leaks."""
    try:
        return [child.wait() for child in children]
    except (KeyboardInterrupt, Shutdown):
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGINT)  # dagster shuts its own services down
        for child in children:
            try:
                child.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        raise
    finally:
        for child in children:
            _stop_group(child)  # anything the child left behind in its group


def run_heartbeat_pair(lock_url: str, env: dict[str, str]) -> int:
    """Fire both instances' heartbeat_job for one fresh slot at once, as two daemons would."""
    subprocess.run([DAGSTER, "instance", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    tick = datetime.now(timezone.utc)
    tags = json.dumps({SCHEDULED_TIME_TAG: tick.isoformat()})
    logs = DAGSTER_HOME / "logs"
    logs.mkdir(exist_ok=True)
    print(f"Running heartbeat_job on both instances for slot {tick.isoformat()} ...", flush=True)
    children, log_files = [], []
    for instance in INSTANCES:
        log_file = logs / f"{tick:%Y%m%dT%H%M%S%f}-{instance}.log"
        log_files.append(log_file)
        with log_file.open("w") as out:
            children.append(
                spawn(
                    [
                        DAGSTER,
                        "job",
                        "execute",
                        "-m",
                        f"orchestration.{instance}",
                        "-j",
                        "heartbeat_job",
                        "--tags",
                        tags,
                    ],
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    codes = wait_all(children)
    for instance, code, log_file in zip(INSTANCES, codes, log_files, strict=True):
        if code != 0:
            print(f"{instance}: dagster exited with {code}; its output is in {log_file}")
    return print_job_logs(lock_url, tick)


def print_job_logs(lock_url: str, tick: datetime) -> int:
    import psycopg

    with psycopg.connect(libpq_url(lock_url)) as conn:
        rows = conn.execute(_JOB_LOGS_FOR_SLOT, (HEARTBEAT_QUEUE, canonical_slot(tick))).fetchall()
    print(f"\njob_logs for {HEARTBEAT_QUEUE}/heartbeat_job, slot {canonical_slot(tick)}:")
    for app_id, status, fence, remark in rows:
        shown_fence = "-" if fence is None else fence
        print(f"  {app_id:<13} {status:<10} fence {shown_fence:<5} {remark}")
    statuses = sorted(row[1] for row in rows)
    if statuses == ["Completed", "Exited"]:
        print("\nExactly one instance did the work; the other exited naming the holder.")
        return 0
    print(f"\nExpected one Completed and one Exited row, got {statuses}.")
    return 1


def run_dev(lock_url: str, dagster_url: str, env: dict[str, str]) -> int:
    print("Lock database (LOCK_DATABASE_URL):  ", safe_url(make_url(lock_url)))
    print("Dagster storage (DAGSTER_PG_URL):   ", safe_url(make_url(dagster_url)))
    print("DAGSTER_HOME:                       ", DAGSTER_HOME)
    print("In another terminal, export these three to use `dagster schedule ...` or `dlock`.")
    print("UI: http://127.0.0.1:3000", flush=True)
    child = spawn(
        [DAGSTER, "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", "3000"], env=env
    )
    return wait_all([child])[0]


COMMANDS: dict[str, Callable[[str, str, dict[str, str]], int]] = {
    "run": lambda lock_url, dagster_url, env: run_heartbeat_pair(lock_url, env),
    "dev": run_dev,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launcher", description=__doc__)
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        with database_urls() as (lock_url, dagster_url):
            migrate(lock_url)
            prepare_dagster_home()
            return COMMANDS[args.command](lock_url, dagster_url, child_env(lock_url, dagster_url))
    except (KeyboardInterrupt, Shutdown):
        print("launcher: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
