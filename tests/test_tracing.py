"""Tracing with W3C Trace Context against real servers: a request's span is
current in its task and the tasks it spawns, so gathered calls of an
instrumented Client each send a child's traceparent to a real upstream; an
incoming traceparent is continued and a malformed one ignored; nothing is
sent when tracing is not used; with the OpenTelemetry SDK, the spans are
exported with their ids, parents and attributes."""

from __future__ import annotations

import json
import logging
import socket

import httpx
import pytest

from corofw import (
    Client,
    ClientError,
    Redis,
    RedisError,
    Response,
    Router,
    gather,
    run,
    sleep,
    spawn,
)
from corofw.http.config import ServerConfig
from corofw.http.tracecontext import parse_traceparent
from corofw.testing import serve_in_thread
from corofw.web.metrics import Metrics
from corofw.web.tracing import Span, Tracing, current_span

pytestmark = pytest.mark.usefixtures("no_leaks")

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"


def make_upstream(tracing: Tracing | None = None) -> Router:
    """A second server that answers with the trace headers it received."""
    routes = Router()
    if tracing is not None:
        tracing.install(routes)

    @routes.get("/echo")
    def echo(request):
        return {"traceparent": request.headers.get_all("traceparent"),
                "tracestate": request.headers.get_all("tracestate")}

    @routes.get("/slow")
    def slow(request):
        yield from sleep(0.05)
        return echo(request)

    return routes


def make_app(client: Client, seen: list[Span | None], tracing: Tracing | None = None) -> Router:
    routes = Router()
    if tracing is not None:
        tracing.install(routes)

    @routes.get("/fan/{n:int}")
    def fan(request, n):
        seen.append(current_span())
        replies = yield from gather(*[client.get("/slow" if i % 2 else "/echo")
                                      for i in range(n)])
        return {"calls": [reply.json() for reply in replies],
                "trace_id": request.state.get("trace_id") if request._state else None}

    @routes.get("/spawned")
    def spawned(request):
        def child():
            yield from sleep(0)
            return current_span()
        task = yield from spawn(child())
        span = yield from task.join()
        seen.append(span)
        return "ok"

    @routes.get("/users/{user_id:int}")
    def user(request, user_id):
        seen.append(current_span())
        return {"id": user_id}

    @routes.get("/unavailable")
    def unavailable(request):
        seen.append(current_span())
        return Response("later", status=503)

    @routes.get("/boom")
    def boom(request):
        seen.append(current_span())
        raise RuntimeError("boom")

    @routes.get("/boom-later")
    def boom_later(request):
        seen.append(current_span())
        yield from sleep(0)
        raise RuntimeError("boom")

    return routes


def fan_out(tracing: Tracing | None, headers=(), n: int = 3, instrument: bool = True):
    """GET /fan/n on the app with ``headers``; the JSON answer and the
    spans the handler saw."""
    seen: list[Span | None] = []
    with serve_in_thread(make_upstream()) as upstream:
        client = Client(base_url=upstream.url, timeout=5)
        if tracing is not None and instrument:
            tracing.instrument(client)
        with serve_in_thread(make_app(client, seen, tracing)) as server:
            reply = httpx.get(f"{server.url}/fan/{n}", headers=list(headers))
        client.close()
    assert reply.status_code == 200, reply.text
    return reply.json(), seen


# -- propagation, without an exporter ------------------------------------------------------


def test_gathered_calls_each_send_a_child_of_the_request_span():
    answer, [span] = fan_out(Tracing(None), n=4)
    assert span.parent_id is None and span.sampled and span.kind == "server"
    assert answer["trace_id"] == span.trace_id
    sent = [parse_traceparent(call["traceparent"][0]) for call in answer["calls"]]
    assert all(len(call["traceparent"]) == 1 for call in answer["calls"])
    assert {parent.trace_id for parent in sent} == {span.trace_id}
    children = {parent.parent_id for parent in sent}
    assert len(children) == 4 and span.span_id not in children
    assert all(parent.flags == 1 for parent in sent)
    assert all(call["tracestate"] == [] for call in answer["calls"])


