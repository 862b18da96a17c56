"""Redirects, credentials and cookies, against corofw's own server: what
is followed and how (method, body, headers), what never crosses to another
origin, and a cookie jar that behaves as a browser's."""

from __future__ import annotations

import pytest

from corofw import (
    BasicAuth,
    BearerToken,
    Client,
    CookieJar,
    InvalidURL,
    Response,
    Router,
    StreamConsumed,
    TooManyRedirects,
    run,
)
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

app = Router()
ECHO_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


@app.route("/echo", methods=ECHO_METHODS)
def echo(request):
    return {"method": request.method, "path": request.path, "query": request.query_string,
            "headers": {k: v for k, v in request.headers.items()},
            "body": request.body.decode("latin-1")}


@app.route("/to/{status:int}", methods=ECHO_METHODS)
def to(request, status):
    return Response.redirect(request.query.get("where", "/echo"), status)


@app.get("/loop/{n:int}")
def loop(request, n):
    return Response.redirect(f"/loop/{n + 1}", 302)


@app.get("/set")
def set_cookie(request):
    return Response("set", headers=[("set-cookie", line) for line in request.query.getlist("c")])


@app.get("/set-and-go")
def set_and_go(request):
    return Response(b"", 302, [("location", request.query.get("where", "/echo")),
                               ("set-cookie", "hop=1; Path=/")])


@pytest.fixture(scope="module")
def servers():
    with serve_in_thread(app) as one, serve_in_thread(app) as two:
        yield one.url, two.url


def call(make, **options):
    def main():
        with Client(**options) as client:
            return (yield from make(client))

    return run(main())


def get_json(url, method="GET", **kwargs):
    def make(client):
        response = yield from client.request(method, url, **kwargs)
        return response

    return make


# -- redirects ---------------------------------------------------------------------------

def test_redirects_are_not_followed_unless_asked(servers):
    one, _ = servers
    response = call(get_json(one + "/to/302"))
    assert response.status_code == 302 and response.headers["location"] == "/echo"
    assert not response.history


@pytest.mark.parametrize("where", ["client", "call"])
def test_followed_when_asked_by_the_client_or_the_call(servers, where):
    one, _ = servers
    options = {"follow_redirects": True} if where == "client" else {}
    kwargs = {"follow_redirects": True} if where == "call" else {}
    response = call(get_json(one + "/to/302?where=/to/301", **kwargs), **options)
    assert response.status_code == 200 and response.url == one + "/echo"
    assert [r.status_code for r in response.history] == [302, 301]
    assert response.history[0].url == one + "/to/302?where=/to/301"


def test_a_call_can_refuse_what_the_client_would_follow(servers):
    one, _ = servers
    response = call(get_json(one + "/to/302", follow_redirects=False), follow_redirects=True)
    assert response.status_code == 302


@pytest.mark.parametrize("status, method, sent_method, body_kept", [
    (303, "POST", "GET", False), (303, "PUT", "GET", False), (303, "HEAD", "HEAD", False),
    (301, "POST", "GET", False), (302, "POST", "GET", False), (302, "PUT", "PUT", True),
    (307, "POST", "POST", True), (308, "POST", "POST", True), (307, "PATCH", "PATCH", True),
])
def test_the_method_and_body_after_a_redirect(servers, status, method, sent_method, body_kept):
    one, _ = servers
    response = call(get_json(f"{one}/to/{status}", method, json={"a": 1},
                             follow_redirects=True))
    assert response.status_code == 200
    if method == "HEAD":
        return
    seen = response.json()
    assert seen["method"] == sent_method
    if body_kept:
        assert seen["body"] == '{"a":1}' and seen["headers"]["content-type"] == "application/json"
    else:
        assert seen["body"] == "" and "content-type" not in seen["headers"]
        assert "content-length" not in seen["headers"] or seen["headers"]["content-length"] == "0"


def test_a_streamed_body_cannot_follow_a_307(servers):
    one, _ = servers
    with pytest.raises(StreamConsumed, match="307"):
        call(get_json(one + "/to/307", "POST", content=iter([b"a", b"b"]),
                      follow_redirects=True))
    # a 303 drops the body: nothing to send again
    response = call(get_json(one + "/to/303", "POST", content=iter([b"a"]),
                             follow_redirects=True))
    assert response.json()["method"] == "GET"


def test_too_many_redirects(servers):
    one, _ = servers
    with pytest.raises(TooManyRedirects) as caught:
        call(get_json(one + "/loop/0"), follow_redirects=True, max_redirects=3)
    assert caught.value.response.status_code == 302
    assert caught.value.response.url == one + "/loop/3"
    with pytest.raises(TooManyRedirects):
        call(get_json(one + "/to/302", follow_redirects=True), max_redirects=0)


@pytest.mark.parametrize("location, final", [
    ("/echo?x=1", "/echo?x=1"), ("echo", "/to/echo"), ("../echo", "/echo"),
    ("?where=/echo%3Fy=2", "/echo?y=2"), ("//{authority}/echo", "/echo"),
])
def test_relative_locations_are_resolved_against_the_url(servers, location, final):
    one, _ = servers
    location = location.format(authority=one.split("//")[1])
    response = call(get_json(one + "/to/302", params={"where": location},
                             follow_redirects=True))
    assert response.url == one + final
    assert response.status_code == (404 if final == "/to/echo" else 200)


def test_a_location_that_is_not_http_is_refused(servers):
    one, _ = servers
    with pytest.raises(InvalidURL, match="ftp"):
        call(get_json(one + "/to/302?where=ftp://h/x", follow_redirects=True))


