"""The access log (text and JSON lines, batched writes, the logger's
configuration honoured, nothing lost at a stop or at exit) and request ids
(taken from a header or made, available to the handler, echoed)."""

from __future__ import annotations

import io
import json
import logging
import os
import re

import httpx
import pytest
from live import RawClient

from corofw import Response, Router
from corofw.http import accesslog
from corofw.http.accesslog import AccessLog
from corofw.http.config import ServerConfig
from corofw.http.messages import Request
from corofw.http.request_id import RequestIds, new_request_id, valid_request_id
from corofw.testing import serve_in_thread

QUICK = dict(graceful_timeout=2.0, keep_alive_timeout=2.0)
TEXT_LINE = re.compile(
    r'(?P<client>127\.0\.0\.1:\d+) \[(?P<time>\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) (?P<ms>\d+\.\d{3})ms (?P<id>\S+)'
    r'(?: \((?P<failure>.*)\))?')
JSON_KEYS = ["time", "client", "method", "target", "version", "status", "bytes",
             "duration_ms", "request_id", "error"]


def make_app() -> Router:
    app = Router()

    @app.get("/")
    def index(request):
        return "Hello, World!"

    @app.get("/id")
    def show_id(request):
        return request.id

    @app.get("/{name}")
    def named(request, name):
        return name

    return app


class CountingStream(io.StringIO):
    """A text stream that counts its writes."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def access_logger():
    """The ``corofw.access`` logger, its configuration restored afterwards."""
    logger = logging.getLogger("corofw.access")
    saved = (logger.level, list(logger.handlers), logger.propagate, list(logger.filters),
             logger.disabled)
    yield logger
    logger.setLevel(saved[0])
    logger.handlers[:] = saved[1]
    logger.propagate = saved[2]
    logger.filters[:] = saved[3]
    logger.disabled = saved[4]


def own_handler(logger: logging.Logger, fmt: str = "%(levelname)s|%(name)s|%(message)s"
                ) -> CountingStream:
    """Send ``logger``'s records to a stream of its own, and no further."""
    stream = CountingStream()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(fmt))
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return stream


def access_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "corofw.access"]


# -- the text line, the request id and its echo -------------------------------------