def test_concurrent_requests_keep_their_own_traces():
    traces = [f"{n + 1:032x}" for n in range(6)]
    seen: list[Span | None] = []
    with serve_in_thread(make_upstream()) as upstream:
        tracing = Tracing(None)
        client = tracing.instrument(Client(base_url=upstream.url, timeout=5))
        with serve_in_thread(make_app(client, seen, tracing)) as server:
            caller = Client(base_url=server.url, timeout=10, max_per_host=10)

            def one(trace_id):   # /fan/2 calls /echo and /slow; they overlap across requests
                reply = yield from caller.get("/fan/2", headers={
                    "traceparent": f"00-{trace_id}-{PARENT}-01"})
                return reply.json()

            def main():
                return (yield from gather(*[one(trace_id) for trace_id in traces]))

            answers = run(main())
            caller.close()
        client.close()
    for trace_id, answer in zip(traces, answers, strict=True):
        assert answer["trace_id"] == trace_id
        assert {parse_traceparent(call["traceparent"][0]).trace_id
                for call in answer["calls"]} == {trace_id}


@pytest.mark.parametrize("flags", ["01", "00"])
def test_incoming_traceparent_is_continued_with_its_tracestate(flags):
    state = "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
    answer, [span] = fan_out(Tracing(None), [("traceparent", f"00-{TRACE}-{PARENT}-{flags}"),
                                             ("tracestate", state)])
    assert (span.trace_id, span.parent_id, span.flags) == (TRACE, PARENT, int(flags))
    assert span.span_id != PARENT and span.tracestate == state
    assert answer["trace_id"] == TRACE
    for call in answer["calls"]:
        sent = parse_traceparent(call["traceparent"][0])
        assert (sent.trace_id, sent.flags) == (TRACE, int(flags))
        assert sent.parent_id not in (PARENT, span.span_id)
        assert call["tracestate"] == [state]


def test_future_version_continued_and_sent_as_version_00():
    answer, [span] = fan_out(Tracing(None), [("traceparent", f"cc-{TRACE}-{PARENT}-01-more")],
                             n=1)
    assert (span.trace_id, span.parent_id) == (TRACE, PARENT)
    assert answer["calls"][0]["traceparent"][0].startswith(f"00-{TRACE}-")


@pytest.mark.parametrize("headers", [
    [("traceparent", VALID.upper())],
    [("traceparent", f"00-{'0' * 32}-{PARENT}-01")],
    [("traceparent", f"00-{TRACE}-{'0' * 16}-01")],
    [("traceparent", f"ff-{TRACE}-{PARENT}-01")],
    [("traceparent", f"00-{TRACE}-{PARENT}-01-extra")],
    [("traceparent", "garbage")],
    [("traceparent", VALID), ("traceparent", f"00-{TRACE}-{'1' * 16}-01")],
], ids=["uppercase", "zero-trace", "zero-parent", "version-ff", "extra-field", "garbage",
        "twice"])
def test_malformed_traceparent_starts_a_new_trace(headers):
    answer, [span] = fan_out(Tracing(None), [*headers, ("tracestate", "rojo=1")], n=1)
    assert span.trace_id != TRACE and span.parent_id is None and span.tracestate is None
    call = answer["calls"][0]
    assert parse_traceparent(call["traceparent"][0]).trace_id == span.trace_id
    assert call["tracestate"] == []


def test_invalid_tracestate_dropped_trace_continued():
    answer, [span] = fan_out(Tracing(None), [("traceparent", VALID),
                                             ("tracestate", "rojo=1,rojo=2")], n=1)
    assert span.trace_id == TRACE and span.tracestate is None
    assert answer["calls"][0]["tracestate"] == []


def test_unsampled_when_asked():
    answer, [span] = fan_out(Tracing(None, sampled=False), n=1)
    assert not span.sampled
    assert answer["calls"][0]["traceparent"][0].endswith("-00")


def test_without_tracing_nothing_is_sent():
    answer, [span] = fan_out(None, n=2)
    assert span is None and answer["trace_id"] is None
    assert all(call["traceparent"] == [] for call in answer["calls"])


def test_an_instrumented_client_outside_a_traced_request_sends_nothing():
    seen: list[Span | None] = []
    with serve_in_thread(make_upstream()) as upstream:
        client = Tracing(None).instrument(Client(base_url=upstream.url, timeout=5))
        with serve_in_thread(make_app(client, seen)) as server:   # the app is not traced
            answer = httpx.get(f"{server.url}/fan/2").json()
        client.close()
    assert seen == [None]
    assert all(call["traceparent"] == [] for call in answer["calls"])


