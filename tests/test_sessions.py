"""Signed values, cookie sessions and the CSRF middleware: key rotation,
expiry, tampering of every kind giving an empty session (never an error),
and forged or missing CSRF tokens refused with 403."""

from __future__ import annotations

import json
import time
from types import GeneratorType

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from corofw import Request, Response, Router, run
from corofw.http.multipart import FormLimits, encode_multipart
from corofw.http.server import ServerConfig
from corofw.testing import serve_in_thread
from corofw.web.csrf import csrf_middleware, csrf_token
from corofw.web.sessions import Session, get_session, session_middleware
from corofw.web.signing import BadSignature, SignatureExpired, Signer

KEY = "k" * 32
OLD_KEY = "o" * 32


# -- Signer ---------------------------------------------------------------------------


@given(st.text())
def test_sign_and_unsign_round_trip(value):
    signer = Signer(KEY)
    token = signer.sign(value)
    assert signer.unsign(token) == value
    assert all(char.isalnum() or char in "-_." for char in token)  # cookie-safe


def test_bytes_values():
    signer = Signer(KEY)
    assert signer.unsign_bytes(signer.sign(b"\x00\xff")) == b"\x00\xff"
    with pytest.raises(BadSignature, match="not text"):
        signer.unsign(signer.sign(b"\xff"))


def test_every_changed_character_is_detected():
    signer = Signer(KEY)
    token = signer.sign("user=42")
    for index in range(len(token)):
        for replacement in ("A", "-", "."):
            forged = token[:index] + replacement + token[index + 1:]
            if forged != token:
                with pytest.raises(BadSignature):
                    signer.unsign(forged)


@given(st.text(max_size=80))
def test_anything_else_is_a_bad_signature_never_another_error(text):
    with pytest.raises(BadSignature):
        Signer(KEY).unsign(text)


def test_key_rotation():
    old = Signer(OLD_KEY)
    rotated = Signer([KEY, OLD_KEY])
    token = old.sign("v")
    assert rotated.unsign(token) == "v"  # still accepted
    assert Signer(KEY).unsign(rotated.sign("v")) == "v"  # the first key signs
    with pytest.raises(BadSignature):
        Signer(KEY).unsign(token)  # once the old key is dropped


def test_salts_separate_purposes():
    with pytest.raises(BadSignature):
        Signer(KEY, "csrf").unsign(Signer(KEY, "session").sign("v"))


def test_max_age():
    now = [1_000_000.0]
    signer = Signer(KEY, clock=lambda: now[0])
    token = signer.sign("v")
    now[0] += 100
    assert signer.unsign(token, max_age=100) == "v"
    now[0] += 1
    with pytest.raises(SignatureExpired):
        signer.unsign(token, max_age=100)
    assert signer.unsign(token) == "v"  # no max_age: any age


def test_keys_must_be_long_enough():
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer("short")
    with pytest.raises(ValueError, match="at least one key"):
        Signer([])


# -- sessions -------------------------------------------------------------------------


def session_app(**options) -> Router:
    routes = Router()
    routes.middleware(session_middleware(options.pop("keys", [KEY]), **options))

    @routes.get("/read")
    def read(request):
        return dict(get_session(request))

    @routes.post("/login")
    def login(request):
        session = get_session(request)
        session["user"] = request.query.get("user", "ada")
        return "in"

    @routes.post("/logout")
    def logout(request):
        get_session(request).clear()
        return "out"

    @routes.post("/nested")
    def nested(request):
        session = get_session(request)
        session.setdefault("cart", []).append("apple")
        session["cart"].append("pear")
        session.modified = True
        return "ok"

    @routes.post("/huge")
    def huge(request):
        get_session(request)["blob"] = "x" * 5000
        return "never"

    return routes


def call(routes: Router, method: str, path: str, cookie: str | None = None):
    headers = {"cookie": cookie} if cookie else {}
    response = routes.handle(Request(method, path, headers=headers))
    if type(response) is GeneratorType:
        response = run(response)
    return response


