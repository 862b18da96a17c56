"""Lazy wait queues, shrunk headers, the WebSocket write fast path and the
SSE keep-alive Deadline, attacked as a hostile user would: each test is a
case tried that way, kept as a regression test."""

from __future__ import annotations

import contextlib
import socket
import time

import pytest
import websockets
import websockets.sync.client

from corofw import (
    Event,
    Lock,
    Queue,
    Router,
    Semaphore,
    ServerConfig,
    current_kernel,
    current_time,
    move_on_after,
    sleep,
    spawn,
    stats,
)
from corofw.http.headers import Headers
from corofw.http.parser import RequestParser
from corofw.http.sse import event_stream
from corofw.kernel import Cancelled
from corofw.kernel.traps import Coro
from corofw.net import open_connection
from corofw.testing import run_virtual, serve_in_thread

QUICK = ServerConfig(access_log=False, graceful_timeout=2.0)


# -- lazy wait queues ------------------------------------------------------------------


def test_fresh_primitives_have_a_repr_and_no_queue():
    assert repr(Event()) == "<Event unset>"
    assert repr(Semaphore(2)) == "<Semaphore value=2 waiters=0>"
    assert repr(Lock()) == "<Lock owner=None waiters=0>"
    assert repr(Queue(3)) == "<Queue size=0 maxsize=3>"
    lock, sem = Lock(), Semaphore(0, max_value=1)
    assert not lock.locked() and sem.locked()
    sem.release()  # no queue yet: the permit goes to the pool
    assert sem.value == 1
    with pytest.raises(ValueError):
        sem.release()


def test_many_waiters_on_each_primitive_and_some_cancelled():
    def main():
        event, lock, sem, queue = Event(), Lock(), Semaphore(2), Queue()
        woken, order = [], []

        def on_event(n):
            yield from event.wait()
            woken.append(n)

        def on_lock(n):
            with (yield from lock.acquire()):
                order.append(n)
                yield from sleep(0.001)

        inside = [0, 0]

        def on_sem(n):
            with (yield from sem.acquire()):
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
                try:
                    yield from sleep(0.001)
                finally:
                    inside[0] -= 1

        got = []

        def on_queue():
            got.append((yield from queue.get()))

        tasks, locks, sems, getters = [], [], [], []
        for n in range(50):
            tasks.append((yield from spawn(on_event(n))))
            locks.append((yield from spawn(on_lock(n))))
            sems.append((yield from spawn(on_sem(n))))
            getters.append((yield from spawn(on_queue())))
        yield from sleep(0)
        for group in (tasks, locks, sems, getters):
            for task in group[::5]:
                task.cancel("gone")
        yield from sleep(0)
        event.set()
        for n in range(45):
            queue.put_nowait(n)
        for task in tasks + locks + sems + getters:
            try:
                yield from task.join()
            except Cancelled:
                pass
        return woken, order, inside, got, lock, sem, queue

    woken, order, inside, got, lock, sem, queue = run_virtual(main())
    assert sorted(woken) == [n for n in range(50) if n % 5]
    assert order == [0] + [n for n in range(1, 50) if n % 5]  # task 0 held it when cancelled
    assert inside == [0, 2]
    assert sorted(got) == list(range(40))
    assert list(queue._items) == list(range(40, 45))  # no item lost to a cancelled getter
    assert not lock.locked() and sem.value == 2
    assert repr(lock) == "<Lock owner=None waiters=0>"


