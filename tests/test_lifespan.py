"""The app's start-up and shutdown hooks, and background tasks: hooks run in
the kernel before the first request and after the last; a failing start-up
stops the server with one line; background tasks run after their responses
and a graceful shutdown waits for them, then cancels them."""

from __future__ import annotations

import logging
import textwrap
import time

import httpx
import pytest
from live import free_port, run_cli, start_cli, wait_listening

from corofw import Request, Router, ServerConfig, current_time, sleep
from corofw.http.lifespan import StartupError
from corofw.net import open_connection
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

GET = b"GET %s HTTP/1.1\r\nHost: t\r\n\r\n"
QUICK = ServerConfig(access_log=False, graceful_timeout=2.0)


def request(port, path: bytes) -> bytes:
    """Send one request on a new connection and return the whole response
    (the server closes after it: ``Connection: close``)."""
    sock = yield from open_connection("127.0.0.1", port)
    yield from sock.send_all(b"GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n" % path)
    data = b""
    while chunk := (yield from sock.recv(65536)):
        data += chunk
    sock.close()
    return data


# -- start-up and shutdown hooks -------------------------------------------------------

def test_hooks_run_in_the_kernel_around_every_request(beside_server):
    events = []
    app = Router()
    api = Router()
    app.mount("/api", api)

    @app.on_startup
    def open_pool():
        yield from sleep(0.01)  # in the kernel: hooks may wait
        events.append("open pool")

    @api.on_startup
    def open_client():
        events.append("open client")

    @app.on_startup
    def warm_cache():
        events.append("warm cache")

    @app.on_shutdown
    def close_pool():
        yield from sleep(0.01)
        events.append("close pool")

    @api.on_shutdown
    def close_client():
        events.append("close client")

    @app.get("/slow")
    def slow(request):
        events.append("request")
        yield from sleep(0.1)
        events.append("response")
        return "done"

    def client(port):
        return (yield from request(port, b"/slow"))

    assert beside_server(app, client).endswith(b"done")
    assert events == ["open pool", "warm cache", "open client", "request", "response",
                      "close client", "close pool"]


def test_a_failing_start_up_stops_the_server_with_one_line():
    events = []
    app = Router()

    @app.on_startup
    def connect():
        events.append("connect")

    @app.on_startup
    def load_settings():
        yield from sleep(0)
        raise ConnectionRefusedError(111, "Connection refused")

    @app.on_shutdown
    def disconnect():
        events.append("disconnect")

    with pytest.raises(StartupError) as info, serve_in_thread(app, QUICK):
        pass
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("start-up failed: ConnectionRefusedError: [Errno 111] "
                              "Connection refused (test_lifespan.py:")
    assert events == ["connect"]  # no shutdown hooks after a failed start-up


def test_a_failing_shutdown_hook_is_logged_and_the_others_run(caplog):
    events = []
    app = Router()

    @app.on_shutdown
    def first_registered():
        events.append("first")

    @app.on_shutdown
    def broken():
        raise RuntimeError("cannot close")

    with serve_in_thread(app, QUICK) as server:
        assert httpx.get(server.url + "/nowhere").status_code == 404
    assert events == ["first"]
    assert any("shutdown hook" in r.getMessage() and "broken" in r.getMessage()
               and r.exc_info for r in caplog.records)


def test_hooks_must_be_callables_of_the_right_kind():
    app = Router()
    with pytest.raises(TypeError, match="start-up hook"):
        app.on_startup("not a function")

    async def coroutine_hook():
        pass

    with pytest.raises(TypeError, match="async function"):
        app.on_shutdown(coroutine_hook)


STARTUP_APP = """
import os
from corofw import Router

routes = Router()

@routes.on_startup
def started():
    with open(os.environ["STARTED_FILE"], "a") as log:
        log.write(f"{os.getpid()}\\n")

@routes.on_startup
def fails():
    if os.environ.get("FAIL"):
        raise OSError("the database is not there")

@routes.get("/")
def index(request):
    return "ok"
"""


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failing_start_up_is_one_line_and_a_failed_exit(tmp_path, workers):
    (tmp_path / "hooked.py").write_text(textwrap.dedent(STARTUP_APP))
    env = {"PYTHONPATH": str(tmp_path), "STARTED_FILE": str(tmp_path / "started"),
           "FAIL": "1"}
    result = run_cli("run", "hooked:routes", "--port", str(free_port()), "--workers", workers,
                     env=env)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.stderr
    assert "start-up failed: OSError: the database is not there (hooked.py:" in errors[0]