def test_request_not_instrumented_client_sends_nothing():
    answer, [span] = fan_out(Tracing(None), n=2, instrument=False)
    assert span is not None
    assert all(call["traceparent"] == [] for call in answer["calls"])


def test_span_follows_spawned_tasks_and_ends_with_the_request():
    seen: list[Span | None] = []
    with serve_in_thread(make_app(Client(), seen, Tracing(None))) as server:
        assert httpx.get(f"{server.url}/spawned").text == "ok"
        assert httpx.get(f"{server.url}/users/7").json() == {"id": 7}
    spawned, plain = seen
    assert spawned is not None and spawned.name == "GET /spawned"
    assert plain.trace_id != spawned.trace_id
    assert current_span() is None


# -- names, attributes, errors -----------------------------------------------------------


def test_span_named_after_the_route_with_its_attributes():
    seen: list[Span | None] = []
    with serve_in_thread(make_app(Client(), seen, Tracing(None))) as server:
        assert httpx.get(f"{server.url}/users/42").status_code == 200
        assert httpx.get(f"{server.url}/unavailable").status_code == 503
        assert httpx.get(f"{server.url}/boom").status_code == 500
        assert httpx.get(f"{server.url}/boom-later").status_code == 500
    ok, unavailable, boom, boom_later = seen
    assert ok.name == "GET /users/{user_id:int}" and ok.error is None
    assert ok.attributes["http.request.method"] == "GET"
    assert ok.attributes["http.route"] == "/users/{user_id:int}"
    assert ok.attributes["url.path"] == "/users/42"
    assert ok.attributes["http.response.status_code"] == 200
    assert ok.attributes["client.address"] == "127.0.0.1"
    assert isinstance(ok.attributes["client.port"], int)
    assert unavailable.error == "503"
    assert unavailable.attributes["http.response.status_code"] == 503
    for failed in (boom, boom_later):
        assert failed.error == "RuntimeError"
        assert failed.attributes["http.response.status_code"] == 500


def test_install_refuses_a_second_install_and_a_mounted_router():
    tracing = Tracing(None)
    routes = Router()
    tracing.install(routes)
    with pytest.raises(RuntimeError):
        tracing.install(Router())
    outer, inner = Router(), Router()
    outer.mount("/api", inner)
    with pytest.raises(ValueError):
        Tracing(None).install(inner)


def test_with_metrics_on_the_same_router():
    metrics, tracing = Metrics(), Tracing(None)
    seen: list[Span | None] = []
    with serve_in_thread(make_upstream()) as upstream:
        client = tracing.instrument(metrics.observe(Client(base_url=upstream.url, timeout=5)))
        routes = make_app(client, seen, tracing)
        metrics.install(routes)
        with serve_in_thread(routes) as server:
            answer = httpx.get(f"{server.url}/fan/2").json()
            text = httpx.get(f"{server.url}/metrics").text
        client.close()
    assert all(call["traceparent"] for call in answer["calls"])
    assert 'route="/fan/{n:int}"' in text
    assert "corofw_upstream_requests_total" in text


# -- the access log --------------------------------------------------------------------------


@pytest.mark.parametrize("traced", [True, False])
def test_access_log_lines_carry_the_trace_id(caplog, traced):
    caplog.set_level(logging.INFO, logger="corofw.access")
    seen: list[Span | None] = []
    routes = make_app(Client(), seen, Tracing(None) if traced else None)
    for fmt in ("text", "json"):
        config = ServerConfig(access_log_format=fmt, graceful_timeout=2.0)
        with serve_in_thread(routes, config) as server:
            httpx.get(f"{server.url}/users/1", headers={"traceparent": VALID})
    text, line = [r.getMessage() for r in caplog.records if r.name == "corofw.access"]
    record = json.loads(line)
    if traced:
        assert text.endswith(f" trace={TRACE}")
        assert record["trace_id"] == TRACE
        assert list(record)[-3:] == ["request_id", "trace_id", "error"]
    else:
        assert "trace=" not in text and "trace_id" not in record


# -- exported through the OpenTelemetry SDK ----------------------------------------------


