"""Server-sent events: the wire format, a stream read by an HTTP client,
keep-alive comments, Last-Event-ID, and a stream that stops and cleans up
when its client goes away."""

from __future__ import annotations

import logging
import time

import httpx
import pytest

from corofw import Router, ServerConfig, current_kernel, current_time, sleep
from corofw.http.sse import ServerSentEvent, event_stream, last_event_id
from corofw.net import open_connection
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

QUICK = ServerConfig(access_log=False, graceful_timeout=2.0)


def parse(text: str) -> list[dict]:
    """Events as an EventSource reads them (comments kept, for the tests)."""
    events, fields = [], {}
    for line in text.split("\n"):
        if not line:
            if fields:
                events.append(fields)
            fields = {}
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data" and "data" in fields:
            fields["data"] += "\n" + value
        else:
            fields[name or "comment"] = value
    return events


# -- the format -----------------------------------------------------------------------

def test_an_event_with_every_field():
    event = ServerSentEvent("first\nsecond\r\nthird\rfourth", event="update", id="7",
                            retry=2500, comment="a note")
    assert event.encode() == (b": a note\nevent: update\nid: 7\nretry: 2500\n"
                              b"data: first\ndata: second\ndata: third\ndata: fourth\n\n")
    assert parse(event.encode().decode()) == [{
        "comment": "a note", "event": "update", "id": "7", "retry": "2500",
        "data": "first\nsecond\nthird\nfourth"}]


def test_data_keeps_its_spaces_and_empty_lines():
    encoded = ServerSentEvent(" indented\n\nafter a blank line").encode()
    assert encoded == b"data:  indented\ndata: \ndata: after a blank line\n\n"
    assert parse(encoded.decode())[0]["data"] == " indented\n\nafter a blank line"


@pytest.mark.parametrize("kwargs, message", [
    ({"event": "a\nb"}, "line break"),
    ({"id": "1\r2"}, "line break"),
    ({"id": "1\x002"}, "NUL"),
    ({"retry": -1}, "milliseconds"),
    ({"retry": 1.5}, "milliseconds"),
])
def test_fields_that_would_break_the_stream_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ServerSentEvent("x", **kwargs)


def test_event_stream_needs_a_generator_and_a_sane_keep_alive():
    with pytest.raises(TypeError, match="generator object"):
        event_stream(lambda: None)

    def events():
        yield "x"

    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="keep_alive"):
            event_stream(events(), keep_alive=bad)


# -- over the server -------------------------------------------------------------------

def ticking_app() -> Router:
    app = Router()

    @app.get("/ticks")
    def ticks(request):
        start = int(last_event_id(request) or 0)

        def events():
            yield ServerSentEvent(retry=1000)
            for n in range(start + 1, start + 4):
                yield ServerSentEvent(f"tick {n}", event="tick", id=str(n))
                yield from sleep(0.01)
            yield "plain text\non two lines"
            yield {"data": "from a dict", "event": "done"}

        return event_stream(events())

    @app.get("/quiet")
    def quiet(request):
        def events():
            yield "hello"
            yield from sleep(0.35)
            yield "bye"

        return event_stream(events(), keep_alive=0.1)

    return app


def test_a_stream_read_by_an_http_client():
    with serve_in_thread(ticking_app(), QUICK) as server, httpx.Client() as client:
        response = client.get(server.url + "/ticks")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["transfer-encoding"] == "chunked"
    assert parse(response.text) == [
        {"retry": "1000"},
        {"event": "tick", "id": "1", "data": "tick 1"},
        {"event": "tick", "id": "2", "data": "tick 2"},
        {"event": "tick", "id": "3", "data": "tick 3"},
        {"data": "plain text\non two lines"},
        {"event": "done", "data": "from a dict"},
    ]


def test_last_event_id_lets_a_reconnecting_client_resume():
    with serve_in_thread(ticking_app(), QUICK) as server, httpx.Client() as client:
        response = client.get(server.url + "/ticks", headers={"Last-Event-ID": "41"})
    assert [event.get("id") for event in parse(response.text)] == [None, "42", "43", "44",
                                                                   None, None]


def test_keep_alive_comments_while_nothing_happens():
    with serve_in_thread(ticking_app(), QUICK) as server, httpx.Client() as client:
        response = client.get(server.url + "/quiet")
    events = parse(response.text)
    assert events[0] == {"data": "hello"} and events[-1] == {"data": "bye"}
    assert 2 <= len(events[1:-1]) <= 4  # one every 0.1 s of the 0.35 s of silence
    assert all(event == {"comment": "keep-alive"} for event in events[1:-1])


def test_a_failing_event_source_cuts_the_stream_short(caplog):
    app = Router()

    @app.get("/broken")
    def broken(request):
        def events():
            yield "one"
            raise RuntimeError("the feed broke")
        return event_stream(events())

    with serve_in_thread(app, QUICK) as server, httpx.Client() as client, \
            pytest.raises(httpx.RemoteProtocolError):
        client.get(server.url + "/broken")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert errors and errors[0].exc_info[0] is RuntimeError


def test_a_stream_stops_and_runs_its_clean_up_when_the_client_goes_away(beside_server):
    seen = []
    app = Router()

    @app.get("/feed")
    def feed(request):
        def events():
            try:
                yield "first"
                yield from sleep(60)  # nothing to say for a long while
            finally:
                seen.append(("cleaned up", (yield from current_time())))
        return event_stream(events(), keep_alive=None)

    def client(port):
        sock = yield from open_connection("127.0.0.1", port)
        yield from sock.send_all(b"GET /feed HTTP/1.1\r\nHost: t\r\n\r\n")
        data = b""
        while b"data: first" not in data:
            data += yield from sock.recv(65536)
        left = yield from current_time()
        sock.close()
        while not seen and (yield from current_time()) < left + 2:
            yield from sleep(0.005)
        yield from sleep(0.01)
        names = {task.name for task in current_kernel().tasks}
        return left, names

    left, names = beside_server(app, client)
    assert seen and seen[0][1] - left < 0.5
    assert "event source" not in names and "client watcher" not in names


def test_a_graceful_shutdown_ends_an_open_stream_without_waiting_for_it():
    app = Router()
    ended = []

    @app.get("/feed")
    def feed(request):
        def events():
            try:
                yield "first"
                while True:
                    yield from sleep(0.05)
                    yield "more"
            finally:
                ended.append(True)

        return event_stream(events(), keep_alive=None)

    serving = serve_in_thread(app, ServerConfig(access_log=False, graceful_timeout=5))
    server = serving.__enter__()
    try:
        with httpx.Client() as client, client.stream("GET", server.url + "/feed") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "data: first"
            started = time.monotonic()
            serving.__exit__(None, None, None)
            stopped_in = time.monotonic() - started
            serving = None
    finally:
        if serving is not None:
            serving.__exit__(None, None, None)
    assert ended == [True]
    assert stopped_in < 3.0  # not the grace period (5 s)