def set_cookies(response) -> list[str]:
    return response.headers.get_all("set-cookie") if response.headers else []


def cookie_value(response, name: str = "session") -> str:
    (line,) = [line for line in set_cookies(response) if line.startswith(name + "=")]
    return line.split(";", 1)[0].split("=", 1)[1]


def test_a_session_is_set_read_and_cleared():
    routes = session_app()
    response = call(routes, "POST", "/login")
    (line,) = set_cookies(response)
    assert line.startswith("session=") and "HttpOnly" in line and "SameSite=Lax" in line
    assert f"Max-Age={14 * 24 * 3600}" in line
    token = cookie_value(response)
    response = call(routes, "GET", "/read", f"session={token}")
    assert json.loads(response.body) == {"user": "ada"}
    assert set_cookies(response) == []  # unchanged: not rewritten
    response = call(routes, "POST", "/logout", f"session={token}")
    (line,) = set_cookies(response)
    assert line.startswith("session=; Max-Age=0")


def test_no_cookie_and_no_change_sends_nothing():
    response = call(session_app(), "GET", "/read")
    assert json.loads(response.body) == {} and set_cookies(response) == []
    response = call(session_app(), "POST", "/logout")  # clearing nothing
    assert set_cookies(response) == []


def test_nested_changes_with_modified():
    routes = session_app()
    token = cookie_value(call(routes, "POST", "/nested"))
    assert json.loads(call(routes, "GET", "/read", f"session={token}").body) == \
        {"cart": ["apple", "pear"]}


@pytest.mark.parametrize("forge", [
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),   # signature
    lambda token: "eyJ1c2VyIjoiYWRtaW4ifQ" + token[token.index("."):],  # payload swapped
    lambda token: token.split(".")[0],                                 # truncated
    lambda token: "",
    lambda token: "garbage",
    lambda token: token + ".extra",
    lambda token: Signer("x" * 32, "corofw.session").sign('{"user":"admin"}'),  # other key
    lambda token: Signer(KEY, "corofw.csrf").sign('{"user":"admin"}'),  # other purpose
    lambda token: Signer(KEY, "corofw.session").sign("[1, 2]"),        # not an object
    lambda token: Signer(KEY, "corofw.session").sign("not json"),
    lambda token: Signer(KEY, "corofw.session", clock=lambda: time.time() - 15 * 24 * 3600
                         ).sign('{"user":"ada"}'),                     # expired
])
def test_a_bad_session_cookie_is_an_empty_session_and_is_deleted(forge):
    routes = session_app()
    token = cookie_value(call(routes, "POST", "/login"))
    response = call(routes, "GET", "/read", f"session={forge(token)}")
    assert response.status == 200 and json.loads(response.body) == {}
    if forge(token):
        (line,) = set_cookies(response)
        assert line.startswith("session=; Max-Age=0")


def test_a_rotated_key_is_still_read_and_the_next_change_uses_the_new_key():
    token = cookie_value(call(session_app(keys=[OLD_KEY]), "POST", "/login"))
    rotated = session_app(keys=[KEY, OLD_KEY])
    assert json.loads(call(rotated, "GET", "/read", f"session={token}").body) == \
        {"user": "ada"}
    new_token = cookie_value(call(rotated, "POST", "/login?user=bob", f"session={token}"))
    assert Signer(KEY, "corofw.session").unsign(new_token) == '{"user":"bob"}'


def test_cookie_attributes_and_max_age():
    routes = session_app(cookie_name="sid", max_age=60, secure=True, samesite="strict",
                         domain="example.com")
    (line,) = set_cookies(call(routes, "POST", "/login"))
    assert line.startswith("sid=")
    assert "; Max-Age=60; Domain=example.com; Path=/; Secure; HttpOnly; SameSite=Strict" in line


