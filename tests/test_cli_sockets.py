"""``corofw run`` on a Unix socket (``--uds``), an inherited socket
(``--fd``) and systemd socket activation (``LISTEN_FDS``), as real
processes: alone, with ``--workers 2``, and stopping gracefully."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest
from live import children, kill_tree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, fork)")

APP_SOURCE = """\
import os

from corofw import Router, sleep

routes = Router()


@routes.get("/info")
def info(request):
    listen = os.environ.get("LISTEN_FDS"), os.environ.get("LISTEN_PID")
    return f"{os.getpid()}|{request.client!r}|{listen!r}"


@routes.get("/sleep/{seconds:float}")
def nap(request, seconds):
    yield from sleep(seconds)
    return f"slept {seconds}"
"""

# Emulates systemd: the sockets passed as the fds in argv[1] become 3, 4, ...,
# LISTEN_PID is this process (exec keeps it), then ``corofw`` replaces it.
SYSTEMD_WRAPPER = """\
import fcntl
import os
import sys

fds = [int(fd) for fd in sys.argv[1].split(",")]
# copies numbered above 3, 4, ..., so that no dup2 below overwrites one
copies = [fcntl.fcntl(fd, fcntl.F_DUPFD, 3 + len(fds)) for fd in fds]
for fd in fds:
    os.close(fd)
for number, fd in enumerate(copies, start=3):
    os.dup2(fd, number)
    os.close(fd)
os.environ.update(LISTEN_FDS=str(len(fds)), LISTEN_PID=str(os.getpid()),
                  LISTEN_FDNAMES=":".join(f"s{n}" for n in range(len(fds))))
os.execv(sys.executable, [sys.executable, "-m", "corofw", *sys.argv[2:]])
"""


@pytest.fixture
def app_dir(tmp_path):
    """A directory holding ``sockapp.py``; servers run there (``sockapp:routes``)."""
    (tmp_path / "sockapp.py").write_text(APP_SOURCE)
    return tmp_path


class Server:
    """A ``corofw run sockapp:routes ...`` process (or one started through
    ``wrapper``), killed with its workers at the end if still alive."""

    def __init__(self, cwd, *args: str, pass_fds: tuple[int, ...] = (),
                 wrapper: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ)
        full_env.pop("PYTHONPATH", None)
        full_env.update(env or {})
        command = wrapper or [sys.executable, "-m", "corofw"]
        self.proc = subprocess.Popen([*command, "run", "sockapp:routes", *args], cwd=cwd,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=full_env, pass_fds=pass_fds)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        kill_tree(self.proc)

    def stop(self, timeout: float = 20.0) -> tuple[int, str]:
        """SIGTERM; the exit status and stderr."""
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def finish(self, timeout: float = 20.0) -> subprocess.CompletedProcess:
        """Wait for a server that refuses to start."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        finally:
            kill_tree(self.proc)
        return subprocess.CompletedProcess(self.proc.args, self.proc.returncode, out, err)


def unix_client(path) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(uds=str(path)), base_url="http://corofw",
                        timeout=10)


def tcp_client(port: int) -> httpx.Client:
    return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)


