"""Fault injection for the lock's tests: a PostgreSQL cluster of the test's own that it may stop,
restart or freeze, and a TCP proxy that can drop a reply or stop forwarding altogether.

Never the machine's shared server: these break what they point at.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

from support.databases import free_port, lock_url


class PrivateServer:
    """A throwaway cluster (trust auth) on a port of its own, from the pgserver wheel's binaries."""

    def __init__(self) -> None:
        from pgserver import _commands

        self._commands = _commands
        # As root, the cluster runs as the user the embedded server's first start made.
        self.owner = "pgserver" if os.geteuid() == 0 else None
        self.folder = Path(tempfile.mkdtemp(prefix="dlock-fault-"))
        self.folder.chmod(0o755)
        self.pgdata = self.folder / "data"
        self.pgdata.mkdir()
        if self.owner:
            user = pwd.getpwnam(self.owner)
            os.chown(self.pgdata, user.pw_uid, user.pw_gid)
        _commands.initdb(["--auth=trust", "-U", "postgres"], pgdata=self.pgdata, user=self.owner)
        self.port = free_port()
        self.start()

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, port: int | None = None) -> str:
        """The lock URL of the postgres database, directly or through a proxy's port."""
        return lock_url(f"postgresql://postgres@127.0.0.1:{port or self.port}/postgres", "postgres")

    def start(self) -> None:
        self._commands.pg_ctl(
            [
                "-w",
                "-o",
                f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}",
                "-l",
                str(self.pgdata / "log"),
                "start",
            ],
            pgdata=self.pgdata,
            user=self.owner,
            timeout=60,
        )

    def stop(self) -> None:
        self._commands.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.owner)

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


class Proxy:
    """Forwards 127.0.0.1:port to the server. `drop_next_reply()` throws away the server's next
    answer (sent after its commit) and resets both sides; `blackhole()` stops forwarding while
    keeping every socket open, as a frozen server or a dropped network path does."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._drop_reply = threading.Event()
        self._blackhole = threading.Event()
        self.dropped = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def drop_next_reply(self) -> None:
        self.dropped.clear()
        self._drop_reply.set()

    def blackhole(self, on: bool = True) -> None:
        if on:
            self._blackhole.set()
        else:
            self._blackhole.clear()

    def close(self) -> None:
        self.listener.close()
        for pair in self._pairs:
            for sock in pair:
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:  # the server is down (killed on purpose): the client sees a reset
                client.close()
                continue
            self._pairs.append((client, server))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            while self._blackhole.is_set():  # hold the bytes back until it is lifted
                time.sleep(0.05)
            if replies and self._drop_reply.is_set():
                self._drop_reply.clear()
                self.dropped.set()
                break  # the reply is lost; both connections are reset below
            try:
                sink.sendall(data)
            except OSError:
                break
        for sock in (source, sink):
            # shutdown() wakes the other direction's thread blocked in recv() on the same
            # socket (close() alone would not); both sides see the connection end.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
