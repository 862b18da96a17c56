"""Shared fixtures: leak checks, a subprocess runner, TLS certificates, and the
app and settings the server tests serve."""

from __future__ import annotations

import gc
import logging
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from corofw import Event, Response, Router, StreamingResponse, run, serve, sleep, spawn
from corofw.http.config import ServerConfig
from corofw.net import listen

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytest_plugins = ["pg_server", "redis_server"]


def open_fds() -> set[int]:
    """The fds open in this process right now (Linux: /proc/self/fd), less
    the one the listing itself used."""
    gc.collect()
    return {fd for fd in map(int, os.listdir("/proc/self/fd")) if _is_open(fd)}


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def describe_fds(fds: set[int]) -> list[str]:
    """Each fd with what it refers to, for a leak report."""
    described = []
    for fd in sorted(fds):
        try:
            described.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            described.append(f"{fd} (closed since)")
    return described


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves an fd open or a thread running."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd")
    threads = set(threading.enumerate())
    fds = open_fds()
    yield
    deadline = time.monotonic() + 2.0
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.01)
    leaked_threads = set(threading.enumerate()) - threads
    leaked_fds = open_fds() - fds
    while leaked_fds and time.monotonic() < deadline:
        time.sleep(0.02)  # a server thread may still be closing its side
        leaked_fds = open_fds() - fds
    assert not leaked_threads, f"threads left running: {leaked_threads}"
    assert not leaked_fds, f"fds left open: {describe_fds(leaked_fds)}"


@pytest.fixture
def run_python():
    """Run a small Python program in a fresh interpreter (with this project
    importable) and return the CompletedProcess; text mode, 20 s limit."""

    def run(source: str, *args: str, timeout: float = 20.0,
            **kwargs) -> subprocess.CompletedProcess:
        env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, PYTHONDEVMODE="1")
        return subprocess.run([sys.executable, "-c", textwrap.dedent(source), *args],
                              capture_output=True, text=True, timeout=timeout, env=env,
                              **kwargs)

    return run


@pytest.fixture
def spawn_python():
    """Start a small Python program (like ``run_python``) without waiting;
    the process is killed at the end of the test if it is still alive."""
    procs: list[subprocess.Popen] = []

    def start(source: str, *args: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, PYTHONDEVMODE="1")
        proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(source), *args],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


# -- what the server tests serve ---------------------------------------------------

#: Timeouts short enough for tests to wait out, long enough for a loaded machine.
FAST_SETTINGS = dict(keep_alive_timeout=2.0, header_timeout=2.0, body_timeout=2.0,
                     send_timeout=2.0, graceful_timeout=5.0, access_log=False)


def make_server_app() -> Router:
    """A fresh app with a route for each kind of handler and response the
    server tests need (plain and generator handlers, failures, streams)."""
    app = Router()
    released = Event()

    @app.get("/")
    def index(request):
        return "Hello, World!"

    @app.get("/client")
    def client(request):
        return str(request.client[1])

    @app.get("/slow")
    def slow(request):
        yield from sleep(0.3)
        return "slow"

    @app.get("/sleep/{seconds:float}")
    def nap(request, seconds):
        yield from sleep(seconds)
        return "done"

    @app.post("/echo")
    def echo(request):
        return Response(request.body, content_type="application/octet-stream")

    @app.get("/empty")
    def empty(request):
        return "ignored", 204

    @app.get("/big/{size:int}")
    def big(request, size):
        return Response(bytes(range(256)) * (size // 256))

    @app.get("/boom")
    def boom(request):
        raise RuntimeError("the handler exploded")

    @app.get("/gen-boom")
    def gen_boom(request):
        yield from sleep(0.01)
        raise KeyError("deep")

    @app.get("/none")
    def returns_none(request):
        pass

    @app.get("/number")
    def returns_number(request):
        return 42

    @app.get("/bad-header")
    def bad_header(request):
        return Response("x", headers={"x-evil": "a\r\nset-cookie: pwned=1"})

    @app.get("/stream")
    def stream(request):
        def body():
            for i in range(3):
                yield f"part{i};"
                yield from sleep(0.05)
        return StreamingResponse(body(), content_type="text/plain")

    @app.get("/quick-stream")
    def quick_stream(request):
        def body():
            for _ in range(5):
                yield b"x" * 100
        return StreamingResponse(body())

    @app.get("/gated-stream")
    def gated_stream(request):
        def body():
            yield b"first;"
            yield from released.wait()
            yield b"second"
        return StreamingResponse(body())

    @app.get("/release")
    def release(request):
        released.set()
        return "released"

    @app.get("/broken-stream")
    def broken_stream(request):
        def body():
            yield b"partial"
            raise ValueError("stream broke")
        return StreamingResponse(body())

    @app.get("/endless-stream")
    def endless_stream(request):
        def body():
            while True:
                yield b"x" * 4096
                yield from sleep(0.001)
        return StreamingResponse(body())

    return app


@pytest.fixture
def server_app() -> Router:
    """:func:`make_server_app`, fresh for each test."""
    return make_server_app()


@pytest.fixture(scope="session")
def new_server_app():
    """:func:`make_server_app` itself, for fixtures that outlive one test."""
    return make_server_app


@pytest.fixture
def fast_config():
    """``fast_config(**overrides)``: a ServerConfig with :data:`FAST_SETTINGS`."""
    def config(**overrides) -> ServerConfig:
        return ServerConfig(**{**FAST_SETTINGS, **overrides})
    return config


@pytest.fixture
def beside_server():
    """``beside_server(app, client, config=None)``: serve ``app`` on a free
    loopback port and run the coroutine ``client(port)`` beside it in one
    kernel (on the real clock); once ``client`` returns, stop the server
    gracefully and return what ``client`` returned."""
    def run_beside(app, client, config=None):
        def main():
            listener = listen("127.0.0.1", 0)
            stop_r, stop_w = socket.socketpair()
            try:
                server = yield from spawn(serve(app, listener, config or ServerConfig(
                    access_log=False, graceful_timeout=2.0), stop=stop_r), "server")
                try:
                    return (yield from client(listener.getsockname()[1]))
                finally:
                    stop_w.send(b"x")
                    yield from server.join()
            finally:
                listener.close()
                stop_r.close()
                stop_w.close()
        return run(main())
    return run_beside


@pytest.fixture(scope="session")
def tls_ca():
    """A throwaway certificate authority (trustme)."""
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="session")
def tls_server_context(tls_ca):
    """Server context with a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def tls_client_context(tls_ca):
    """Client context trusting ``tls_ca``, verifying host names."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    tls_ca.configure_trust(context)
    return context


# Hypothesis: the default profile keeps the property tests fast; the "fuzz"
# profile (HYPOTHESIS_PROFILE=fuzz, or pytest --hypothesis-profile=fuzz) runs
# a hundred times more examples with fresh randomness each run.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    _hypothesis_settings.register_profile(
        "fuzz", max_examples=10_000, deadline=None, derandomize=False, print_blob=True)
    if os.environ.get("HYPOTHESIS_PROFILE"):
        _hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def access_lines():
    """The access log's lines, as the ``corofw.access`` logger gets them."""
    handler = _Lines()
    logger = logging.getLogger("corofw.access")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
