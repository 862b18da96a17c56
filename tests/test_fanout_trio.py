"""The fan-out side by side: corofw (generators, ``gather``, corofw's
Client) and trio (``async``/``await``, a nursery, ``httpx.AsyncClient``)
make the same ten 0.2 s backend calls against the same corofw backend. Both
finish in about 0.2 s, and both get the same results in the same order."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from apps import backend, fanout  # noqa: E402
from corofw import Client, ServerConfig, current_time, gather, run  # noqa: E402
from corofw.testing import serve_in_thread  # noqa: E402

trio = pytest.importorskip("trio")

pytestmark = pytest.mark.usefixtures("no_leaks")

CALLS = 10
DELAY = 0.2
TIMING = ("waited", "duration", "elapsed")


# -- the same program twice ----------------------------------------------------------


def corofw_fanout(base_url):
    client = Client(base_url, timeout=30)

    def call_backend(i):
        started = yield from current_time()
        resp = yield from client.get(f"/api/{i}", params={"delay": DELAY})
        resp.raise_for_status()
        return {"call": i, "result": resp.json(),
                "duration": (yield from current_time()) - started}

    def main():
        started = yield from current_time()
        try:
            calls = yield from gather(*(call_backend(i) for i in range(CALLS)))
        finally:
            client.close()
        return {"calls": calls, "elapsed": (yield from current_time()) - started}

    return run(main())


def trio_fanout(base_url):
    async def call_backend(client, i, calls):
        started = trio.current_time()
        resp = await client.get(f"/api/{i}", params={"delay": DELAY})
        resp.raise_for_status()
        calls[i] = {"call": i, "result": resp.json(),
                    "duration": trio.current_time() - started}

    async def main():
        calls = [None] * CALLS
        started = trio.current_time()
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client, \
                trio.open_nursery() as nursery:
            for i in range(CALLS):
                nursery.start_soon(call_backend, client, i, calls)
        return {"calls": calls, "elapsed": trio.current_time() - started}

    return trio.run(main)


# -- comparing them ------------------------------------------------------------------


def without_timing(value):
    """``value`` with every timing field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def timed(fn, *args):
    started = time.monotonic()
    result = fn(*args)
    return result, time.monotonic() - started


@pytest.fixture(scope="module")
def backend_url():
    with serve_in_thread(backend.routes, ServerConfig(access_log=False)) as srv:
        yield srv.url


def test_corofw_and_trio_agree_and_both_overlap_the_waits(backend_url):
    ours, our_wall = timed(corofw_fanout, backend_url)
    theirs, their_wall = timed(trio_fanout, backend_url)

    expected = [{"call": i, "result": {"id": i, "value": i * i, "delay": DELAY}}
                for i in range(CALLS)]
    assert without_timing(ours["calls"]) == expected
    assert without_timing(theirs["calls"]) == expected
    for result, wall in ((ours, our_wall), (theirs, their_wall)):
        assert DELAY <= result["elapsed"] < 0.9
        assert wall < 0.9  # ten 0.2 s calls, not 2 s
        assert all(DELAY <= c["duration"] < 0.9 for c in result["calls"])
        assert all(c["result"]["waited"] >= DELAY - 0.01 for c in result["calls"])


def test_the_fanout_app_answers_what_trio_computes(backend_url):
    client = fanout.backend_client(backend_url)
    try:
        with serve_in_thread(fanout.make_routes(client),
                             ServerConfig(access_log=False)) as app_server:
            app_answer, wall = timed(httpx.get, f"{app_server.url}/fanout?delay={DELAY}")
    finally:
        client.close()
    theirs = trio_fanout(backend_url)
    assert app_answer.status_code == 200
    body = app_answer.json()
    assert wall < 0.9 and body["elapsed"] < 0.9
    assert body["complete"] is True
    ours = [{"call": c["call"], "result": c["result"]} for c in body["calls"]]
    assert all(c["ok"] and c["status"] == 200 for c in body["calls"])
    assert without_timing(ours) == without_timing(theirs["calls"])
