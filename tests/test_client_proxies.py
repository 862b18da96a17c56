"""Proxies: which calls go through one (explicit, or from HTTP_PROXY,
HTTPS_PROXY, ALL_PROXY and NO_PROXY when the client trusts its
environment), plain http in absolute form, https through a CONNECT tunnel
with the server's certificate still checked, and the proxy's refusals."""

from __future__ import annotations

import base64
import ssl

import pytest
from proxy_server import ProxyServer
from raw_server import RawServer

from corofw import Client, ConnectionRefused, InvalidURL, ProxyError, Router, TLSError, run
from corofw.http.proxies import Proxies
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")

app = Router()


@app.route("/echo", methods=["GET", "POST"])
def echo(request):
    return {"target": request.target, "host": request.headers.get("host"),
            "body": request.body.decode(), "proxy": request.headers.get("proxy-authorization")}


def go(make, **options):
    def main():
        with Client(**options) as client:
            return (yield from make(client))

    return run(main())


def basic(credentials):
    return "Basic " + base64.b64encode(credentials.encode()).decode()


# -- choosing the proxy ------------------------------------------------------------------

def route(proxies, url):
    scheme, rest = url.split("://")
    host, _, port = rest.partition(":")
    proxy = proxies.route(scheme, host, int(port or (443 if scheme == "https" else 80)))
    return proxy and proxy.url


def test_no_proxy_unless_asked(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert not Proxies()
    assert Client().proxies is None
    assert route(Proxies(trust_env=True), "http://example.com") == "http://proxy:3128"


def test_the_environment_as_curl_reads_it():
    env = {"http_proxy": "http://lower:1", "HTTP_PROXY": "http://upper:2",
           "HTTPS_PROXY": "secure-proxy:3", "NO_PROXY": "internal.example, .corp, 10.0.0.0/8,"
           " 192.168.1.7, [::1]:8080, example.org:8443"}
    proxies = Proxies(trust_env=True, environ=env)
    assert route(proxies, "http://example.com") == "http://lower:1"
    assert route(proxies, "https://example.com") == "http://secure-proxy:3"
    for direct in ("http://internal.example", "http://a.internal.example", "http://x.corp",
                   "http://corp", "http://10.1.2.3", "http://192.168.1.7",
                   "https://example.org:8443"):
        assert route(proxies, direct) is None, direct
    for proxied in ("http://notinternal.example", "http://192.168.1.8",
                    "https://example.org", "http://11.0.0.1"):
        assert route(proxies, proxied) is not None, proxied
    assert proxies.route("http", "::1", 8080) is None and proxies.route("http", "::1", 80)


def test_all_proxy_and_a_star():
    proxies = Proxies(trust_env=True, environ={"ALL_PROXY": "http://all:1"})
    assert route(proxies, "https://x.com") == route(proxies, "http://x.com") == "http://all:1"
    assert route(Proxies(trust_env=True, environ={"ALL_PROXY": "http://all:1",
                                                  "no_proxy": "*"}), "http://x.com") is None


def test_httpoxy_under_cgi_the_upper_case_variable_is_ignored():
    env = {"HTTP_PROXY": "http://attacker:1", "REQUEST_METHOD": "GET"}
    assert not Proxies(trust_env=True, environ=env)
    env["http_proxy"] = "http://chosen:2"
    assert route(Proxies(trust_env=True, environ=env), "http://x.com") == "http://chosen:2"


@pytest.mark.parametrize("url", ["https://proxy:3128", "socks5://proxy:1080", "http://:3128"])
def test_unsupported_proxy_urls_are_refused(url):
    with pytest.raises(InvalidURL):
        Client(proxy=url)


def test_the_proxy_password_is_not_shown():
    assert "secret" not in repr(Proxies("http://user:secret@proxy:3128"))


# -- plain http through the proxy --------------------------------------------------------

def test_http_goes_to_the_proxy_in_absolute_form():
    with serve_in_thread(app) as origin, ProxyServer() as proxy:
        def make(client):
            first = yield from client.get(origin.url + "/echo?a=1")
            second = yield from client.post(origin.url + "/echo", content=b"body")
            return first.json(), second.json()

        first, second = go(make, proxy=proxy.url)
        authority = origin.url.split("//")[1]
        assert proxy.seen[0][0] == f"GET http://{authority}/echo?a=1 HTTP/1.1"
        assert proxy.seen[0][1]["host"] == authority
        assert first["target"] == "/echo?a=1" and first["host"] == authority
        assert second["body"] == "body"


def test_proxy_credentials_go_to_the_proxy_only():
    credentials = basic("user:p@ss")
    with serve_in_thread(app) as origin, ProxyServer(credentials=credentials) as proxy:
        def make(client):
            return (yield from client.get(origin.url + "/echo"))

        response = go(make, proxy=f"http://user:p%40ss@127.0.0.1:{proxy.port}")
        assert response.status_code == 200 and response.json()["proxy"] is None
        assert proxy.seen[0][1]["proxy-authorization"] == credentials
        refused = go(make, proxy=proxy.url)
        assert refused.status_code == 407


def test_no_proxy_sends_directly(monkeypatch):
    with serve_in_thread(app) as origin, ProxyServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")

        def make(client):
            return (yield from client.get(origin.url + "/echo"))

        assert go(make, trust_env=True).json()["target"] == "/echo"
        assert proxy.seen == []
        monkeypatch.delenv("NO_PROXY")
        assert go(make, trust_env=True).status_code == 200
        assert len(proxy.seen) == 1


def test_a_proxy_that_is_down_names_itself():
    with RawServer(lambda *args: None) as gone:
        url = gone.url
    with pytest.raises(ConnectionRefused, match="proxy"):
        go(lambda client: client.get("http://127.0.0.1:9/"), proxy=url)

    def make(client):
        return (yield from client.get("https://example.invalid/"))

    with pytest.raises(ConnectionRefused, match="proxy"):
        go(make, proxy=url)


# -- https through a tunnel --------------------------------------------------------------

def tls_origin(context):
    def handler(server, conn, index):
        try:
            tls = context.wrap_socket(conn, server_side=True)
        except ssl.SSLError:
            return  # the client did not trust the certificate
        with tls:
            while (head := server.read_request(tls)) is not None:
                body = b"tunnelled: " + head.split(b"\r\n")[0]
                tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                            % (len(body), body))

    return RawServer(handler)


