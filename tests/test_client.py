"""The outbound Client against corofw's own server: methods, bodies, params,
headers, status codes, chunked and streamed bodies, keep-alive reuse, TLS,
the default client."""

from __future__ import annotations

import json
import ssl
import time

import pytest

import corofw
from corofw import (
    Client,
    ClientError,
    Event,
    HTTPStatusError,
    InvalidURL,
    ReadTimeout,
    Response,
    Router,
    ServerConfig,
    StreamingResponse,
    Timeout,
    TLSError,
    current_kernel,
    gather,
    run,
    sleep,
    timeout_after,
)
from corofw.net import listen, wrap_server
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

app = Router()


@app.route("/echo", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def echo(request):
    return {
        "method": request.method,
        "path": request.path,
        "query": request.query.items(),
        "headers": [list(pair) for pair in request.headers.items()],
        "body": request.body.decode("latin-1"),
        "port": request.client[1],
    }


@app.get("/status/{code:int}")
def status(request, code):
    return Response(f"status {code}", code)


@app.get("/text")
def text(request):
    return Response("h\u00e9llo".encode("latin-1"), content_type="text/plain; charset=latin-1")


@app.get("/big")
def big(request):
    return b"0123456789abcdef" * 65536  # 1 MiB


@app.get("/chunks")
def chunks(request):
    count = int(request.query.get("n", "5"))

    def body():
        for i in range(count):
            yield f"chunk {i};"
            yield from sleep(0.01)

    return StreamingResponse(body(), content_type="text/plain")


gates: dict[str, Event] = {}


@app.get("/gated/{token}")
def gated(request, token):
    """One chunk, then the rest once ``/open/{token}`` has been requested."""
    gate = gates[token] = Event()

    def body():
        yield "before;"
        yield from gate.wait()
        yield "after;"
        yield "end"

    return StreamingResponse(body(), content_type="text/plain")


@app.get("/open/{token}")
def open_gate(request, token):
    gates.pop(token).set()
    return "opened"


@app.get("/slow")
def slow(request):
    yield from sleep(float(request.query.get("delay", "0.05")))
    return {"port": request.client[1]}


@app.get("/charset/{name}")
def charset(request, name):
    return Response("h\u00e9llo".encode(), content_type=f"text/plain; charset={name}")


@app.get("/encoded/{codec}")
def encoded(request, codec):
    return Response('{"caf\u00e9": [1, "\u2603"]}'.encode(codec), content_type="application/json")


@pytest.fixture(scope="module")
def running_server():
    with serve_in_thread(app) as running:
        yield running


@pytest.fixture
def server(running_server, no_leaks):
    """The module's server; at the end of a test, wait until it has closed its
    side of every connection (it notices the client's close a moment later)."""
    yield running_server
    wait_until_idle(running_server)


def wait_until_idle(running, timeout=2.0):
    deadline = time.monotonic() + timeout
    while running.server.connections and time.monotonic() < deadline:
        time.sleep(0.005)


def drive(make_coro, **client_options):
    """Run ``make_coro(client)`` in a fresh kernel; afterwards no task is left
    and every connection the client still holds is an idle one."""

    def main():
        client = Client(**client_options)
        try:
            result = yield from make_coro(client)
            me = yield from corofw.current_task()
            assert current_kernel().tasks == {me}
            idle = sum(len(conns) for conns in client.pool._idle.values())
            assert client.pool.total == idle, client.pool
        finally:
            client.close()
        assert client.pool.total == 0
        return result

    return run(main())


# -- methods, bodies, params, headers ------------------------------------------


def test_get_text_and_headers(server):
    def go(client):
        return (yield from client.get(server.url + "/text"))

    resp = drive(go)
    assert resp.status_code == 200 and resp.reason_phrase == "OK"
    assert resp.http_version == "HTTP/1.1"
    assert resp.headers["Content-Type"] == resp.headers["content-type"]
    assert resp.text == "h\u00e9llo"
    assert resp.is_success and not resp.is_error
    assert resp.raise_for_status() is resp
    assert repr(resp) == "<ClientResponse [200 OK]>"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
def test_json_data_and_content_bodies(server, method):
    def go(client):
        as_json = yield from client.request(method, "/echo", json={"a": [1, 2]})
        as_form = yield from client.request(method, "/echo", data={"x": ["1", "2"], "y": "é"})
        as_bytes = yield from client.request(method, "/echo", content=b"\x00raw\xff")
        as_text = yield from client.request(method, "/echo", content="text")
        empty = yield from client.request(method, "/echo")
        return as_json.json(), as_form.json(), as_bytes.json(), as_text.json(), empty.json()

    as_json, as_form, as_bytes, as_text, empty = drive(go, base_url=server.url)
    headers = dict(as_json["headers"])
    assert as_json["method"] == method
    assert json.loads(as_json["body"]) == {"a": [1, 2]}
    assert headers["content-type"] == "application/json"
    assert dict(as_form["headers"])["content-type"] == "application/x-www-form-urlencoded"
    assert as_form["body"] == "x=1&x=2&y=%C3%A9"
    assert as_bytes["body"] == "\x00raw\xff"
    assert as_text["body"] == "text"
    assert dict(empty["headers"])["content-length"] == "0" and empty["body"] == ""


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"])
def test_json_bodies_in_every_encoding_json_detects(server, codec):
    def go(client):
        return (yield from client.get(server.url + f"/encoded/{codec}"))

    assert drive(go).json() == {"caf\u00e9": [1, "\u2603"]}


def test_helpers_for_every_method(server):
    def go(client):
        results = []
        for call in (client.get, client.post, client.put, client.patch, client.delete,
                     client.options):
            resp = yield from call("/echo")
            results.append(resp.json()["method"])
        return results

    assert drive(go, base_url=server.url) == ["GET", "POST", "PUT", "PATCH", "DELETE",
                                                "OPTIONS"]


def test_params_multi_valued_and_merged_with_the_query(server):
    def go(client):
        a = yield from client.get("/echo?keep=1", params={"tag": ["a", "b"], "q": "x y"})
        b = yield from client.get("/echo", params=[("n", 1), ("n", 2)])
        return a.json(), b.json(), a.url

    a, b, url = drive(go, base_url=server.url)
    assert a["query"] == [["keep", "1"], ["tag", "a"], ["tag", "b"], ["q", "x y"]]
    assert b["query"] == [["n", "1"], ["n", "2"]]
    assert url == server.url + "/echo?keep=1&tag=a&tag=b&q=x+y"


def test_request_headers_replace_client_headers(server):
    def go(client):
        resp = yield from client.get("/echo", headers={"Accept": "application/json",
                                                       "X-Team": "blue", "X-Extra": "1"})
        plain = yield from client.get("/echo")
        host = yield from client.get("/echo", headers={"Host": "example.test"})
        return resp.json()["headers"], plain.json()["headers"], host.json()["headers"]

    sent, plain, host = drive(go, base_url=server.url, headers={"X-Team": "red"},
                              user_agent="probe/1")
    names = [name.lower() for name, _ in sent]
    assert len(names) == len(set(names)), sent  # no header sent twice
    sent = dict((k.lower(), v) for k, v in sent)
    assert sent["accept"] == "application/json"
    assert sent["x-team"] == "blue" and sent["x-extra"] == "1"
    assert sent["user-agent"] == "probe/1"
    plain = dict((k.lower(), v) for k, v in plain)
    assert plain["x-team"] == "red" and plain["accept"] == "*/*"
    assert [v for k, v in host if k.lower() == "host"] == ["example.test"]


def test_framing_headers_cannot_be_overridden(server):
    def go(client):
        resp = yield from client.post("/echo", content=b"12345",
                                      headers={"Content-Length": "2", "Transfer-Encoding": "x"})
        return resp.json()

    body = drive(go, base_url=server.url)
    assert body["body"] == "12345"
    assert dict(body["headers"])["content-length"] == "5"
    assert "transfer-encoding" not in dict(body["headers"])


def test_head_has_no_body(server):
    def go(client):
        return (yield from client.head("/big"))

    resp = drive(go, base_url=server.url)
    assert resp.status_code == 200 and resp.content == b""
    assert resp.headers["content-length"] == str(1 << 20)


@pytest.mark.parametrize("code", [201, 204, 301, 404, 418, 500, 503])
def test_status_codes_and_raise_for_status(server, code):
    def go(client):
        return (yield from client.get(f"/status/{code}"))

    resp = drive(go, base_url=server.url)
    assert resp.status_code == code
    if code < 400:
        assert resp.raise_for_status() is resp
        assert resp.content == (b"" if code == 204 else f"status {code}".encode())
    else:
        assert resp.is_error
        with pytest.raises(HTTPStatusError) as info:
            resp.raise_for_status()
        assert info.value.response is resp
        assert info.value.url == f"{server.url}/status/{code}"
        assert str(code) in str(info.value)
        assert ("client error" if code < 500 else "server error") in str(info.value)


def test_large_body(server):
    def go(client):
        return (yield from client.get("/big"))

    assert drive(go, base_url=server.url).content == b"0123456789abcdef" * 65536


# -- chunked and streamed bodies --------------------------------------------------


def test_chunked_response(server):
    def go(client):
        return (yield from client.get("/chunks?n=5"))

    resp = drive(go, base_url=server.url)
    assert resp.headers["transfer-encoding"] == "chunked"
    assert resp.text == "".join(f"chunk {i};" for i in range(5))


def test_streaming_read_in_chunks(server):
    def go(client):
        resp = yield from client.get("/gated/t1", stream=True)
        with pytest.raises(RuntimeError, match="read"):
            resp.content  # noqa: B018
        first = yield from resp.read_chunk()  # the server sends nothing more until ...
        opened = yield from client.get("/open/t1")  # ... this, on a second connection
        pieces = [first]
        while piece := (yield from resp.read_chunk()):
            pieces.append(piece)
        assert (yield from resp.read_chunk()) == b""
        return pieces, opened.text, client.pool.total

    pieces, opened, total = drive(go, base_url=server.url)
    assert pieces[0] == b"before;" and opened == "opened"
    assert b"".join(pieces[1:]) == b"after;end"
    assert total == 2  # both connections went back to the pool


def test_streaming_read_and_close(server):
    def go(client):
        resp = yield from client.get("/big", stream=True)
        first = yield from resp.read_chunk()
        rest = yield from resp.read()
        assert len(first) + len(rest) == 1 << 20
        assert resp.content is rest
        assert client.pool.total == 1  # read to the end: back in the pool

        stopped = yield from client.get("/chunks?n=20", stream=True)
        yield from stopped.read_chunk()
        stopped.close()  # not read to the end: the connection cannot be reused
        stopped.close()
        return client.pool.total

    assert drive(go, base_url=server.url) == 0


def test_streamed_response_as_a_context_manager(server):
    def go(client):
        with (yield from client.get("/chunks?n=20", stream=True)) as resp:
            first = yield from resp.read_chunk()
        with (yield from client.get("/echo", stream=True)) as whole:
            yield from whole.read()
        return first, client.pool.total, whole.json()["method"]

    first, total, method = drive(go, base_url=server.url, max_per_host=1,
                                 timeout=Timeout(pool=0.5))
    assert first.startswith(b"chunk 0;") and total == 1 and method == "GET"


# -- keep-alive reuse ---------------------------------------------------------------


def test_sequential_requests_reuse_one_connection(server):
    def go(client):
        ports = set()
        for _ in range(20):
            resp = yield from client.get("/echo")
            ports.add(resp.json()["port"])
        return ports, client.pool.total

    ports, total = drive(go, base_url=server.url)
    assert len(ports) == 1 and total == 1


def test_repeated_requests_follow_a_changed_base_url(server):
    second_app = Router()

    @second_app.get("/echo")
    def second(request):
        return {"server": "second", "path": request.path}

    def go(client):
        first = yield from client.get("/echo")
        client.base_url = other.url
        again = yield from client.get("/echo")
        with_params = yield from client.get("/echo", params={"a": "1"})
        return first.json()["path"], again.json(), with_params.json()

    with serve_in_thread(second_app) as other:
        first, again, with_params = drive(go, base_url=server.url)
        wait_until_idle(other)
    assert first == "/echo"
    assert again == with_params == {"server": "second", "path": "/echo"}


def test_concurrent_requests_then_reuse(server):
    def go(client):
        first = yield from gather(*(client.get("/slow?delay=0.05") for _ in range(5)))
        second = yield from gather(*(client.get("/slow?delay=0.05") for _ in range(5)))
        return {r.json()["port"] for r in first}, {r.json()["port"] for r in second}

    first, second = drive(go, base_url=server.url)
    assert len(first) == 5
    assert second == first  # the five idle connections were reused


def test_idle_connections_expire(server):
    def go(client):
        a = yield from client.get("/echo")
        yield from sleep(0.15)
        b = yield from client.get("/echo")
        return a.json()["port"], b.json()["port"]

    a, b = drive(go, base_url=server.url, idle_timeout=0.1)
    assert a != b


def test_server_closing_idle_connection_is_noticed():
    short = ServerConfig(access_log=False, keep_alive_timeout=0.05)
    with serve_in_thread(app, short) as srv:
        def go(client):
            ports = []
            for _ in range(3):
                resp = yield from client.get("/echo")
                ports.append(resp.json()["port"])
                waited = 0.0
                while srv.server.connections and waited < 5:  # dropped by the server
                    yield from sleep(0.01)
                    waited += 0.01
            return ports

        ports = drive(go, base_url=srv.url)
        wait_until_idle(srv)
    assert len(set(ports)) == 3


@pytest.mark.parametrize("name", ["no-such-charset", "base64", "utf-8", '"UTF-8"'])
def test_text_falls_back_to_utf8_for_a_charset_python_does_not_know(server, name):
    def go(client):
        return (yield from client.get(server.url + "/charset/" + name))

    assert drive(go).text == "h\u00e9llo"


def test_a_client_serves_one_run_after_another(server):
    client = Client(server.url, timeout=Timeout(read=0.2))  # e.g. kept at module level

    def first():
        held = yield from client.get("/big", stream=True)  # still open when the kernel ends
        resp = yield from client.get("/echo")  # its connection stays in the pool
        return resp.json()["port"], held

    def second():
        try:
            yield from timeout_after(5, client.get("/slow?delay=1"))
        except ReadTimeout as exc:
            timed_out = exc  # the read deadline works under the new kernel
        resp = yield from client.get("/echo")
        held.close()  # the previous kernel's connection: closed, not counted again
        return timed_out, resp.json()["port"], client.pool.total

    try:
        first_port, held = run(first())
        timed_out, second_port, total = run(second())
    finally:
        client.close()
    assert isinstance(timed_out, ReadTimeout)
    assert second_port != first_port  # a new kernel starts with an empty pool
    assert total == 1 and client.pool.total == 0


@pytest.mark.parametrize("bad", [float("nan"), -1, -0.001])
def test_timeouts_must_be_zero_or_more_seconds(bad):
    with pytest.raises(ValueError, match="Timeout read"):
        Timeout(read=bad)
    with pytest.raises(ValueError):
        Timeout.of(bad)
    with pytest.raises(ValueError):
        Client(timeout=bad)
    with pytest.raises(ValueError, match="idle_timeout"):
        Client(idle_timeout=bad)

    def per_call():
        yield from Client().get("http://127.0.0.1:1/", timeout=bad)

    with pytest.raises(ValueError):
        run(per_call())


def test_infinite_and_none_timeouts_mean_no_limit():
    timeout = Timeout(connect=float("inf"), read=None, write=0, total=float("inf"))
    assert (timeout.connect, timeout.read, timeout.write, timeout.total) == (None, None, 0.0, None)
    assert Timeout.of(float("inf")) == Timeout.of(None)
    with pytest.raises(TypeError, match="Timeout pool"):
        Timeout(pool="5")


# -- bad input -------------------------------------------------------------------


def test_bad_urls_and_headers():
    def go(client):
        errors = []
        for url in ("ftp://127.0.0.1/", "http:///nohost", "http://127.0.0.1:99999/",
                    "http://127.0.0.1/a\r\nInjected: 1", "/relative"):
            try:
                yield from client.get(url)
            except ClientError as exc:
                errors.append(exc)
        try:
            yield from client.get("http://127.0.0.1:1/", headers={"X-Bad": "a\r\nInjected: 1"})
        except ClientError as exc:
            errors.append(exc)
        return errors

    errors = drive(go)
    assert len(errors) == 6
    assert "scheme" in str(errors[0]) and "ftp://127.0.0.1/" in str(errors[0])
    assert "no host" in str(errors[1])
    assert "port" in str(errors[2])
    assert "control character" in str(errors[3])
    assert "base_url" in str(errors[4]) and errors[4].url == "/relative"
    assert all(type(error) is InvalidURL for error in errors[:5])
    assert "invalid header" in str(errors[5])


def test_forgotten_yield_from_is_reported():
    client = Client()

    def main():
        yield client.get("http://127.0.0.1:1/")

    with pytest.raises(TypeError, match="yield from"):
        run(main())


# -- module-level default client ---------------------------------------------------


def test_module_level_default_client(server):
    def main():
        resp = yield from corofw.client.get(server.url + "/echo", params={"a": 1})
        posted = yield from corofw.client.post(server.url + "/echo", json=[1])
        put = yield from corofw.client.put(server.url + "/echo")
        patched = yield from corofw.client.patch(server.url + "/echo")
        deleted = yield from corofw.client.delete(server.url + "/echo")
        other = yield from corofw.client.request("OPTIONS", server.url + "/echo")
        same = corofw.client.default_client()
        return ([r.json()["method"] for r in (resp, posted, put, patched, deleted, other)],
                same)

    methods, first = run(main())
    assert methods == ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    assert first.pool.total == 1

    def again():
        return corofw.client.default_client()

        yield  # pragma: no cover

    second = run(again())
    assert second is not first  # a new kernel gets a new client ...
    assert first.pool.total == 0  # ... and the old kernel's connections are closed
    second.close()


# -- TLS -------------------------------------------------------------------------


def tls_echo_server(listener, context, count):
    """Serve ``count`` connections: TLS handshake, then one tiny response."""
    for _ in range(count):
        conn, _ = yield from listener.accept()
        try:
            tls = yield from wrap_server(conn, context)
        except (ssl.SSLError, OSError):
            continue
        with tls:
            data = b""
            while b"\r\n\r\n" not in data:
                got = yield from tls.recv(65536)
                if not got:
                    break
                data += got
            yield from tls.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n"
                                    b"Connection: close\r\n\r\nsecure")