def test_a_session_too_large_for_a_cookie_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="too large for a cookie"):
        call(session_app(), "POST", "/huge")


def test_get_session_without_the_middleware():
    with pytest.raises(LookupError, match="session_middleware"):
        get_session(Request("GET", "/"))


def test_session_tracks_changes():
    session = Session({"a": 1})
    assert not session.modified
    session.get("a")
    assert not session.modified
    for change in (lambda s: s.update(b=2), lambda s: s.pop("a"), lambda s: s.popitem(),
                   lambda s: s.setdefault("z", 1), lambda s: s.__delitem__("a"),
                   lambda s: s.__ior__({"c": 3})):
        session = Session({"a": 1})
        change(session)
        assert session.modified
    session = Session({"a": 1})
    session.pop("missing", None)
    session.setdefault("a", 2)
    assert not session.modified


# -- CSRF ------------------------------------------------------------------------------


def csrf_app(**options) -> Router:
    routes = Router()
    routes.middleware(csrf_middleware([KEY], **options))

    @routes.get("/form")
    def form(request):
        return Response.html(f'<input name="csrf_token" value="{csrf_token(request)}">')

    @routes.post("/submit")
    def submit(request):
        form = yield from request.form()
        return {"got": form.get("text")}

    @routes.post("/api")
    def api(request):
        return "api ok"

    return routes


def csrf_call(routes: Router, method: str, path: str, body: bytes = b"", **headers: str):
    request = Request(method, path, body=body, headers={
        "host": "site.example", **{name.replace("_", "-"): value for name, value in
                                   headers.items()}})
    response = routes.handle(request)
    if type(response) is GeneratorType:
        response = run(response)
    return response


def fresh_token(routes: Router) -> str:
    response = csrf_call(routes, "GET", "/form")
    token = cookie_value(response, "csrftoken")
    assert token in response.body.decode()
    (line,) = set_cookies(response)
    assert "HttpOnly" not in line and "SameSite=Lax" in line
    return token


def test_a_safe_request_gets_a_token_and_keeps_it():
    routes = csrf_app()
    token = fresh_token(routes)
    response = csrf_call(routes, "GET", "/form", cookie=f"csrftoken={token}")
    assert set_cookies(response) == [] and token in response.body.decode()


def test_posts_with_the_token_pass():
    routes = csrf_app()
    token = fresh_token(routes)
    cookie = f"csrftoken={token}"
    response = csrf_call(routes, "POST", "/api", cookie=cookie, x_csrf_token=token)
    assert response.status == 200 and response.body == b"api ok"
    body = f"text=hello&csrf_token={token}".encode()
    response = csrf_call(routes, "POST", "/submit", body, cookie=cookie,
                         content_type="application/x-www-form-urlencoded")
    assert json.loads(response.body) == {"got": "hello"}
    body = encode_multipart([("csrf_token", token), ("text", "multi")], "B")
    response = csrf_call(routes, "POST", "/submit", body, cookie=cookie,
                         content_type="multipart/form-data; boundary=B")
    assert json.loads(response.body) == {"got": "multi"}
    response = csrf_call(routes, "POST", "/api", cookie=cookie, x_csrf_token=token,
                         origin="https://site.example")
    assert response.status == 200