def test_a_waiter_cancelled_right_as_it_is_woken_passes_the_turn_on():
    def main():
        lock, queue, sem = Lock(), Queue(), Semaphore(0)
        got = []

        def take_lock(n):
            with (yield from lock.acquire()):
                got.append(("lock", n))

        def take_item(n):
            got.append(("item", n, (yield from queue.get())))

        def take_permit(n):
            yield from sem.acquire()
            got.append(("permit", n))

        yield from lock.acquire()
        first = yield from spawn(take_lock(1))
        yield from spawn(take_lock(2))
        getter = yield from spawn(take_item(1))
        yield from spawn(take_item(2))
        permit = yield from spawn(take_permit(1))
        yield from spawn(take_permit(2))
        yield from sleep(0)
        lock.release()  # handed to task 1, which has not run yet
        first.cancel("late")
        queue.put_nowait("x")
        getter.cancel("late")
        sem.release()
        permit.cancel("late")
        yield from sleep(0.01)
        return got, lock, sem

    got, lock, sem = run_virtual(main())
    # as in trio: a waiter already woken completes its wait (and is
    # cancelled at its next one); what it was handed is not lost
    assert got[:3] == [("lock", 1), ("item", 1, "x"), ("permit", 1)]
    assert ("lock", 2) in got and ("item", 2, "x") not in got
    assert not lock.locked() and sem.value == 0


def test_a_bounded_queue_with_racing_putters_and_getters():
    def main():
        queue = Queue(2)
        out = []

        def put(n):
            for i in range(20):
                yield from queue.put((n, i))

        def get():
            for _ in range(20):
                out.append((yield from queue.get()))
                if len(out) % 7 == 0:
                    yield from sleep(0.001)

        tasks = []
        for n in range(5):
            tasks.append((yield from spawn(put(n))))
            tasks.append((yield from spawn(get())))
        for task in tasks:
            yield from task.join()
        queue.put_nowait("a")
        queue.put_nowait("b")
        with_timeout = yield from move_on_after(0.01, queue.put("never"), "timed out")
        assert (queue.get_nowait(), queue.get_nowait()) == ("a", "b")
        return out, with_timeout, queue

    out, with_timeout, queue = run_virtual(main())
    assert with_timeout == "timed out"
    assert sorted(out) == sorted((n, i) for n in range(5) for i in range(20))
    for n in range(5):
        assert [i for m, i in out if m == n] == list(range(20))  # each producer in order
    assert queue.empty() and not queue._putters and not queue._getters


def test_a_lock_released_by_another_task_is_refused():
    def main():
        lock = Lock()

        def holder():
            yield from lock.acquire()
            yield from sleep(1)

        def thief():
            yield from sleep(0)
            lock.release()

        task = yield from spawn(holder())
        yield from sleep(0)
        other = yield from spawn(thief())
        with pytest.raises(RuntimeError, match="only the holder"):
            yield from other.join()
        task.cancel()
        return lock

    lock = run_virtual(main())
    assert lock.locked()  # the holder never released it


# -- headers ---------------------------------------------------------------------------


def test_headers_changed_before_and_after_shrink():
    raw = [(b"host", b"a"), (b"cookie", b"x=1"), (b"cookie", b"y=2")]
    headers = Headers.from_raw(raw)
    headers.shrink()  # before anything was decoded
    assert headers.get_all("cookie") == ["x=1", "y=2"]
    headers.shrink()
    del headers["cookie"]
    headers.shrink()  # changed: kept
    assert headers.items() == [("host", "a")] and headers.first_raw(b"cookie") is None
    assert raw == [(b"host", b"a"), (b"cookie", b"x=1"), (b"cookie", b"y=2")]
    emptied = Headers.from_raw([(b"x", b"1")])
    del emptied["x"]
    emptied.shrink()
    assert not emptied and len(emptied) == 0 and "x" not in emptied


def test_a_change_to_one_request_does_not_leak_into_the_next_identical_one():
    head = b"GET /a?q=1 HTTP/1.1\r\nHost: h\r\nCookie: s=1\r\nX-Tag: one\r\n\r\n"
    parser = RequestParser()
    parser.feed(head * 4)
    first = parser.next_request()
    first.headers.get("x-tag")  # read by middleware
    first.headers["X-Tag"] = "changed"
    first.headers.add("X-More", "1")
    first.headers.shrink()
    assert first.headers["x-tag"] == "changed" and first.headers.first_raw(b"x-more") == b"1"
    second = parser.next_request()
    second.headers.shrink()
    del second.headers["cookie"]
    third = parser.next_request()
    assert third.headers.items() == [("host", "h"), ("cookie", "s=1"), ("x-tag", "one")]
    third.headers.shrink()
    fourth = parser.next_request()
    assert fourth.headers.first_raw(b"x-tag") == b"one" and "x-more" not in fourth.headers
    assert fourth.headers.get("cookie") == "s=1" and fourth.cookies == {"s": "1"}