@pytest.fixture
def exported():
    """A TracerProvider of the SDK that keeps the spans it exports in memory."""
    sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
    in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")
    export = pytest.importorskip("opentelemetry.sdk.trace.export")
    exporter = in_memory.InMemorySpanExporter()
    provider = sdk_trace.TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(export.SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def test_spans_exported_with_ids_parents_and_attributes(exported):
    from opentelemetry.trace import SpanKind, StatusCode

    provider, exporter = exported
    tracing = Tracing(provider)
    seen: list[Span | None] = []
    with serve_in_thread(make_upstream(Tracing(provider))) as upstream:
        client = tracing.instrument(Client(base_url=upstream.url, timeout=5))
        with serve_in_thread(make_app(client, seen, tracing)) as server:
            reply = httpx.get(f"{server.url}/fan/2",
                              headers={"traceparent": VALID, "tracestate": "rojo=1"})
        client.close()
    answer = reply.json()
    spans = exporter.get_finished_spans()
    assert {span.context.trace_id for span in spans} == {int(TRACE, 16)}
    by_kind: dict = {}
    for span in spans:
        by_kind.setdefault((span.kind, span.name), []).append(span)
    [request] = by_kind[(SpanKind.SERVER, "GET /fan/{n:int}")]
    calls = by_kind[(SpanKind.CLIENT, "GET")]
    upstream_spans = by_kind[(SpanKind.SERVER, "GET /echo")] + by_kind[(SpanKind.SERVER,
                                                                         "GET /slow")]
    assert len(calls) == 2 and len(upstream_spans) == 2
    # the request continues the caller's span; the ids the handler saw are the SDK's
    assert request.parent.span_id == int(PARENT, 16) and request.parent.is_remote
    [span] = seen
    assert span.span_id == f"{request.context.span_id:016x}"
    assert answer["trace_id"] == TRACE
    assert request.context.trace_state.get("rojo") == "1"
    assert request.attributes["http.route"] == "/fan/{n:int}"
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["client.address"] == "127.0.0.1"
    assert request.status.status_code == StatusCode.UNSET
    # each call is the request's child, and the upstream got the call's own id
    sent = {parse_traceparent(call["traceparent"][0]).parent_id for call in answer["calls"]}
    assert sent == {f"{call.context.span_id:016x}" for call in calls}
    for call in calls:
        assert call.parent.span_id == request.context.span_id
        assert call.attributes["http.response.status_code"] == 200
        assert call.attributes["server.address"] == "127.0.0.1"
        assert call.attributes["url.full"].startswith(upstream.url)
    # and the upstream's spans are the calls' children
    assert {s.parent.span_id for s in upstream_spans} == {c.context.span_id for c in calls}
    assert all(call["tracestate"] == ["rojo=1"] for call in answer["calls"])


def test_exported_errors(exported):
    from opentelemetry.trace import SpanKind, StatusCode

    provider, exporter = exported
    tracing = Tracing(provider)
    seen: list[Span | None] = []
    routes = make_app(Client(), seen, tracing)
    client = tracing.instrument(Client(timeout=5))

    @routes.get("/call")
    def call(request):
        errors = []
        for url in (request.query["url"], "relative/path"):
            try:
                yield from client.get(url)
            except ClientError as exc:
                errors.append(type(exc).__name__)
        return {"errors": errors}

    with serve_in_thread(routes) as server:
        assert httpx.get(f"{server.url}/unavailable").status_code == 503
        assert httpx.get(f"{server.url}/boom-later").status_code == 500
        closed = httpx.get(f"{server.url}/nowhere")
        assert closed.status_code == 404
        refused = f"http://127.0.0.1:{_closed_port()}/x"
        assert httpx.get(f"{server.url}/call", params={"url": refused}).json() == \
            {"errors": ["ConnectionRefused", "InvalidURL"]}
    client.close()
    spans = {span.name: span for span in exporter.get_finished_spans()
             if span.kind == SpanKind.SERVER}
    assert spans["GET /unavailable"].status.status_code == StatusCode.ERROR
    failed = spans["GET /boom-later"]
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.attributes["error.type"] == "RuntimeError"
    assert any(event.name == "exception" for event in failed.events)
    assert "http.route" not in spans["GET"].attributes
    assert spans["GET"].attributes["http.response.status_code"] == 404
    assert spans["GET"].status.status_code == StatusCode.UNSET
    calls = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.CLIENT]
    assert [c.attributes["error.type"] for c in calls] == ["ConnectionRefused", "InvalidURL"]
    assert all(c.status.status_code == StatusCode.ERROR for c in calls)
    assert all(c.parent.span_id == spans["GET /call"].context.span_id for c in calls)


