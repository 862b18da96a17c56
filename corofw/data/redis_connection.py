"""One connection to Redis, and the pool that shares them between tasks.

A :class:`Connection` is a non-blocking socket with a RESP reader. A
command is one optimistic ``send`` followed by read waits until the reader
has the reply; nothing else is kept between commands, so a connection is
*clean* exactly when every command sent on it has had its reply read.
Anything that interrupts a command half way (a timeout, a cancellation, a
broken socket, bad bytes) closes the connection instead of returning it:
the reply it still owes would otherwise answer the next caller's command.

The :class:`ConnectionPool` keeps idle connections for reuse (the most
recently used first), opens new ones up to ``max_size``, and beyond that
makes callers wait, first come first served: a released connection (or a
freed slot) is handed straight to the oldest waiter, so a burst of callers
cannot overtake it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from ..kernel.context import current_kernel
from ..kernel.costs import label_fd
from ..kernel.deadline import Deadline
from ..kernel.task import Cancelled, Task, WaitQueue
from ..kernel.traps import TASK, Coro, park, read_wait
from ..net.sockets import Socket
from .redis_errors import RedisConnectionError, RedisPoolTimeout, RedisProtocolError
from .resp import NEED_DATA

RECV_SIZE = 65536
_peek = socket.socket.recv
_CLOSED = object()


def current_task() -> Coro[Task]:
    """The running task, without a trap when the kernel can say it."""
    kernel = current_kernel()
    task = kernel.current if kernel is not None else None
    if task is None:
        task = yield TASK
    return task


class Connection:
    """A connection to a Redis server: a :class:`~corofw.net.Socket`, a
    RESP reader, and a deadline (made on first use) that limits one
    command at a time."""

    __slots__ = ("sock", "raw", "fd", "reader", "deadline", "address")

    def __init__(self, sock: Socket, reader: Any, address: str) -> None:
        self.sock = sock
        self.raw = sock.sock
        self.fd = sock.fd
        self.reader = reader
        self.deadline: Deadline | None = None
        self.address = address
        label_fd(self.fd, f"redis {address}")

    def __repr__(self) -> str:
        return f"<redis Connection to {self.address} fd={self.sock.fd}>"

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self.sock.closed

    def looks_alive(self) -> bool:
        """False if the server has closed the idle connection (it restarted,
        or dropped idle clients) or sent bytes nobody asked for. A peek,
        which consumes nothing."""
        if self.sock.fd < 0:
            return False
        try:
            _peek(self.raw, 1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        return False

    def arm(self, task: Task, seconds: float, label: str) -> Deadline:
        """Limit what ``task`` does next on this connection to ``seconds``;
        on expiry the task gets a ``Cancelled`` whose scope is the returned
        deadline (clear it when the work is done)."""
        deadline = self.deadline
        if deadline is None:
            deadline = self.deadline = Deadline(task)
        else:
            deadline.retarget(task)
        deadline.set(seconds, label)
        return deadline

    def send(self, payload: bytes) -> Coro[None]:
        """Send all of ``payload``; one system call when the socket takes it."""
        try:
            sent = self.raw.send(payload)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            raise RedisConnectionError(f"sending to redis at {self.address} failed: "
                                       f"{exc}") from None
        if sent < len(payload):
            try:
                yield from self.sock.send_all(memoryview(payload)[sent:])
            except OSError as exc:
                raise RedisConnectionError(f"sending to redis at {self.address} failed: "
                                           f"{exc}") from None

    def receive(self) -> Coro[None]:
        """Wait until the socket is readable and feed what arrived to the
        reader. The end of the stream is a :class:`RedisConnectionError`."""
        yield read_wait(self.fd)
        try:
            data = self.raw.recv(RECV_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            raise RedisConnectionError(f"reading from redis at {self.address} failed: "
                                       f"{exc}") from None
        if not data:
            raise RedisConnectionError(f"redis at {self.address} closed the connection")
        self.reader.feed(data)

    def read_reply(self) -> Coro[Any]:
        """The next reply (an error reply is returned as a value)."""
        reply = self.reader.gets()
        while reply is NEED_DATA:
            yield from self.receive()
            reply = self.reader.gets()
        return reply

    def call(self, payload: bytes) -> Coro[Any]:
        """Send one command and return its reply."""
        yield from self.send(payload)
        reader = self.reader
        fd = self.fd
        raw = self.raw
        while True:
            yield read_wait(fd)  # the command has just left: nothing can be here yet
            try:
                data = raw.recv(RECV_SIZE)
            except BlockingIOError:
                continue
            except OSError as exc:
                raise RedisConnectionError(f"reading from redis at {self.address} failed: "
                                           f"{exc}") from None
            if not data:
                raise RedisConnectionError(f"redis at {self.address} closed the connection")
            reader.feed(data)
            reply = reader.gets()
            if reply is not NEED_DATA:
                if reader.has_data():
                    raise self._unasked()
                return reply

    def call_many(self, payload: bytes, count: int) -> Coro[list[Any]]:
        """Send several commands at once and return their ``count`` replies:
        one round trip however many there are."""
        yield from self.send(payload)
        replies = []
        for _ in range(count):
            replies.append((yield from self.read_reply()))
        if self.reader.has_data():
            raise self._unasked()
        return replies

    def _unasked(self) -> RedisProtocolError:
        return RedisProtocolError(f"redis at {self.address} sent more than the replies asked "
                                  f"for")

    def close(self) -> None:
        """Close the socket and drop the deadline's timer. Idempotent."""
        if self.deadline is not None:
            self.deadline.close()
            self.deadline = None
        self.sock.close()


