"""The client's cookie jar by RFC 6265 (and 6265bis where it is stricter):
domain, path, secure and expiry matching, what is ignored, and its
bounds. Sans-I/O: a jar, Set-Cookie lines and a clock."""

from __future__ import annotations

import pytest

from corofw import CookieJar
from corofw.http.cookiejar import (
    MAX_COOKIES,
    MAX_PER_DOMAIN,
    default_path,
    domain_match,
    path_match,
)


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


def jar_with(*lines, url="https://www.example.com/docs/page", clock=None):
    jar = CookieJar(clock or Clock())
    scheme, rest = url.split("://")
    host, _, path = rest.partition("/")
    jar.update(scheme, host, "/" + path, lines)
    return jar


def sent(jar, url):
    scheme, rest = url.split("://")
    host, _, path = rest.partition("/")
    return jar.header_for(scheme, host, "/" + path)


def test_matching_helpers():
    assert domain_match("www.example.com", "example.com")
    assert domain_match("example.com", "example.com")
    assert not domain_match("badexample.com", "example.com")
    assert not domain_match("1.2.3.4", "2.3.4")
    assert path_match("/a", "/a") and path_match("/a/b", "/a") and path_match("/a/b", "/a/")
    assert not path_match("/ab", "/a") and not path_match("/", "/a")
    assert default_path("/docs/page") == "/docs" and default_path("/page") == "/"
    assert default_path("") == "/" and default_path("/a/b/") == "/a/b"


def test_host_only_cookie_goes_to_its_host_alone():
    jar = jar_with("a=1; Path=/")
    assert sent(jar, "https://www.example.com/") == "a=1"
    assert sent(jar, "https://sub.www.example.com/") is None
    assert sent(jar, "https://example.com/") is None


def test_domain_cookie_covers_the_domain_and_subdomains():
    jar = jar_with("a=1; Domain=.Example.COM; Path=/")
    for url in ("https://example.com/", "https://www.example.com/x", "https://a.b.example.com/"):
        assert sent(jar, url) == "a=1", url
    assert sent(jar, "https://notexample.com/") is None


@pytest.mark.parametrize("line", [
    "a=1; Domain=other.com", "a=1; Domain=com", "a=1; Domain=sub.www.example.com",
])
def test_a_domain_the_host_is_not_in_is_ignored(line):
    assert len(jar_with(line)) == 0


def test_a_single_label_domain_only_from_that_host_and_for_it_alone():
    jar = jar_with("a=1; Domain=localhost", url="http://localhost/")
    assert sent(jar, "http://localhost/") == "a=1"
    assert sent(jar, "http://x.localhost/") is None


def test_an_ip_address_matches_only_itself():
    jar = jar_with("a=1; Domain=127.0.0.1", "b=2", url="http://127.0.0.1/")
    assert sent(jar, "http://127.0.0.1/") == "a=1; b=2"
    assert len(jar_with("a=1; Domain=0.0.1", url="http://127.0.0.1/")) == 0


def test_paths_default_to_the_directory_and_match_by_segment():
    jar = jar_with("a=1", "b=2; Path=/", "c=3; Path=/docs/page/x", "d=4; Path=nope")
    assert sent(jar, "https://www.example.com/docs") == "a=1; d=4; b=2"
    assert sent(jar, "https://www.example.com/docs/page/x/y") == "c=3; a=1; d=4; b=2"
    assert sent(jar, "https://www.example.com/docsx") == "b=2"


def test_same_name_domain_and_path_replaces_keeping_its_place():
    jar = jar_with("a=1; Path=/", "b=2; Path=/", "a=3; Path=/")
    assert sent(jar, "https://www.example.com/") == "a=3; b=2"
    jar = jar_with("a=1; Path=/", "a=2; Path=/docs")
    assert sent(jar, "https://www.example.com/docs") == "a=2; a=1"


def test_secure_cookies_only_over_https_and_only_from_https():
    jar = jar_with("s=1; Secure; Path=/")
    assert sent(jar, "https://www.example.com/") == "s=1"
    assert sent(jar, "http://www.example.com/") is None
    assert len(jar_with("s=1; Secure", url="http://www.example.com/")) == 0
    jar.update("http", "www.example.com", "/", ["s=evil; Path=/"])
    assert jar.get("s") == "1"


@pytest.mark.parametrize("line, kept", [
    ("__Secure-a=1; Secure", True), ("__Secure-a=1", False),
    ("__Host-a=1; Secure; Path=/", True), ("__Host-a=1; Secure", False),
    ("__Host-a=1; Secure; Path=/; Domain=www.example.com", False),
])
def test_name_prefixes(line, kept):
    assert len(jar_with(line)) == (1 if kept else 0)


def test_expiry_max_age_wins_and_zero_deletes():
    clock = Clock()
    jar = jar_with("a=1; Max-Age=10; Path=/", "b=2; Expires=Wed, 21 Oct 2015 07:28:00 GMT",
                   "c=3; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Max-Age=5; Path=/",
                   "d=4; Max-Age=5; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Path=/",
                   "e=5; Expires=not a date; Path=/", clock=clock)
    assert sent(jar, "https://www.example.com/") == "a=1; c=3; d=4; e=5"
    clock.now += 6
    assert sent(jar, "https://www.example.com/") == "a=1; e=5"
    clock.now += 5
    assert sent(jar, "https://www.example.com/") == "e=5"  # a session cookie stays
    jar.update("https", "www.example.com", "/", ["e=x; Path=/; Max-Age=0"])
    assert len(jar) == 0


@pytest.mark.parametrize("line", [
    "novalue", "=1", "a=1\x01", "a\x7f=1", "a=" + "x" * 5000, "  ; Path=/",
])
def test_malformed_cookies_are_ignored(line):
    assert len(jar_with(line)) == 0


def test_values_are_sent_back_as_given():
    jar = jar_with('a="quoted value"; Path=/', "b= spaced ; Path=/")
    assert sent(jar, "https://www.example.com/") == 'a="quoted value"; b=spaced'


def test_bounds_per_domain_and_in_all():
    jar = CookieJar(Clock())
    jar.update("https", "a.com", "/", [f"c{i}=1; Path=/" for i in range(MAX_PER_DOMAIN + 5)])
    assert len(jar) == MAX_PER_DOMAIN and jar.get("c0") is None
    assert jar.get(f"c{MAX_PER_DOMAIN + 4}") == "1"
    for host in range(MAX_COOKIES // MAX_PER_DOMAIN + 2):
        jar.update("https", f"h{host}.com", "/",
                   [f"c{i}=1; Path=/" for i in range(MAX_PER_DOMAIN)])
    assert len(jar) == MAX_COOKIES
    assert jar.get("c0", "a.com") is None  # the oldest went first


def test_set_get_clear():
    jar = CookieJar()
    jar.set("a", "1", ".example.com")
    assert jar.header_for("http", "www.example.com", "/") == "a=1"
    assert jar.get("a", "example.com") == "1" and jar.get("a", "other.com") is None
    with pytest.raises(ValueError):
        jar.set("a;b", "1", "example.com")
    jar.set("b", "2", "other.com")
    jar.clear("example.com")
    assert [c.name for c in jar] == ["b"]
    jar.clear()
    assert len(jar) == 0 and jar.header_for("http", "other.com", "/") is None
