"""``corofw run --workers N``: a supervisor process and N workers sharing
the port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import httpx
import pytest
from live import (
    RawClient,
    children,
    free_port,
    get,
    kill_tree,
    pid_alive,
    run_cli,
    start_cli,
    wait_listening,
)

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, fork)")

APP = "tests.pid_app:routes"


def wait_for(predicate, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def worker_pid(port: int) -> int:
    """The pid of the worker that answers a fresh connection."""
    with httpx.Client() as client:
        return int(client.get(f"http://127.0.0.1:{port}/pid", timeout=5).text)


def pids_answering(port: int, want: int, tries: int = 400) -> set[int]:
    """Worker pids seen on fresh connections, until ``want`` distinct ones."""
    seen: set[int] = set()
    for _ in range(tries):
        try:
            seen.add(worker_pid(port))
        except httpx.TransportError:
            time.sleep(0.02)
        if len(seen) >= want:
            break
    return seen


@pytest.fixture
def supervisor():
    procs = []

    def start(*args: str, workers: int = 2):
        port = free_port()
        proc = start_cli("run", APP, "--host", "127.0.0.1", "--port", str(port),
                         "--workers", str(workers), "--no-access-log", *args)
        procs.append(proc)
        wait_for(lambda: len(children(proc.pid)) == workers or proc.poll() is not None,
                 what="workers to start")
        assert proc.poll() is None, proc.communicate()
        wait_listening(port, proc)
        return proc, port

    yield start
    for proc in procs:
        kill_tree(proc)


def test_workers_serve_restart_and_stop(supervisor):
    proc, port = supervisor()
    workers = set(children(proc.pid))
    assert len(workers) == 2

    # both workers answer
    assert pids_answering(port, 2) == workers

    # a worker that dies is replaced, and the other serves meanwhile
    victim, survivor = sorted(workers)
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: not pid_alive(victim), what="the killed worker to go")
    for _ in range(5):
        assert worker_pid(port) != victim  # and it succeeds: somebody serves
    wait_for(lambda: len(set(children(proc.pid)) - {survivor}) == 1, what="a new worker")
    replacement = (set(children(proc.pid)) - {survivor}).pop()
    assert replacement != victim
    assert pids_answering(port, 2) == {survivor, replacement}

    # SIGTERM to the supervisor: everyone exits, status 0
    current = set(children(proc.pid))
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err
    assert "killed by SIGKILL" in err
    for pid in current:
        assert not pid_alive(pid)
    for pid in current:
        assert f"worker {pid} stopped (exit status 0)" in err


def test_sigint_to_supervisor_and_request_in_flight(supervisor):
    proc, port = supervisor("--graceful-timeout", "5")
    workers = set(children(proc.pid))
    with RawClient(port) as in_flight:
        in_flight.send(get("/sleep/0.5"))
        time.sleep(0.15)
        proc.send_signal(signal.SIGINT)
        response = in_flight.response()
        assert response.status == 200
        assert response.body == b"slept 0.5\n"
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "Traceback" not in err
    for pid in workers:
        assert not pid_alive(pid)


def test_supervisor_kills_workers_that_overstay_the_grace_period(supervisor):
    proc, port = supervisor("--graceful-timeout", "0.2")
    workers = set(children(proc.pid))
    with RawClient(port) as in_flight:
        in_flight.send(get("/sleep/30"))
        time.sleep(0.15)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 5.0
        assert proc.returncode == 0
        assert in_flight.read_until_close() == b""
    for pid in workers:
        assert not pid_alive(pid)


def test_workers_with_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", APP, "--port", str(port), "--workers", "2")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: cannot listen on 127.0.0.1:{port}: address already in use"]


def test_workers_do_not_share_a_port_with_another_reuseport_server():
    """SO_REUSEPORT would let the workers join a foreign listener's port."""
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", APP, "--port", str(port), "--workers", "2")
    assert result.returncode != 0
    assert "address already in use" in result.stderr


def test_workers_exit_when_supervisor_is_killed(supervisor):
    proc, port = supervisor()
    workers = set(children(proc.pid))
    proc.kill()
    proc.wait()
    wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=15,
             what="orphaned workers to exit")
