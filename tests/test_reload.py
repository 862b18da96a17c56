"""``corofw run --reload``: the worker is replaced when a source file of
the app changes, and waits for a fix when the app fails to import."""

from __future__ import annotations

import os
import select
import signal
import sys
import time

import httpx
import pytest
from live import children, free_port, kill_tree, run_cli, start_cli, wait_listening

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs Linux (/proc, fork)")

APP = """\
from corofw import Router

import helper

routes = Router()


@routes.get("/")
def index(request):
    return helper.MESSAGE
"""


def write(path, text: str) -> None:
    """Write ``text`` and move the mtime on by a second, so the change shows
    whatever the file system's timestamp granularity."""
    before = path.stat().st_mtime if path.exists() else time.time()
    path.write_text(text)
    os.utime(path, (before + 1, before + 1))


def answer(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.TransportError:
        return None


def wait_answer(url: str, expected: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = answer(url)
        if seen == expected:
            return
        time.sleep(0.05)
    raise AssertionError(f"still {seen!r}, not {expected!r}, after {timeout} s")


class StderrLog:
    """What a subprocess wrote to stderr so far, read without blocking."""

    def __init__(self, proc) -> None:
        self.fd = proc.stderr.fileno()
        self.text = ""

    def wait_for(self, fragment: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while fragment not in self.text:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {fragment!r} in:\n{self.text}")
            if select.select([self.fd], [], [], left)[0]:
                data = os.read(self.fd, 65536)
                if not data:
                    raise AssertionError(f"stderr closed before {fragment!r}:\n{self.text}")
                self.text += data.decode()


def test_reload_restarts_the_worker_when_a_source_file_changes(tmp_path):
    write(tmp_path / "helper.py", "MESSAGE = 'one'\n")
    write(tmp_path / "live_app.py", APP)
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    proc = start_cli("run", "live_app:routes", "--reload", "--port", str(port),
                     "--no-access-log", env={"PYTHONPATH": str(tmp_path)})
    try:
        wait_listening(port, proc)
        wait_answer(url, "one")
        first_worker = children(proc.pid)

        write(tmp_path / "helper.py", "MESSAGE = 'two'\n")  # a module the app imports
        wait_answer(url, "two")
        assert children(proc.pid) != first_worker  # a fresh process imported it

        log = StderrLog(proc)
        write(tmp_path / "live_app.py", APP + "def broken(:\n")  # the reloader survives
        log.wait_for("could not start (exit status 3); waiting for a change")
        assert "SyntaxError" in log.text  # told with the app's traceback
        assert f'File "{tmp_path / "live_app.py"}", line 11' in log.text
        assert not children(proc.pid)
        assert proc.poll() is None

        write(tmp_path / "live_app.py", APP.replace("helper.MESSAGE", "'three'"))
        wait_answer(url, "three")  # the fix is picked up

        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        err = log.text + err
        assert proc.returncode == 0
        assert "changed: restarting" in err
        assert "Traceback" not in err
    finally:
        kill_tree(proc)


def test_reload_serves_one_worker():
    result = run_cli("run", "apps.hello:routes", "--reload", "--workers", "2")
    assert result.returncode == 2
    assert "--reload serves with one worker" in result.stderr
