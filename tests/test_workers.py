"""``corofw run --workers N``: a supervisor process and N workers sharing
the port (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from live import (
    PROJECT_ROOT,
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


# -- one stop, however it arrives ------------------------------------------------------

def start_group(*args: str) -> tuple[subprocess.Popen, int]:
    """``corofw run --workers 2`` as the leader of a new process group (as a
    shell runs a command in a terminal, or systemd a service), ready."""
    port = free_port()
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    proc = subprocess.Popen([sys.executable, "-m", "corofw", "run", APP, "--port", str(port),
                             "--workers", "2", "--no-access-log", *args],
                            cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    try:
        wait_for(lambda: len(children(proc.pid)) == 2 or proc.poll() is not None,
                 what="workers to start")
        wait_listening(port, proc)
        assert len(pids_answering(port, 2)) == 2
    except BaseException:
        kill_tree(proc)
        raise
    return proc, port


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM],
                         ids=["ctrl-c in a terminal", "systemd control-group kill"])
def test_stop_signal_to_the_whole_process_group_is_one_graceful_stop(signum):
    """Every process gets the signal, the supervisor passes the stop on too:
    the workers must still take it as one stop, and finish the request."""
    proc, port = start_group("--graceful-timeout", "10")
    try:
        with RawClient(port) as in_flight:
            in_flight.send(get("/sleep/1.0"))
            time.sleep(0.2)  # in its handler now
            os.killpg(proc.pid, signum)  # the group this test created, and only it
            response = in_flight.response()
            assert response.status == 200
            assert response.body == b"slept 1.0\n"
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "again" not in err
        assert "Traceback" not in err
    finally:
        kill_tree(proc)


def test_second_interrupt_to_the_process_group_hurries():
    proc, port = start_group("--graceful-timeout", "10")
    try:
        with RawClient(port) as in_flight:
            in_flight.send(get("/sleep/30"))
            time.sleep(0.2)
            started = time.monotonic()
            os.killpg(proc.pid, signal.SIGINT)
            time.sleep(0.3)
            os.killpg(proc.pid, signal.SIGINT)
            assert in_flight.read_until_close() == b""  # cancelled, not answered
        _, err = proc.communicate(timeout=20)
        assert time.monotonic() - started < 5.0
        assert proc.returncode == 0
        assert "received SIGINT again: cancelling the requests in flight" in err
        assert "killing" not in err  # the workers hurried; none had to be killed
    finally:
        kill_tree(proc)


def test_second_signal_to_the_supervisor_alone_hurries_the_workers(supervisor):
    proc, port = supervisor("--graceful-timeout", "10")
    with RawClient(port) as in_flight:
        in_flight.send(get("/sleep/30"))
        time.sleep(0.2)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        assert in_flight.read_until_close() == b""
    _, err = proc.communicate(timeout=20)
    assert time.monotonic() - started < 5.0
    assert proc.returncode == 0
    assert "asked again to stop: cancelling the requests in flight" in err


# -- workers that cannot start ---------------------------------------------------------

WORKER_FAILS = '''
import os

from corofw import Router

_importer = os.getpid()


class WorkerShy(Router):
    """A router that cannot be served from any process but the one that
    imported it: every worker fails as it starts."""

    @property
    def handle(self):
        if os.getpid() != _importer:
            raise RuntimeError("not in a worker, please")
        return Router.handle.__get__(self)


routes = WorkerShy()
'''


def test_supervisor_gives_up_when_workers_fail_to_start(tmp_path):
    """Before, the workers were restarted forever and the port refused
    connections; now the supervisor stops with the workers' reason."""
    (tmp_path / "shy_app.py").write_text(WORKER_FAILS)
    started = time.monotonic()
    result = run_cli("run", "shy_app:routes", "--port", "0", "--workers", "2",
                     env={"PYTHONPATH": str(tmp_path)}, timeout=15)
    assert time.monotonic() - started < 10
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.rstrip().endswith(
        "Error: worker failed to start: RuntimeError: not in a worker, please")
