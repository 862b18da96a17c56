"""``corofw run`` as a subprocess: options, environment variables, error
messages, signals and graceful shutdown."""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import sys
import time

import httpx
import pytest
from live import (
    PROJECT_ROOT,
    RawClient,
    free_port,
    get,
    kill_tree,
    run_cli,
    start_cli,
    wait_listening,
)

from corofw.cli import main, server_config
from corofw.http.config import ServerConfig
from corofw.runner import run_app

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="subprocess tests need Linux")


class Served:
    """A ``corofw run`` subprocess on a free port."""

    def __init__(self, *args: str, env: dict[str, str] | None = None,
                 app: str = "apps.hello:routes") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = start_cli("run", app, "--host", "127.0.0.1", "--port", str(self.port),
                              *args, env=env)

    def __enter__(self) -> Served:
        try:
            wait_listening(self.port, self.proc)
        except BaseException:
            kill_tree(self.proc)
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        kill_tree(self.proc)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[int, str]:
        """Send ``signum``; return the exit status and stderr."""
        self.proc.send_signal(signum)
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err


def assert_one_error_line(result, *fragments: str) -> None:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    for fragment in fragments:
        assert fragment in lines[0]


# -- help and options ------------------------------------------------------------------

def test_help():
    result = run_cli("run", "--help")
    assert result.returncode == 0
    for text in ("MODULE:ATTR", "--host", "--port", "--workers", "--no-access-log",
                 "--graceful-timeout", "COROFW_PORT", "COROFW_HOST"):
        assert text in result.stdout
    top = run_cli("--help")
    assert top.returncode == 0
    assert "run" in top.stdout


def test_option_defaults_are_the_library_defaults():
    options = main.commands["run"].make_context("run", ["apps.hello:routes"]).params
    settings = inspect.signature(server_config).parameters
    assert server_config(**{name: options[name] for name in settings}) == ServerConfig()
    for name in ("host", "port", "backlog"):
        assert options[name] == inspect.signature(run_app).parameters[name].default


def test_version():
    result = run_cli("--version")
    assert result.returncode == 0
    assert "0.1.0" in result.stdout


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "corofw")
    if not os.path.exists(script):
        pytest.skip("no corofw script next to the interpreter")
    import subprocess

    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=20,
                            cwd=PROJECT_ROOT)
    assert result.returncode == 0
    assert "run" in result.stdout


def test_run_serves_and_sigint_stops_cleanly():
    with Served() as served:
        with httpx.Client() as client:
            r = client.get(served.url + "/")
            assert r.status_code == 200
            assert r.text == "Hello, World!"
            assert client.post(served.url + "/echo", content=b"abc").content == b"abc"
        time.sleep(0.2)  # the loop now sleeps in epoll_wait
        started = time.monotonic()
        status, err = served.stop(signal.SIGINT)
        assert status == 0
        assert time.monotonic() - started < 5.0
        assert "Traceback" not in err
        assert "KeyboardInterrupt" not in err
        assert f"serving on http://127.0.0.1:{served.port}" in err
        assert '"GET / HTTP/1.1" 200 13' in err  # the access log is on by default


def test_no_access_log():
    with Served("--no-access-log") as served:
        assert httpx.get(served.url + "/").status_code == 200
        status, err = served.stop()
        assert status == 0
        assert "serving on" in err
        assert "GET /" not in err


def test_json_access_log_with_the_request_id_from_a_chosen_header():
    with Served("--access-log-format", "json", "--request-id-header", "x-trace") as served:
        response = httpx.get(served.url + "/", headers={"x-trace": "abc-123"})
        assert response.headers["x-trace"] == "abc-123"
        status, err = served.stop()
    assert status == 0
    lines = [json.loads(line[line.index("{"):]) for line in err.splitlines() if '"status"' in line]
    assert [(line["status"], line["request_id"]) for line in lines] == [(200, "abc-123")]


def test_no_request_id_header():
    with Served("--request-id-header", "") as served:
        response = httpx.get(served.url + "/", headers={"x-request-id": "abc"})
        assert "x-request-id" not in response.headers
        assert served.stop()[0] == 0


def test_a_bad_request_id_header_is_refused_naming_the_option():
    result = run_cli("run", "apps.hello:routes", "--request-id-header", "two words")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "'--request-id-header'" in errors[0], result.stderr


def test_environment_variables():
    port = free_port()
    env = {"COROFW_HOST": "127.0.0.1", "COROFW_PORT": str(port), "COROFW_ACCESS_LOG": "false",
           "COROFW_LOG_LEVEL": "warning"}
    proc = start_cli("run", "apps.hello:routes", env=env)
    try:
        wait_listening(port, proc)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, World!"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0
        assert "serving on" not in err  # log level warning
        assert "GET /" not in err
    finally:
        kill_tree(proc)