def test_each_worker_runs_the_start_up_hooks(tmp_path):
    (tmp_path / "hooked.py").write_text(textwrap.dedent(STARTUP_APP))
    started = tmp_path / "started"
    port = free_port()
    proc = start_cli("run", "hooked:routes", "--port", str(port), "--workers", "2",
                     env={"PYTHONPATH": str(tmp_path), "STARTED_FILE": str(started)})
    try:
        wait_listening(port, proc)
        for _ in range(200):
            if started.exists() and len(started.read_text().split()) == 2:
                break
            time.sleep(0.05)
        assert len(set(started.read_text().split())) == 2
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0


# -- background tasks -------------------------------------------------------------------

def test_background_tasks_run_after_the_response(beside_server):
    events = []
    app = Router()

    def send_mail(to):
        events.append(f"mail to {to} begins")
        yield from sleep(0.05)
        events.append(f"mail to {to} sent")

    @app.get("/signup")
    def signup(request):
        request.background(send_mail("ann"))
        request.background(send_mail("bob"))
        events.append("handler returns")
        return "welcome"

    def client(port):
        response = yield from request(port, b"/signup")
        events.append("client has the response")
        return response

    assert beside_server(app, client).endswith(b"welcome")
    assert events.index("handler returns") < events.index("mail to ann begins")
    assert events.index("client has the response") < events.index("mail to ann sent")
    assert "mail to bob sent" in events  # the graceful stop waited for both


def test_background_tasks_of_a_failed_or_cancelled_handler_never_run(beside_server, caplog):
    events = []
    app = Router()

    def job(name):
        events.append(name)
        yield from sleep(0)

    @app.get("/fails")
    def fails(request):
        request.background(job("after a failure"))
        raise RuntimeError("handler failed")

    @app.get("/left")
    def left(request):
        request.background(job("after the client left"))
        yield from sleep(10)

    def client(port):
        assert (yield from request(port, b"/fails")).startswith(b"HTTP/1.1 500")
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(GET % b"/left")
        yield from sleep(0.05)
        sock.close()
        yield from sleep(0.05)

    beside_server(app, client)
    assert events == []


def test_a_failing_background_task_is_logged(beside_server, caplog):
    app = Router()

    def broken():
        yield from sleep(0)
        raise ValueError("no mail server")

    @app.get("/")
    def index(request):
        request.background(broken())
        return "ok"

    def client(port):
        return (yield from request(port, b"/"))

    assert beside_server(app, client).endswith(b"ok")
    failures = [r for r in caplog.records if "background broken" in r.getMessage()]
    assert failures and failures[0].exc_info[0] is ValueError


def test_shutdown_waits_for_background_tasks_then_cancels_them(beside_server, caplog):
    caplog.set_level(logging.INFO, logger="corofw.server")
    events = []
    app = Router()

    def quick():
        yield from sleep(0.1)
        events.append("quick finished")

    def endless():
        try:
            yield from sleep(60)
        finally:
            events.append(("endless stopped", (yield from current_time())))

    @app.on_shutdown
    def shut():
        events.append("shutdown hook")

    @app.get("/")
    def index(request):
        request.background(quick())
        request.background(endless())
        return "ok"

    def client(port):
        yield from request(port, b"/")
        return (yield from current_time())

    stop_asked = beside_server(app, client, ServerConfig(access_log=False, graceful_timeout=0.5))
    assert events[0] == "quick finished"
    assert events[1][0] == "endless stopped"
    assert 0.4 < events[1][1] - stop_asked < 2.0  # at the end of the grace period
    assert events[2] == "shutdown hook"  # after the last background task
    messages = [r.getMessage() for r in caplog.records]
    assert "waiting for 2 background task(s)" in messages
    assert "grace period over: cancelling 1 background task(s)" in messages


def test_background_needs_a_generator():
    app = Router()

    @app.get("/")
    def index(request):
        request.background(print)

    with pytest.raises(TypeError, match="generator object"):
        app.handle(Request("GET", "/"))
