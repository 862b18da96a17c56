"""URLs the client sends: paths and queries percent-encoded as httpx
encodes them, IDNA host names, ports checked, ``user:pass@`` sent as Basic
credentials and masked in what is shown, params as httpx encodes them, and
every URL that cannot be sent an InvalidURL (never a bare UnicodeError)."""

from __future__ import annotations

import base64

import httpx
import pytest

from corofw import Client, ClientError, InvalidURL, Router, run
from corofw.http import urls
from corofw.http.prepare import encode_host, encode_params, split_url
from corofw.http.urls import with_params
from corofw.testing import serve_in_thread


def target(url):
    return split_url(url, {})[1]


def origin(url):
    return split_url(url, {})[0]


def basic(credentials: str) -> str:
    return "Basic " + base64.b64encode(credentials.encode()).decode()


SAME_AS_HTTPX = [
    "http://h/caf\u00e9",
    "http://h/\u65e5\u672c?q=\u65e5\u672c",
    "http://h/a b?c d",
    "http://h/a%2Fb?x=%41",
    "http://h/{x}?q={y}",
    'http://h/"<>`?"<>`',
    "http://h/p?a=1#frag",
    "http://h/a|b^c[d]?e|f^g[h]",
    "http://h/~user/;p,=!$&'()*+@:x",
    "http://h/plain/path?a=1&b=2",
]


@pytest.mark.parametrize("url", SAME_AS_HTTPX)
def test_targets_are_percent_encoded_as_httpx_encodes_them(url):
    assert target(url).encode("ascii") == httpx.URL(url).raw_path


@pytest.mark.parametrize("url, expected", [
    ("http://h/caf\u00e9", "/caf%C3%A9"),
    ("http://h/\u65e5\u672c", "/%E6%97%A5%E6%9C%AC"),
    ("http://h?x=1", "/?x=1"),
    ("http://h/100%?p=50%", "/100%25?p=50%25"),  # a "%" that starts no escape
    ("http://h/%zz%4", "/%25zz%254"),
])
def test_targets(url, expected):
    assert target(url) == expected