# -- WebSockets on the server ----------------------------------------------------------

BIG = 4 * 1024 * 1024


def test_two_tasks_sending_at_once_never_interleave_their_frames(no_leaks):
    routes = Router()

    @routes.websocket("/both")
    def both(ws):
        def big():
            for n in range(3):
                yield from ws.send(bytes([n]) * BIG)

        def heartbeat():
            for _ in range(5):
                yield from ws.ping(timeout=5)
                yield from sleep(0.01)

        sender = yield from spawn(big())
        beat = yield from spawn(heartbeat())
        for n in range(300):
            yield from ws.send(f"small {n}")
            if n % 50 == 0:
                yield from sleep(0.005)
        yield from sender.join()
        yield from beat.join()
        yield from ws.send("done")
        yield from ws.receive()  # the client's close

    with serve_in_thread(routes, QUICK) as server:  # noqa: SIM117 (the client needs its port)
        with websockets.sync.client.connect(
                f"ws://127.0.0.1:{server.port}/both", max_size=None) as client:
            bigs, smalls = [], []
            while True:
                message = client.recv(timeout=10)
                if message == "done":
                    break
                if isinstance(message, bytes):
                    bigs.append(message)
                    time.sleep(0.05)  # a slow reader: the big frames go out in pieces
                else:
                    smalls.append(message)
    assert [len(m) for m in bigs] == [BIG] * 3
    assert all(m == bytes([n]) * BIG for n, m in enumerate(bigs))
    assert smalls == [f"small {n}" for n in range(300)]


