"""The board (apps/board) over HTTP, against real PostgreSQL and the real
stand-in backend: every rule of the app, one test or more each."""

from __future__ import annotations

import gzip
import os
import re
import signal
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import httpx
import psycopg
import pytest
from board_util import (
    BODY_LIMIT,
    PASSWORD,
    BoardClient,
    hidden_token,
    make_png,
    open_events,
    query,
    reset_database,
    serve_board,
)
from prometheus_client.parser import text_string_to_metric_families

import apps.board.auth as auth
from apps.backend import routes as backend_routes
from apps.board.settings import MiB, Service
from corofw import Router, StartupError
from corofw.testing import serve_in_thread

pytestmark = pytest.mark.usefixtures("no_leaks")
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def backend_url():
    """The stand-in backend, served in a thread."""
    with serve_in_thread(backend_routes) as server:
        yield server.url


@pytest.fixture
def database(pg_dsn):
    reset_database(pg_dsn)
    return pg_dsn


@pytest.fixture
def site(database, backend_url, tmp_path):
    """The board on an empty database: ``server``, ``app`` (its Board),
    ``media`` (the image directory) and ``client()`` for a new browser."""
    media = str(tmp_path / "media")
    made: list[BoardClient] = []
    with serve_board(database, backend_url, media, page_size=5) as (server, app):
        def client() -> BoardClient:
            made.append(BoardClient(server.url))
            return made[-1]

        try:
            yield SimpleNamespace(server=server, app=app, media=media, dsn=database,
                                  client=client)
        finally:
            for each in made:
                each.close()


def signed_up(site, name: str) -> BoardClient:
    client = site.client()
    assert client.signup(name).status_code == 303
    return client


# -- accounts -------------------------------------------------------------------------


def test_pages_need_a_user_and_send_browsers_to_log_in(site):
    client = site.client()
    response = client.get("/?before=3")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Fbefore%3D3"
    assert client.get("/status").headers["location"] == "/login?next=%2Fstatus"
    for path in ("/api/posts", "/status.json", "/events"):
        response = client.get(path)
        assert (response.status_code, response.json()) == (401, {"error": "log in first"})


def test_sign_up_log_out_and_log_in_again(site):
    client = site.client()
    assert client.get("/signup").status_code == 200
    response = client.signup("ada")
    assert (response.status_code, response.headers["location"]) == (303, "/")
    cookie = response.headers["set-cookie"]
    assert "session=" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/")
    assert page.status_code == 200 and '<span class="who">ada</span>' in page.text
    assert client.get("/login").headers["location"] == "/"   # logged in already

    response = client.submit("/logout")
    assert (response.status_code, response.headers["location"]) == (303, "/login")
    assert "session=;" in response.headers["set-cookie"]
    assert client.get("/").status_code == 303

    response = client.login("ADA", next="/status")   # names are matched in any case
    assert (response.status_code, response.headers["location"]) == (303, "/status")
    assert '<span class="who">ada</span>' in client.get("/").text


def test_sign_up_refusals_say_why(site):
    client = site.client()
    assert client.signup("ada").status_code == 303
    other = site.client()
    for name, password, status, message in [
        ("ADA", PASSWORD, 409, "The name ADA is taken"),
        ("a", PASSWORD, 400, "A user name is 3 to 32"),
        ("<script>", PASSWORD, 400, "A user name is 3 to 32"),
        ("bob", "short", 400, "A password is 8 to 200 characters"),
    ]:
        response = other.signup(name, password)
        assert response.status_code == status
        assert message in response.text
        assert "<script>" not in response.text   # the name comes back escaped
    assert query(site.dsn, "SELECT count(*) FROM users")[0][0] == 1


def test_wrong_or_unknown_credentials_get_the_same_answer(site):
    signed_up(site, "ada").close()
    client = site.client()
    wrong, unknown = client.login("ada", "not the password"), client.login("nobody")
    for response in (wrong, unknown):
        assert response.status_code == 400
        assert "Wrong user name or password." in response.text
        assert "session=" not in response.headers.get("set-cookie", "")


