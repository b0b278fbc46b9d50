"""`make run` and `make dev`: one process owns the embedded PostgreSQL and runs dagster as children.

With neither LOCK_DATABASE_URL nor DAGSTER_PG_URL set, it starts pgserver (data in
.embedded-pg/), gives both URLs to its children only, and stops the server when it exits,
Ctrl-C and SIGTERM included. With both set it uses them; with one, it refuses. A known problem
(a database it cannot reach, a port in use) ends it with one line on stderr that says what to do.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import exc, make_url
from sqlalchemy.engine import URL

from orchestration.queues import HEARTBEAT_QUEUE
from resources.dagster_integration.run_target import SCHEDULED_TIME_TAG
from resources.errors import LockError
from resources.migrate import migrate
from resources.urls import error_summary, libpq_url, safe_url, server_address
from resources.validation import canonical_slot

PROJECT = Path(__file__).resolve().parent.parent
EMBEDDED_DATA = PROJECT / ".embedded-pg"
DAGSTER_HOME = PROJECT / ".dagster-home"
# The instance config for Dagster's storage on PostgreSQL, copied into DAGSTER_HOME.
DAGSTER_YAML = PROJECT / "deploy" / "dagster.yaml"
DAGSTER = str(Path(sys.executable).with_name("dagster"))
INSTANCES = ("instance_one", "instance_two")
DEV_HOST = "127.0.0.1"
DEV_PORT = 3000
# How long dagster may take to stop its webserver, daemon and code servers before it is killed.
STOP_TIMEOUT_SECONDS = 60
CONNECT_TIMEOUT_SECONDS = 10
# The beat's work in `make run`: long enough that the two runs of one tick overlap, as duplicate
# runs of a scheduled job that takes a while do (the job's own default is no wait at all).
RUN_WORK_SECONDS = 5

_JOB_LOGS_FOR_SLOT = """
    SELECT app_id, status, fence, remark, created_time, updated_time FROM job_logs
     WHERE queue_name = %s AND job_name = 'heartbeat_job' AND slot = %s ORDER BY id
"""


class LauncherError(Exception):
    """A known problem, reported in one line that says what to set or run."""


class Shutdown(Exception):
    """SIGTERM, turned into a normal exit so children are waited for and pgserver stops."""


@dataclass(frozen=True)
class Databases:
    lock_url: str  # for psycopg 3
    dagster_url: str  # for psycopg2 (dagster-postgres)
    embedded: bool  # started here: its URLs carry no password and may be printed whole


def _on_sigterm(signum: int, frame: object) -> None:
    raise Shutdown()


@contextmanager
def database_urls() -> Iterator[Databases]:
    """The lock's and Dagster's database URLs, from the environment or from an embedded
    PostgreSQL that lives as long as this block."""
    lock_url = os.environ.get("LOCK_DATABASE_URL")
    dagster_url = os.environ.get("DAGSTER_PG_URL")
    if lock_url and dagster_url:
        yield Databases(lock_url, dagster_url, embedded=False)
        return
    if lock_url or dagster_url:
        have, missing = (
            ("LOCK_DATABASE_URL", "DAGSTER_PG_URL")
            if lock_url
            else ("DAGSTER_PG_URL", "LOCK_DATABASE_URL")
        )
        raise LauncherError(
            f"{have} is set but {missing} is not. Set both (the lock's database and "
            "Dagster's storage), or neither to use the embedded PostgreSQL."
        )
    # pgserver falls back to /tmp for its lock file when XDG_RUNTIME_DIR is unset; that is fine.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        import pgserver
    except ImportError:
        raise LauncherError(
            "the embedded PostgreSQL needs the embedded extra (pip install -e '.[embedded]'); "
            "or set LOCK_DATABASE_URL and DAGSTER_PG_URL to a PostgreSQL of yours."
        ) from None

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
        yield Databases(
            uri.set(drivername="postgresql+psycopg").render_as_string(hide_password=False),
            uri.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False),
            embedded=True,
        )
    finally:
        server.cleanup()


def _one_line(text: str) -> str:
    return " ".join(text.split())


def check_lock_database(databases: Databases) -> None:
    """Create or upgrade the lock's tables; a database it cannot use is one line, not a trace."""
    try:
        migrate(databases.lock_url)
    except LockError as error:
        source = "the embedded PostgreSQL" if databases.embedded else "LOCK_DATABASE_URL"
        message = _one_line(str(error)).rstrip(".")
        raise LauncherError(f"{source}: {message}. Check LOCK_DATABASE_URL.") from None


