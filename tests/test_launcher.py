"""A newcomer's first commands, from a fresh copy of the repository: `make run` and `make dev`
(tools/launcher.py), and the `dagster` commands a Dagster user types in the root first.

Every command runs in a copy of the checkout (tracked and new files, nothing ignored), so what
they leave behind (.embedded-pg/, .dagster-home/, Dagster's temporary homes) lands there, and
`git status` in the copy shows what a user would see.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import make_url

from orchestration.queues import HEARTBEAT_QUEUE
from support.databases import Tables, free_port
from support.processes import BIN, DAGSTER, PROJECT_ROOT

OWN_VARIABLES = ("LOCK_DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME", "LOCK_TEST_DATABASE_URL")


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The checkout as a fresh clone has it, in a git repository of its own."""
    copy = tmp_path_factory.mktemp("clone")
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = PROJECT_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    return copy


def newcomer_env(clone: Path, **variables: str) -> dict[str, str]:
    """A shell with none of the project's variables set unless given; the copy's code first."""
    env = {key: value for key, value in os.environ.items() if key not in OWN_VARIABLES}
    return {**env, "PYTHONPATH": str(clone), **variables}


def untracked(clone: Path) -> list[str]:
    """What `git status` would list as new in the copy: not ignored, not part of the checkout."""
    result = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=normal"],
        cwd=clone,
        capture_output=True,
        text=True,
        check=True,
    )
    return [line[3:] for line in result.stdout.splitlines()]


def launcher(clone: Path, env: dict[str, str], *args: str, **popen) -> subprocess.Popen:
    """`python -m tools.launcher ...` as `make run` / `make dev` start it, in the copy."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.launcher", *args],
        cwd=clone,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except OSError:
        return False
    return True


def storage_url(default_databases) -> str:
    """A fresh database for Dagster's storage, as the psycopg2 URL dagster-postgres takes."""
    url = make_url(default_databases.create(migrated=False))
    return url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)


def unreachable_url(driver: str) -> str:
    return f"{driver}://postgres:s3cret-pw@127.0.0.1:{free_port()}/nowhere"


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        ("LOCK_DATABASE_URL", "DAGSTER_PG_URL"),
        ("DAGSTER_PG_URL", "LOCK_DATABASE_URL"),
    ],
)
def test_only_one_database_url_is_refused_before_anything_starts(clone, given, missing):
    env = newcomer_env(clone, **{given: "postgresql://postgres@127.0.0.1:1/nowhere"})
    out, err = launcher(clone, env, "run").communicate(timeout=120)
    assert f"{given} is set but {missing} is not" in err
    assert "Starting the embedded PostgreSQL" not in out


@pytest.mark.parametrize("variable", ["LOCK_DATABASE_URL", "DAGSTER_PG_URL"])
def test_an_unreachable_database_is_one_line_naming_its_variable(
    clone, default_databases, variable
):
    """No traceback, no retries: the variable, the server, never the password."""
    given = {
        "LOCK_DATABASE_URL": default_databases.create(migrated=False),
        "DAGSTER_PG_URL": storage_url(default_databases),
    }
    given[variable] = unreachable_url(
        "postgresql+psycopg" if variable == "LOCK_DATABASE_URL" else "postgresql+psycopg2"
    )
    port = make_url(given[variable]).port
    started = time.monotonic()
    process = launcher(clone, newcomer_env(clone, **given), "run")
    out, err = process.communicate(timeout=120)
    assert process.returncode not in (0, None)
    assert time.monotonic() - started < 30, "gave up only after retries"
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert variable in lines[0] and f"127.0.0.1:{port}" in lines[0], lines[0]
    assert "s3cret-pw" not in out + err


RUN_LINE = re.compile(r"reached the lock (?P<gap>[0-9.]+) s (?:after|apart)", flags=re.IGNORECASE)


def test_run_shows_two_runs_of_one_tick_overlapping(clone, default_databases):
    """The beat works for a few seconds in `make run`, so the two runs overlap as duplicate
    scheduled runs do: the loser finds the slot running, and the gap between them is shown."""
    lock_url = default_databases.create(migrated=False)
    env = newcomer_env(
        clone, LOCK_DATABASE_URL=lock_url, DAGSTER_PG_URL=storage_url(default_databases)
    )
    process = launcher(clone, env, "run")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, out + err
    [(first, _, _, _, first_remark), (second, _, _, _, second_remark)] = Tables(lock_url).logs(
        HEARTBEAT_QUEUE, "heartbeat_job"
    )
    assert (first, second) == ("Completed", "Exited"), out
    work = float(re.search(r"Completed in ([0-9.]+) s", first_remark)[1])
    assert work >= 3, "the beat's work takes a few seconds in `make run`"
    gap = RUN_LINE.search(out)
    assert gap, out
    assert float(gap["gap"]) < work, out
    assert "is being processed by" in second_remark, second_remark
    assert "Exactly one instance did the work" in out


def exports_from(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith("export ")]


class BackgroundDev:
    def __init__(self, process: subprocess.Popen, port: int, out: Path, err: Path) -> None:
        self.process, self.port, self.out_file, self.err_file = process, port, out, err

    @property
    def out(self) -> str:
        return self.out_file.read_text()

    @property
    def err(self) -> str:
        return self.err_file.read_text()