def test_redis_commands_exported_as_children_of_the_request(exported, redis_url):
    from opentelemetry.trace import SpanKind, StatusCode

    provider, exporter = exported
    tracing = Tracing(provider)
    redis = tracing.instrument(Redis(redis_url, timeout=5))
    routes = Router()
    tracing.install(routes)

    @routes.get("/cache")
    def cache(request):
        yield from redis.set("greeting", "hello")
        value = yield from redis.get("greeting")
        pipe = redis.pipeline()
        pipe.incr("hits").incr("hits")
        counts = yield from pipe.execute()
        try:
            yield from redis.execute("LPUSH", "greeting", "x")   # the wrong type
        except RedisError as exc:
            failed = type(exc).__name__
        return {"value": value.decode(), "counts": counts, "failed": failed}

    with serve_in_thread(routes) as server:
        answer = httpx.get(f"{server.url}/cache").json()
    redis.close()
    assert answer == {"value": "hello", "counts": [1, 2], "failed": "ResponseError"}
    spans = exporter.get_finished_spans()
    [request] = [span for span in spans if span.kind == SpanKind.SERVER]
    commands = [span for span in spans if span.kind == SpanKind.CLIENT]
    assert [span.name for span in commands] == ["SET", "GET", "MULTI", "LPUSH"]
    for span in commands:
        assert span.parent.span_id == request.context.span_id
        assert span.attributes["db.system.name"] == "redis"
        assert span.attributes["db.operation.name"] == span.name
        assert span.attributes["server.address"] == "127.0.0.1"
        assert span.attributes["db.namespace"] == "0"
    assert commands[-1].status.status_code == StatusCode.ERROR
    assert commands[-1].attributes["error.type"] == "ResponseError"
    assert all(span.status.status_code == StatusCode.UNSET for span in commands[:-1])


def test_postgres_queries_exported_as_children_of_the_request(exported, pg_dsn):
    from opentelemetry.trace import SpanKind, StatusCode

    from corofw.data import pg

    provider, exporter = exported
    tracing = Tracing(provider)
    pool = tracing.instrument(pg.Pool(pg_dsn, min_size=0, max_size=4))
    routes = Router()
    tracing.install(routes)

    @routes.get("/db")
    def db(request):
        one, two = yield from gather(pool.fetchval("SELECT $1::int", 1),
                                     pool.fetchval("select $1::int + 1", 1))
        try:
            yield from pool.execute("DELETE FROM no_such_table WHERE id = $1", 1)
        except pg.QueryError as exc:
            failed = type(exc).__name__
        return {"values": [one, two], "failed": failed}

    try:
        with serve_in_thread(routes) as server:
            answer = httpx.get(f"{server.url}/db").json()
    finally:
        run(pool.close())
    assert answer == {"values": [1, 2], "failed": "UndefinedTable"}
    spans = exporter.get_finished_spans()
    [request] = [span for span in spans if span.kind == SpanKind.SERVER]
    queries = sorted((span for span in spans if span.kind == SpanKind.CLIENT),
                     key=lambda span: span.start_time)
    assert sorted(span.name for span in queries) == ["DELETE", "SELECT", "SELECT"]
    for span in queries:
        assert span.parent.span_id == request.context.span_id
        assert span.attributes["db.system.name"] == "postgresql"
        assert span.attributes["db.operation.name"] == span.name
    assert {span.attributes["db.query.text"] for span in queries} == {
        "SELECT $1::int", "select $1::int + 1", "DELETE FROM no_such_table WHERE id = $1"}
    [delete] = [span for span in queries if span.name == "DELETE"]
    assert delete.status.status_code == StatusCode.ERROR
    assert delete.attributes["error.type"] == "UndefinedTable"


def test_instrument_refuses_what_it_cannot_trace():
    with pytest.raises(TypeError, match="a Client, a Redis client or a PostgreSQL Pool"):
        Tracing(None).instrument(object())


def test_no_exporter_without_a_provider():
    tracing = Tracing(None)
    tracing.install(Router())
    assert "not exported" in repr(tracing)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
