"""A throwaway redis-server for the test session.

The ``redis_server`` fixture starts Debian's ``redis-server`` once per
session on a free loopback port (and a Unix socket), in a temporary directory, with persistence
off (``--save '' --appendonly no``); it waits until the server answers
PING, and stops it by its PID at the end. Tests that need Redis skip, saying
why, only when the binary is not installed (``make redis`` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server") or shutil.which("redis-server",
                                                            path="/usr/bin:/usr/sbin")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """One redis-server process; :meth:`restart` brings it back on the same
    port (with an empty dataset), as after a crash or a deploy."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.unix_socket = str(directory / "redis.sock")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                   "--save", "", "--appendonly", "no", "--dir", str(self.directory),
                   "--unixsocket", self.unix_socket, "--unixsocketperm", "700",
                   "--logfile", str(self.directory / "redis.log"), "--daemonize", "no"]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers_ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}: "
                                   f"{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not answer PING within {timeout} s: "
                                   f"{self._log_tail()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server by its PID and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def restart(self) -> None:
        """Stop the server, then start a fresh one on the same port."""
        self.stop()
        self.start()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _log_tail(self) -> str:
        try:
            return (self.directory / "redis.log").read_text()[-2000:]
        except OSError:
            return "(no log)"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's redis-server (see :class:`RedisServer`)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (`make redis` installs Debian's "
                    "redis-server)")
    with tempfile.TemporaryDirectory(prefix="corofw-redis-") as directory:
        server = RedisServer(REDIS_SERVER, Path(directory))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The URL of the session's redis-server, restarted if a test left it
    stopped, with an empty database 0."""
    if redis_server.process is None or redis_server.process.poll() is not None:
        redis_server.start()
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=5.0) as sock:
        sock.sendall(b"FLUSHALL\r\n")
        assert sock.recv(64).startswith(b"+OK")
    return redis_server.url
