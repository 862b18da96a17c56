"""Request deadlines: the server runs each handler inside one (its default,
lowered by the caller's header), answers 504 naming it when it passes,
and an Upstream passes what is left of it to the next service."""

from __future__ import annotations

import math

import pytest
from tail_servers import Backend, run_served

from corofw import Client, Router, current_time, gather, sleep
from corofw.http.deadlines import DEADLINE_HEADER
from corofw.http.upstream import Upstream
from corofw.web.deadline import deadline_middleware

pytestmark = pytest.mark.usefixtures("no_leaks")


def now():
    return (yield from current_time())


def timed_get(client, path, **kwargs):
    started = yield from now()
    response = yield from client.get(path, **kwargs)
    return response, (yield from now()) - started


def test_a_slow_handler_is_cut_off_at_the_default_with_a_504_naming_the_deadline():
    backend = Backend(delay=lambda n: 10.0, middleware=[deadline_middleware(default=2.0)])

    def body(url):
        client = Client(url)
        try:
            return (yield from timed_get(client, "/item/1"))
        finally:
            client.close()

    response, elapsed = run_served([backend.routes], body)
    assert response.status_code == 504 and elapsed == pytest.approx(2.0)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {"error": "deadline exceeded",
                               "deadline": "request deadline of 2 s (from the server's default)",
                               "timeout": 2.0}
    (reason,) = backend.cancelled  # the handler's pending wait was cancelled
    assert "2 s" in reason and "expired" in reason


def test_the_callers_header_lowers_the_deadline_but_never_raises_it():
    backend = Backend(delay=lambda n: 10.0, middleware=[deadline_middleware(default=1.0)])

    def body(url):
        client = Client(url)
        try:
            lowered = yield from timed_get(client, "/item/1", headers={DEADLINE_HEADER: "250"})
            raised = yield from timed_get(client, "/item/2", headers={DEADLINE_HEADER: "5000"})
            junk = yield from timed_get(client, "/item/3", headers={DEADLINE_HEADER: "0.5"})
        finally:
            client.close()
        return lowered, raised, junk

    (lowered, t1), (raised, t2), (junk, t3) = run_served([backend.routes], body)
    assert lowered.status_code == 504 and t1 == pytest.approx(0.25)
    assert lowered.json()["deadline"] == ("request deadline of 0.25 s "
                                          f"(from the {DEADLINE_HEADER} header)")
    assert raised.status_code == 504 and t2 == pytest.approx(1.0)
    assert junk.status_code == 504 and t3 == pytest.approx(1.0)  # not milliseconds: ignored


def test_a_handler_within_its_deadline_answers_as_usual():
    backend = Backend(delay=lambda n: 0.5, middleware=[deadline_middleware(default=1.0)])

    def body(url):
        client = Client(url)
        try:
            return (yield from client.get("/item/9"))
        finally:
            client.close()

    response = run_served([backend.routes], body)
    assert response.status_code == 200 and response.json() == {"id": 9, "n": 0}
    assert backend.cancelled == []


def test_without_a_default_only_the_callers_header_sets_a_deadline():
    backend = Backend(delay=lambda n: 100.0, middleware=[deadline_middleware(default=None)])

    def body(url):
        client = Client(url, timeout=1000)
        try:
            bounded = yield from timed_get(client, "/item/1", headers={DEADLINE_HEADER: "1500"})
            unbounded = yield from timed_get(client, "/item/2")
        finally:
            client.close()
        return bounded, unbounded

    (bounded, t1), (unbounded, t2) = run_served([backend.routes], body)
    assert bounded.status_code == 504 and t1 == pytest.approx(1.5)
    assert unbounded.status_code == 200 and t2 == pytest.approx(100.0)


def test_the_header_name_is_configurable_and_can_be_ignored():
    routes = Router()
    routes.middleware(deadline_middleware(default=1.0, header=None))

    @routes.get("/")
    def slow(request):
        yield from sleep(5)
        return "done"

    def body(url):
        client = Client(url)
        try:
            return (yield from timed_get(client, "/", headers={DEADLINE_HEADER: "100"}))
        finally:
            client.close()

    response, elapsed = run_served([routes], body)
    assert response.status_code == 504 and elapsed == pytest.approx(1.0)


@pytest.mark.parametrize("default", [0, -1, math.nan, "5", True])
def test_a_default_must_be_a_positive_number_of_seconds(default):
    with pytest.raises(ValueError, match="positive number of seconds"):
        deadline_middleware(default=default)


def test_the_deadline_travels_through_two_services():
    """A caller with 3 s left calls the front service; the front spends
    half a second, then calls the back service twice at once, which
    receives the 2.4996 s left (sent as 2499 ms, rounded down) and gives up
    on a 10 s call in time for the front to answer, with one panel of two,
    before its own deadline."""
    back = Backend(delay=lambda n: 0.1 if n == 0 else 10.0,
                   middleware=[deadline_middleware(default=30.0)])
    seen = {}

    def front(urls):
        routes = Router()
        routes.middleware(deadline_middleware(default=30.0))
        api = Upstream(Client(urls[0]))

        @routes.get("/page")
        def page(request):
            try:
                yield from sleep(0.5004)
                responses = yield from gather(api.get("/item/0"), api.get("/item/1"))
            finally:
                api.client.close()
            seen["statuses"] = [r.status_code for r in responses]
            return {"panels": [r.json() for r in responses]}

        return routes

    def body(back_url, front_url):
        client = Client(front_url)
        try:
            return (yield from timed_get(client, "/page", headers={DEADLINE_HEADER: "3000"}))
        finally:
            client.close()

    response, elapsed = run_served([back.routes, front], body)
    assert back.deadlines == ["2499", "2499"]
    assert seen["statuses"] == [200, 504]     # the back service gave up in time
    assert response.status_code == 200 and elapsed == pytest.approx(2.9994)
    panels = response.json()["panels"]
    assert panels[0] == {"id": 0, "n": 0}
    assert panels[1]["deadline"] == (f"request deadline of 2.499 s "
                                     f"(from the {DEADLINE_HEADER} header)")