def test_a_text_line_has_client_time_request_status_bytes_duration_and_id(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(make_app(), ServerConfig(**QUICK)) as server, \
            httpx.Client() as client:
        response = client.get(server.url + "/")
        shown = client.get(server.url + "/id")
    lines = access_lines(caplog)
    assert len(lines) == 2, lines
    first = TEXT_LINE.fullmatch(lines[0])
    assert first, lines[0]
    assert first["request"] == "GET / HTTP/1.1"
    assert (first["status"], first["bytes"]) == ("200", "13")
    assert float(first["ms"]) < 5000
    assert first["failure"] is None
    # the id in the line is the one the response carries, and the handler saw
    assert response.headers["x-request-id"] == first["id"]
    second = TEXT_LINE.fullmatch(lines[1])
    assert second and shown.text == second["id"] == shown.headers["x-request-id"]
    assert first["id"] != second["id"]


def test_an_incoming_request_id_is_taken_logged_and_echoed(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(make_app(), ServerConfig(**QUICK)) as server, \
            httpx.Client() as client:
        taken = client.get(server.url + "/id", headers={"X-Request-ID": "edge-42.abc~!"})
    assert taken.text == taken.headers["x-request-id"] == "edge-42.abc~!"
    assert access_lines(caplog)[0].endswith(" edge-42.abc~!")


@pytest.mark.parametrize("value", [b"a" * 129, b"two words", b"caf\xe9", b"tab\there"])
def test_an_invalid_incoming_id_is_replaced_by_a_made_one(no_leaks, value):
    with serve_in_thread(make_app(), ServerConfig(**QUICK, access_log=False)) as server, \
            RawClient(server.port) as raw:
        raw.send(b"GET /id HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + value + b"\r\n\r\n")
        response = raw.response()
    assert response.status == 200
    echoed = dict(response.headers)["x-request-id"]
    assert echoed == response.body.decode()  # the handler's request.id
    assert echoed.encode("latin-1") != value and valid_request_id(echoed.encode())


def test_request_ids_are_made_unique_and_differ_after_a_fork():
    made = {new_request_id() for _ in range(1000)}
    assert len(made) == 1000
    assert all(valid_request_id(ident.encode()) for ident in made)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker process: its ids share nothing with its parent's
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 200).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_request_id()
    assert child.rsplit("-", 1)[0] != parent.rsplit("-", 1)[0]


def test_a_forked_child_does_not_write_its_parent_s_pending_lines(access_logger):
    stream = own_handler(access_logger)
    log = AccessLog()
    log.write("127.0.0.1:1", Request("GET", "/parent"), 200, 0, 0.0)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if not log.lines and not accesslog._pending else 1)
    assert os.waitpid(pid, 0)[1] == 0
    log.flush()
    assert stream.getvalue().count("/parent") == 1


def test_with_the_access_log_off_an_id_is_made_only_when_read(no_leaks):
    config = ServerConfig(**QUICK, access_log=False)
    with serve_in_thread(make_app(), config) as server, httpx.Client() as client:
        plain = client.get(server.url + "/")
        shown = client.get(server.url + "/id")
        brought = client.get(server.url + "/", headers={"x-request-id": "from-proxy"})
    assert "x-request-id" not in plain.headers
    assert shown.headers["x-request-id"] == shown.text
    assert "x-request-id" not in brought.headers  # nobody used it


def test_a_configured_header_and_none(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(make_app(), ServerConfig(**QUICK, request_id_header="X-Trace")) \
            as server, httpx.Client() as client:
        traced = client.get(server.url + "/id", headers={"x-trace": "t-1",
                                                         "x-request-id": "ignored"})
    assert traced.text == traced.headers["x-trace"] == "t-1"
    assert "x-request-id" not in traced.headers
    with serve_in_thread(make_app(), ServerConfig(**QUICK, request_id_header=None)) \
            as server, httpx.Client() as client:
        untaken = client.get(server.url + "/id", headers={"x-request-id": "from-client"})
    assert untaken.text != "from-client" and "x-request-id" not in untaken.headers
    assert access_lines(caplog)[-1].endswith(" " + untaken.text)


def test_an_id_header_the_app_sets_itself_is_not_doubled(no_leaks):
    app = Router()

    @app.get("/")
    def index(request):
        return Response("mine", headers={"X-Request-ID": "app-chosen"})

    with serve_in_thread(app, ServerConfig(**QUICK)) as server:
        response = httpx.get(server.url + "/")
    assert response.headers.get_list("x-request-id") == ["app-chosen"]


def test_an_invalid_response_s_500_carries_the_id(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    app = Router()

    @app.get("/")
    def index(request):
        return Response("x", headers={"x-bad": "a\r\nb"})

    with serve_in_thread(app, ServerConfig(**QUICK)) as server:
        response = httpx.get(server.url + "/", headers={"x-request-id": "r-500"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "r-500"
    assert access_lines(caplog)[0].endswith(" r-500 (invalid response)")


def test_request_id_outside_a_server():
    request = Request("GET", "/", headers={"X-Request-ID": "given"})
    assert request.id == "given"
    request = Request("GET", "/")
    made = request.id
    assert valid_request_id(made.encode()) and request.id == made  # made once, then kept
    assert Request("GET", "/").id != made


@pytest.mark.parametrize("settings, message", [
    (dict(access_log_format="xml"), "access_log_format must be one of text, json"),
    (dict(request_id_header="bad header"), "request_id_header must be a header name"),
    (dict(request_id_header=""), "request_id_header must be a header name"),
])
def test_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        ServerConfig(**settings)


# -- the JSON lines format ---------------------------------------------------------

def test_json_lines_have_stable_keys_and_escape_what_they_must(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(make_app(), ServerConfig(**QUICK, access_log_format="json")) \
            as server:
        with RawClient(server.port) as raw:
            raw.send(b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\nX-Request-Id: q"uote\r\n\r\n')
            raw.read_head()
        response = httpx.get(server.url + "/")
    records = [json.loads(line) for line in access_lines(caplog)]
    assert [list(record) for record in records] == [JSON_KEYS, JSON_KEYS]
    odd, plain = records
    assert odd["target"] == '/a"b\\c' and odd["request_id"] == 'q"uote'
    assert plain["method"] == "GET" and plain["version"] == "HTTP/1.1"
    assert (plain["status"], plain["bytes"], plain["error"]) == (200, 13, None)
    assert plain["request_id"] == response.headers["x-request-id"]
    assert plain["client"].startswith("127.0.0.1:")
    assert isinstance(plain["duration_ms"], float) and plain["duration_ms"] >= 0
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", plain["time"])


def test_text_lines_escape_quotes_in_the_target(no_leaks, caplog):
    caplog.set_level(logging.INFO, logger="corofw.access")
    with serve_in_thread(make_app(), ServerConfig(**QUICK)) as server, \
            RawClient(server.port) as raw:
        raw.send(b'GET /a"b\\c HTTP/1.1\r\nHost: x\r\n\r\n')
        raw.read_head()
    line = TEXT_LINE.fullmatch(access_lines(caplog)[0])
    assert line and line["request"] == "GET /a\\x22b\\x5Cc HTTP/1.1"


# -- where lines go ------------------------------------------------------------------

def test_a_logger_of_its_own_gets_framed_lines_in_one_write(access_logger, caplog):
    stream = own_handler(access_logger)
    log = AccessLog()
    for n in range(100):  # outside a kernel: written at FLUSH_LINES or flush()
        log.write(f"127.0.0.1:{4000 + n}", Request("GET", f"/{n}"), 200, n, 0.0)
    assert stream.writes == 0
    log.flush()
    assert stream.writes == 1
    written = stream.getvalue().splitlines()
    assert len(written) == 100
    assert all(line.startswith("INFO|corofw.access|127.0.0.1:") for line in written)
    assert '"GET /99 HTTP/1.1" 200 99 ' in written[99]
    assert not access_lines(caplog)  # propagate=False: the root's handlers got nothing


def test_a_full_buffer_is_written_at_once(access_logger):
    stream = own_handler(access_logger)
    log = AccessLog()
    for _ in range(accesslog.FLUSH_LINES):
        log.write("127.0.0.1:4000", Request("GET", "/"), 200, 0, 0.0)
    assert stream.writes == 1 and not log.lines


def test_the_logger_level_handler_level_and_filters_are_honoured(access_logger, caplog):
    caplog.set_level(logging.INFO)
    log = AccessLog()
    access_logger.setLevel(logging.WARNING)
    log.write("127.0.0.1:1", Request("GET", "/quiet"), 200, 0, 0.0)
    assert not log.lines  # no line is even made
    stream = own_handler(access_logger)
    access_logger.handlers[0].setLevel(logging.WARNING)
    log.write("127.0.0.1:1", Request("GET", "/skipped"), 200, 0, 0.0)
    log.flush()
    assert stream.getvalue() == ""
    access_logger.handlers[0].setLevel(logging.NOTSET)
    access_logger.handlers[0].addFilter(lambda record: "/keep" in record.getMessage())
    for path in ("/keep", "/drop"):
        log.write("127.0.0.1:1", Request("GET", path), 200, 0, 0.0)
    log.flush()
    assert "/keep" in stream.getvalue() and "/drop" not in stream.getvalue()
    access_logger.filters.append(lambda record: "/drop" in record.getMessage())
    access_logger.handlers[0].filters.clear()
    for path in ("/keep", "/drop"):
        log.write("127.0.0.1:1", Request("GET", path), 200, 0, 0.0)
    log.flush()
    assert stream.getvalue().count("/keep") == 1 and "/drop" in stream.getvalue()


def test_other_handlers_get_one_record_per_line(access_logger):
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record)

    access_logger.handlers[:] = [Collect()]
    access_logger.propagate = False
    access_logger.setLevel(logging.INFO)
    log = AccessLog()
    for path in ("/a", "/b%s"):
        log.write("127.0.0.1:1", Request("GET", path), 200, 0, 0.0)
    log.flush()
    assert [r.name for r in records] == ["corofw.access"] * 2
    assert [r.levelno for r in records] == [logging.INFO] * 2
    assert '"GET /b%s HTTP/1.1"' in records[1].getMessage()


# -- nothing lost --------------------------------------------------------------------

def test_lines_are_written_when_the_server_stops(no_leaks, access_logger, monkeypatch):
    monkeypatch.setattr(accesslog, "FLUSH_DELAY", 3600.0)  # only a stop writes them
    stream = own_handler(access_logger)
    with serve_in_thread(make_app(), ServerConfig(**QUICK)) as server, \
            httpx.Client() as client:
        for n in range(3):
            client.get(f"{server.url}/{n}")
        assert stream.getvalue() == ""
    assert len(stream.getvalue().splitlines()) == 3


def test_lines_are_written_at_exit(run_python):
    result = run_python("""
        import logging
        from corofw.http.accesslog import AccessLog
        from corofw.http.messages import Request
        logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
        log = AccessLog("json")
        log.write("10.0.0.1:5", Request("GET", "/last"), 204, 0, 0.0)
    """)
    assert result.returncode == 0, result.stderr
    name, line = result.stderr.strip().split(" ", 1)
    assert name == "corofw.access" and json.loads(line)["target"] == "/last"


def test_a_websocket_session_line_has_no_byte_count(access_logger):
    stream = own_handler(access_logger, "%(message)s")
    for fmt in ("text", "json"):
        log = AccessLog(fmt)
        log.write("127.0.0.1:1", Request("GET", "/ws"), 101, "-", 0.0)
        log.flush()
    text, line = stream.getvalue().splitlines()
    assert '"GET /ws HTTP/1.1" 101 - ' in text
    assert json.loads(line)["bytes"] is None


def test_a_made_id_is_echoed_as_request_id_gives_it():
    request = Request("GET", "/")
    echoed = RequestIds("X-%id", always=True).echo(request)
    assert echoed == f"x-%id: {request.id}\r\n".encode()
    assert RequestIds("x-%id").echo(request) == echoed  # once made, always echoed