def check_dagster_storage(databases: Databases) -> None:
    """Connect once to Dagster's storage, so that a wrong DAGSTER_PG_URL is one line here rather
    than Dagster's retries and tracebacks."""
    try:
        url = make_url(databases.dagster_url)
    except (exc.ArgumentError, ValueError):
        raise LauncherError(
            "DAGSTER_PG_URL is not a valid URL: set it to "
            "postgresql+psycopg2://user:password@host:5432/dbname."
        ) from None
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg2":
        raise LauncherError(
            f"DAGSTER_PG_URL ({safe_url(url)}) must be a postgresql+psycopg2:// URL: Dagster's "
            "storage (dagster-postgres) talks psycopg2."
        )
    try:
        with psycopg.connect(libpq_url(url), connect_timeout=CONNECT_TIMEOUT_SECONDS):
            pass
    except psycopg.Error as error:
        raise LauncherError(
            f"DAGSTER_PG_URL: cannot connect to Dagster's storage at {server_address(url)} "
            f"(database {url.database}, URL {safe_url(url)}): {error_summary(error, url)}. "
            "Check DAGSTER_PG_URL."
        ) from None


def refuse_taken_port(port: int) -> None:
    """Before anything starts: a second `make dev` would otherwise run a second daemon beside
    the first one's webserver."""
    with socket.socket() as probe:
        # As the webserver binds: a port left in TIME_WAIT by a stopped one is free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((DEV_HOST, port))
        except OSError:
            raise LauncherError(
                f"port {port} on {DEV_HOST} is already in use (another `make dev`?): stop it, "
                "or pick another port with `make dev PORT=...`."
            ) from None


def prepare_dagster_home() -> Path:
    """A git-ignored DAGSTER_HOME holding deploy/dagster.yaml (storage on PostgreSQL)."""
    DAGSTER_HOME.mkdir(exist_ok=True)
    shutil.copy(DAGSTER_YAML, DAGSTER_HOME / "dagster.yaml")
    return DAGSTER_HOME


