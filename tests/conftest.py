"""Shared fixtures: leak checks, a subprocess runner and TLS certificates."""

from __future__ import annotations

import gc
import os
import ssl
import subprocess
import sys
import textwrap
import threading
import time

import pytest

PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytest_plugins = ["pg_server", "redis_server"]


def open_fds() -> set[int]:
    """The fds open in this process right now (Linux: /proc/self/fd)."""
    gc.collect()
    return {int(name) for name in os.listdir("/proc/self/fd")}


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
    assert not leaked_fds, f"fds left open: {sorted(leaked_fds)}"


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