def test_forged_requests_are_403_saying_why():
    routes = csrf_app()
    token = fresh_token(routes)
    other = fresh_token(routes)
    cookie = f"csrftoken={token}"
    tampered = token[:-1] + ("B" if token.endswith("A") else "A")
    cases = [
        ({}, "the CSRF cookie is missing or invalid"),
        ({"x_csrf_token": token}, "the CSRF cookie is missing or invalid"),
        ({"cookie": cookie}, "no CSRF token in the X-CSRF-Token header"),
        ({"cookie": cookie, "x_csrf_token": other}, "does not match"),
        ({"cookie": cookie, "x_csrf_token": token[:-2]}, "does not match"),
        ({"cookie": cookie, "x_csrf_token": "ünïcode"}, "does not match"),
        ({"cookie": f"csrftoken={tampered}", "x_csrf_token": tampered},
         "missing or invalid"),
        ({"cookie": f"csrftoken={Signer(KEY, 'corofw.session').sign('x')}",
          "x_csrf_token": Signer(KEY, "corofw.session").sign("x")}, "missing or invalid"),
        ({"cookie": cookie, "x_csrf_token": token, "origin": "https://evil.example"},
         "cross-origin request from 'https://evil.example'"),
        ({"cookie": cookie, "x_csrf_token": token, "origin": "null"}, "cross-origin"),
    ]
    for headers, reason in cases:
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            response = csrf_call(routes, method, "/api", **headers)
            assert response.status == 403, (headers, method)
            assert reason in response.body.decode()
    body = f"text=x&csrf_token={other}".encode()
    response = csrf_call(routes, "POST", "/submit", body, cookie=cookie,
                         content_type="application/x-www-form-urlencoded")
    assert response.status == 403


def test_a_refused_client_without_a_cookie_gets_one():
    response = csrf_call(csrf_app(), "POST", "/api")
    assert response.status == 403 and cookie_value(response, "csrftoken")


def test_trusted_origins():
    routes = csrf_app(trusted_origins=["https://app.example"])
    token = fresh_token(routes)
    response = csrf_call(routes, "POST", "/api", cookie=f"csrftoken={token}",
                         x_csrf_token=token, origin="https://app.example")
    assert response.status == 200


def test_csrf_token_without_the_middleware():
    with pytest.raises(LookupError, match="csrf_middleware"):
        csrf_token(Request("GET", "/"))


def test_sessions_and_csrf_in_a_browser_like_client(no_leaks):
    routes = session_app()
    routes.middleware(csrf_middleware([KEY]))

    @routes.get("/token")
    def token(request):
        return csrf_token(request)

    config = ServerConfig(access_log=False, graceful_timeout=5.0)
    with serve_in_thread(routes, config) as server, httpx.Client(base_url=server.url) as client:
        csrf = client.get("/token").text
        assert client.post("/login?user=zoe").status_code == 403
        assert client.post("/login?user=zoe", headers={"x-csrf-token": csrf}).text == "in"
        assert client.get("/read").json() == {"user": "zoe"}
        client.cookies.clear()
        client.cookies.set("session", "tampered")
        response = client.get("/read")
        assert response.json() == {}
        assert any(line.startswith("session=; Max-Age=0")
                   for line in response.headers.get_list("set-cookie"))


def test_a_form_read_for_the_csrf_check_keeps_the_handlers_limits():
    routes = csrf_app()

    @routes.post("/strict")
    def strict(request):
        form = yield from request.form(FormLimits(max_fields=2))
        return {"fields": len(form.items())}

    token = fresh_token(routes)
    cookie = f"csrftoken={token}"
    form = "application/x-www-form-urlencoded"
    body = f"a=1&b=2&csrf_token={token}".encode()
    response = csrf_call(routes, "POST", "/strict", body, cookie=cookie, content_type=form)
    assert response.status == 413 and b"more than 2 form fields" in response.body
    body = f"csrf_token={token}&a=1".encode()
    response = csrf_call(routes, "POST", "/strict", body, cookie=cookie, content_type=form)
    assert response.status == 200 and json.loads(response.body) == {"fields": 2}


def test_the_csrf_check_reads_the_form_with_its_own_limits():
    routes = csrf_app(form_limits=FormLimits(max_field_size=64))
    token = fresh_token(routes)
    body = f"csrf_token={token}&text={'x' * 100}".encode()
    response = csrf_call(routes, "POST", "/submit", body, cookie=f"csrftoken={token}",
                         content_type="application/x-www-form-urlencoded")
    assert response.status == 413 and b"larger than 64 bytes" in response.body