def test_passwords_are_stored_as_scrypt_hashes_computed_off_the_loop(site, monkeypatch):
    threads = []
    real_hash, real_check = auth.hash_password, auth.check_password

    def hash_password(password):
        threads.append(threading.current_thread())
        return real_hash(password)

    def check_password(password, stored):
        threads.append(threading.current_thread())
        return real_check(password, stored)

    monkeypatch.setattr(auth, "hash_password", hash_password)
    monkeypatch.setattr(auth, "check_password", check_password)
    client = signed_up(site, "ada")
    assert client.login("ada").status_code == 303
    assert client.login("ada", "wrong password").status_code == 400
    assert client.login("nobody").status_code == 400
    loop_threads = [thread for thread in threading.enumerate()
                    if thread.name == "corofw-test-server"]
    assert len(threads) == 4 and loop_threads
    assert not set(threads) & set(loop_threads), "scrypt ran on the event loop's thread"

    (stored,) = query(site.dsn, "SELECT password_hash FROM users")[0]
    assert stored.startswith("scrypt$16384$8$1$") and PASSWORD not in stored
    assert real_check(PASSWORD, stored) and not real_check("guess", stored)
    assert real_hash(PASSWORD) != stored   # a new salt each time


def test_an_expired_session_sends_the_browser_to_log_in(database, backend_url, tmp_path):
    now = [time.time()]
    with serve_board(database, backend_url, str(tmp_path), session_max_age=60,
                     clock=lambda: now[0]) as (server, _), BoardClient(server.url) as client:
        assert client.signup("ada").status_code == 303
        now[0] += 30
        assert client.get("/").status_code == 200
        now[0] += 31
        response = client.get("/")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2F&expired=1"
        assert "session=;" in response.headers["set-cookie"]   # the stale cookie is dropped
        page = client.get(response.headers["location"])
        assert "Your session has ended; log in again." in page.text
        assert client.get("/api/posts").status_code == 401
        assert client.login("ada", next="/").status_code == 303
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "/\\evil.example", "https://evil.example",
                                    "evil", "/\r\nx"])
def test_log_in_redirects_only_to_this_site(site, target):
    client = signed_up(site, "ada")
    client.submit("/logout")
    response = client.login("ada", next=target)
    assert (response.status_code, response.headers["location"]) == (303, "/")


def test_start_up_opens_the_pool_and_the_feed_and_shutdown_closes_them(database, backend_url,
                                                                        tmp_path):
    with serve_board(database, backend_url, str(tmp_path)) as (_, app):
        assert app.pool.size == 1 and app.feed._listening.is_set()
        feed_task = app.feed._task
        listening = query(database, "SELECT count(*) FROM pg_stat_activity "
                                    "WHERE application_name = 'board live feed'")[0][0]
        assert listening == 1
    assert app.pool.closed and feed_task.done


def test_a_database_that_is_down_stops_the_start_in_one_line(tmp_path):
    with pytest.raises(StartupError) as failure, \
            serve_board("postgresql://postgres@127.0.0.1:9/postgres", "http://127.0.0.1:9",
                        str(tmp_path)):
        pass
    message = str(failure.value)
    assert message.startswith("start-up failed: ConnectError") and "\n" not in message
    assert "app.py" in message   # the app's line that failed


# -- CSRF ---------------------------------------------------------------------------