def test_option_overrides_environment():
    port = free_port()
    env = {"COROFW_PORT": "1", "COROFW_KEEP_ALIVE_TIMEOUT": "0.3"}
    proc = start_cli("run", "apps.hello:routes", "--port", str(port), env=env)
    try:
        wait_listening(port, proc)
        with RawClient(port) as raw:  # the keep-alive timeout comes from the environment
            assert raw.request("GET", "/").status == 200
            started = time.monotonic()
            assert raw.is_closed(timeout=5)
            assert time.monotonic() - started < 3.0
    finally:
        kill_tree(proc)


def test_invalid_environment_value_is_a_clear_error():
    result = run_cli("run", "apps.hello:routes", env={"COROFW_PORT": "eighty"})
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "eighty" in result.stderr


@pytest.mark.parametrize(("args", "env", "option"), [
    (["--keep-alive-timeout", "nan"], {}, "--keep-alive-timeout"),
    (["--header-timeout", "inf"], {}, "--header-timeout"),
    (["--body-timeout", "-1"], {}, "--body-timeout"),
    (["--send-timeout", "0"], {}, "--send-timeout"),
    (["--graceful-timeout", "nan"], {}, "--graceful-timeout"),
    (["--watchdog", "NaN"], {}, "--watchdog"),
    ([], {"COROFW_KEEP_ALIVE_TIMEOUT": "nan"}, "--keep-alive-timeout"),
    ([], {"COROFW_BODY_TIMEOUT": "-inf"}, "--body-timeout"),
    ([], {"COROFW_GC_THRESHOLD": "lots"}, "--gc-threshold"),
    (["--workers", "2"], {"COROFW_GC_THRESHOLD": "1e5"}, "--gc-threshold"),
    (["--max-body-size", "-5"], {}, "--max-body-size"),
])
def test_invalid_durations_and_sizes_are_refused_at_start(args, env, option):
    """Before, NaN passed and the server crashed at its first connection; a
    bad GC threshold crashed every worker, restarted forever."""
    result = run_cli("run", "apps.hello:routes", "--port", "0", *args, env=env, timeout=10)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and f"'{option}'" in errors[0], result.stderr


# -- errors: one clear line, no traceback ------------------------------------------------

@pytest.mark.parametrize(("spec", "fragments"), [
    ("no_such_module:routes", ["no_such_module", "no such module"]),
    ("apps.no_such_module:routes", ["apps.no_such_module", "no such module"]),
    ("apps.hello:no_such_attr", ["no_such_attr"]),
    ("apps.hello:Response", ["apps.hello:Response", "not a corofw Router"]),
    ("tests.pid_app:not_a_router", ["not_a_router", "not a corofw Router"]),
    ("apps.hello", ["MODULE:ATTR"]),
    ("apps.hello:", ["MODULE:ATTR"]),
    (":routes", ["MODULE:ATTR"]),
])
def test_bad_app_spec(spec, fragments):
    assert_one_error_line(run_cli("run", spec, "--port", "0"), *fragments)


def assert_app_traceback(result, *lines: str) -> None:
    """An import failure of the app's own code: its traceback from the app's
    first frame on (no frames of corofw or importlib), exit status 1."""
    assert result.returncode == 1
    err = result.stderr
    assert err.startswith("Error: importing "), err
    for line in lines:
        assert line in err, err
    assert "importlib" not in err and "corofw" not in err


def test_module_failing_on_import(tmp_path):
    (tmp_path / "broken_app.py").write_text(
        "import json\n\ndef setup():\n    raise RuntimeError('no way')\n\nsetup()\n")
    result = run_cli("run", "broken_app:routes", "--port", "0",
                     env={"PYTHONPATH": str(tmp_path)})
    path = tmp_path / "broken_app.py"
    assert_app_traceback(result, "Error: importing 'broken_app' failed:\n"
                         "Traceback (most recent call last):\n",
                         f'File "{path}", line 6, in <module>',
                         f'File "{path}", line 4, in setup',
                         "    raise RuntimeError('no way')\n",
                         "RuntimeError: no way\n")


def test_module_with_missing_dependency(tmp_path):
    """A ModuleNotFoundError from inside the app is the app's failure, not
    "no such module": the module exists, the traceback says where it failed."""
    (tmp_path / "needy_app.py").write_text("import json\nimport no_such_dependency\n")
    result = run_cli("run", "needy_app:routes", "--port", "0",
                     env={"PYTHONPATH": str(tmp_path)})
    assert_app_traceback(result, f'File "{tmp_path / "needy_app.py"}", line 2, in <module>',
                         "ModuleNotFoundError: No module named 'no_such_dependency'")
    assert "no such module" not in result.stderr


