"""The CORS middleware: simple and preflight requests, allowed origins,
methods and headers, the credentials rules and Vary: Origin."""

from __future__ import annotations

from types import GeneratorType

import pytest
from live import RawClient

from corofw import Request, Response, Router, StreamingResponse, run
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread
from corofw.web.cors import add_vary, cors_middleware

APP = "https://app.example"


def make_app(**options) -> Router:
    routes = Router()
    routes.middleware(cors_middleware(**options))

    @routes.get("/data")
    def data(request):
        return Response.json({"ok": True}, headers={"vary": "Accept-Encoding"})

    @routes.post("/data")
    def post(request):
        return "posted"

    @routes.get("/stream")
    def stream(request):
        def body():
            yield b"x"
        return StreamingResponse(body())

    return routes


def call(routes: Router, method: str, path: str, **headers: str):
    request = Request(method, path, headers={name.replace("_", "-"): value
                                             for name, value in headers.items()})
    response = routes.handle(request)
    if type(response) is GeneratorType:
        response = run(response)
    return response


def header(response, name: str):
    return response.headers.get(name) if response.headers else None


def test_simple_request_from_an_allowed_origin():
    routes = make_app(allow_origins=[APP], expose_headers=["X-Total"])
    response = call(routes, "GET", "/data", origin=APP)
    assert response.status == 200
    assert header(response, "access-control-allow-origin") == APP
    assert header(response, "access-control-expose-headers") == "X-Total"
    assert header(response, "access-control-allow-credentials") is None
    assert header(response, "vary") == "Accept-Encoding, Origin"


def test_origins_are_compared_without_case_but_echoed_as_sent():
    routes = make_app(allow_origins=["https://App.Example"])
    response = call(routes, "GET", "/data", origin="https://app.EXAMPLE")
    assert header(response, "access-control-allow-origin") == "https://app.EXAMPLE"


def test_a_disallowed_origin_gets_the_response_without_cors_headers():
    routes = make_app(allow_origins=[APP])
    for origin in ("https://evil.example", "https://app.example.evil", "null",
                   "http://app.example"):
        response = call(routes, "GET", "/data", origin=origin)
        assert response.status == 200
        assert header(response, "access-control-allow-origin") is None
        assert "Origin" in header(response, "vary")  # cached per origin


def test_no_origin_still_varies_when_the_answer_depends_on_it():
    response = call(make_app(allow_origins=[APP]), "GET", "/data")
    assert header(response, "access-control-allow-origin") is None
    assert header(response, "vary") == "Accept-Encoding, Origin"


def test_any_origin_without_credentials_is_a_star_and_does_not_vary():
    routes = make_app(allow_origins="*")
    response = call(routes, "GET", "/data", origin="https://anyone.example")
    assert header(response, "access-control-allow-origin") == "*"
    assert header(response, "vary") == "Accept-Encoding"


def test_credentials_never_send_a_star():
    routes = make_app(allow_origins="*", allow_credentials=True, allow_methods="*",
                      allow_headers="*")
    response = call(routes, "GET", "/data", origin="https://anyone.example")
    assert header(response, "access-control-allow-origin") == "https://anyone.example"
    assert header(response, "access-control-allow-credentials") == "true"
    assert "Origin" in header(response, "vary")
    response = call(routes, "OPTIONS", "/data", origin="https://anyone.example",
                    access_control_request_method="PATCH",
                    access_control_request_headers="X-Token, Content-Type")
    assert response.status == 204
    assert header(response, "access-control-allow-origin") == "https://anyone.example"
    assert header(response, "access-control-allow-methods") == "PATCH"
    assert header(response, "access-control-allow-headers") == "X-Token, Content-Type"
    assert header(response, "access-control-allow-credentials") == "true"