def wait_answering(client: httpx.Client, server: Server, timeout: float = 20.0) -> str:
    """Wait until ``GET /info`` is answered; its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            _, err = server.proc.communicate()
            raise AssertionError(f"server exited with {server.proc.returncode}: {err}")
        try:
            return client.get("/info").text
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError(f"no answer after {timeout} s")


def tcp_listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def unix_listener(path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    sock.listen()
    return sock


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_usage_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# -- --uds --------------------------------------------------------------------------------

def test_uds_serves_and_removes_its_socket_file(app_dir, no_leaks):
    path = app_dir / "app.sock"
    with Server(app_dir, "--uds", str(path)) as server, unix_client(path) as client:
        pid, peer, listen = wait_answering(client, server).split("|")
        assert int(pid) == server.proc.pid
        assert peer == "''"  # a Unix peer's address: the client socket is unnamed
        assert stat.S_ISSOCK(path.stat().st_mode)
        assert stat.S_IMODE(path.stat().st_mode) == 0o666
        assert client.post("/info").status_code == 405  # an ordinary HTTP server
        status, err = server.stop()
    assert status == 0, err
    assert not path.exists()
    assert "serving on unix:" + str(path) in err
    assert '"GET /info HTTP/1.1" 200' in err  # the access log takes a Unix peer
    assert "Traceback" not in err


def test_uds_replaces_a_stale_socket_file(app_dir, no_leaks):
    """A socket file nobody listens on (its server died) is removed."""
    path = app_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))
    assert stat.S_ISSOCK(path.stat().st_mode)
    with Server(app_dir, "--uds", str(path)) as server, unix_client(path) as client:
        assert int(wait_answering(client, server).split("|")[0]) == server.proc.pid
        status, err = server.stop()
    assert status == 0, err
    assert not path.exists()


def test_uds_refuses_a_path_that_is_not_a_socket(app_dir, no_leaks):
    path = app_dir / "notes.txt"
    path.write_text("keep me")
    with Server(app_dir, "--uds", str(path)) as server:
        result = server.finish()
    assert_one_error_line(result, f"unix:{path}", "exists and is not a socket")
    assert path.read_text() == "keep me"


def test_uds_refuses_a_path_a_live_server_answers_on(app_dir, no_leaks):
    path = app_dir / "live.sock"
    with unix_listener(path) as live:
        with Server(app_dir, "--uds", str(path)) as server:
            result = server.finish()
        assert_one_error_line(result, f"unix:{path}", "a server is already listening there")
        with socket.socket(socket.AF_UNIX) as probe:  # the live server keeps its socket
            probe.connect(str(path))
            conn, _ = live.accept()
            conn.close()


@pytest.mark.parametrize(("where", "reason"), [
    ("missing-dir/app.sock", "no such file or directory"),
    ("x" * 120 + ".sock", "path too long"),
])
def test_uds_path_that_cannot_be_bound(app_dir, no_leaks, where, reason):
    with Server(app_dir, "--uds", str(app_dir / where)) as server:
        result = server.finish()
    assert_one_error_line(result, "cannot listen on unix:", reason)


def test_uds_with_two_workers_shares_the_socket_and_drains_on_sigterm(app_dir, no_leaks):
    path = app_dir / "workers.sock"
    with Server(app_dir, "--uds", str(path), "--workers", "2",
                "--graceful-timeout", "10") as server:
        with unix_client(path) as client:
            wait_answering(client, server)
            deadline = time.monotonic() + 30
            workers = set(children(server.proc.pid))
            while len(workers) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                workers = set(children(server.proc.pid))
            assert len(workers) == 2
            seen: set[int] = set()
            while seen != workers and time.monotonic() < deadline:
                with unix_client(path) as fresh:  # a new connection each time
                    seen.add(int(fresh.get("/info").text.split("|")[0]))
            assert seen == workers  # both workers accept on the one socket

        answers: list[object] = []

        def slow_request() -> None:
            with unix_client(path) as slow:
                try:
                    answers.append(slow.get("/sleep/1.5"))
                except httpx.HTTPError as exc:
                    answers.append(exc)

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.5)  # the request is in flight
        server.proc.send_signal(signal.SIGTERM)
        refused = False
        while not refused and time.monotonic() < deadline + 10:
            try:  # while the request finishes, new clients are refused at once
                with socket.socket(socket.AF_UNIX) as late:
                    late.connect(str(path))
                time.sleep(0.02)
            except ConnectionRefusedError:
                refused = True
        assert refused and not answers
        thread.join(10)
        status, err = server.stop()
    assert status == 0, err
    assert len(answers) == 1 and isinstance(answers[0], httpx.Response), answers
    assert answers[0].status_code == 200 and answers[0].text == "slept 1.5"
    assert not path.exists()
    assert "Traceback" not in err


# -- --fd -------------------------------------------------------------------------------

def test_fd_serves_an_inherited_tcp_socket(app_dir, no_leaks):
    with tcp_listener() as listener:
        port = listener.getsockname()[1]
        fd = listener.fileno()
        with Server(app_dir, "--fd", str(fd), pass_fds=(fd,)) as server:
            listener.close()  # only the server holds it now
            with tcp_client(port) as client:
                pid, peer, _ = wait_answering(client, server).split("|")
            assert int(pid) == server.proc.pid
            assert peer.startswith("('127.0.0.1', ")
            status, err = server.stop()
    assert status == 0, err
    assert f"serving on http://127.0.0.1:{port}" in err
    with pytest.raises(ConnectionRefusedError):  # the server closed the socket
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_fd_serves_an_inherited_unix_socket_with_two_workers(app_dir, no_leaks):
    path = app_dir / "passed.sock"
    with unix_listener(path) as listener:
        fd = listener.fileno()
        with Server(app_dir, "--fd", str(fd), "--workers", "2", pass_fds=(fd,)) as server:
            with unix_client(path) as client:
                pid = int(wait_answering(client, server).split("|")[0])
            assert pid in children(server.proc.pid)
            status, err = server.stop()
    assert status == 0, err
    assert path.exists()  # the file belongs to whoever bound it


def test_fd_errors_are_one_line(app_dir, no_leaks, tmp_path):
    unbound = socket.socket()
    datagram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    reader, writer = os.pipe()
    try:
        cases = [
            (unbound.fileno(), "the socket is not listening"),
            (datagram.fileno(), "not a stream socket"),
            (reader, "not a socket"),
        ]
        for fd, reason in cases:
            with Server(app_dir, "--fd", str(fd), pass_fds=(fd,)) as server:
                result = server.finish()
            assert_one_error_line(result, f"cannot serve on fd {fd}", reason)
        free = 1000  # not passed, so not open in the server
        with Server(app_dir, "--fd", str(free)) as server:
            result = server.finish()
        assert_one_error_line(result, f"cannot serve on fd {free}", "not open")
    finally:
        unbound.close()
        datagram.close()
        os.close(reader)
        os.close(writer)


@pytest.mark.parametrize(("args", "fragments"), [
    (["--fd", "5", "--uds", "x.sock"], ["--uds and --fd exclude each other"]),
    (["--uds", "x.sock", "--port", "8000"], ["--uds and --port"]),
    (["--fd", "5", "--host", "127.0.0.1"], ["--fd and --host"]),
    (["--fd", "-1"], ["'--fd'"]),
])
def test_where_to_listen_is_said_once(app_dir, no_leaks, args, fragments):
    with Server(app_dir, *args) as server:
        result = server.finish()
    assert_usage_error(result, *fragments)
    assert not (app_dir / "x.sock").exists()


# -- systemd socket activation -------------------------------------------------------------

def systemd_server(app_dir, listeners: list[socket.socket], *args: str) -> Server:
    fds = tuple(sock.fileno() for sock in listeners)
    wrapper = [sys.executable, "-c", SYSTEMD_WRAPPER, ",".join(map(str, fds))]
    return Server(app_dir, *args, pass_fds=fds, wrapper=wrapper)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_systemd_socket_activation(app_dir, no_leaks, workers):
    """Both passed sockets (TCP on fd 3, Unix on fd 4) are served; the
    LISTEN_* variables are gone from the app's environment."""
    path = app_dir / "activated.sock"
    with tcp_listener() as tcp, unix_listener(path) as unix:
        port = tcp.getsockname()[1]
        with systemd_server(app_dir, [tcp, unix], "--workers", workers) as server:
            tcp.close()
            unix.close()
            with tcp_client(port) as client:
                pid, peer, listen = wait_answering(client, server).split("|")
            assert listen == "(None, None)"
            with unix_client(path) as client:
                assert wait_answering(client, server).split("|")[1:] == ["''", "(None, None)"]
            status, err = server.stop()
    assert status == 0, err
    assert f"http://127.0.0.1:{port}, unix:{path}" in err
    assert "Traceback" not in err and "WARNING" not in err and "ERROR" not in err, err


