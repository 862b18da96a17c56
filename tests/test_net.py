"""corofw.net: listen/accept/recv/send_all/connect, close and shutdown, TLS."""

from __future__ import annotations

import array
import errno
import hashlib
import os
import socket
import ssl
import threading

import pytest

from corofw import (
    ClosedResourceError,
    TaskTimeout,
    current_kernel,
    format_tasks,
    run,
    sleep,
    spawn,
    timeout_after,
    write_wait,
)
from corofw.net import Socket, is_numeric_host, listen, open_connection, wrap_server

pytestmark = pytest.mark.usefixtures("no_leaks")

LOCALHOST = "127.0.0.1"


def port_of(listener):
    return listener.getsockname()[1]


def echo_once(listener):
    """Accept one connection and echo it until the peer shuts down."""
    conn, _ = yield from listener.accept()
    with conn:
        while data := (yield from conn.recv(65536)):
            yield from conn.send_all(data)


def recv_until_eof(sock, chunk=65536):
    parts = []
    while data := (yield from sock.recv(chunk)):
        parts.append(data)
    return b"".join(parts)


def closed_port():
    """A 127.0.0.1 port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def test_is_numeric_host():
    assert is_numeric_host("127.0.0.1") and is_numeric_host("::1")
    assert not is_numeric_host("localhost") and not is_numeric_host("")


def test_listen_accept_recv_send_round_trip_without_threads():
    def main():
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(echo_once(listener))
            with (yield from open_connection(LOCALHOST, port_of(listener))) as client:
                assert client.getpeername() == (LOCALHOST, port_of(listener))
                yield from client.send_all(b"hello")
                first = yield from client.recv(100)
                client.shutdown()
                rest = yield from recv_until_eof(client)
            yield from server.join()
        return first + rest, current_kernel()._pool

    assert run(main()) == (b"hello", None)  # numeric host: no thread pool


def test_accepted_socket_is_non_blocking_with_nodelay():
    def main():
        with listen(LOCALHOST, 0) as listener:
            connecting = yield from spawn(open_connection(LOCALHOST, port_of(listener)))
            conn, address = yield from listener.accept()
            client = yield from connecting.join()
            with conn, client:
                nodelay = conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                return isinstance(conn, Socket), conn.sock.getblocking(), nodelay, address[0]

    assert run(main()) == (True, False, 1, LOCALHOST)


def test_recv_returns_empty_bytes_at_end_of_stream():
    a, b = socket.socketpair()

    def main():
        with Socket(a) as sa, Socket(b) as sb:
            sb.close()
            return (yield from sa.recv(10)), sb.closed

    assert run(main()) == (b"", True)


def slow_reader(conn, observed):
    """Wait before reading so the writer fills the buffers, then drain."""
    yield from sleep(0.1)
    observed.append(format_tasks())
    digest = hashlib.sha256()
    total = 0
    while data := (yield from conn.recv(65536)):
        digest.update(data)
        total += len(data)
        if total % (1 << 20) < len(data):
            yield from sleep(0.001)  # slower than the writer, now and then
    return total, digest.hexdigest()


@pytest.mark.parametrize("kind", ["bytes", "int array"])
def test_send_all_of_8_mib_to_a_slow_reader_loses_nothing(kind):
    size = 8 << 20
    payload = os.urandom(size)
    data = payload if kind == "bytes" else array.array("i", payload)
    observed = []

    def writer(sock):
        yield from sock.send_all(data)
        sock.shutdown()

    def main():
        with listen(LOCALHOST, 0) as listener:
            client = yield from open_connection(LOCALHOST, port_of(listener))
            conn, _ = yield from listener.accept()
            with client, conn:
                conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                sending = yield from spawn(writer(client), name="writer")
                result = yield from slow_reader(conn, observed)
                yield from sending.join()
        return result

    assert run(main()) == (size, hashlib.sha256(payload).hexdigest())
    writer_block = observed[0].split("'writer'")[1].split("- task")[0]
    assert "write_wait(fd=" in writer_block  # the writer was held back, not buffering


def test_connection_refused_is_connection_refused_error():
    port = closed_port()

    def main():
        yield from open_connection(LOCALHOST, port)

    with pytest.raises(ConnectionRefusedError) as info:
        run(main())
    assert info.value.errno == errno.ECONNREFUSED
    assert str(port) in str(info.value)


def test_open_connection_by_name_resolves_in_a_thread():
    def main():
        with listen(LOCALHOST, 0) as listener:
            accepting = yield from spawn(listener.accept())
            client = yield from open_connection("localhost", port_of(listener))
            conn, _ = yield from accepting.join()
            conn.close()
            client.close()
        return current_kernel()._pool is not None

    assert run(main()) is True


def test_listen_with_reuse_port():
    def main():
        yield from sleep(0)
        first = listen(LOCALHOST, 0, reuse_port=True)
        with first, listen(LOCALHOST, port_of(first), reuse_port=True) as second:
            return port_of(first) == port_of(second)

    assert run(main()) is True


def test_close_drops_the_registration_so_the_fd_number_can_be_reused():
    def main():
        a, b = socket.socketpair()
        first, peer = Socket(a), Socket(b)
        waiter = yield from spawn(first.recv(10))
        yield from sleep(0)
        waiter.cancel()
        yield from sleep(0)
        fd = first.fd
        first.close()
        peer.close()
        assert fd not in current_kernel()._fds
        c, d = socket.socketpair()
        with Socket(c) as sc, Socket(d) as sd:
            assert fd in (sc.fd, sd.fd)
            reused, other = (sc, sd) if sc.fd == fd else (sd, sc)
            reading = yield from spawn(reused.recv(10))
            yield from sleep(0.01)
            yield from other.send_all(b"again")
            return (yield from timeout_after(2, reading.join()))

    assert run(main()) == b"again"


def test_closing_a_socket_wakes_its_waiter_with_closed_resource_error():
    a, b = socket.socketpair()

    def main():
        with Socket(a) as sa, Socket(b):
            waiter = yield from spawn(sa.recv(10))
            yield from sleep(0)
            sa.close()
            sa.close()  # idempotent
            with pytest.raises(ClosedResourceError):
                yield from waiter.join()

    run(main())


def test_shutdown_half_closes_and_ignores_a_gone_peer():
    def main():
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(echo_once(listener))
            client = yield from open_connection(LOCALHOST, port_of(listener))
            with client:
                yield from client.send_all(b"abc")
                client.shutdown()  # the server sees EOF, echoes, and closes
                echoed = yield from recv_until_eof(client)
                yield from server.join()
                client.shutdown(socket.SHUT_RDWR)  # peer gone: no error
        return echoed

    assert run(main()) == b"abc"


# -- TLS ---------------------------------------------------------------------------

def tls_echo_once(listener, context):
    conn, _ = yield from listener.accept()
    tls = yield from wrap_server(conn, context)
    with tls:
        data = yield from tls.recv(65536)
        yield from tls.send_all(data.upper() * 1000)


def test_tls_round_trip_corofw_server_and_client(tls_server_context, tls_client_context):
    def main():
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(tls_echo_once(listener, tls_server_context))
            client = yield from open_connection(LOCALHOST, port_of(listener),
                                                ssl=tls_client_context)
            with client:
                yield from client.send_all(b"secret")
                version = client.sock.version()
                reply = yield from recv_until_eof(client, 4096)
            yield from server.join()
        return reply, version

    reply, version = run(main())
    assert reply == b"SECRET" * 1000
    assert version.startswith("TLS")


def test_tls_client_against_a_stdlib_server_in_a_thread(tls_server_context,
                                                         tls_client_context):
    server = socket.create_server((LOCALHOST, 0))
    received = []

    def serve():
        conn, _ = server.accept()
        with tls_server_context.wrap_socket(conn, server_side=True) as tls:
            received.append(tls.recv(1024))
            tls.sendall(b"pong:" + received[0])

    thread = threading.Thread(target=serve)
    thread.start()

    def main():
        with (yield from open_connection(LOCALHOST, server.getsockname()[1],
                                         ssl=tls_client_context,
                                         server_hostname="localhost")) as client:
            yield from client.send_all(b"ping")
            return (yield from recv_until_eof(client))

    try:
        assert run(main()) == b"pong:ping"
    finally:
        thread.join(10)
        server.close()
    assert received == [b"ping"]


def test_tls_with_an_untrusted_certificate_fails_cleanly(tls_server_context):
    untrusted = ssl.create_default_context()  # does not trust the test CA

    def server_side(listener):
        conn, _ = yield from listener.accept()
        with pytest.raises(ssl.SSLError):
            yield from wrap_server(conn, tls_server_context)

    def main():
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(server_side(listener))
            with pytest.raises(ssl.SSLCertVerificationError):
                yield from open_connection(LOCALHOST, port_of(listener), ssl=untrusted)
            yield from server.join()

    run(main())


def test_tls_wrap_failure_closes_the_socket(tls_server_context):
    def main():
        with listen(LOCALHOST, 0) as listener:
            accepting = yield from spawn(listener.accept())
            with pytest.raises(ssl.SSLError) as info:  # a server context cannot connect
                yield from open_connection(LOCALHOST, port_of(listener),
                                           ssl=tls_server_context)
            conn, _ = yield from accepting.join()
            conn.close()
        a, b = socket.socketpair()  # likely reuses the failed socket's fd number
        with Socket(a) as sa, Socket(b) as sb:
            for sock in (sa, sb):
                yield from timeout_after(2, sock.send_all(b"x"))
                yield from timeout_after(2, wait_writable(sock))
        return info

    info = run(main())
    assert info.value is not None  # fds are checked while the traceback lives


def wait_writable(sock):
    yield write_wait(sock)


def test_tls_bulk_send_to_a_slow_reader(tls_server_context, tls_client_context):
    payload = os.urandom(4 << 20)

    def server_side(listener):
        conn, _ = yield from listener.accept()
        with (yield from wrap_server(conn, tls_server_context)) as tls:
            yield from tls.send_all(payload)

    def main():
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(server_side(listener), name="tls-writer")
            client = yield from open_connection(LOCALHOST, port_of(listener),
                                                ssl=tls_client_context)
            with client:
                observed = []
                result = yield from slow_reader(client, observed)
            yield from server.join()
        return result, observed[0]

    (size, digest), dump = run(main())
    assert (size, digest) == (len(payload), hashlib.sha256(payload).hexdigest())
    assert "write_wait(fd=" in dump.split("'tls-writer'")[1].split("- task")[0]


def test_a_tls_handshake_cut_short_by_a_timeout_releases_the_socket(tls_client_context):
    def main():
        with listen(LOCALHOST, 0) as listener:
            silent = yield from spawn(listener.accept())  # accepts, never answers
            with pytest.raises(TaskTimeout):
                yield from timeout_after(0.05, open_connection(
                    LOCALHOST, port_of(listener), ssl=tls_client_context))
            conn, _ = yield from silent.join()
            conn.close()
        return sorted(current_kernel()._fds)

    assert run(main()) == []


def test_a_socket_dropped_without_close_leaves_no_stale_registration():
    def main():
        a, b = socket.socketpair()
        dropped, peer = Socket(a), Socket(b)
        waiter = yield from spawn(dropped.recv(10))  # registers the fd with epoll
        yield from sleep(0)
        waiter.cancel()
        yield from sleep(0)
        fd = dropped.fd
        with pytest.warns(ResourceWarning):
            del a, dropped, waiter  # closed by the garbage collector, not by close()
        peer.close()
        c, d = socket.socketpair()
        with Socket(c) as sc, Socket(d) as sd:
            assert fd in (sc.fd, sd.fd)
            reused, other = (sc, sd) if sc.fd == fd else (sd, sc)
            reading = yield from spawn(reused.recv(10))
            yield from sleep(0.01)
            yield from other.send_all(b"again")
            return (yield from timeout_after(2, reading.join()))

    assert run(main()) == b"again"


def test_recv_into_and_send_on_plain_and_tls_sockets(tls_server_context, tls_client_context):
    def server_side(listener, context):
        conn, _ = yield from listener.accept()
        if context is not None:
            conn = yield from wrap_server(conn, context)
        with conn:
            sent = yield from conn.send(b"0123456789")
        return sent

    def exchange(context):
        with listen(LOCALHOST, 0) as listener:
            server = yield from spawn(server_side(listener, context[0] if context else None))
            client = yield from open_connection(LOCALHOST, port_of(listener),
                                                ssl=context[1] if context else None)
            with client:
                buffer = bytearray(16)
                got = 0
                while n := (yield from client.recv_into(memoryview(buffer)[got:])):
                    got += n
                eof = yield from client.recv_into(buffer)
            return bytes(buffer[:got]), eof, (yield from server.join())

    def main():
        plain = yield from exchange(None)
        tls = yield from exchange((tls_server_context, tls_client_context))
        return plain, tls

    expected = (b"0123456789", 0, 10)
    assert run(main()) == (expected, expected)


def test_a_socket_that_is_always_ready_still_lets_other_tasks_run():
    def main():
        a, b = socket.socketpair()
        reader = Socket(a)
        b.sendall(b"x" * 100_000)  # a hundred reads' worth, there before the first
        turns = []

        def ticker():
            while True:
                turns.append(len(turns))
                yield from sleep(0)

        task = yield from spawn(ticker())
        yield from sleep(0)
        before = len(turns)
        for _ in range(100):
            assert len((yield from reader.recv(1000))) == 1000
            yield from reader.send_all(b"y")
        during = len(turns) - before
        task.cancel()
        reader.close()
        b.close()
        return during

    assert run(main()) >= 10  # a turn every 16 calls that did not have to wait