def test_origin_regex():
    routes = make_app(allow_origin_regex=r"https://[a-z]+\.example")
    assert header(call(routes, "GET", "/data", origin="https://pr42.example"),
                  "access-control-allow-origin") is None  # digits: no match
    assert header(call(routes, "GET", "/data", origin="https://preview.example"),
                  "access-control-allow-origin") == "https://preview.example"
    assert header(call(routes, "GET", "/data", origin="https://preview.example.evil"),
                  "access-control-allow-origin") is None  # the whole origin must match


def test_preflight_allowed():
    routes = make_app(allow_origins=[APP], allow_methods=["GET", "PUT"],
                      allow_headers=["X-Token"], max_age=3600)
    response = call(routes, "OPTIONS", "/data", origin=APP,
                    access_control_request_method="PUT",
                    access_control_request_headers="x-token,content-type")
    assert response.status == 204 and response.body == b""
    assert header(response, "access-control-allow-origin") == APP
    assert header(response, "access-control-allow-methods") == "GET, PUT"
    assert header(response, "access-control-allow-headers") == "x-token, content-type"
    assert header(response, "access-control-max-age") == "3600"
    assert header(response, "vary") == \
        "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"


@pytest.mark.parametrize(("headers", "message"), [
    ({"origin": "https://evil.example", "access_control_request_method": "GET"},
     "origin 'https://evil.example'"),
    ({"origin": APP, "access_control_request_method": "DELETE"}, "method 'DELETE'"),
    ({"origin": APP, "access_control_request_method": "GET",
      "access_control_request_headers": "X-Token, X-Other"}, "header(s) X-Other"),
])
def test_preflight_refused_is_400_naming_what(headers, message):
    routes = make_app(allow_origins=[APP], allow_headers=["x-token"])
    response = call(routes, "OPTIONS", "/data", **headers)
    assert response.status == 400
    assert message in response.body.decode()
    assert header(response, "access-control-allow-origin") is None


def test_plain_options_is_routed_as_usual():
    routes = make_app(allow_origins=[APP])
    response = call(routes, "OPTIONS", "/data", origin=APP)
    assert response.status == 204 and "POST" in header(response, "allow")
    assert header(response, "access-control-allow-origin") == APP


def test_errors_and_streams_get_cors_headers_too():
    routes = make_app(allow_origins=[APP])
    for method, path, status in (("GET", "/missing", 404), ("DELETE", "/data", 405),
                                 ("GET", "/stream", 200)):
        response = call(routes, method, path, origin=APP)
        assert response.status == status
        assert header(response, "access-control-allow-origin") == APP


@pytest.mark.parametrize("origin", ["https://app.example/", "app.example",
                                    "https://app.example/path", ""])
def test_misconfigured_origins_are_refused(origin):
    with pytest.raises(ValueError, match="scheme://host"):
        cors_middleware(allow_origins=[origin])


def test_other_configuration_errors():
    with pytest.raises(ValueError, match="max_age"):
        cors_middleware(allow_origins="*", max_age=-1)
    with pytest.raises(ValueError, match="allow_methods"):
        cors_middleware(allow_origins="*", allow_methods=[""])


def test_add_vary():
    response = Response("x")
    add_vary(response, "Origin")
    add_vary(response, "origin")
    assert response.headers.get_all("vary") == ["Origin"]
    response = Response("x", headers=[("Vary", "*")])
    add_vary(response, "Origin")
    assert response.headers.get_all("vary") == ["*"]


def test_cors_on_the_wire(no_leaks):
    config = ServerConfig(access_log=False, graceful_timeout=5.0)
    routes = make_app(allow_origins=[APP], allow_credentials=True)
    with serve_in_thread(routes, config) as server, RawClient(server.port) as client:
        response = client.request("OPTIONS", "/data", headers=(
            f"Origin: {APP}\r\nAccess-Control-Request-Method: POST\r\n"))
        assert response.status == 204
        assert response.headers["access-control-allow-origin"] == APP
        assert response.headers["access-control-allow-credentials"] == "true"
        response = client.request("POST", "/data", b"x", f"Origin: {APP}\r\n")
        assert response.status == 200 and response.body == b"posted"
        assert response.headers["access-control-allow-origin"] == APP