def test_systemd_sockets_are_for_the_process_named_by_listen_pid(app_dir, no_leaks):
    """LISTEN_PID of another process: the variables are not ours (and are
    removed); --host/--port are served."""
    with tcp_listener() as other:
        port = other.getsockname()[1]
        other.close()  # a free port for the server
        env = {"LISTEN_FDS": "1", "LISTEN_PID": "1"}
        with Server(app_dir, "--port", str(port), env=env) as server:
            with tcp_client(port) as client:
                assert wait_answering(client, server).split("|")[2] == "(None, None)"
            status, err = server.stop()
    assert status == 0, err


def test_systemd_sockets_and_an_explicit_port_exclude_each_other(app_dir, no_leaks):
    with tcp_listener() as tcp, systemd_server(app_dir, [tcp], "--port", "8000") as server:
        result = server.finish()
    assert_usage_error(result, "systemd's sockets (LISTEN_FDS) and --port exclude each other")


def test_systemd_bad_listen_fds_is_one_line(app_dir, no_leaks):
    wrapper = textwrap.dedent("""\
        import os, sys
        os.environ.update(LISTEN_FDS="two", LISTEN_PID=str(os.getpid()))
        os.execv(sys.executable, [sys.executable, "-m", "corofw", *sys.argv[1:]])
    """)
    with Server(app_dir, wrapper=[sys.executable, "-c", wrapper]) as server:
        result = server.finish()
    assert_one_error_line(result, "LISTEN_FDS must be a number of sockets, not 'two'")


def test_systemd_fd_that_is_not_a_socket(app_dir, no_leaks):
    reader, writer = os.pipe()
    try:
        wrapper = [sys.executable, "-c", SYSTEMD_WRAPPER, str(reader)]
        with Server(app_dir, pass_fds=(reader,), wrapper=wrapper) as server:
            result = server.finish()
    finally:
        os.close(reader)
        os.close(writer)
    assert_one_error_line(result, "cannot serve on fd 3", "not a socket", "passed by systemd")