def child_env(databases: Databases) -> dict[str, str]:
    return {
        **os.environ,
        "LOCK_DATABASE_URL": databases.lock_url,
        "DAGSTER_PG_URL": databases.dagster_url,
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


def migrate_dagster_storage(env: dict[str, str]) -> None:
    """Dagster's own tables; its output is kept in a file and named only if it fails."""
    log_file = DAGSTER_HOME / "logs" / "dagster-instance-migrate.log"
    log_file.parent.mkdir(exist_ok=True)
    with log_file.open("w") as out:
        code = subprocess.run(
            [DAGSTER, "instance", "migrate"], env=env, stdout=out, stderr=subprocess.STDOUT
        ).returncode
    if code != 0:
        raise LauncherError(
            f"`dagster instance migrate` failed (exit {code}) on DAGSTER_PG_URL's database; "
            f"its output is in {log_file}."
        )


def run_heartbeat_pair(databases: Databases, env: dict[str, str]) -> int:
    """Fire both instances' heartbeat_job for one fresh slot at once, as two daemons would."""
    migrate_dagster_storage(env)
    tick = datetime.now(timezone.utc)
    tags = json.dumps({SCHEDULED_TIME_TAG: tick.isoformat()})
    logs = DAGSTER_HOME / "logs"
    config = logs / f"{tick:%Y%m%dT%H%M%S%f}-run-config.yaml"
    config.write_text(
        f"ops:\n  record_heartbeat:\n    config:\n      work_seconds: {RUN_WORK_SECONDS}\n"
    )
    print(
        f"Running heartbeat_job on both instances for slot {tick.isoformat()}; "
        f"the beat's work takes {RUN_WORK_SECONDS} s ...",
        flush=True,
    )
    children, log_files = [], []
    for instance in INSTANCES:
        log_file = logs / f"{tick:%Y%m%dT%H%M%S%f}-{instance}.log"
        log_files.append(log_file)
        command = [DAGSTER, "job", "execute", "-m", f"orchestration.{instance}"]
        command += ["-j", "heartbeat_job", "-c", str(config), "--tags", tags]
        with log_file.open("w") as out:
            children.append(spawn(command, env=env, stdout=out, stderr=subprocess.STDOUT))
    codes = wait_all(children)
    for instance, code, log_file in zip(INSTANCES, codes, log_files, strict=True):
        if code != 0:
            print(f"{instance}: dagster exited with {code}; its output is in {log_file}")
    return print_job_logs(databases.lock_url, tick)


def print_job_logs(lock_url: str, tick: datetime) -> int:
    with psycopg.connect(libpq_url(lock_url)) as conn:
        rows = conn.execute(_JOB_LOGS_FOR_SLOT, (HEARTBEAT_QUEUE, canonical_slot(tick))).fetchall()
    print(f"\njob_logs for {HEARTBEAT_QUEUE}/heartbeat_job, slot {canonical_slot(tick)}:")
    for app_id, status, fence, remark, _, _ in rows:
        shown_fence = "-" if fence is None else fence
        print(f"  {app_id:<13} {status:<10} fence {shown_fence:<5} {remark}")
    statuses = sorted(row[1] for row in rows)
    if statuses != ["Completed", "Exited"]:
        print(f"\nExpected one Completed and one Exited row, got {statuses}.")
        return 1
    print()
    print(describe_overlap(rows))
    print("Exactly one instance did the work; the other exited naming the holder.")
    return 0


def describe_overlap(rows: list[tuple]) -> str:
    """How far apart the two runs reached the lock (each row is written as its run gets there,
    on the database clock), and whether the winner was still working then."""
    (first, _, _, _, first_at, _), (second, _, _, _, second_at, _) = rows
    [(winner, done_at)] = [(row[0], row[5]) for row in rows if row[1] == "Completed"]
    gap = (second_at - first_at).total_seconds()
    when = (
        f"while {winner}'s beat was still working"
        if second_at < done_at
        else f"after {winner}'s beat had finished"
    )
    return f"{second} reached the lock {gap:.2f} s after {first}, {when}."


def dev_instructions(databases: Databases, port: int) -> str:
    """What another terminal needs to reach this instance: lines it can paste as they are."""
    ui = f"Dagster UI: http://{DEV_HOST}:{port} (Ctrl-C here stops it"
    if databases.embedded:
        exports = {
            "LOCK_DATABASE_URL": databases.lock_url,
            "DAGSTER_PG_URL": databases.dagster_url,
            "DAGSTER_HOME": str(DAGSTER_HOME),
        }
        intro = [
            f"{ui} and the embedded PostgreSQL).",
            "To run `dlock status` or `dagster schedule ...` on this instance from another "
            "terminal, paste there:",
        ]
    else:
        exports = {"DAGSTER_HOME": str(DAGSTER_HOME)}
        intro = [
            f"{ui}).",
            f"Lock database (LOCK_DATABASE_URL): {safe_url(make_url(databases.lock_url))}",
            f"Dagster storage (DAGSTER_PG_URL):  {safe_url(make_url(databases.dagster_url))}",
            "To run `dlock status` or `dagster schedule ...` on this instance from another "
            "terminal, set LOCK_DATABASE_URL and DAGSTER_PG_URL there as you did here, and paste:",
        ]
    lines = [f"export {name}={shlex.quote(value)}" for name, value in exports.items()]
    return "\n".join([*intro, "", *lines, ""])


def run_dev(databases: Databases, env: dict[str, str], port: int) -> int:
    print(dev_instructions(databases, port), flush=True)
    command = [DAGSTER, "dev", "-w", "workspace.yaml", "-h", DEV_HOST, "-p", str(port)]
    return wait_all([spawn(command, env=env)])[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="launcher", description=__doc__)
    parser.add_argument("command", choices=["run", "dev"])
    parser.add_argument(
        "--port", type=int, default=DEV_PORT, help=f"the UI's port for dev (default {DEV_PORT})"
    )
    args = parser.parse_args(argv)
    # Started in the background by a shell (`make dev &`), the launcher inherits SIGINT ignored;
    # Ctrl-C or `kill -INT` must still stop it, its children and the embedded server.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        if args.command == "dev":
            refuse_taken_port(args.port)
        with database_urls() as databases:
            check_lock_database(databases)
            check_dagster_storage(databases)
            prepare_dagster_home()
            env = child_env(databases)
            if args.command == "run":
                return run_heartbeat_pair(databases, env)
            return run_dev(databases, env, args.port)
    except LauncherError as error:
        print(f"launcher: {error}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, Shutdown):
        print("launcher: stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
