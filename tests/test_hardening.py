"""Faults around a running server: the fd limit and SIGTERM under load."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from live import free_port

ROOT = Path(__file__).resolve().parent.parent


def start(port: int, *options: str, fd_limit: int | None = None) -> subprocess.Popen:
    def limit() -> None:
        if fd_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit))

    process = subprocess.Popen(
        [sys.executable, "-m", "corofw", "run", "apps.hello:routes", "--port", str(port),
         "--no-access-log", "--log-level", "warning", *options],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=limit)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError("the server did not start")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_accept_at_the_fd_limit_backs_off_and_keeps_serving():
    port = free_port()
    server = start(port, "--keep-alive-timeout", "60", fd_limit=48)
    held: list[socket.socket] = []
    try:
        for _ in range(60):  # more connections than the server has fds for
            held.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        time.sleep(0.3)
        before = cpu_seconds(server.pid)
        time.sleep(1.0)
        spent = cpu_seconds(server.pid) - before
        assert spent < 0.5, f"the accept loop spun: {spent:.2f} s of CPU in 1 s"
        assert server.poll() is None, "the server died at the fd limit"
        first = held[0]
        first.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Hello, World!" in first.recv(4096)  # accepted connections still served
        for sock in held[:30]:
            sock.close()
        del held[:30]
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert response.text == "Hello, World!"
    finally:
        for sock in held:
            sock.close()
        stderr = server.stderr.read().decode() if server.poll() is not None else ""
        assert stop(server) == 0, stderr
        server.stderr.close()


def read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data or not data.endswith(b"slow\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def test_sigterm_under_load_answers_every_accepted_request_then_exits_0():
    port = free_port()
    server = start(port, "--graceful-timeout", "5")
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
    try:
        for sock in clients:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.25)  # every request accepted and waiting in its handler
        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        answers = [read_response(sock) for sock in clients]
        assert server.wait(timeout=15) == 0
        assert time.monotonic() - started < 5.0
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 20
        assert all(a.endswith(b"slow\n") and b"connection: close" in a for a in answers)
    finally:
        for sock in clients:
            sock.close()
        stop(server)
        server.stderr.close()