def test_https_with_a_custom_context(tls_server_context, tls_client_context):
    def main():
        with listen("127.0.0.1", 0) as listener:
            port = listener.getsockname()[1]
            server = yield from corofw.spawn(tls_echo_server(listener, tls_server_context, 2))
            client = Client(ssl_context=tls_client_context)
            trusting = yield from client.get(f"https://127.0.0.1:{port}/")
            untrusting = Client(timeout=5)  # the system store does not know the test CA
            try:
                yield from untrusting.get(f"https://127.0.0.1:{port}/")
            except TLSError as exc:
                error = exc
            yield from server.join()
            client.close()
            untrusting.close()
        return trusting, error

    resp, error = run(main())
    assert resp.status_code == 200 and resp.content == b"secure"
    assert error.url.startswith("https://127.0.0.1:")
    assert "certificate" in str(error).lower()



# -- name resolution ---------------------------------------------------------------


def test_numeric_addresses_need_no_thread(server):
    def go(client):
        yield from client.get(server.url + "/echo")
        return current_kernel()._pool  # the kernel's thread pool: never started

    assert drive(go) is None


def test_host_names_are_resolved_in_a_thread(server):
    def go(client):
        resp = yield from client.get(f"http://localhost:{server.port}/echo")
        return resp.json(), current_kernel()._pool

    body, pool = drive(go)
    assert pool is not None  # getaddrinfo ran in the kernel's thread pool
    assert dict(body["headers"])["host"] == f"localhost:{server.port}"


def test_ipv6_literal_urls():
    try:
        listener = listen("::1", 0)
    except OSError:
        pytest.skip("no IPv6 loopback")
    listener.close()
    with serve_in_thread(app, host="::1") as srv:
        def go(client):
            return (yield from client.get(f"http://[::1]:{srv.port}/echo?x=1"))

        resp = drive(go)
        wait_until_idle(srv)
    assert resp.json()["query"] == [["x", "1"]]
    assert dict(resp.json()["headers"])["host"] == f"[::1]:{srv.port}"
