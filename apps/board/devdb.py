"""A throwaway PostgreSQL cluster: for ``make board`` and the test suite.

:class:`PgServer` finds Debian's PostgreSQL binaries (``initdb``,
``pg_ctl``; ``make postgres`` installs them), creates a cluster in a
directory with trust authentication, and starts it on a free port of
127.0.0.1 (and a unix socket in the same directory). PostgreSQL refuses to
run as root, so under root every command runs as the ``postgres`` system
user (created if missing). :func:`throwaway_postgres` is the whole life
cycle in a ``with`` block: a temporary directory, a started server, then a
fast stop and the directory removed. ``tests/pg_server.py`` builds its
pytest fixture on the same class.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RUN_AS = "postgres"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be run here; ``str()`` says why and how to fix it."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: the newest
    ``/usr/lib/postgresql/*/bin`` (Debian keeps them off PATH), else PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                        key=lambda path: int(path.split("/")[-2]) if
                        path.split("/")[-2].isdigit() else 0)
    for directory in reversed(candidates):
        if os.access(os.path.join(directory, "initdb"), os.X_OK):
            return Path(directory)
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_system_user(name: str) -> None:
    """Create the ``name`` system user if it does not exist (root only)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/bin/sh",
                        name], check=True, capture_output=True)


def why_unavailable() -> str | None:
    """None when a cluster can be run here, else the reason it cannot."""
    if find_bindir() is None:
        return "PostgreSQL is not installed (`make postgres` installs Debian's postgresql)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: cannot run PostgreSQL as a non-root user"
    return None


class PgServer:
    """One PostgreSQL cluster: ``dsn`` connects to it as the superuser
    ``postgres`` over TCP, ``socket_dsn`` over its unix socket; :meth:`stop`,
    :meth:`start` and :meth:`restart` drive it with ``pg_ctl`` (a fast
    shutdown: sessions are terminated)."""

    def __init__(self, bindir: Path, directory: Path) -> None:
        self.bindir = bindir
        self.directory = directory
        self.data = directory / "data"
        self.sockets = directory / "sockets"
        self.log = directory / "postgres.log"
        self.port = free_port()
        self.host = "127.0.0.1"
        self.dsn = f"postgresql://postgres@{self.host}:{self.port}/postgres"
        #: the same server over its unix socket (small, fixed socket buffers)
        self.socket_dsn = f"host={self.sockets} port={self.port} user=postgres dbname=postgres"
        self.running = False

    def _command(self, program: str, *args: str) -> list[str]:
        command = [str(self.bindir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        return command

    def _run(self, program: str, *args: str, timeout: float = 60.0) -> None:
        # a session of its own: a Ctrl-C meant for the program that runs the
        # cluster must not kill initdb or pg_ctl (nor the server) halfway
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True,
                              timeout=timeout, cwd=self.directory, start_new_session=True)
        if done.returncode:
            raise RuntimeError(f"{program} {' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stderr.strip() or done.stdout.strip()}\n"
                               f"{self.log_tail()}")

    def init(self) -> None:
        """Create the cluster (trust auth, UTF-8, C locale, no fsync)."""
        self.sockets.mkdir()
        if os.geteuid() == 0:
            ensure_system_user(RUN_AS)
            user = pwd.getpwnam(RUN_AS)
            for path in (self.directory, self.sockets):
                os.chown(path, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = " ".join([
            f"-p {self.port}", f"-k {self.sockets}", "-c listen_addresses=127.0.0.1",
            "-c max_connections=300", "-c shared_buffers=32MB", "-c fsync=off",
            "-c synchronous_commit=off", "-c full_page_writes=off",
        ])
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", "60", "start")
        self.running = True

    def stop(self) -> None:
        """Fast shutdown: sessions are terminated, then the server exits."""
        if self.running:
            self.running = False
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def restart(self) -> None:
        """Stop (fast) and start again on the same port."""
        self.stop()
        self.start()

    def pid(self) -> int | None:
        """The postmaster's process id while it runs (from postmaster.pid)."""
        try:
            return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def log_tail(self) -> str:
        """The end of the server's log, for error messages."""
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@contextmanager
def throwaway_postgres(prefix: str = "corofw-pg-") -> Iterator[PgServer]:
    """A started cluster in a new temporary directory, stopped and removed
    when the block ends. Raises :class:`PostgresUnavailable` when it
    cannot run here."""
    reason = why_unavailable()
    if reason is not None:
        raise PostgresUnavailable(reason)
    bindir = find_bindir()
    assert bindir is not None
    directory = Path(tempfile.mkdtemp(prefix=prefix))
    server = PgServer(bindir, directory)
    try:
        server.init()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(directory, ignore_errors=True)
