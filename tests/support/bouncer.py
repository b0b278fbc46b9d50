"""A PgBouncer of the test's own (Debian's `pgbouncer`) in transaction pooling mode, in front of a
cluster the test owns."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.databases import free_port

PGBOUNCER = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin")


class Bouncer:
    """A pgbouncer process in transaction mode in front of the server on `server_port`, on a
    port of its own. `owner` is the OS user the cluster runs as (PgBouncer refuses root)."""

    def __init__(
        self,
        server_port: int,
        owner: str | None,
        *,
        pool_size: int = 1,
        max_client_conn: int = 100,
    ) -> None:
        assert PGBOUNCER is not None
        self.folder = Path(tempfile.mkdtemp(prefix="dlock-bouncer-"))
        self.folder.chmod(0o755)  # pgbouncer runs as the cluster's owner when we are root
        self.port = free_port()
        (self.folder / "users.txt").write_text('"postgres" ""\n')
        ini = self.folder / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"postgres = host=127.0.0.1 port={server_port} dbname=postgres\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.folder / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {pool_size}\n"
            f"max_client_conn = {max_client_conn}\n"
        )
        for path in self.folder.iterdir():
            path.chmod(0o644)
        # pgbouncer refuses to run as root; -u makes it switch to the cluster's owner.
        user = ["-u", owner] if os.geteuid() == 0 and owner else []
        self.log = (self.folder / "log").open("w")
        self.process = subprocess.Popen(
            [PGBOUNCER, *user, str(ini)], stdout=self.log, stderr=subprocess.STDOUT
        )
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pgbouncer did not start:\n{(self.folder / 'log').read_text()}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.folder, ignore_errors=True)