class ConnectionPool:
    """Up to ``max_size`` connections made by ``connect`` (a coroutine
    function); a caller waits at most ``timeout`` seconds (None: no limit)
    for one to be free, then gets :class:`RedisPoolTimeout`."""

    wait_label = "redis pool"  # what waiting here is called in request costs

    def __init__(self, connect: Callable[[], Coro[Connection]], max_size: int = 64,
                 timeout: float | None = 5.0) -> None:
        if max_size < 1:
            raise ValueError("a pool needs room for at least one connection")
        self._connect = connect
        self.max_size = max_size
        self.timeout = timeout
        self._idle: list[Connection] = []
        self._size = 0
        self._waiters = WaitQueue(self)
        self._closed = False

    def __repr__(self) -> str:
        return (f"<redis ConnectionPool {self._size}/{self.max_size} connections "
                f"({len(self._idle)} idle), {len(self._waiters)} waiting>")

    @property
    def size(self) -> int:
        """Connections open or being opened, idle or in use."""
        return self._size

    @property
    def idle(self) -> int:
        """Connections open and waiting for a caller."""
        return len(self._idle)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._closed

    @property
    def waiting(self) -> int:
        """Callers waiting for a connection."""
        return len(self._waiters)

    def take_idle(self) -> Connection | None:
        """An idle connection that still looks usable, or None; never waits
        (a warm pool costs no coroutine)."""
        idle = self._idle
        while idle:
            conn = idle.pop()
            if conn.looks_alive():
                return conn
            self.discard(conn)
        return None

    def acquire(self) -> Coro[Connection]:
        """A connection for one caller: an idle one, a new one while there is
        room, else the next one released (waiting FIFO)."""
        if self._closed:
            raise RedisConnectionError("the Redis client was closed")
        conn = self.take_idle()
        if conn is not None:
            return conn
        if self._size < self.max_size and not self._waiters:
            self._size += 1
        else:
            handed = yield from self._wait()
            if handed is not None:
                return handed  # a released connection; else we inherited a free slot
        try:
            return (yield from self._connect())
        except BaseException:
            self._slot_freed()
            raise

    def _wait(self) -> Coro[Connection | None]:
        deadline = None
        if self.timeout is not None:
            task = yield from current_task()
            deadline = Deadline(task)
            deadline.set(self.timeout, "pool")
        try:
            handed = yield from park(self._waiters)
        except Cancelled as exc:
            if deadline is not None and exc.scope is deadline:
                raise RedisPoolTimeout(f"no Redis connection was free within {self.timeout:g} s "
                                       f"(max_connections={self.max_size})") from None
            raise
        finally:
            if deadline is not None:
                deadline.close()  # also drops its expiry if it raced with the hand-over
        if handed is _CLOSED:
            raise RedisConnectionError("the Redis client was closed")
        conn: Connection = handed
        return conn

    def release(self, conn: Connection) -> None:
        """Give back a clean connection (every reply read): to the oldest
        waiter if there is one, else to the idle list."""
        if self._closed or conn.closed:
            self.discard(conn)
        elif self._waiters:
            self._waiters.wake_one(conn)
        else:
            self._idle.append(conn)

    def discard(self, conn: Connection) -> None:
        """Close a connection that must not be reused, freeing its slot."""
        conn.close()
        self._slot_freed()

    def _slot_freed(self) -> None:
        if self._waiters and not self._closed:
            self._waiters.wake_one(None)  # the waiter opens a connection in this slot
        else:
            self._size -= 1

    def close(self) -> None:
        """Close the idle connections now and the others as they come back;
        callers waiting get :class:`RedisConnectionError`."""
        self._closed = True
        while self._idle:
            self.discard(self._idle.pop())
        self._waiters.wake_all(_CLOSED)

