"""A throwaway PostgreSQL cluster for the test session.

The ``pg_server`` fixture finds Debian's PostgreSQL binaries (``initdb``,
``pg_ctl``; ``make postgres`` installs them), creates a cluster in a
temporary directory with trust authentication, and starts it once per
session on a free port of 127.0.0.1 (and a unix socket in the same
directory). It is stopped with ``pg_ctl stop -m fast`` at the end and the
directory removed. PostgreSQL refuses to run as root, so under root every
command runs as the ``postgres`` system user (created if missing). Tests
that need a server skip, saying why, only when the binaries are missing.
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
from pathlib import Path

import pytest

RUN_AS = "postgres"


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
        done = subprocess.run(self._command(program, *args), capture_output=True, text=True,
                              timeout=timeout, cwd=self.directory)
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

    def log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The session's PostgreSQL server (see :class:`PgServer`)."""
    bindir = find_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (`make postgres` installs Debian's "
                    "postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot run PostgreSQL as a "
                    "non-root user")
    directory = Path(tempfile.mkdtemp(prefix="corofw-pg-"))
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


@pytest.fixture
def pg_dsn(pg_server: PgServer) -> str:
    """The DSN of the session's server, started again if a test left it
    stopped."""
    if not pg_server.running:
        pg_server.start()
    return pg_server.dsn
