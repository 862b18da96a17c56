"""Helpers for tests against a live server: a raw-socket HTTP client that
reads responses byte-exactly, and starting/stopping ``corofw run``
subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class RawResponse:
    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]],
                 body: bytes, chunked: bool) -> None:
        self.status = status
        self.reason = reason
        self.header_list = headers
        self.headers = {name: value for name, value in headers}
        self.body = body
        self.chunked = chunked

    def __repr__(self) -> str:
        return f"<RawResponse {self.status} {self.headers} {self.body[:60]!r}>"


class RawClient:
    """One TCP connection; ``send`` raw bytes, then ``response()`` reads
    exactly one response off the stream (leaving what follows buffered)."""

    def __init__(self, port: int, timeout: float = 5.0, host: str = "127.0.0.1") -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def _read_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed mid-line: {self.buf[:200]!r}")
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _read_exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> tuple[int, str, list[tuple[str, str]]]:
        line = self._read_line()
        version, status, reason = line.decode("latin-1").split(" ", 2)
        assert version == "HTTP/1.1", line
        headers = []
        while True:
            line = self._read_line()
            if not line:
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.lower(), value.strip()))
        return int(status), reason, headers

    def response(self, method: str = "GET") -> RawResponse:
        """The next final response (1xx ones are skipped, see ``interim``)."""
        while True:
            status, reason, headers = self.read_head()
            if status >= 200:
                break
        fields = dict(headers)
        chunked = fields.get("transfer-encoding", "").lower() == "chunked"
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif chunked:
            parts = []
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line():
                        pass
                    break
                parts.append(self._read_exactly(size))
                assert self._read_exactly(2) == b"\r\n"
            body = b"".join(parts)
        elif "content-length" in fields:
            body = self._read_exactly(int(fields["content-length"]))
        else:
            body = self.read_until_close()
        return RawResponse(status, reason, headers, body, chunked)

    def interim(self) -> bytes:
        """The next complete head as raw bytes (e.g. ``100 Continue``)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed: {self.buf!r}")
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        return head + b"\r\n\r\n"

    def read_until_close(self) -> bytes:
        while self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def is_closed(self, timeout: float = 3.0) -> bool:
        """True if the server closes (EOF or reset) within ``timeout`` with
        nothing more sent; False if the connection is still open then."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def request(self, method: str, path: str, body: bytes = b"",
                headers: str = "") -> RawResponse:
        head = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}"
        if body or method in ("POST", "PUT"):
            head += f"Content-Length: {len(body)}\r\n"
        self.send(head.encode() + b"\r\n" + body)
        return self.response(method)


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    host = "Host: test\r\n" if version == "1.1" else ""
    return f"GET {path} HTTP/{version}\r\n{host}{extra}\r\n".encode()


# -- subprocesses --------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``python -m corofw <args>`` with the repository root as cwd."""
    full_env = dict(os.environ)
    full_env.pop("PYTHONPATH", None)
    full_env.update(env or {})
    return subprocess.Popen([sys.executable, "-m", "corofw", *args], cwd=PROJECT_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=full_env)


def run_cli(*args: str, env: dict[str, str] | None = None,
            timeout: float = 20.0) -> subprocess.CompletedProcess:
    proc = start_cli(*args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_tree(proc)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_listening(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Wait until something accepts connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"server exited with {proc.returncode}: {err}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.02)
    raise AssertionError(f"nothing listening on port {port} after {timeout} s")


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL ``proc`` and its children (by pid) if still alive, and reap it."""
    if proc.poll() is None:
        for child in children(proc.pid):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
    proc.communicate(timeout=10)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
