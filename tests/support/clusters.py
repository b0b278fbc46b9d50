"""PostgreSQL clusters a scenario owns and configures: raised max_connections, password auth, a
primary with a streaming standby. From the pgserver wheel's binaries, like support/faults.py;
as root, they run as the OS user the embedded server's first start made.

Never the machine's shared server: scenarios stop, kill and promote these.
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

from support.databases import free_port, lock_url


def owner() -> str | None:
    """The OS user clusters run as: as root, the one the embedded server's first start made."""
    return "pgserver" if os.geteuid() == 0 else None


def _chown(path: Path) -> None:
    user = owner()
    if user:
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _folder(prefix: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    folder.chmod(0o755)
    return folder


class Cluster:
    """An initdb'd cluster on 127.0.0.1 and a port of its own, with settings of the test's."""

    def __init__(
        self,
        *,
        auth: str = "trust",
        password: str | None = None,
        settings: dict[str, str] | None = None,
        pgdata: Path | None = None,
    ) -> None:
        from pgserver import _commands

        self._commands = _commands
        self.owner = owner()
        self.password = password
        self.port = free_port()
        if pgdata is not None:  # made by pg_basebackup: a standby
            self.folder, self.pgdata = pgdata.parent, pgdata
        else:
            self.folder = _folder("dlock-cluster-")
            self.pgdata = self.folder / "data"
            self.pgdata.mkdir()
            self._chown(self.pgdata)
            args = [f"--auth={auth}", "-U", "postgres"]
            if password is not None:
                pwfile = self.folder / "pwfile"
                pwfile.write_text(password)
                self._chown(pwfile)
                args.append(f"--pwfile={pwfile}")
            _commands.initdb(args, pgdata=self.pgdata, user=self.owner)
        self.configure(settings or {})
        self.start()

    def _chown(self, path: Path) -> None:
        _chown(path)

    def configure(self, settings: dict[str, str]) -> None:
        """Settings appended to postgresql.conf (read at the next start or reload)."""
        if settings:
            with (self.pgdata / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    @property
    def admin_url(self) -> str:
        secret = f":{self.password}" if self.password else ""
        return f"postgresql://postgres{secret}@127.0.0.1:{self.port}/postgres"

    def url(self, password: str | None = None) -> str:
        """The lock URL of the postgres database (with another password if given)."""
        secret = password if password is not None else self.password
        auth = f"postgres:{secret}" if secret else "postgres"
        return lock_url(f"postgresql://{auth}@127.0.0.1:{self.port}/postgres", "postgres")

    def pg_ctl(self, *args: str, timeout: float = 60) -> None:
        self._commands.pg_ctl(list(args), pgdata=self.pgdata, user=self.owner, timeout=timeout)

    def start(self) -> None:
        self.pg_ctl(
            "-w",
            "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.pgdata}",
            "-l",
            str(self.pgdata / "log"),
            "start",
        )

    def stop(self) -> None:
        self.pg_ctl("-w", "-m", "fast", "stop")

    def crash(self) -> None:
        """Stop at once without a checkpoint, as a killed machine does (crash recovery on start)."""
        self.pg_ctl("-w", "-m", "immediate", "stop")

    def promote(self) -> None:
        self.pg_ctl("-w", "promote")

    def standby(self, primary_port: int) -> Cluster:
        """A streaming standby of this cluster made with pg_basebackup (-R writes its
        primary_conninfo), replicating through `primary_port`: this cluster's port, or a proxy
        in front of it. Started."""
        pgdata = _folder("dlock-standby-") / "data"
        pgdata.mkdir(mode=0o700)
        _chown(pgdata)
        self._commands.pg_basebackup(
            ["-h", "127.0.0.1", "-p", str(primary_port), "-U", "postgres", "-D", str(pgdata)]
            + ["-R", "-X", "stream", "-c", "fast"],
            user=self.owner,
            timeout=120,
        )
        # Bounded reconnects: a walreceiver stuck connecting to a dead or cut-off primary would
        # hold up the promotion (the last primary_conninfo in the file wins).
        with (pgdata / "postgresql.auto.conf").open("a") as conf:
            conf.write(
                f"primary_conninfo = 'host=127.0.0.1 port={primary_port} user=postgres "
                "connect_timeout=2'\n"
            )
        return Cluster(pgdata=pgdata, password=self.password)

    def remove(self) -> None:
        if (self.pgdata / "postmaster.pid").exists():  # not stopped (or crashed) already
            self.pg_ctl("-w", "-m", "immediate", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