@pytest.mark.parametrize("url, host, authority", [
    ("http://B\u00fccher.example/", "xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("https://\u65e5\u672c.example:8443/", "xn--wgv71a.example", "xn--wgv71a.example:8443"),
    ("http://EXAMPLE.com:8080/", "example.com", "example.com:8080"),
    ("https://[::1]:8443/", "::1", "[::1]:8443"),
    ("http://127.0.0.1:80/", "127.0.0.1", "127.0.0.1"),
    ("http://h:/", "h", "h"),
    ("http://h:65535/", "h", "h:65535"),
])
def test_hosts_and_ports(url, host, authority):
    parsed = origin(url)
    assert (parsed.host, parsed.authority) == (host, authority)
    assert parsed.host.encode("ascii") == httpx.URL(url).raw_host


INTERNATIONAL = ["fa\u00df.de", "B\u00fccher.Example", "\u03b2\u03cc\u03bb\u03bf\u03c2.gr",
                 "\u00dcber\u3002example", "\u65e5\u672c\u8a9e.jp"]


@pytest.mark.parametrize("host", INTERNATIONAL)
@pytest.mark.parametrize("with_idna_package", [True, False])
def test_international_hosts_are_idna_2008_as_httpx_sends_them(host, with_idna_package,
                                                                 monkeypatch):
    if not with_idna_package:
        monkeypatch.setattr(urls, "_idna", None)
    url = f"http://{host}/"
    assert encode_host(host).encode("ascii") == httpx.URL(url).raw_host


@pytest.mark.parametrize("url, params", [
    ("http://h/p?a=1", {"a": "2"}),
    ("http://h/p?a=1&b=2&a=3", {"a": ["x", "y"], "c": "new"}),
    ("http://h/p?", {"b": "1"}),
    ("http://h/p#frag", {"b": "1"}),
    ("http://h/p?q=1#frag", {"b": "1"}),
    ("http://h/p", "a=1&b=two"),
    ("http://h/p?x=1", {"z": "caf\u00e9"}),
])
def test_params_merge_into_the_url_as_httpx_merges_them(url, params):
    """httpx's QueryParams.merge: a key given replaces that key's values."""
    assert with_params(url, params) == str(httpx.URL(url).copy_merge_params(params))


def test_the_query_a_url_has_keeps_its_own_escapes():
    assert with_params("http://h/p?x=%20y&k=a+b", {"z": "1"}) == "http://h/p?x=%20y&k=a+b&z=1"


@pytest.mark.parametrize("url, message", [
    ("http://h:0/", "port"),
    ("http://h:65536/", "port"),
    ("http://h:99999/", "port"),
    ("http://h:abc/", "port"),
    ("http://h:+80/", "port"),
    ("http://h:-1/", "port"),
    ("http://h:\uff18\uff10/", "port"),  # full-width digits
    ("http://exa mple.com/", "host"),
    ("http://a..b\u00fc/", "international domain name"),
    ("http://[::zz]/", "IPv6"),
    ("http://[::1/", "IPv6"),
    ("http:///x", "no host"),
    ("ftp://h/", "scheme"),
    ("http://h/a\r\nInjected: 1", "control character"),
    ("http://h/\x00", "control character"),
    ("http://h/\ud800", "UTF-8"),
])
def test_urls_that_cannot_be_sent_are_invalid_url_errors(url, message):
    with pytest.raises(InvalidURL, match=message) as caught:
        split_url(url, {})
    assert caught.value.url == url


def test_userinfo_becomes_basic_credentials_and_is_masked():
    parsed = origin("http://us%40er:p%3Ass@h:81/x")
    assert parsed.authorization == basic("us@er:p:ss")
    assert parsed.authority == "h:81"
    assert parsed.shown == "http://us%40er:[secure]@h:81"
    assert origin("http://user@h/").authorization == basic("user:")
    assert origin("http://user@h/").shown == "http://user@h"
    assert origin("http://h/").authorization is None
    with pytest.raises(InvalidURL) as caught:
        split_url("http://alice:s3cret@h/\x00", {})
    assert caught.value.url == "http://alice:[secure]@h/\x00"
    assert "s3cret" not in str(caught.value)


def test_params_are_encoded_as_httpx_encodes_them():
    params = {"a": None, "b": True, "c": False, "d": ["x", None], "e": "x y", "f": 1.5,
              "g": "caf\u00e9"}
    assert encode_params(params) == str(httpx.QueryParams(params))
    assert encode_params(params) == "a=&b=true&c=false&d=x&d=&e=x+y&f=1.5&g=caf%C3%A9"
    assert encode_params([("n", 1), ("n", 2)]) == "n=1&n=2"


# -- on the wire -------------------------------------------------------------------

app = Router()


@app.get("/{rest:path}")
def echo(request, rest):
    return {"path": request.path, "query": request.query.items(),
            "authorization": request.headers.get("authorization"),
            "host": request.headers.get("host")}


@pytest.fixture(scope="module")
def running_server():
    with serve_in_thread(app) as running:
        yield running


@pytest.fixture
def server(running_server, no_leaks):
    return running_server


def drive(make_coro):
    def main():
        with Client() as client:
            return (yield from make_coro(client))

    return run(main())


def test_non_ascii_paths_and_queries_reach_the_server(server):
    def go(client):
        cafe = yield from client.get(server.url + "/caf\u00e9?q=\u65e5\u672c&none",
                                     params={"a": None})
        kanji = yield from client.get(server.url + "/\u65e5\u672c/a b")
        return cafe.json(), kanji.json()

    cafe, kanji = drive(go)
    assert cafe["path"] == "/caf\u00e9"
    assert cafe["query"] == [["q", "\u65e5\u672c"], ["none", ""], ["a", ""]]
    assert kanji["path"] == "/\u65e5\u672c/a b"


def test_a_relative_url_with_a_url_in_its_query_is_relative(server):
    def main():
        with Client(server.url) as client:
            resp = yield from client.get("/next?to=http://elsewhere.invalid/x")
            return resp.json()

    assert run(main()) == {"path": "/next", "query": [["to", "http://elsewhere.invalid/x"]],
                           "authorization": None, "host": f"127.0.0.1:{server.port}"}


def test_userinfo_is_sent_as_basic_auth_and_never_shown(server):
    url = f"http://alice:s%C3%A9cret@127.0.0.1:{server.port}/private"

    def go(client):
        sent = yield from client.get(url)
        own = yield from client.get(url, headers={"Authorization": "Bearer t"})
        try:
            yield from client.get(f"http://alice:s3cret@127.0.0.1:{server.port}:x/")
        except InvalidURL as exc:
            error = exc
        return sent, own.json(), error

    sent, own, error = drive(go)
    assert sent.json()["authorization"] == basic("alice:s\u00e9cret")
    assert sent.json()["host"] == f"127.0.0.1:{server.port}"
    assert sent.url == f"http://alice:[secure]@127.0.0.1:{server.port}/private"
    assert own["authorization"] == "Bearer t"  # the call's own header wins
    assert "s3cret" not in str(error)


def test_unsendable_methods_and_headers_are_client_errors(server):
    def go(client):
        errors = []
        for call in (lambda: client.request("GET / HTTP/1.1\r\nX:", server.url),
                     lambda: client.get(server.url, headers={"X-Name": "\u65e5\u672c"}),
                     lambda: client.get(server.url, headers={"Host": "\u65e5\u672c"})):
            try:
                yield from call()
            except ClientError as exc:
                errors.append(exc)
        return errors

    errors = drive(go)
    assert [type(error) for error in errors] == [ClientError] * 3
    assert "method" in str(errors[0]) and "latin-1" in str(errors[1])
