"""The fan-out demo's answers when backends misbehave: bodiless replies
(204, 304) are results, a backend that drips its reply is cut off at the
fan-out's deadline and named as late, failures are listed with their
reason, and the status says whether the result is whole (200), partial
(200 with ``complete: false``) or missing (502/504). Everything runs in one
kernel on a virtual clock: the deadlines cost no real time."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import fanout  # noqa: E402
from corofw import (  # noqa: E402
    Client,
    Response,
    Router,
    ServerConfig,
    StreamingResponse,
    Timeout,
    VirtualClock,
    current_time,
    run,
    serve,
    sleep,
    spawn,
)
from corofw.net import listen  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_leaks")

QUICK = ServerConfig(access_log=False, graceful_timeout=0.5)


def backend_app(behaviour):
    """A backend whose ``/api/{i}`` does ``behaviour.get(i, "ok")``."""
    app = Router()

    @app.get("/api/{i:int}")
    def api(request, i):
        kind = behaviour.get(i, "ok")
        if kind == "ok":
            return {"id": i}
        if kind in ("204", "304"):
            return Response(b"", int(kind), content_type=None)
        if kind == "empty":
            return Response(b"", 200, content_type="application/json")
        if kind == "html":
            return Response(b"<p>hi</p>", 200, content_type="text/html")
        if kind == "500":
            return Response(b"oops", 500)
        if kind == "drip":
            def body():
                for byte in b'{"id": %d}' % i:
                    yield bytes([byte])
                    yield from sleep(1)
            return StreamingResponse(body(), content_type="application/json")
        raise AssertionError(kind)

    return app


def fan_out(behaviour, path="/fanout", deadline=None, timeout=fanout.DEFAULT_TIMEOUT,
            backend_url=None):
    """GET ``path`` from the fan-out app in front of ``backend_app(behaviour)``;
    returns (status, JSON, virtual seconds taken, real seconds taken)."""

    def main():
        stops = [socket.socketpair() for _ in range(2)]
        backend_listener = listen("127.0.0.1", 0)
        fanout_listener = listen("127.0.0.1", 0)
        url = backend_url or f"http://127.0.0.1:{backend_listener.getsockname()[1]}"
        client = fanout.backend_client(url, timeout=timeout)
        caller = Client(f"http://127.0.0.1:{fanout_listener.getsockname()[1]}", timeout=120)
        servers = [
            (yield from spawn(serve(backend_app(behaviour), backend_listener, QUICK,
                                    stop=stops[0][0]))),
            (yield from spawn(serve(fanout.make_routes(client, deadline), fanout_listener, QUICK,
                                    stop=stops[1][0]))),
        ]
        try:
            started = yield from current_time()
            response = yield from caller.get(path)
            took = (yield from current_time()) - started
        finally:
            caller.close()
            for _, stop_w in stops:
                stop_w.send(b"x")
            for task in servers:
                yield from task.join()
            client.close()
            for pair in stops:
                for sock in pair:
                    sock.close()
            backend_listener.close()
            fanout_listener.close()
        return response.status_code, response.json(), took

    real = time.monotonic()
    status, body, took = run(main(), clock=VirtualClock())
    return status, body, took, time.monotonic() - real


def test_every_call_answering_is_a_whole_result():
    status, body, _, _ = fan_out({})
    assert status == 200 and body["complete"] is True and body["late"] == []
    assert [c["result"] for c in body["calls"]] == [{"id": i} for i in range(10)]
    assert all(c["ok"] and c["status"] == 200 for c in body["calls"])


def test_bodiless_replies_are_results_not_crashes():
    status, body, _, _ = fan_out({1: "204", 2: "304", 3: "empty"})
    assert status == 200 and body["complete"] is True
    calls = body["calls"]
    assert [(c["status"], c["result"]) for c in calls[1:4]] == [(204, None), (304, None),
                                                                 (200, None)]
    assert calls[0]["result"] == {"id": 0}


def test_a_dripping_backend_is_cut_off_at_the_deadline_and_named_late():
    status, body, took, real = fan_out({4: "drip", 7: "drip"})
    assert took == pytest.approx(fanout.DEFAULT_DEADLINE, abs=0.01)  # not 60 s
    assert real < 5
    assert status == 200 and body["complete"] is False
    assert body["late"] == [4, 7] and body["deadline"] == fanout.DEFAULT_DEADLINE
    late = body["calls"][4]
    assert late["ok"] is False and late["kind"] == "late"
    assert "deadline" in late["error"] and late["upstream"].endswith("/api/4")
    assert [c["ok"] for c in body["calls"]] == [i not in (4, 7) for i in range(10)]


def test_no_call_in_time_is_a_504_naming_the_late_calls():
    status, body, took, _ = fan_out(dict.fromkeys(range(10), "drip"), "/fanout?deadline=2")
    assert took == pytest.approx(2.0, abs=0.01)
    assert status == 504 and body["complete"] is False
    assert body["late"] == list(range(10)) and body["deadline"] == 2.0
    assert "deadline" in body["error"] and body["upstream"].endswith("/api/0")


def test_failures_are_listed_with_their_reasons():
    status, body, _, _ = fan_out({2: "500", 5: "html"})
    assert status == 200 and body["complete"] is False and body["late"] == []
    assert body["calls"][2] == {"call": 2, "ok": False, "error": "upstream answered 500",
                                "kind": "status", "upstream": body["calls"][2]["upstream"]}
    assert body["calls"][2]["upstream"].endswith("/api/2")
    assert body["calls"][5]["kind"] == "invalid" and "not JSON" in body["calls"][5]["error"]


def test_every_call_failing_is_a_502():
    status, body, _, _ = fan_out(dict.fromkeys(range(10), "500"))
    assert status == 502 and body["error"] == "upstream answered 500"
    assert all(c["kind"] == "status" for c in body["calls"])


def test_an_unreachable_backend_is_a_502_naming_it():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    status, body, _, _ = fan_out({}, backend_url=url)
    assert status == 502 and "refused" in body["error"]
    assert {c["kind"] for c in body["calls"]} == {"unreachable"}


def test_the_clients_own_timeout_is_a_timeout_not_late():
    status, body, took, _ = fan_out({0: "drip"}, timeout=Timeout(read=5, total=2))
    assert took == pytest.approx(2.0, abs=0.01)  # the client's total, under the deadline
    assert status == 200 and body["late"] == []
    assert body["calls"][0]["kind"] == "timeout" and "total" in body["calls"][0]["error"]


def test_sequential_calls_the_deadline_leaves_no_time_for_are_not_started():
    status, body, took, _ = fan_out({1: "drip"}, "/fanout/sequential?deadline=3")
    assert took == pytest.approx(3.0, abs=0.01)
    assert status == 200 and body["late"] == list(range(1, 10))
    assert body["calls"][0]["ok"] is True
    assert "not started" in body["calls"][2]["error"]


def test_the_deadline_comes_from_the_environment_or_the_query(monkeypatch):
    monkeypatch.setenv("FANOUT_DEADLINE", "1.5")
    status, body, took, _ = fan_out({3: "drip"})
    assert took == pytest.approx(1.5, abs=0.01) and body["deadline"] == 1.5
    status, body, took, _ = fan_out({3: "drip"}, "/fanout?deadline=0.5")
    assert took == pytest.approx(0.5, abs=0.01) and body["late"] == [3]
    monkeypatch.setenv("FANOUT_DEADLINE", "soon")
    with pytest.raises(ValueError, match="FANOUT_DEADLINE"):
        fanout.make_routes(Client())


@pytest.mark.parametrize("deadline", ["0", "-1", "61", "nan", "soon"])
def test_a_bad_deadline_is_a_400(deadline):
    status, body, _, _ = fan_out({}, f"/fanout?deadline={deadline}")
    assert status == 400 and "deadline" in body["error"]
