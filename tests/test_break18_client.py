"""Client defects found under hostile use after issue 18's fixes: a relative
URL joined to a base_url with a path loses the slash between them, and one
Client used by two kernels at once hangs. Each marked xfail(strict) while open, so
a fix flips it."""

from __future__ import annotations

import pytest
from raw_server import RawServer

from corofw import Client, Timeout, run

pytestmark = pytest.mark.usefixtures("no_leaks")

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _answer_each(server, conn, index):
    while server.read_request(conn) is not None:
        conn.sendall(OK)


def test_a_relative_path_is_joined_under_the_base_urls_path():
    with RawServer(_answer_each) as server:
        client = Client(server.url + "/api", timeout=Timeout(5))

        def main():
            response = yield from client.get("users")
            client.close()
            return response.status_code

        assert run(main()) == 200
    assert server.requests[0].startswith(b"GET /api/users HTTP/1.1\r\n")


_TWO_KERNELS = """
import collections, socket, sys, threading
from corofw import Client, ClientError, Timeout, gather, run

listener = socket.create_server(("127.0.0.1", 0), backlog=64)
port = listener.getsockname()[1]

def serve_one(conn):
    data = b""
    with conn:
        while True:
            while b"\\r\\n\\r\\n" not in data:
                got = conn.recv(65536)
                if not got:
                    return
                data += got
            data = data.partition(b"\\r\\n\\r\\n")[2]
            conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")

def accept_loop():
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        threading.Thread(target=serve_one, args=(conn,), daemon=True).start()

threading.Thread(target=accept_loop, daemon=True).start()
client = Client(f"http://127.0.0.1:{port}", timeout=Timeout(1), max_connections=2)
outcomes = {}

def kernel_thread(name):
    seen = collections.Counter()

    def worker():
        for _ in range(100):
            try:
                seen[(yield from client.get("/x")).status_code] += 1
            except (ClientError, RuntimeError) as exc:
                seen[type(exc).__name__] += 1

    def main():
        yield from gather(*(worker() for _ in range(5)))

    try:
        run(main())
    except BaseException as exc:
        seen["run raised " + type(exc).__name__] += 1
    outcomes[name] = dict(seen)

threads = [threading.Thread(target=kernel_thread, args=(n,), daemon=True) for n in "AB"]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join(5)
print(outcomes, [thread.is_alive() for thread in threads])
sys.stdout.flush()
assert not any(thread.is_alive() for thread in threads), "a kernel hung"
for seen in outcomes.values():
    # Either it works (httpx's Client is thread-safe) or it refuses clearly.
    assert set(seen) <= {200, "RuntimeError"}, seen
"""


def test_one_client_used_by_two_kernels_at_once_works_or_refuses(run_python):
    result = run_python(_TWO_KERNELS, timeout=25)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