@pytest.fixture(scope="module")
def background_dev(clone, tmp_path_factory) -> Iterator[BackgroundDev]:
    """`bash -c 'make dev > dev.log 2>&1 &'`: a non-interactive shell starts a background job
    with SIGINT ignored. On the embedded PostgreSQL, on a free port; up once the UI answers.
    The tests below use it in file order, the last one stopping it."""
    logs = tmp_path_factory.mktemp("dev-logs")
    port = free_port()
    with (logs / "out").open("w") as out, (logs / "err").open("w") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.launcher", "dev", "--port", str(port)],
            cwd=clone,
            env=newcomer_env(clone),
            stdout=out,
            stderr=err,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    dev = BackgroundDev(process, port, logs / "out", logs / "err")
    try:
        deadline = time.monotonic() + 240
        while not answers(f"http://127.0.0.1:{port}/server_info"):
            assert process.poll() is None, dev.out + dev.err
            assert time.monotonic() < deadline, dev.out + dev.err
            time.sleep(1)
        yield dev
    finally:
        if process.poll() is None:
            process.terminate()  # SIGTERM: the launcher stops dagster and the embedded server
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_dev_prints_export_lines_another_terminal_can_paste(clone, background_dev):
    exports = exports_from(background_dev.out)
    names = [line.removeprefix("export ").split("=", 1)[0] for line in exports]
    assert names == ["LOCK_DATABASE_URL", "DAGSTER_PG_URL", "DAGSTER_HOME"], background_dev.out
    # Another terminal: a shell with nothing set, the lines pasted, then the README's commands.
    pasted = "\n".join(exports)
    commands = {
        "dlock": f"{BIN / 'dlock'} status",
        "dagster": f"{DAGSTER} schedule list -w workspace.yaml -l instance_one",
    }
    shells = {
        name: subprocess.Popen(
            ["bash", "-c", f"{pasted}\n{command}"],
            cwd=clone,
            env=newcomer_env(clone),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for name, command in commands.items()
    }
    outputs = {name: shell.communicate(timeout=120)[0] for name, shell in shells.items()}
    for name, shell in shells.items():
        assert shell.returncode == 0, (commands[name], outputs[name])
    assert "queue_locks" in outputs["dlock"]
    assert "heartbeat_job_hourly_schedule" in outputs["dagster"]


def test_a_second_dev_on_a_taken_port_is_refused_at_once(clone, background_dev):
    started = time.monotonic()
    second = launcher(clone, newcomer_env(clone), "dev", "--port", str(background_dev.port))
    try:
        out, err = second.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        second.send_signal(signal.SIGINT)
        out, err = second.communicate(timeout=90)
        pytest.fail(f"a second dev kept running:\n{out}\n{err}")
    assert second.returncode not in (0, None)
    assert time.monotonic() - started < 20
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(background_dev.port) in lines[0], err
    assert "in use" in lines[0]
    assert "Starting the embedded PostgreSQL" not in out


def test_dev_started_in_the_background_stops_on_sigint(background_dev):
    background_dev.process.send_signal(signal.SIGINT)
    try:
        code = background_dev.process.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the launcher ignored SIGINT")
    assert code == 130, background_dev.err
    assert "launcher: stopped" in background_dev.err
    assert not answers(f"http://127.0.0.1:{background_dev.port}/server_info")
    with socket.socket() as probe:  # nothing listens there any more (TIME_WAIT is fine)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", background_dev.port))


def test_dagster_from_the_root_works_with_nothing_set_and_leaves_nothing_untracked(
    clone, default_databases
):
    """What a Dagster user types in the root before reading the Makefile, side by side:
    `dagster dev` (then stopped hard, as a closed terminal stops it), `dagster definitions
    validate`, and `dagster job execute -m ...` with only the lock's database set."""
    lock_url = default_databases.create()
    port = free_port()
    commands = {
        "dev": ([DAGSTER, "dev", "-h", "127.0.0.1", "-p", str(port)], newcomer_env(clone)),
        "validate": ([DAGSTER, "definitions", "validate"], newcomer_env(clone)),
        "execute": (
            [DAGSTER, "job", "execute", "-m", "orchestration.instance_one", "-j", "heartbeat_job"],
            newcomer_env(clone, LOCK_DATABASE_URL=lock_url),
        ),
    }
    running = {
        name: subprocess.Popen(
            command,
            cwd=clone,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for name, (command, env) in commands.items()
    }
    dev = running.pop("dev")
    try:
        outputs = {name: process.communicate(timeout=300)[0] for name, process in running.items()}
        deadline = time.monotonic() + 180
        while not answers(f"http://127.0.0.1:{port}/server_info"):
            if dev.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dagster dev did not serve the UI:\n{dev.communicate()[0][-5000:]}")
            time.sleep(1)
    finally:
        # A hard stop (a closed terminal, a killed container): Dagster cannot clean up.
        for process in (dev, *running.values()):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    dev_output = dev.communicate(timeout=60)[0]
    for name, process in running.items():
        assert process.returncode == 0, (name, outputs[name][-3000:])
    assert Tables(lock_url).statuses(HEARTBEAT_QUEUE, "heartbeat_job") == ["Completed"]
    # The code location says what is missing, in one line, before any run fails on it.
    assert "LOCK_DATABASE_URL is not set" in dev_output, dev_output[-3000:]
    assert list(clone.glob(".tmp_dagster_home_*")), "Dagster's temporary home was left behind"
    assert not [name for name in untracked(clone) if ".tmp_dagster_home_" in name]


def test_dev_on_your_own_server_masks_passwords_and_exports_only_dagster_home():
    from tools.launcher import Databases, dev_instructions

    text = dev_instructions(
        Databases(
            "postgresql+psycopg://app:s3cret-pw@db:5432/locks",
            "postgresql+psycopg2://dagster:s3cret-pw@db:5432/dagster",
            embedded=False,
        ),
        port=3001,
    )
    assert "s3cret-pw" not in text
    assert "http://127.0.0.1:3001" in text
    assert "set LOCK_DATABASE_URL and DAGSTER_PG_URL there as you did here" in text
    assert [line.split("=")[0] for line in exports_from(text)] == ["export DAGSTER_HOME"]