def test_https_goes_through_a_connect_tunnel(tls_server_context, tls_client_context):
    with tls_origin(tls_server_context) as origin, ProxyServer() as proxy:
        def make(client):
            first = yield from client.get(f"https://localhost:{origin.port}/secret?x=1")
            second = yield from client.get(f"https://localhost:{origin.port}/again")
            return first.content, second.content

        first, second = go(make, proxy=proxy.url, ssl_context=tls_client_context)
        assert first == b"tunnelled: GET /secret?x=1 HTTP/1.1"  # the proxy saw none of it
        assert second == b"tunnelled: GET /again HTTP/1.1"
        assert [line for line, _ in proxy.seen] == [f"CONNECT localhost:{origin.port} HTTP/1.1"]
        assert origin.accepted == 1  # the tunnel was kept and reused


def test_the_servers_certificate_is_checked_through_the_tunnel(tls_server_context):
    untrusting = ssl.create_default_context()
    with tls_origin(tls_server_context) as origin, ProxyServer() as proxy:
        def make(client):
            return (yield from client.get(f"https://localhost:{origin.port}/"))

        with pytest.raises(TLSError):
            go(make, proxy=proxy.url, ssl_context=untrusting)


def test_a_refused_tunnel_is_a_proxy_error(tls_client_context):
    with ProxyServer(refuse_connect=True) as proxy:
        def make(client):
            return (yield from client.get("https://localhost:1/"))

        with pytest.raises(ProxyError, match="403") as caught:
            go(make, proxy=proxy.url, ssl_context=tls_client_context)
        assert caught.value.status == 403
    with ProxyServer(credentials="Basic x") as proxy, pytest.raises(ProxyError, match="407"):
        go(make, proxy=proxy.url, ssl_context=tls_client_context)