def test_a_send_cancelled_mid_frame_closes_the_websocket(no_leaks):
    routes = Router()
    seen = []

    @routes.websocket("/cut")
    def cut(ws):
        sender = yield from spawn(ws.send(b"x" * (16 * BIG)))
        yield from sleep(0.2)  # the client reads nothing: the frame is half sent
        sender.cancel("given up")
        try:
            yield from sender.join()
        except Cancelled:
            pass
        seen.append(ws.closed)
        try:
            yield from ws.send("after")
        except Exception as exc:  # noqa: BLE001
            seen.append(type(exc).__name__)

    with serve_in_thread(routes, QUICK) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        key = "dGhlIHNhbXBsZSBub25jZQ=="
        sock.sendall((f"GET /cut HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        deadline = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        sock.close()  # what the server had queued is not waited for
    assert seen == [True, "WebSocketClosed"]  # a frame cut short: no frame may follow it


def test_a_send_after_the_peer_reset_raises_websocket_closed(no_leaks):
    routes = Router()
    seen = []

    @routes.websocket("/reset")
    def reset(ws):
        yield from ws.send("hello")
        yield from sleep(0.3)  # meanwhile the client resets
        for n in range(20):
            try:
                yield from ws.send(f"n{n}" * 1000)
            except Exception as exc:  # noqa: BLE001
                seen.append((n, type(exc).__name__, ws.closed))
                return
            yield from sleep(0.01)

    with serve_in_thread(routes, QUICK) as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        sock.sendall(b"GET /reset HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        data = b""
        while b"hello" not in data:
            data += sock.recv(4096)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # a reset
        deadline = time.monotonic() + 5
        while not seen and time.monotonic() < deadline:
            time.sleep(0.02)
    assert seen and seen[0][1] == "WebSocketClosed" and seen[0][2] is True


def test_a_handler_reads_the_upgrade_request_after_the_handshake(no_leaks):
    routes = Router()

    @routes.websocket("/who")
    def who(ws):
        request = ws.request
        yield from ws.send("|".join([
            request.headers.get("x-user", "?"), ws.headers.get("X-User", "?"),
            str(request.cookies.get("sid")), str(request.query.get("room")),
            str(len(ws.headers)), str("cookie" in ws.headers)]))
        ws.headers["x-user"] = "changed"  # a careless handler
        yield from ws.send(f"{request.headers['x-user']}|{ws.headers.first_raw(b'x-user')!r}")

    with serve_in_thread(routes, QUICK) as server:
        for _ in range(2):  # the same head again: the first change must not leak
            with websockets.sync.client.connect(
                    f"ws://127.0.0.1:{server.port}/who?room=7",
                    additional_headers={"X-User": "ann", "Cookie": "sid=abc"}) as client:
                first, second = client.recv(timeout=5), client.recv(timeout=5)
            assert first.split("|")[:4] == ["ann", "ann", "abc", "7"]
            assert first.split("|")[5] == "True"
            assert second == "changed|b'changed'"


def test_shutdown_with_many_open_websockets(no_leaks):
    routes = Router()

    @routes.websocket("/idle")
    def idle(ws):
        yield from ws.send("open")
        while True:
            yield from ws.receive()

    clients = []
    with contextlib.ExitStack() as stack:
        with serve_in_thread(routes, QUICK) as server:
            for _ in range(50):
                client = stack.enter_context(
                    websockets.sync.client.connect(f"ws://127.0.0.1:{server.port}/idle"))
                assert client.recv(timeout=5) == "open"
                clients.append(client)
            started = time.monotonic()
        took = time.monotonic() - started
        codes = []
        for client in clients:
            try:
                client.recv(timeout=5)
            except websockets.ConnectionClosed as exc:
                codes.append(exc.rcvd.code if exc.rcvd else None)
    assert took < 2.0
    assert codes == [1001] * 50


# -- server-sent events ----------------------------------------------------------------


def sse_app() -> Router:
    app = Router()

    @app.get("/racing")
    def racing(request):
        def events():
            for n in range(1000):
                yield f"n{n}"
                yield from sleep(0.05)  # just as the keep-alive fires

        return event_stream(events(), keep_alive=0.05)

    return app


def read_stream(port: int, path: str, until: bytes) -> Coro:
    sock = yield from open_connection("127.0.0.1", port)
    yield from sock.send_all(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    data = b""
    while until not in data:
        chunk = yield from sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return sock, data


def test_many_keep_alive_streams_racing_their_events_leave_no_timer_behind(beside_server):
    def client(port):
        yield from sleep(0.05)
        baseline = stats()["timers"]
        tasks = []
        for _ in range(40):
            tasks.append((yield from spawn(read_stream(port, "/racing", b"data: n12\n"))))
        results = []
        for task in tasks:
            results.append((yield from task.join()))
        during = stats()["timers"]
        for sock, _ in results:
            sock.close()  # every client leaves
        deadline = (yield from current_time()) + 3
        while (yield from current_time()) < deadline:
            names = {task.name for task in current_kernel().tasks}
            if stats()["timers"] <= baseline and "event source" not in names:
                break
            yield from sleep(0.02)
        return baseline, during, stats()["timers"], names, [data for _, data in results]

    baseline, during, after, names, bodies = beside_server(sse_app(), client)
    assert "event source" not in names
    assert after <= baseline, (baseline, during, after)
    for body in bodies:
        datas = [line for line in body.split(b"\n") if line.startswith(b"data: ")]
        assert datas == [f"data: n{n}".encode() for n in range(13)]  # none lost or doubled
        lines = {line for line in body.split(b"\n")
                 if line and not line.startswith(b"data: ")}
        assert lines <= {b": keep-alive"} | {line for line in lines if b"HTTP/1.1" in line
                                             or b":" in line and not line.startswith(b":")} \
            | {line for line in lines if all(c in b"0123456789abcdef\r" for c in line)}