def test_credentials_and_cookies_stay_with_their_origin(servers):
    one, two = servers
    headers = {"Cookie": "c=1", "X-Team": "blue"}
    same = call(get_json(f"{one}/to/302?where={one}/echo", headers=headers,
                         follow_redirects=True), auth=("u", "p")).json()["headers"]
    assert same["authorization"].startswith("Basic ") and same["cookie"] == "c=1"
    other = call(get_json(f"{one}/to/302?where={two}/echo", headers=headers,
                          follow_redirects=True), auth=("u", "p")).json()["headers"]
    assert "authorization" not in other and "cookie" not in other
    assert other["x-team"] == "blue"
    own = call(get_json(f"{one}/to/307?where={two}/echo", "POST",
                        headers={"Authorization": "Bearer abc"}, content=b"x",
                        follow_redirects=True)).json()
    assert "authorization" not in own["headers"] and own["body"] == "x"


def test_a_redirect_to_another_origin_from_userinfo_credentials(servers):
    one, two = servers
    host_port = one.split("//")[1]
    response = call(get_json(f"http://u:p@{host_port}/to/302?where={two}/echo",
                             follow_redirects=True))
    assert "authorization" not in response.json()["headers"]
    assert response.history[0].url == f"http://u:[secure]@{host_port}/to/302?where={two}/echo"


# -- credentials -------------------------------------------------------------------------

def test_basic_and_bearer_auth(servers):
    one, _ = servers
    url = one + "/echo"
    seen = call(get_json(url), auth=("\u00e9mile", "p:w")).json()["headers"]
    assert seen["authorization"] == BasicAuth("\u00e9mile", "p:w").header()
    assert seen["authorization"] == "Basic w6ltaWxlOnA6dw=="
    seen = call(get_json(url, auth=BearerToken("abc.DEF-123~+/=")), auth=("u", "p")).json()
    assert seen["headers"]["authorization"] == "Bearer abc.DEF-123~+/="
    seen = call(get_json(url, headers={"authorization": "Custom x"}), auth=("u", "p")).json()
    assert seen["headers"]["authorization"] == "Custom x"


@pytest.mark.parametrize("make", [
    lambda: BasicAuth("a:b", "c"), lambda: BasicAuth("a", "b\r\nc"),
    lambda: BearerToken("a b"), lambda: BearerToken("a\nb"), lambda: BearerToken(""),
    lambda: Client(auth=("a", "b", "c")), lambda: Client(auth="secret"),
])
def test_credentials_that_cannot_be_sent_are_refused(make):
    with pytest.raises((ValueError, TypeError)):
        make()


def test_credentials_are_not_shown():
    assert "p" not in repr(BasicAuth("u", "pw")).replace("BasicAuth", "")
    assert "tok" not in repr(BearerToken("tok"))


# -- the cookie jar ----------------------------------------------------------------------

def test_cookies_set_by_a_server_are_sent_back(servers):
    one, _ = servers

    def make(client):
        yield from client.get(one + "/set", params={"c": ["a=1; Path=/", "b=2; Path=/echo",
                                                          "c=3; Path=/other"]})
        echoed = yield from client.get(one + "/echo")
        yield from client.get(one + "/set")
        return echoed.json()["headers"].get("cookie"), client.cookies

    sent, jar = call(make, cookies=True)
    assert sent == "b=2; a=1"  # longest path first
    assert jar.get("a") == "1" and len(jar) == 3


def test_no_jar_no_cookies(servers):
    one, _ = servers

    def make(client):
        yield from client.get(one + "/set", params={"c": "a=1"})
        return (yield from client.get(one + "/echo")).json()["headers"].get("cookie")

    assert call(make) is None


def test_max_age_zero_deletes_and_a_jar_is_shared(servers):
    one, _ = servers
    jar = CookieJar()

    def make(client):
        yield from client.get(one + "/set", params={"c": ["a=1; Path=/", "b=2; Path=/"]})
        yield from client.get(one + "/set", params={"c": "a=gone; Path=/; Max-Age=0"})
        return (yield from client.get(one + "/echo")).json()["headers"].get("cookie")

    assert call(make, cookies=jar) == "b=2"
    assert [c.name for c in jar] == ["b"]

    def again(client):
        return (yield from client.get(one + "/echo")).json()["headers"].get("cookie")

    assert call(again, cookies=jar) == "b=2"


def test_a_secure_cookie_is_neither_set_nor_sent_over_http(servers):
    one, _ = servers
    jar = CookieJar()
    host = one.split("//")[1].split(":")[0]
    jar.set("s", "1", host, secure=True)

    def make(client):
        yield from client.get(one + "/set", params={"c": ["t=1; Secure", "s=overwritten"]})
        return (yield from client.get(one + "/echo")).json()["headers"].get("cookie")

    assert call(make, cookies=jar) is None
    assert jar.get("s") == "1" and jar.get("t") is None


def test_cookies_do_not_cross_hosts_and_follow_redirects(servers):
    one, _ = servers
    port = one.rsplit(":", 1)[1]
    other_host = f"http://localhost:{port}"

    def make(client):
        yield from client.get(one + "/set", params={"c": "a=1; Path=/"})
        elsewhere = yield from client.get(other_host + "/echo")
        hop = yield from client.get(one + "/set-and-go", follow_redirects=True)
        return elsewhere.json()["headers"].get("cookie"), hop.json()["headers"].get("cookie")

    elsewhere, after_hop = call(make, cookies=True)
    assert elsewhere is None
    assert after_hop == "a=1; hop=1"
