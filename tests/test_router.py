"""The routing layer: dispatch, converters, mounts, middleware, error
handlers, url_for and return-value coercion, driven through Router.handle."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from types import GeneratorType

import pytest

from corofw import run, sleep
from corofw.http.messages import HTTPError, QueryParams, Request, Response, StreamingResponse
from corofw.web import Converter, Router, register_converter


def make_request(method: str, target: str, headers: dict | None = None, **kwargs) -> Request:
    return Request(method, target, headers={"host": "x", **(headers or {})}, **kwargs)


def call(router: Router, method: str, target: str, **kwargs):
    """Route a request and drive the result to a response if needed."""
    result = router.handle(make_request(method, target, **kwargs))
    if type(result) is GeneratorType:
        result = run(result)
    return result


def allow(response) -> list[str]:
    return [name.strip() for name in response.headers["Allow"].split(",")]


# -- basic dispatch ----------------------------------------------------------


def test_plain_handler_on_static_path_returns_response_without_generator():
    routes = Router()

    @routes.get("/")
    def hello(request):
        return "Hello, World!"

    request = make_request("GET", "/")
    response = routes.handle(request)
    assert type(response) is Response
    assert response.status == 200
    assert response.body == b"Hello, World!"
    assert response.content_type == "text/plain; charset=utf-8"
    assert request.route.handler is hello
    assert request.path_params == {}


def test_generator_handler_with_int_param():
    routes = Router()

    @routes.get("/users/{user_id:int}", name="user")
    def user(request, user_id):
        yield from sleep(0.001)
        return {"id": user_id, "params": request.path_params, "name": request.route.name}

    result = routes.handle(make_request("GET", "/users/42"))
    assert type(result) is GeneratorType
    response = run(result)
    assert response.status == 200
    assert response.content_type == "application/json"
    assert response.body == b'{"id":42,"params":{"user_id":42},"name":"user"}'


def test_plain_function_returning_a_generator_is_driven():
    routes = Router()

    def body(request):
        yield from sleep(0)
        return "driven"

    @routes.get("/")
    def indirect(request):
        return body(request)

    assert call(routes, "GET", "/").body == b"driven"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_method_decorators(method):
    routes = Router()
    decorator = getattr(routes, method.lower())

    @decorator("/thing")
    def handler(request):
        return request.method

    assert call(routes, method, "/thing").body == method.encode()
    other = "POST" if method != "POST" else "PUT"
    assert call(routes, other, "/thing").status == 405


def test_route_with_several_methods_and_lowercase_names():
    routes = Router()

    @routes.route("/items", methods=["get", "post"])
    def items(request):
        return request.method

    assert call(routes, "GET", "/items").body == b"GET"
    assert call(routes, "POST", "/items").body == b"POST"
    assert call(routes, "DELETE", "/items").status == 405
    assert routes.routes[0].methods == frozenset({"GET", "POST"})


def test_decorators_return_the_function_and_can_be_stacked():
    routes = Router()

    @routes.get("/a")
    @routes.get("/b")
    def both(request):
        return request.path

    assert both.__name__ == "both"
    assert call(routes, "GET", "/a").body == b"/a"
    assert call(routes, "GET", "/b").body == b"/b"


def test_same_shape_different_methods_and_param_names():
    routes = Router()

    @routes.get("/users/{uid:int}")
    def read(request, uid):
        return f"read {uid}"

    @routes.delete("/users/{victim:int}")
    def remove(request, victim):
        return f"delete {victim}"

    assert call(routes, "GET", "/users/3").body == b"read 3"
    assert call(routes, "DELETE", "/users/4").body == b"delete 4"


def test_static_route_beats_dynamic_and_dynamic_order_is_registration_order():
    routes = Router()

    @routes.get("/users/{name}")
    def by_name(request, name):
        return f"name {name}"

    @routes.get("/users/me")
    def me(request):
        return "me"

    @routes.get("/users/{uid:int}")
    def by_id(request, uid):
        return f"id {uid}"

    assert call(routes, "GET", "/users/me").body == b"me"
    assert call(routes, "GET", "/users/bob").body == b"name bob"
    assert call(routes, "GET", "/users/7").body == b"name 7"


def test_static_path_with_other_methods_falls_through_to_dynamic():
    routes = Router()

    @routes.post("/users/me")
    def update_me(request):
        return "post me"

    @routes.get("/users/{name}")
    def by_name(request, name):
        return f"get {name}"

    assert call(routes, "GET", "/users/me").body == b"get me"
    assert call(routes, "POST", "/users/me").body == b"post me"
    response = call(routes, "PUT", "/users/me")
    assert response.status == 405
    assert allow(response) == ["GET", "HEAD", "POST", "OPTIONS"]


def test_percent_decoded_path_is_matched():
    routes = Router()

    @routes.get("/hello world")
    def spaced(request):
        return "spaced"

    @routes.get("/files/{name}")
    def files(request, name):
        return name

    assert call(routes, "GET", "/hello%20world").body == b"spaced"
    assert call(routes, "GET", "/files/a%20b%3Fc").body == b"a b?c"
    # %2F decodes to '/', which a str parameter never matches.
    assert call(routes, "GET", "/files/a%2Fb").status == 404


def test_many_dynamic_routes_pick_the_right_one():
    routes = Router()
    for index in range(30):
        routes.add_route(f"/r{index}/{{a:int}}/{{b}}",
                         lambda request, a, b, index=index: f"{index} {a} {b}")
    for index in (0, 17, 29):
        assert call(routes, "GET", f"/r{index}/5/x").body == f"{index} 5 x".encode()
    assert call(routes, "GET", "/r30/5/x").status == 404
    assert call(routes, "GET", "/r3/x/x").status == 404


# -- converters --------------------------------------------------------------


@pytest.fixture
def typed():
    routes = Router()

    @routes.get("/int/{value:int}")
    def as_int(request, value):
        return {"value": value, "type": type(value).__name__}

    @routes.get("/float/{value:float}")
    def as_float(request, value):
        return {"value": value, "type": type(value).__name__}

    @routes.get("/uuid/{value:uuid}")
    def as_uuid(request, value):
        return {"value": str(value), "type": type(value).__name__}

    @routes.get("/str/{value:str}")
    def as_str(request, value):
        return {"value": value, "type": type(value).__name__}

    @routes.get("/default/{value}")
    def as_default(request, value):
        return {"value": value, "type": type(value).__name__}

    @routes.get("/path/{value:path}/edit")
    def edit_path(request, value):
        return {"edit": value}

    @routes.get("/path/{value:path}")
    def as_path(request, value):
        return {"value": value, "type": type(value).__name__}

    return routes


@pytest.mark.parametrize("target, expected", [
    ("/int/42", {"value": 42, "type": "int"}),
    ("/int/007", {"value": 7, "type": "int"}),
    ("/float/2.5", {"value": 2.5, "type": "float"}),
    ("/float/3", {"value": 3.0, "type": "float"}),
    ("/uuid/12345678-1234-5678-1234-567812345678",
     {"value": "12345678-1234-5678-1234-567812345678", "type": "UUID"}),
    ("/str/hello", {"value": "hello", "type": "str"}),
    ("/default/hello", {"value": "hello", "type": "str"}),
    ("/path/a/b/c.txt", {"value": "a/b/c.txt", "type": "str"}),
    ("/path/one", {"value": "one", "type": "str"}),
])
def test_converters_convert(typed, target, expected):
    response = call(typed, "GET", target)
    assert response.status == 200
    assert Request("GET", "/", body=response.body).json() == expected


@pytest.mark.parametrize("target", [
    "/int/-1", "/int/abc", "/int/", "/int/1.5", "/int/\u0661",
    "/float/abc", "/float/-1.5", "/float/1e5", "/float/.5",
    "/uuid/not-a-uuid", "/uuid/12345678123456781234567812345678",
    "/str/", "/str/a/b", "/default/", "/path/", "/path",
])
def test_converters_reject(typed, target):
    assert call(typed, "GET", target).status == 404


def test_path_converter_followed_by_literal(typed):
    response = call(typed, "GET", "/path/a/b/edit")
    assert Request("GET", "/", body=response.body).json() == {"edit": "a/b"}


def test_custom_converter():
    register_converter("test_hex", Converter(r"[0-9a-f]+", lambda text: int(text, 16),
                                             lambda value: format(value, "x")))
    routes = Router()

    @routes.get("/colour/{value:test_hex}", name="colour")
    def colour(request, value):
        return {"value": value}

    assert call(routes, "GET", "/colour/ff").body == b'{"value":255}'
    assert call(routes, "GET", "/colour/zz").status == 404
    assert routes.url_for("colour", value=4095) == "/colour/fff"


def test_custom_converter_subclass_rejecting_with_value_error_tries_next_route():
    class Even(Converter):
        regex = "[0-9]+"

        def to_python(self, text):
            number = int(text)
            if number % 2:
                raise ValueError("odd")
            return number

    register_converter("test_even", Even())
    routes = Router()

    @routes.get("/n/{value:test_even}")
    def even(request, value):
        return f"even {value}"

    @routes.get("/n/{value:int}")
    def odd(request, value):
        return f"odd {value}"

    assert call(routes, "GET", "/n/4").body == b"even 4"
    assert call(routes, "GET", "/n/5").body == b"odd 5"


def test_register_converter_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_converter("int", Converter())
    with pytest.raises(ValueError, match="identifier"):
        register_converter("not-a-name", Converter())
    with pytest.raises(TypeError, match="Converter instance"):
        register_converter("test_bad", "[0-9]+")
    with pytest.raises(ValueError, match="invalid converter regex"):
        Converter("[unclosed")


# -- 404, 405, HEAD, OPTIONS, 501 --------------------------------------------


@pytest.fixture
def crud():
    routes = Router()

    @routes.get("/items")
    def list_items(request):
        return [1, 2]

    @routes.post("/items")
    def create_item(request):
        return ("created", 201)

    @routes.get("/items/{item_id:int}")
    def get_item(request, item_id):
        return {"id": item_id, "method": request.method}

    @routes.put("/items/{item_id:int}")
    def put_item(request, item_id):
        return "put"

    @routes.route("/purge/{key}", methods=["PURGE"])
    def purge(request, key):
        return f"purged {key}"

    @routes.post("/only-post")
    def only_post(request):
        return "posted"

    return routes


def test_not_found(crud):
    response = call(crud, "GET", "/nowhere")
    assert response.status == 404
    assert response.body == b"Not Found\n"
    redirect = call(crud, "GET", "/items/")  # the trailing-slash redirect, on by default
    assert (redirect.status, redirect.headers["location"]) == (307, "/items")
    crud.redirect_slashes = False
    assert call(crud, "GET", "/items/").status == 404


def test_method_not_allowed_lists_every_method(crud):
    response = call(crud, "DELETE", "/items")
    assert response.status == 405
    assert allow(response) == ["GET", "HEAD", "POST", "OPTIONS"]
    response = call(crud, "DELETE", "/items/3")
    assert allow(response) == ["GET", "HEAD", "PUT", "OPTIONS"]
    response = call(crud, "GET", "/only-post")
    assert allow(response) == ["POST", "OPTIONS"]
    response = call(crud, "GET", "/purge/k")
    assert allow(response) == ["OPTIONS", "PURGE"]


def test_head_is_served_by_get(crud):
    response = call(crud, "HEAD", "/items/9")
    assert response.status == 200
    assert response.body == b'{"id":9,"method":"HEAD"}'
    assert call(crud, "HEAD", "/items").status == 200
    assert call(crud, "HEAD", "/only-post").status == 405


def test_explicit_head_route_wins_over_get():
    routes = Router()

    @routes.get("/x")
    def get(request):
        return "get"

    @routes.route("/x", methods=["HEAD"])
    def head(request):
        return ("", 204)

    assert call(routes, "HEAD", "/x").status == 204
    assert call(routes, "GET", "/x").body == b"get"


def test_automatic_options(crud):
    response = call(crud, "OPTIONS", "/items")
    assert response.status == 204
    assert response.body == b""
    assert allow(response) == ["GET", "HEAD", "POST", "OPTIONS"]
    assert allow(call(crud, "OPTIONS", "/items/1")) == ["GET", "HEAD", "PUT", "OPTIONS"]
    assert call(crud, "OPTIONS", "/nowhere").status == 404


def test_explicit_options_route_wins():
    routes = Router()

    @routes.route("/x", methods=["OPTIONS"])
    def options(request):
        return ("custom", 200, {"Allow": "GET"})

    @routes.get("/x")
    def get(request):
        return "get"

    response = call(routes, "OPTIONS", "/x")
    assert response.body == b"custom"
    assert response.headers["Allow"] == "GET"


def test_options_star_lists_every_method_the_app_serves(crud):
    response = call(crud, "OPTIONS", "*")
    assert response.status == 204
    assert allow(response) == ["GET", "HEAD", "POST", "PUT", "OPTIONS", "PURGE"]
    assert crud.methods_in_use() == frozenset(
        {"GET", "HEAD", "POST", "PUT", "OPTIONS", "PURGE"})


def test_unknown_method_is_501_but_methods_in_use_are_routed(crud):
    assert call(crud, "BREW", "/items").status == 501
    assert call(crud, "BREW", "/nowhere").status == 501
    assert call(crud, "get", "/items").status == 501
    assert call(crud, "PURGE", "/purge/abc").body == b"purged abc"
    assert call(crud, "PURGE", "/nowhere").status == 404
    # Standard but unused methods are 405 on a known path, not 501.
    response = call(crud, "TRACE", "/items")
    assert response.status == 405


def test_empty_router_answers_404_and_501():
    routes = Router()
    assert call(routes, "GET", "/").status == 404
    assert call(routes, "FOO", "/").status == 501
    assert allow(call(routes, "OPTIONS", "*")) == ["OPTIONS"]


# -- return-value coercion ---------------------------------------------------


def test_coercion_of_return_values():
    streaming = StreamingResponse(chunk for chunk in [b"a"])
    prepared = Response.html("<p>hi</p>")
    values = {
        "/str": "text",
        "/bytes": b"\x00\x01",
        "/dict": {"a": 1},
        "/list": [1, "two"],
        "/tuple2": ("made", 201),
        "/tuple3": ({"ok": True}, 202, {"X-Extra": "1"}),
        "/tuple-response": (Response.text("teapot"), 418),
        "/response": prepared,
        "/streaming": streaming,
    }
    routes = Router()
    for path, value in values.items():
        routes.add_route(path, lambda request, value=value: value)

    def get(path):
        return call(routes, "GET", path)

    assert get("/str").content_type == "text/plain; charset=utf-8"
    assert (get("/bytes").body, get("/bytes").content_type) == (
        b"\x00\x01", "application/octet-stream")
    assert (get("/dict").body, get("/dict").content_type) == (b'{"a":1}', "application/json")
    assert get("/list").body == b'[1,"two"]'
    assert (get("/tuple2").status, get("/tuple2").body) == (201, b"made")
    response = get("/tuple3")
    assert (response.status, response.body, response.headers["x-extra"]) == (
        202, b'{"ok":true}', "1")
    assert get("/tuple-response").status == 418
    assert get("/response") is prepared
    assert get("/streaming") is streaming


def test_returning_none_raises_type_error_naming_the_handler():
    routes = Router()

    @routes.get("/")
    def forgetful(request):
        pass

    with pytest.raises(TypeError, match="forgetful.*NoneType"):
        call(routes, "GET", "/")


@pytest.mark.parametrize("value, kind", [
    (42, "int"), ({1, 2}, "set"), (object(), "object"), (("a",), "tuple"),
    (("a", 200, {}, "extra"), "tuple"),
])
def test_unusable_return_values_raise_type_error(value, kind):
    routes = Router()

    @routes.get("/")
    def bad_handler(request):
        yield from sleep(0)
        return value

    with pytest.raises(TypeError, match=f"bad_handler returned {kind}"):
        call(routes, "GET", "/")


def test_bad_tuples_and_json_raise_type_error():
    routes = Router()
    routes.add_route("/status", lambda request: ("x", "200"))
    routes.add_route("/headers", lambda request: ("x", 200, 5))
    routes.add_route("/json", lambda request: {"when": object()})
    with pytest.raises(TypeError, match="status"):
        call(routes, "GET", "/status")
    with pytest.raises(TypeError, match="headers"):
        call(routes, "GET", "/headers")
    with pytest.raises(TypeError, match="JSON"):
        call(routes, "GET", "/json")


# -- errors --------------------------------------------------------------------


def test_http_error_becomes_its_response():
    routes = Router()

    @routes.get("/text")
    def text(request):
        raise HTTPError(403, "go away")

    @routes.get("/json")
    def json(request):
        yield from sleep(0)
        raise HTTPError(422, {"field": "missing"}, headers={"X-Why": "validation"})

    @routes.get("/plain")
    def plain(request):
        raise HTTPError(410)

    response = call(routes, "GET", "/text")
    assert (response.status, response.body) == (403, b"go away\n")
    response = call(routes, "GET", "/json")
    assert (response.status, response.body) == (422, b'{"field":"missing"}')
    assert response.headers["x-why"] == "validation"
    assert call(routes, "GET", "/plain").body == b"Gone\n"


def test_unhandled_exceptions_propagate():
    routes = Router()

    @routes.get("/plain")
    def plain(request):
        raise KeyError("boom")

    @routes.get("/gen")
    def gen(request):
        yield from sleep(0)
        raise RuntimeError("gen boom")

    with pytest.raises(KeyError):
        call(routes, "GET", "/plain")
    with pytest.raises(RuntimeError, match="gen boom"):
        call(routes, "GET", "/gen")


def test_handler_with_wrong_signature_propagates_type_error():
    routes = Router()

    @routes.get("/users/{user_id}")
    def user(request):
        return "never"

    with pytest.raises(TypeError, match="user_id"):
        call(routes, "GET", "/users/1")


def test_status_error_handlers_cover_router_answers_and_http_errors():
    routes = Router()
    seen = []

    @routes.get("/items")
    def items(request):
        return "items"

    @routes.get("/forbidden")
    def forbidden(request):
        raise HTTPError(403, "no")

    @routes.error_handler(404)
    def not_found(request, exc):
        seen.append(exc)
        return ({"error": "not found", "path": request.path}, 404)

    @routes.error_handler(405)
    def not_allowed(request, exc):
        return ("nope", 405)

    @routes.error_handler(403)
    def on_forbidden(request, exc):
        yield from sleep(0)
        return (f"forbidden: {exc.detail}", exc.status)

    @routes.error_handler(501)
    def not_implemented(request, exc):
        return ("what?", 501)

    response = call(routes, "GET", "/missing")
    assert response.body == b'{"error":"not found","path":"/missing"}'
    assert isinstance(seen[0], HTTPError) and seen[0].status == 404
    response = call(routes, "POST", "/items")
    assert (response.status, response.body) == (405, b"nope")
    assert allow(response) == ["GET", "HEAD", "OPTIONS"]
    response = call(routes, "GET", "/forbidden")
    assert (response.status, response.body) == (403, b"forbidden: no")
    assert call(routes, "BREW", "/items").body == b"what?"


def test_exception_handlers_follow_the_mro_and_status_beats_class():
    class AppError(Exception):
        pass

    class DeepError(AppError):
        pass

    routes = Router()

    @routes.get("/deep")
    def deep(request):
        raise DeepError("deep")

    @routes.get("/lookup")
    def lookup(request):
        return {}["missing"]

    @routes.get("/teapot")
    def teapot(request):
        raise HTTPError(418)

    @routes.get("/gone")
    def gone(request):
        raise HTTPError(410)

    @routes.error_handler(AppError)
    def app_error(request, exc):
        return (f"app error {type(exc).__name__}", 500)

    @routes.error_handler(LookupError)
    def lookup_error(request, exc):
        return ("lookup", 400)

    @routes.error_handler(HTTPError)
    def any_http(request, exc):
        return (f"http {exc.status}", exc.status)

    @routes.error_handler(418)
    def short_and_stout(request, exc):
        return ("teapot", 418)

    assert call(routes, "GET", "/deep").body == b"app error DeepError"
    assert call(routes, "GET", "/lookup").body == b"lookup"
    assert call(routes, "GET", "/teapot").body == b"teapot"
    assert call(routes, "GET", "/gone").body == b"http 410"
    assert call(routes, "GET", "/nowhere").body == b"http 404"


def test_error_handler_return_value_is_coerced_and_checked():
    routes = Router()

    @routes.get("/")
    def fails(request):
        raise ValueError("x")

    @routes.error_handler(ValueError)
    def useless(request, exc):
        return None

    with pytest.raises(TypeError, match="useless returned NoneType"):
        call(routes, "GET", "/")


def test_error_handler_that_raises_propagates_and_runs_once():
    routes = Router()
    calls = []

    @routes.middleware
    def passthrough(request, call_next):
        return (yield from call_next(request))

    @routes.get("/")
    def fails(request):
        raise ValueError("original")

    @routes.error_handler(ValueError)
    def reraise(request, exc):
        calls.append(exc)
        raise exc

    with pytest.raises(ValueError, match="original"):
        call(routes, "GET", "/")
    assert len(calls) == 1


def test_error_handler_registration_errors():
    routes = Router()

    @routes.error_handler(404)
    def first(request, exc):
        return "first"

    with pytest.raises(ValueError, match="already has an error handler"):
        routes.error_handler(404)(lambda request, exc: "second")
    with pytest.raises(TypeError, match="status code or an Exception subclass"):
        routes.error_handler("404")
    with pytest.raises(TypeError, match="status code or an Exception subclass"):
        routes.error_handler(KeyboardInterrupt)
    with pytest.raises(ValueError, match="from 100 to 999"):
        routes.error_handler(99)


# -- middleware ----------------------------------------------------------------


def test_middleware_wraps_handlers_in_registration_order():
    routes = Router()
    order = []

    @routes.middleware
    def outer(request, call_next):
        order.append("outer in")
        response = yield from call_next(request)
        order.append("outer out")
        response.set_header("X-Outer", "1")
        return response

    @routes.middleware
    def inner(request, call_next):
        order.append("inner in")
        response = yield from call_next(request)
        order.append("inner out")
        return response

    @routes.get("/")
    def hello(request):
        order.append("handler")
        return "hi"

    result = routes.handle(make_request("GET", "/"))
    assert type(result) is GeneratorType
    response = run(result)
    assert response.body == b"hi"
    assert response.headers["x-outer"] == "1"
    assert order == ["outer in", "inner in", "handler", "inner out", "outer out"]


def test_middleware_sees_router_answers_and_error_responses():
    routes = Router()
    statuses = []

    @routes.middleware
    def record(request, call_next):
        response = yield from call_next(request)
        statuses.append(response.status)
        response.set_header("X-Seen", "yes")
        return response

    @routes.get("/items")
    def items(request):
        return "items"

    @routes.get("/boom")
    def boom(request):
        raise HTTPError(409, "conflict")

    for method, target in [("GET", "/missing"), ("POST", "/items"), ("OPTIONS", "/items"),
                           ("BREW", "/items"), ("OPTIONS", "*"), ("GET", "/boom")]:
        assert call(routes, method, target).headers["x-seen"] == "yes"
    assert statuses == [404, 405, 204, 501, 204, 409]


def test_middleware_can_short_circuit_and_return_any_handler_value():
    routes = Router()

    @routes.middleware
    def auth(request, call_next):
        if request.headers.get("authorization") != "secret":
            return ("unauthorised", 401)
        return (yield from call_next(request))

    @routes.get("/")
    def private(request):
        return "private"

    assert call(routes, "GET", "/").status == 401
    response = call(routes, "GET", "/", headers={"authorization": "secret"})
    assert response.body == b"private"


def test_middleware_may_replace_the_request_state_and_headers():
    routes = Router()

    @routes.middleware
    def tag(request, call_next):
        request.state["user"] = "ann"
        yield from sleep(0)
        return (yield from call_next(request))

    @routes.get("/who")
    def who(request):
        return request.state["user"]

    assert call(routes, "GET", "/who").body == b"ann"


def test_exception_raised_by_middleware_goes_to_error_handlers():
    routes = Router()

    @routes.middleware
    def guard(request, call_next):
        if request.path == "/admin":
            raise HTTPError(403, "admins only")
        if request.path == "/crash":
            raise ValueError("crash")
        return (yield from call_next(request))

    @routes.get("/admin")
    def admin(request):
        return "admin"

    @routes.get("/crash")
    def crash(request):
        return "crash"

    @routes.error_handler(ValueError)
    def on_value_error(request, exc):
        return (f"handled {exc}", 500)

    response = call(routes, "GET", "/admin")
    assert (response.status, response.body) == (403, b"admins only\n")
    assert call(routes, "GET", "/crash").body == b"handled crash"


def test_unhandled_exception_in_middleware_propagates():
    routes = Router()

    @routes.middleware
    def broken(request, call_next):
        yield from call_next(request)
        raise RuntimeError("middleware broke")

    @routes.get("/")
    def hello(request):
        return "hi"

    with pytest.raises(RuntimeError, match="middleware broke"):
        call(routes, "GET", "/")


def test_middleware_sees_handler_exceptions_turned_into_responses():
    routes = Router()
    seen = []

    @routes.middleware
    def record(request, call_next):
        response = yield from call_next(request)
        seen.append(response.status)
        return response

    @routes.get("/")
    def fails(request):
        raise LookupError("x")

    @routes.error_handler(LookupError)
    def on_lookup(request, exc):
        return ("not here", 404)

    assert call(routes, "GET", "/").status == 404
    assert seen == [404]


def test_middleware_returning_unusable_value_raises():
    routes = Router()

    @routes.middleware
    def forgetful(request, call_next):
        yield from call_next(request)

    @routes.get("/")
    def hello(request):
        return "hi"

    with pytest.raises(TypeError, match="forgetful returned NoneType"):
        call(routes, "GET", "/")


def test_non_generator_middleware_is_rejected():
    routes = Router()

    def plain(request, call_next):
        return call_next(request)

    with pytest.raises(TypeError, match="must be a generator function"):
        routes.middleware(plain)


def test_middleware_added_after_routes_applies_to_them():
    routes = Router()

    @routes.get("/")
    def hello(request):
        return "hi"

    assert type(routes.handle(make_request("GET", "/"))) is Response

    @routes.middleware
    def tag(request, call_next):
        response = yield from call_next(request)
        response.set_header("X-Late", "1")
        return response

    assert call(routes, "GET", "/").headers["x-late"] == "1"


# -- mounting ------------------------------------------------------------------


def test_mount_serves_routes_under_prefix_including_later_ones():
    app = Router()
    api = Router()

    @api.get("/users/{user_id:int}", name="user")
    def user(request, user_id):
        return {"user": user_id, "full": request.route.full_path}

    assert app.mount("/api", api) is api

    @api.get("/late")
    def late(request):
        return "late"

    @app.get("/")
    def index(request):
        return "index"

    assert call(app, "GET", "/api/users/5").body == b'{"user":5,"full":"/api/users/{user_id:int}"}'
    assert call(app, "GET", "/api/late").body == b"late"
    assert call(app, "GET", "/").body == b"index"
    assert call(app, "GET", "/users/5").status == 404
    assert call(app, "GET", "/api").status == 404
    assert app.url_for("user", user_id=5) == "/api/users/5"
    assert api.url_for("user", user_id=5) == "/api/users/5"
    assert [route.full_path for route in app.routes] == [
        "/api/users/{user_id:int}", "/api/late", "/"]


def test_mount_root_route_and_empty_prefix():
    app = Router()
    api = Router()
    extra = Router()

    @api.get("/")
    def api_index(request):
        return "api index"

    @extra.get("/extra")
    def extra_route(request):
        return "extra"

    app.mount("/api", api)
    app.mount("/", extra)
    assert call(app, "GET", "/api/").body == b"api index"
    assert call(app, "GET", "/extra").body == b"extra"


def test_nested_mounts_and_namespaced_names():
    app = Router()
    v1 = Router()
    users = Router()

    @users.get("/{name}", name="show")
    def show(request, name):
        return name

    v1.mount("/users", users, name="users")
    app.mount("/v1", v1, name="v1")

    @users.get("/{name}/posts/{post:int}", name="post")
    def post(request, name, post):
        return f"{name} {post}"

    assert call(app, "GET", "/v1/users/ann").body == b"ann"
    assert call(app, "GET", "/v1/users/ann/posts/3").body == b"ann 3"
    assert app.url_for("v1:users:show", name="ann") == "/v1/users/ann"
    assert app.url_for("v1:users:post", name="ann", post=3) == "/v1/users/ann/posts/3"
    assert v1.url_for("users:show", name="bob") == "/v1/users/bob"
    assert users.url_for("show", name="cy") == "/v1/users/cy"
    with pytest.raises(LookupError):
        app.url_for("show", name="x")


def test_mount_errors():
    app = Router()
    api = Router()
    app.mount("/api", api)
    with pytest.raises(ValueError, match="already mounted"):
        Router().mount("/again", api)
    with pytest.raises(ValueError, match="inside itself"):
        api.mount("/loop", app)
    with pytest.raises(ValueError, match="inside itself"):
        app.mount("/self", app)
    for bad in ["api", "/api/", "/{x}"]:
        with pytest.raises(ValueError, match="mount prefix"):
            app.mount(bad, Router())
    with pytest.raises(TypeError, match="needs a Router"):
        app.mount("/x", object())
    with pytest.raises(ValueError, match="mount name"):
        app.mount("/named", Router(), name="a:b")


def test_conflicts_across_mounts_are_detected_either_way():
    app = Router()
    api = Router()

    @app.get("/api/items")
    def parent_items(request):
        return "parent"

    @api.get("/items")
    def child_items(request):
        return "child"

    with pytest.raises(ValueError, match="conflicts"):
        app.mount("/api", api)

    app2 = Router()
    api2 = Router()
    app2.mount("/api", api2)

    @app2.get("/api/things/{a:int}")
    def parent_things(request, a):
        return "parent"

    with pytest.raises(ValueError, match="parent_things"):
        api2.add_route("/things/{b:int}", lambda request, b: "child")
    api2.add_route("/things/{b:int}", lambda request, b: "child post", methods=["POST"])
    assert call(app2, "POST", "/api/things/1").body == b"child post"
    assert call(app2, "GET", "/api/things/1").body == b"parent"


def test_duplicate_names_across_mounts_are_detected():
    app = Router()
    api = Router()
    app.add_route("/a", lambda request: "a", name="thing")
    api.add_route("/b", lambda request: "b", name="thing")
    with pytest.raises(ValueError, match="'thing' is already used"):
        app.mount("/api", api)
    app.mount("/api", api, name="api")
    assert app.url_for("api:thing") == "/api/b"
    app.add_route("/d", lambda request: "d", name="api:late")
    with pytest.raises(ValueError, match="'api:late' is already used"):
        api.add_route("/late", lambda request: "late", name="late")


def test_mounted_middleware_order_and_scope():
    app = Router()
    api = Router()
    order = []

    def recorder(label):
        def middleware(request, call_next):
            order.append(f"{label} in")
            response = yield from call_next(request)
            order.append(f"{label} out")
            return response
        return middleware

    app.middleware(recorder("app1"))
    app.middleware(recorder("app2"))
    api.middleware(recorder("api"))

    @api.get("/x")
    def api_x(request):
        order.append("api handler")
        return "x"

    @app.get("/y")
    def app_y(request):
        order.append("app handler")
        return "y"

    app.mount("/api", api)

    call(app, "GET", "/api/x")
    assert order == ["app1 in", "app2 in", "api in", "api handler",
                     "api out", "app2 out", "app1 out"]
    order.clear()
    call(app, "GET", "/y")
    assert order == ["app1 in", "app2 in", "app handler", "app2 out", "app1 out"]
    order.clear()
    assert call(app, "GET", "/api/nothing").status == 404
    assert order == ["app1 in", "app2 in", "api in", "api out", "app2 out", "app1 out"]
    order.clear()
    assert call(app, "GET", "/apix").status == 404
    assert order == ["app1 in", "app2 in", "app2 out", "app1 out"]


def test_mounted_router_without_middleware_under_parent_with_middleware():
    app = Router()
    api = Router()

    @app.middleware
    def tag(request, call_next):
        response = yield from call_next(request)
        response.set_header("X-App", "1")
        return response

    @api.get("/x")
    def x(request):
        return "x"

    app.mount("/api", api)
    assert call(app, "GET", "/api/x").headers["x-app"] == "1"
    # Used on its own, the sub-router has no middleware: the fast path.
    assert type(api.handle(make_request("GET", "/x"))) is Response


def test_sub_router_error_handlers_take_precedence_for_its_routes():
    app = Router()
    api = Router()

    @app.error_handler(404)
    def app_404(request, exc):
        return ("app 404", 404)

    @app.error_handler(ValueError)
    def app_value(request, exc):
        return ("app value", 500)

    @app.error_handler(KeyError)
    def app_key(request, exc):
        return ("app key", 500)

    @api.error_handler(404)
    def api_404(request, exc):
        return ({"error": "api 404"}, 404)

    @api.error_handler(Exception)
    def api_any(request, exc):
        return ("api any", 500)

    @api.get("/value")
    def api_value(request):
        raise ValueError

    @api.get("/gone")
    def api_gone(request):
        raise HTTPError(404)

    @app.get("/value")
    def root_value(request):
        raise ValueError

    @app.get("/key")
    def root_key(request):
        raise KeyError

    app.mount("/api", api)

    assert call(app, "GET", "/api/value").body == b"api any"
    assert call(app, "GET", "/api/gone").body == b'{"error":"api 404"}'
    assert call(app, "GET", "/api/nothing").body == b'{"error":"api 404"}'
    assert call(app, "GET", "/value").body == b"app value"
    assert call(app, "GET", "/key").body == b"app key"
    assert call(app, "GET", "/nothing").body == b"app 404"


def test_parent_error_handlers_apply_to_sub_router_routes():
    app = Router()
    api = Router()

    @api.get("/fail")
    def fail(request):
        yield from sleep(0)
        raise ValueError("sub")

    @app.error_handler(ValueError)
    def handled(request, exc):
        yield from sleep(0)
        return (f"parent handled {exc}", 400)

    app.mount("/api", api)
    response = call(app, "GET", "/api/fail")
    assert (response.status, response.body) == (400, b"parent handled sub")


def test_method_not_allowed_across_parent_and_child_routes():
    app = Router()
    api = Router()

    @app.get("/api/x")
    def parent(request):
        return "parent"

    @api.post("/x")
    def child(request):
        return "child"

    app.mount("/api", api)
    assert call(app, "GET", "/api/x").body == b"parent"
    assert call(app, "POST", "/api/x").body == b"child"
    assert allow(call(app, "PUT", "/api/x")) == ["GET", "HEAD", "POST", "OPTIONS"]


# -- url_for -------------------------------------------------------------------


@pytest.fixture
def named():
    routes = Router()

    @routes.get("/files/{path:path}", name="file")
    def file(request, path):
        return path

    @routes.get("/tags/{tag}", name="tag")
    def tag(request, tag):
        return tag

    @routes.get("/items/{item_id:int}/{ratio:float}", name="item")
    def item(request, item_id, ratio):
        return {"item_id": item_id, "ratio": ratio}

    @routes.get("/things/{ident:uuid}", name="thing")
    def thing(request, ident):
        return str(ident)

    @routes.get("/people/{name}", name="person")
    def person(request, name):
        return name

    @routes.get("/about us", name="about")
    def about(request):
        return "about"

    return routes


@pytest.mark.parametrize("value", [
    "a/b/c.txt", "with space/and more", "100%/done?#", "caf\u00e9/\u2603", "trailing/",
])
def test_url_for_round_trips_path_params(named, value):
    url = named.url_for("file", path=value)
    assert " " not in url and "?" not in url and "#" not in url
    assert call(named, "GET", url).body == value.encode()


@pytest.mark.parametrize("value", ["plain", "two words", "50%", "q?x#y", "a+b&c=d", "\u00fcber"])
def test_url_for_round_trips_str_params(named, value):
    url = named.url_for("tag", tag=value)
    assert call(named, "GET", url).body == value.encode()


def test_url_for_numbers_uuid_static_and_param_called_name(named):
    assert named.url_for("item", item_id=3, ratio=2.5) == "/items/3/2.5"
    assert named.url_for("item", item_id=3, ratio=1e20) == "/items/3/100000000000000000000"
    assert call(named, "GET", named.url_for("item", item_id=3, ratio=1e-7)).body == \
        b'{"item_id":3,"ratio":1e-07}'
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert named.url_for("thing", ident=ident) == f"/things/{ident}"
    assert named.url_for("thing", ident=str(ident).upper()) == f"/things/{ident}"
    assert named.url_for("person", name="ann") == "/people/ann"
    assert named.url_for("about") == "/about%20us"
    assert call(named, "GET", named.url_for("about")).body == b"about"


def test_url_for_errors(named):
    with pytest.raises(LookupError, match="no route named 'nope'"):
        named.url_for("nope")
    with pytest.raises(TypeError, match="needs parameter.*ratio"):
        named.url_for("item", item_id=1)
    with pytest.raises(TypeError, match="unexpected parameter.*colour"):
        named.url_for("tag", tag="x", colour="red")
    with pytest.raises(TypeError, match="takes no parameters"):
        named.url_for("about", x=1)
    with pytest.raises(ValueError, match=r"\{name:path\}"):
        named.url_for("tag", tag="a/b")
    with pytest.raises(ValueError, match="not a valid value"):
        named.url_for("tag", tag="")
    with pytest.raises(ValueError, match="item_id:int"):
        named.url_for("item", item_id=-1, ratio=1.0)
    with pytest.raises(ValueError, match="item_id:int"):
        named.url_for("item", item_id="3", ratio=1.0)
    with pytest.raises(ValueError, match="ratio:float"):
        named.url_for("item", item_id=1, ratio=float("inf"))
    with pytest.raises(ValueError, match="ident:uuid"):
        named.url_for("thing", ident="not-a-uuid")


# -- registration errors -------------------------------------------------------


def test_conflicting_routes_are_rejected_with_a_clear_message():
    routes = Router()

    @routes.get("/users/{user_id:int}")
    def first(request, user_id):
        return "first"

    with pytest.raises(ValueError) as info:
        routes.add_route("/users/{other:int}", lambda request, other: "x",
                         methods=["GET", "POST"])
    message = str(info.value)
    assert "/users/{other:int}" in message and "/users/{user_id:int}" in message
    assert "first" in message and "GET" in message

    routes.add_route("/users/{other:int}", lambda request, other: "x", methods=["POST"])
    routes.add_route("/users/{name}", lambda request, name: "x")
    routes.add_route("/static", lambda request: "x")
    with pytest.raises(ValueError, match="conflicts"):
        routes.add_route("/static", lambda request: "y", methods=["GET"])
    with pytest.raises(ValueError, match="conflicts"):
        routes.add_route("/users/{n:str}", lambda request, n: "x")


def test_duplicate_route_names_are_rejected():
    routes = Router()
    routes.add_route("/a", lambda request: "a", name="same")
    with pytest.raises(ValueError, match="'same' is already used by '/a'"):
        routes.add_route("/b", lambda request: "b", name="same")
    with pytest.raises(ValueError, match="route name"):
        routes.add_route("/c", lambda request: "c", name="")
    assert call(routes, "GET", "/b").status == 404


@pytest.mark.parametrize("pattern, message", [
    ("/users/{id:integer}", "unknown converter 'integer'"),
    ("/users/{id", "unclosed"),
    ("/users/id}", "unbalanced"),
    ("/users/}{id}", "unbalanced"),
    ("/users/{{id}}", "nested or unbalanced"),
    ("/a/{x}/b/{x:int}", "repeats the parameter 'x'"),
    ("/users/{}", "parameter name"),
    ("/users/{1st}", "parameter name"),
    ("/users/{id:}", "unknown converter ''"),
    ("users", "must start with '/'"),
    ("/{request}", "cannot be named 'request'"),
])
def test_invalid_patterns_raise_value_error_naming_the_pattern(pattern, message):
    routes = Router()
    with pytest.raises(ValueError) as info:
        routes.add_route(pattern, lambda request, **params: "x")
    assert message in str(info.value)
    assert repr(pattern) in str(info.value)


def test_invalid_methods_and_handlers_are_rejected():
    routes = Router()
    with pytest.raises(ValueError, match="invalid HTTP method"):
        routes.add_route("/", lambda request: "x", methods=["GE T"])
    with pytest.raises(ValueError, match="at least one method"):
        routes.add_route("/", lambda request: "x", methods=[])
    with pytest.raises(TypeError, match="callable"):
        routes.add_route("/", "not a function")

    async def coroutine_handler(request):
        return "x"

    with pytest.raises(TypeError, match="async"):
        routes.add_route("/", coroutine_handler)
    assert routes.routes == []


def test_failed_registration_leaves_router_unchanged():
    routes = Router()
    routes.add_route("/a", lambda request: "a", name="a")
    with pytest.raises(ValueError):
        routes.add_route("/a", lambda request: "b", name="b")
    with pytest.raises(LookupError):
        routes.url_for("b")
    assert call(routes, "GET", "/a").body == b"a"
    assert len(routes.routes) == 1


def test_error_handler_raising_a_new_http_error_gives_its_response():
    routes = Router()

    @routes.get("/plain")
    def plain(request):
        raise ValueError("bad input")

    @routes.get("/gen")
    def gen(request):
        raise KeyError("k")

    @routes.error_handler(ValueError)
    def to_400(request, exc):
        raise HTTPError(400, f"invalid: {exc}")

    @routes.error_handler(KeyError)
    def to_404(request, exc):
        yield from sleep(0)
        raise HTTPError(404, "no such key")

    @routes.error_handler(400)
    def never(request, exc):
        return "not used for errors raised by error handlers"

    response = call(routes, "GET", "/plain")
    assert (response.status, response.body) == (400, b"invalid: bad input\n")
    response = call(routes, "GET", "/gen")
    assert (response.status, response.body) == (404, b"no such key\n")



# -- request.query: a read-only multi-valued mapping ---------------------------


def test_query_is_a_read_only_mapping_of_first_values():
    query = QueryParams("tag=a&q=x%20y&tag=b&empty=&bare&a+b=c%2Bd")
    assert dict(query) == {"tag": "a", "q": "x y", "empty": "", "bare": "", "a b": "c+d"}
    assert query.getlist("tag") == query.get_all("tag") == query.getall("tag") == ["a", "b"]
    assert query.getlist("nope") == []
    assert len(query) == 5
    assert list(query) == ["tag", "q", "empty", "bare", "a b"]
    assert list(query.keys()) == ["tag", "q", "empty", "bare", "a b"]
    assert list(query.values()) == ["a", "x y", "", "", "c+d"]
    assert query["tag"] == query.get("tag") == "a"
    assert query.get("x") is None and query.get("x", "default") == "default"
    assert "q" in query and "x" not in query and 1 not in query
    with pytest.raises(KeyError):
        query["x"]
    with pytest.raises(TypeError):
        query["tag"] = "c"  # type: ignore[index]
    assert query.items() == [("tag", "a"), ("q", "x y"), ("tag", "b"), ("empty", ""),
                             ("bare", ""), ("a b", "c+d")]
    assert query == QueryParams("tag=a&q=x+y&tag=b&empty=&bare&a%20b=c%2Bd")
    assert query != QueryParams("tag=b&q=x+y&tag=a&empty=&bare&a%20b=c%2Bd")
    assert QueryParams("a=1&b=2") == {"a": "1", "b": "2"}
    assert isinstance(query, Mapping)
    assert dict(QueryParams("")) == {} and len(QueryParams()) == 0


def test_request_query_reaches_the_handler_as_a_mapping():
    routes = Router()

    @routes.get("/search")
    def search(request):
        return {"dict": dict(request.query), "tags": request.query.getlist("tag"),
                "len": len(request.query)}

    response = call(routes, "GET", "/search?tag=a&q=1&tag=b")
    assert json.loads(response.body) == {"dict": {"tag": "a", "q": "1"}, "tags": ["a", "b"],
                                         "len": 2}