def test_every_form_is_refused_without_its_csrf_token(site):
    client = signed_up(site, "ada")
    forged = "forged." + client.csrf.split(".", 1)[-1]
    for path, fields in [("/posts", {"body": "hi"}), ("/logout", {}),
                         ("/login", {"username": "ada", "password": PASSWORD}),
                         ("/signup", {"username": "bob", "password": PASSWORD})]:
        for token in (forged, ""):
            response = client.submit(path, fields, token=token)
            assert response.status_code == 403, (path, token)
            assert response.headers["content-type"].startswith("text/html")
            assert "CSRF check failed" in response.text and "Refused" in response.text
    response = client.submit("/posts", {"body": "hi"},
                             headers={"origin": "https://evil.example"})
    assert response.status_code == 403 and "cross-origin request" in response.text
    response = client.post("/api/posts", json={"body": "hi"})   # a script without the header
    assert response.status_code == 403 and "CSRF check failed" in response.json()["error"]
    assert query(site.dsn, "SELECT count(*) FROM posts")[0][0] == 0
    assert query(site.dsn, "SELECT count(*) FROM users")[0][0] == 1
    assert client.get("/").status_code == 200   # still logged in: the logout was refused


def test_every_page_form_carries_the_token(site):
    client = site.client()
    for path in ("/login", "/signup"):
        assert hidden_token(client.get(path).text) == client.cookies["csrftoken"]
    client.signup("ada")
    page = client.get("/").text
    assert len(re.findall(r'name="csrf_token" value="([^"]+)"', page)) == 2   # post, log out


# -- posts ---------------------------------------------------------------------------


def test_posts_are_listed_newest_first_a_page_at_a_time(site):
    client = signed_up(site, "ada")
    ids = [client.post_text(f"post number {n}") for n in range(1, 13)]
    assert ids == list(range(1, 13))

    def shown(page):
        return [int(n) for n in re.findall(r'id="post-(\d+)"', page)]

    first = client.get("/").text
    assert shown(first) == [12, 11, 10, 9, 8]
    assert 'href="/?before=8"' in first and 'data-events="/events?after=12"' in first
    second = client.get("/?before=8").text
    assert shown(second) == [7, 6, 5, 4, 3] and 'href="/?before=3"' in second
    assert "data-events" not in second   # older pages are not live
    last = client.get("/?before=3").text
    assert shown(last) == [2, 1] and "?before=" not in last

    data = client.get("/api/posts", params={"before": 8}).json()
    assert [post["id"] for post in data["posts"]] == [7, 6, 5, 4, 3] and data["older"] == 3
    assert data["posts"][0]["author"] == "ada" and data["posts"][0]["body"] == "post number 7"


@pytest.mark.parametrize("before", ["x", "-1", "0", "1.5", "٣", "9" * 30])
def test_a_bad_page_number_is_a_clear_400(site, before):
    client = signed_up(site, "ada")
    page = client.get("/", params={"before": before})
    assert page.status_code == 400 and "before must be a post number" in page.text
    assert page.headers["content-type"].startswith("text/html")
    api = client.get("/api/posts", params={"before": before})
    assert api.status_code == 400 and "before must be a post number" in api.json()["error"]