def test_module_importing_a_missing_sibling(tmp_path):
    """The missing module is in the app's own package, but it is not the
    module asked for: the app's traceback, not "no such module"."""
    package = tmp_path / "selfish"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "app.py").write_text("import selfish.gone\n")
    result = run_cli("run", "selfish.app:routes", "--port", "0",
                     env={"PYTHONPATH": str(tmp_path)})
    assert_app_traceback(result, "line 1, in <module>", "No module named 'selfish.gone'")


def test_module_with_syntax_error(tmp_path):
    (tmp_path / "typo_app.py").write_text("x = 1\ndef f(:\n    pass\n")
    result = run_cli("run", "typo_app:routes", "--port", "0",
                     env={"PYTHONPATH": str(tmp_path)})
    assert_app_traceback(result, f'File "{tmp_path / "typo_app.py"}", line 2',
                         "SyntaxError: ")


def test_port_in_use():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("run", "apps.hello:routes", "--port", str(port))
    assert_one_error_line(result, f"127.0.0.1:{port}", "address already in use")


def test_unknown_host():
    result = run_cli("run", "apps.hello:routes", "--host", "no-such-host.invalid", "--port", "0")
    assert_one_error_line(result, "no-such-host.invalid")


def test_python_dash_m_corofw_and_port_zero():
    """``--port 0`` picks a free port; the log line tells which."""
    proc = start_cli("run", "apps.hello:routes", "--port", "0")
    try:
        port = None
        deadline = time.monotonic() + 15
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            if "serving on http://127.0.0.1:" in line:
                port = int(line.split("http://127.0.0.1:")[1].split()[0])
        assert port, "no 'serving on' line"
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "Hello, World!"
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
        assert proc.returncode == 0
    finally:
        kill_tree(proc)


# -- graceful shutdown -------------------------------------------------------------------

def test_sigterm_lets_request_in_flight_finish():
    with Served("--no-access-log") as served:
        idle = RawClient(served.port)
        in_flight = RawClient(served.port)
        try:
            assert idle.request("GET", "/").status == 200
            in_flight.send(get("/slow"))
            time.sleep(0.15)  # the request is in the handler now
            served.proc.send_signal(signal.SIGTERM)
            assert idle.is_closed()  # idle connections are closed at once...
            with pytest.raises(OSError):  # ...and nobody new gets in
                socket.create_connection(("127.0.0.1", served.port), timeout=2).close()
            response = in_flight.response()  # ...but the request in flight finishes
            assert response.status == 200
            assert response.body == b"slow\n"
            assert response.headers["connection"] == "close"
            assert in_flight.is_closed()
            _, err = served.proc.communicate(timeout=15)
            assert served.proc.returncode == 0
            assert "Traceback" not in err
        finally:
            idle.close()
            in_flight.close()


def test_grace_period_shorter_than_request():
    with Served("--graceful-timeout", "0.3", app="tests.pid_app:routes") as served, \
            RawClient(served.port) as in_flight:
        in_flight.send(get("/sleep/30"))
        time.sleep(0.15)
        started = time.monotonic()
        status, err = served.stop(signal.SIGTERM)
        assert status == 0
        assert time.monotonic() - started < 3.0
        assert in_flight.read_until_close() == b""  # cancelled, never answered
        assert "grace period over" in err
        assert "Traceback" not in err


def test_second_signal_during_graceful_shutdown():
    with Served("--graceful-timeout", "10", app="tests.pid_app:routes") as served, \
            RawClient(served.port) as in_flight:
        in_flight.send(get("/sleep/30"))
        time.sleep(0.15)
        started = time.monotonic()
        served.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        served.proc.send_signal(signal.SIGINT)
        _, err = served.proc.communicate(timeout=15)
        assert time.monotonic() - started < 5.0
        assert served.proc.returncode == 0
        assert "received SIGINT again" in err
        assert in_flight.read_until_close() == b""


def test_gc_threshold_setting_is_checked_before_anything_starts(monkeypatch):
    from corofw.runner import DEFAULT_GC_THRESHOLD, gc_threshold_setting

    monkeypatch.delenv("COROFW_GC_THRESHOLD", raising=False)
    assert gc_threshold_setting() == DEFAULT_GC_THRESHOLD
    assert gc_threshold_setting(0) == 0
    monkeypatch.setenv("COROFW_GC_THRESHOLD", " 1000 ")
    assert gc_threshold_setting() == 1000
    assert gc_threshold_setting(7) == 7  # an explicit value wins
    for bad in ("lots", "-1", "1e5", "١٠٠"):
        monkeypatch.setenv("COROFW_GC_THRESHOLD", bad)
        with pytest.raises(ValueError, match="COROFW_GC_THRESHOLD must be a whole number"):
            gc_threshold_setting()