def test_posts_need_text_or_an_image_and_have_a_length_limit(site):
    client = signed_up(site, "ada")
    response = client.submit("/posts", {"body": "   "})
    assert response.status_code == 400 and "A post needs some text or an image." in response.text
    response = client.submit("/posts", {"body": "x" * 2001})
    assert response.status_code == 413 and "at most 2000 characters" in response.text
    response = client.post("/api/posts", content=b"{nope", headers={
        "x-csrf-token": client.csrf, "content-type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = client.post("/api/posts", json=["body"], headers={"x-csrf-token": client.csrf})
    assert response.status_code == 400 and "JSON object" in response.json()["error"]
    assert query(site.dsn, "SELECT count(*) FROM posts")[0][0] == 0


def test_what_users_write_is_escaped_everywhere(site):
    writer = signed_up(site, "ada")
    reader = signed_up(site, "bob")
    with open_events(site.server, reader) as stream:
        stream.next_of("ready")
        writer.submit("/posts", {"body": '<script>alert("x")</script> & <b>'})
        _, posts = stream.next_posts()
    for html in (reader.get("/").text, posts[0]["html"]):
        assert "<script>alert" not in html and "<b>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;" in html


# -- images --------------------------------------------------------------------------


def test_an_image_is_stored_and_served_back_with_caching_headers(site):
    client = signed_up(site, "ada")
    png = make_png()
    response = client.submit("/posts", {"body": "a picture"},
                             files={"image": ("../../etc/passwd.png", png, "text/plain")})
    assert response.status_code == 303
    (name,) = os.listdir(site.media)
    assert re.fullmatch(r"[0-9a-f]{32}\.png", name)   # our name, never the client's
    page = client.get("/").text
    assert f'<img src="/media/{name}"' in page

    image = client.get(f"/media/{name}")
    assert image.status_code == 200 and image.content == png
    assert image.headers["content-type"] == "image/png"
    assert image.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert image.headers["x-content-type-options"] == "nosniff"
    again = client.get(f"/media/{name}", headers={"if-none-match": image.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/media/..%2f..%2fetc%2fpasswd").status_code == 404
    assert client.get("/api/posts").json()["posts"][0]["image"] == f"/media/{name}"


@pytest.mark.parametrize("content, extension", [
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "jpg"),
    (b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "gif"),
    (b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00/\x00\x00\x00\x10", "webp"),
])
def test_each_image_type_is_known_by_its_first_bytes(site, content, extension):
    client = signed_up(site, "ada")
    response = client.submit("/posts", {}, files={"image": ("upload.bin", content,
                                                            "application/octet-stream")})
    assert response.status_code == 303
    (name,) = os.listdir(site.media)
    assert name.endswith("." + extension)


@pytest.mark.parametrize("filename, content", [
    ("notes.png", b"just some text, not an image at all"),
    ("logo.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'),
    ("tiny.png", b"\x89PN"),
    ("page.html", b"<!DOCTYPE html><html></html>"),
])
def test_a_file_that_is_not_an_image_is_refused(site, filename, content):
    client = signed_up(site, "ada")
    response = client.submit("/posts", {"body": "look"},
                             files={"image": (filename, content, "image/png")})
    assert response.status_code == 415
    assert "is not an image this board takes" in response.text
    assert "PNG, JPEG, GIF or WebP" in response.text
    assert os.listdir(site.media) == []
    assert query(site.dsn, "SELECT count(*) FROM posts")[0][0] == 0


def test_an_oversized_image_is_refused_saying_so(site):
    client = signed_up(site, "ada")
    big = make_png(padding=2 * MiB + 1)
    response = client.submit("/posts", {"body": "big"}, files={"image": ("big.png", big,
                                                                         "image/png")})
    assert response.status_code == 413
    assert "The image is too large (2.0 MB); the limit is 2.0 MB." in response.text
    assert os.listdir(site.media) == []
    just_right = make_png(padding=2 * MiB - 4096)
    response = client.submit("/posts", {}, files={"image": ("ok.png", just_right, "image/png")})
    assert response.status_code == 303 and len(os.listdir(site.media)) == 1


def test_a_body_over_the_server_limit_is_refused_before_the_app(site):
    client = signed_up(site, "ada")
    response = client.submit("/posts", {}, files={"image": ("huge.png",
                                                            make_png(padding=BODY_LIMIT),
                                                            "image/png")})
    assert response.status_code == 413
    assert "Traceback" not in response.text
    assert os.listdir(site.media) == []


def test_an_empty_file_input_is_no_image(site):
    client = signed_up(site, "ada")
    response = client.submit("/posts", {"body": "text only"},
                             files={"image": ("", b"", "application/octet-stream")})
    assert response.status_code == 303
    assert os.listdir(site.media) == []
    assert client.get("/api/posts").json()["posts"][0]["image"] is None


# -- live updates ----------------------------------------------------------------------


def test_a_new_post_reaches_an_open_page_within_a_second(site):
    writer = signed_up(site, "ada")
    reader = signed_up(site, "bob")
    with open_events(site.server, reader, "/events?after=0") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"] == "text/event-stream"
        assert stream.headers["cache-control"] == "no-store"
        stream.next_of("ready")
        started = time.monotonic()
        writer.submit("/posts", {"body": "hello, live world"})
        event_id, posts = stream.next_posts(timeout=1.0)
        assert time.monotonic() - started < 1.0
    assert event_id == "1" and len(posts) == 1 and posts[0]["id"] == 1
    assert '<article class="post" id="post-1"' in posts[0]["html"]
    assert "hello, live world" in posts[0]["html"]
    assert '<strong class="author">ada</strong>' in posts[0]["html"]


def test_a_stream_starts_with_what_the_page_missed_and_resumes_from_last_event_id(site):
    client = signed_up(site, "ada")
    for n in range(1, 5):
        client.post_text(f"post {n}")
    with open_events(site.server, client, "/events?after=2") as stream:
        event_id, posts = stream.next_posts()   # one event for what the page missed
        assert event_id == "4" and [post["id"] for post in posts] == [3, 4]
        stream.next_of("ready")
    with open_events(site.server, client, "/events?after=0", **{"last-event-id": "3"}) as stream:
        assert stream.post_ids(1) == [4]   # a reconnecting browser's header wins
        stream.next_of("ready")
        client.post_text("post 5")
        assert stream.post_ids(1) == [5]
    with open_events(site.server, client, "/events") as stream:   # no ?after: from now on
        assert stream.next_event() == {"retry": "1000"}
        assert stream.next_event() == {"event": "ready", "data": "{}"}


def test_a_post_the_page_shows_already_is_not_sent_again_when_the_feed_lags(site):
    client = signed_up(site, "ada")
    query(site.dsn, "INSERT INTO posts (author_id, body) SELECT 1, 'old ' || n "
                    "FROM generate_series(1, 3) AS n")   # on the page, not yet announced
    with open_events(site.server, client, "/events?after=3") as stream:
        stream.next_of("ready")
        query(site.dsn, "SELECT pg_notify('board_posts', '1')")   # the feed hands it out late
        new = client.post_text("new")
        assert stream.post_ids(1) == [new]


def test_a_bad_stream_position_is_a_json_400(site):
    client = signed_up(site, "ada")
    with open_events(site.server, client, "/events?after=x") as stream:
        assert stream.status == 400
        assert "after must be a post number" in stream.body()


def test_posts_reach_pages_served_by_another_process(database, backend_url, tmp_path):
    """Two instances of the app share nothing but PostgreSQL, as --workers
    processes do: a post made through one reaches a page open on the other."""
    with serve_board(database, backend_url, str(tmp_path)) as (one, _), \
            serve_board(database, backend_url, str(tmp_path)) as (other, _), \
            BoardClient(one.url) as writer, BoardClient(other.url) as reader:
        assert writer.signup("ada").status_code == 303
        assert reader.signup("bob").status_code == 303
        with open_events(other, reader) as stream:
            stream.next_of("ready")
            post_id = writer.post_text("across processes")
            assert stream.post_ids(1, timeout=1.0) == [post_id]


def test_the_live_feed_survives_losing_its_database_connection(site):
    writer = signed_up(site, "ada")
    reader = signed_up(site, "bob")
    with open_events(site.server, reader) as stream:
        stream.next_of("ready")
        killed = query(site.dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE application_name = 'board live feed'")
        assert [row[0] for row in killed] == [True]
        post_id = writer.post_text("posted while the feed reconnects")
        assert stream.post_ids(1, timeout=5.0) == [post_id]
        later = writer.post_text("posted once it listens again")
        assert stream.post_ids(1, timeout=5.0) == [later]


def test_a_burst_of_posts_reaches_a_stream_whole_and_in_order(site):
    client = signed_up(site, "ada")
    with open_events(site.server, client) as stream:
        stream.next_of("ready")
        query(site.dsn, """
            WITH new AS (INSERT INTO posts (author_id, body)
                         SELECT 1, 'burst ' || n FROM generate_series(1, 150) AS n
                         RETURNING id)
            SELECT pg_notify('board_posts', id::text) FROM new""")
        ids = stream.post_ids(150)
    assert ids == list(range(1, 151))


def test_an_idle_stream_gets_keep_alive_comments(site):
    client = signed_up(site, "ada")
    with open_events(site.server, client) as stream:
        stream.next_of("ready")
        time.sleep(0.5)
        stream._pull(2.0)
        assert ": keep-alive" in stream.text


# -- the status panel --------------------------------------------------------------------


PANEL = (Service("fast", 1, 0.01), Service("slower", 2, 0.1), Service("stuck", 3, 5.0),
         Service("broken", 4, 99.0))


def test_the_status_panel_answers_by_its_deadline_with_what_answered(database, backend_url,
                                                                      tmp_path):
    with serve_board(database, backend_url, str(tmp_path), services=PANEL,
                     status_deadline=0.5) as (server, _), BoardClient(server.url) as client:
        client.signup("ada")
        started = time.monotonic()
        panel = client.get("/status.json").json()
        took = time.monotonic() - started
        page = client.get("/status").text
        with_panel, without = client.get("/?panel=1").text, client.get("/").text
    assert 0.45 <= panel["seconds"] < 1.5 and took < 2.0   # the deadline, not the 5 s call
    assert panel["deadline"] == 0.5 and panel["answered"] == 2
    probes = {probe["service"]: probe for probe in panel["probes"]}
    assert [probe["service"] for probe in panel["probes"]] == ["fast", "slower", "stuck",
                                                               "broken"]
    assert probes["fast"]["state"] == "answered" and probes["fast"]["detail"] == "value 1"
    assert probes["fast"]["seconds"] < 0.4
    assert probes["slower"]["state"] == "answered" and 0.09 <= probes["slower"]["seconds"] < 0.5
    assert probes["stuck"]["state"] == "timed out" and probes["stuck"]["seconds"] >= 0.45
    assert probes["broken"]["state"] == "failed" and "400" in probes["broken"]["detail"]
    assert "2 of 4 services answered within the 500 ms deadline" in " ".join(page.split())
    assert re.search(r'<tr class="timed-out">\s*<td>stuck</td><td>timed out</td>', page)
    assert "2 of 4 services answered" in with_panel and 'id="posts"' in with_panel
    assert "services answered" not in without and 'href="/?panel=1"' in without


def test_the_status_panel_with_the_backend_down_still_answers(database, tmp_path):
    with serve_board(database, "http://127.0.0.1:9", str(tmp_path)) as (server, _), \
            BoardClient(server.url) as client:
        client.signup("ada")
        panel = client.get("/status.json").json()
    assert panel["answered"] == 0
    assert {probe["state"] for probe in panel["probes"]} == {"failed"}
    assert all("ConnectionRefused" in probe["detail"] or "UpstreamUnavailable" in probe["detail"]
               for probe in panel["probes"])


def test_a_caller_s_shorter_deadline_shortens_the_panel(database, backend_url, tmp_path):
    with serve_board(database, backend_url, str(tmp_path), services=PANEL,
                     status_deadline=2.0) as (server, _), BoardClient(server.url) as client:
        client.signup("ada")
        response = client.get("/status.json",
                              headers={"x-envoy-expected-rq-timeout-ms": "400"})
    assert response.status_code == 200   # partial results, not a 504
    panel = response.json()
    assert 0.3 <= panel["deadline"] <= 0.35 and panel["seconds"] < 1.0
    states = {probe["service"]: probe["state"] for probe in panel["probes"]}
    assert states == {"fast": "answered", "slower": "answered", "stuck": "timed out",
                      "broken": "failed"}


def test_the_panel_tells_the_backend_how_long_it_may_take(database, tmp_path):
    seen = []
    recorder = Router()

    @recorder.get("/api/{number:int}")
    def api(request, number):
        seen.append(request.headers.get("x-envoy-expected-rq-timeout-ms"))
        return {"value": number}

    with serve_in_thread(recorder) as backend, \
            serve_board(database, backend.url, str(tmp_path), status_deadline=0.5) as (server, _), \
            BoardClient(server.url) as client:
        client.signup("ada")
        assert client.get("/status.json").json()["answered"] == 4
    assert len(seen) == 4
    assert all(400 <= int(ms) <= 500 for ms in seen), seen


# -- errors, headers, compression ----------------------------------------------------------


def test_a_request_past_its_deadline_is_cut_short_with_a_504(database, backend_url, tmp_path):
    with serve_board(database, backend_url, str(tmp_path)) as (server, _), \
            BoardClient(server.url) as client:
        assert client.signup("ada").status_code == 303   # hashing may take a while
    with serve_board(database, backend_url, str(tmp_path), request_deadline=0.3) as (server, _), \
            BoardClient(server.url, cookies=client.cookies) as client:
        with psycopg.connect(database) as locker:
            locker.execute("LOCK TABLE posts IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            page = client.get("/")
            api = client.get("/api/posts")
            took = time.monotonic() - started
            deadline = time.monotonic() + 5.0   # cancel requests travel on their own
            while True:
                waiting = locker.execute("SELECT count(*) FROM pg_stat_activity "
                                         "WHERE wait_event_type = 'Lock'").fetchone()[0]
                if waiting == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.02)
            locker.rollback()
        assert client.get("/").status_code == 200
    assert took < 3.0
    assert page.status_code == 504 and "Too slow <small>(504)</small>" in page.text
    assert "deadline exceeded: request deadline of 0.3 s" in page.text
    assert api.status_code == 504 and api.json()["error"] == "deadline exceeded"
    assert waiting == 0   # the queries were cancelled on the server, not left waiting




def test_unknown_pages_and_methods_get_a_page_or_json(site):
    client = signed_up(site, "ada")
    page = client.get("/no/such/page")
    assert page.status_code == 404 and "Not found" in page.text
    assert page.headers["content-type"].startswith("text/html")
    api = client.get("/api/nothing")
    assert api.status_code == 404 and api.json() == {"error": "Not Found"}
    wrong = client.delete("/posts", headers={"x-csrf-token": client.csrf})
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST, OPTIONS"
    assert "Not allowed" in wrong.text


def test_a_failure_inside_is_a_500_without_a_traceback(site, caplog):
    client = signed_up(site, "ada")
    query(site.dsn, "ALTER TABLE posts RENAME TO posts_away")
    try:
        page = client.get("/")
        api = client.get("/api/posts")
    finally:
        query(site.dsn, "ALTER TABLE posts_away RENAME TO posts")
    assert page.status_code == 500 and "Something went wrong" in page.text
    assert api.status_code == 500 and "Something went wrong" in api.json()["error"]
    for text in (page.text, api.text):
        assert "Traceback" not in text and "posts" not in text.split("<main>")[-1]
    assert any("GET / failed" in record.getMessage() and record.exc_info
               for record in caplog.records)   # the traceback goes to the log


def test_every_answer_carries_the_security_headers(site):
    client = site.client()
    for response in (client.get("/login"), client.get("/static/board.css"),
                     client.get("/nope"), client.get("/")):
        assert "default-src 'self'" in response.headers["content-security-policy"]
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_pages_are_compressed_and_static_files_cached(site):
    client = signed_up(site, "ada")
    for n in range(5):
        client.post_text(f"a post long enough to make the page worth compressing, number {n}")
    with httpx.Client(base_url=site.server.url, cookies=client.cookies) as raw:
        response = raw.get("/", headers={"accept-encoding": "gzip"})
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["vary"] == "Accept-Encoding"
        assert "number 4" in response.text   # httpx decoded it
        with raw.stream("GET", "/", headers={"accept-encoding": "gzip"}) as stream:
            assert b"number 4" in gzip.decompress(b"".join(stream.iter_raw()))
    assert response.headers["cache-control"] == "private, no-cache"
    css = client.get("/static/board.css")
    assert css.headers["cache-control"] == "public, max-age=300" and "etag" in css.headers
    assert css.headers["content-type"].startswith("text/css")


# -- commands ------------------------------------------------------------------------------


def test_the_schema_command_creates_the_tables_and_can_run_again(pg_dsn):
    query(pg_dsn, "DROP TABLE IF EXISTS posts, users")
    env = dict(os.environ, DATABASE_URL=pg_dsn, PYTHONPATH=PROJECT_ROOT)
    for _ in range(2):
        done = subprocess.run([sys.executable, "-m", "apps.board", "create-schema"], env=env,
                              capture_output=True, text=True, timeout=60, cwd=PROJECT_ROOT)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "schema ready"
    assert query(pg_dsn, "SELECT count(*) FROM posts")[0][0] == 0


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet has stopped)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_the_dev_command_runs_everything_and_ctrl_c_stops_it_all(tmp_path):
    """What `make board` runs: PostgreSQL, the backend and the board (two
    workers) come up, the printed URL serves the board, live updates cross
    the workers, and one SIGINT stops all of it."""
    env = dict(os.environ, PYTHONPATH=PROJECT_ROOT, BOARD_PORT="0")
    process = subprocess.Popen([sys.executable, "-m", "apps.board", "dev"], env=env,
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                break
        banner = "".join(lines)
        found = re.search(r"The board is at (http://127\.0\.0\.1:\d+/) .*PostgreSQL pid (\d+)"
                          r".*backend pid (\d+).*board pid (\d+)", banner, re.S)
        assert found, banner
        url, pids = found.group(1), [int(pid) for pid in found.groups()[1:]]
        with BoardClient(url) as one, BoardClient(url) as two:
            assert one.signup("ada").status_code == 303
            assert two.signup("bob").status_code == 303
            port = int(url.rsplit(":", 1)[1].strip("/"))
            streams = [open_events(SimpleNamespace(port=port), two) for _ in range(4)]
            try:
                for stream in streams:
                    stream.next_of("ready")
                post_id = one.post_text("to every worker")
                for stream in streams:
                    assert stream.post_ids(1, timeout=2.0) == [post_id]
            finally:
                for stream in streams:
                    stream.close()
            assert "2.0 MB" in one.get("/").text
            assert one.get("/status.json").json()["answered"] == 3
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=30)[0]
        assert process.returncode == 0
        assert "stopped." in rest
        assert not any(_alive(pid) for pid in pids)
    finally:
        if process.poll() is None:   # a failed check: still stop everything it started
            process.send_signal(signal.SIGINT)
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()


def test_metrics_answer_scrapes_from_this_host_only(site):
    client = signed_up(site, "ada")
    client.post_text("counted")
    client.get("/status.json")
    scrape = client.get("/metrics")
    assert scrape.status_code == 200
    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(scrape.text)
               for sample in family.samples}
    posted = (("method", "POST"), ("route", "/api/posts"), ("status", "201"))
    assert samples["corofw_http_requests_total", posted] == 1
    assert any(name == "corofw_upstream_requests_total" for name, _ in samples)
    assert any(name == "corofw_kernel_tasks" for name, _ in samples)
    proxied = client.get("/metrics", headers={"x-forwarded-for": "203.0.113.9"})
    assert proxied.status_code == 404 and "corofw_" not in proxied.text
