"""A Redis client on the corofw kernel.

Commands are coroutines: a task that waits for Redis waits in epoll like a
task waiting for HTTP, so many commands overlap on one thread::

    r = Redis("redis://127.0.0.1:6379/0")
    yield from r.set("greeting", "hello", ex=60)
    value = yield from r.get("greeting")        # b"hello"

Connections come from a pool (``max_connections``, waiting FIFO for at
most ``pool_timeout`` seconds); a pipeline sends many commands in one round
trip; pub/sub delivers messages to a waiting task (see
:mod:`corofw.data.redis_pubsub`). Replies are ``bytes`` unless the client
was made with ``decode_responses=True`` (then UTF-8 ``str``), as in
redis-py: Redis stores bytes, and only the caller knows which are text.

Every failure is a :class:`~corofw.data.redis_errors.RedisError`. A command
that times out, is cancelled, or loses its connection closes that
connection; the next command gets a healthy one (idle connections are
checked before reuse, so a restarted server costs the in-flight commands,
which fail fast with :class:`RedisConnectionError`, and nothing more).
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from types import EllipsisType
from typing import Any
from urllib.parse import unquote, urlsplit

from ..kernel.costs import label_fd
from ..kernel.deadline import Deadline
from ..kernel.task import Cancelled
from ..kernel.traps import Coro
from ..net import Socket, open_connection
from .redis_commands import Commands, Convert
from .redis_connection import Connection, ConnectionPool, current_task
from .redis_errors import RedisConnectionError, RedisError, RedisTimeout, ResponseError
from .redis_pubsub import PubSub
from .resp import Reader, encode_command, encode_commands


class Redis(Commands[Coro[Any]]):
    """A Redis client: a connection pool and the commands, as coroutines.

    ``url`` is ``redis://[[user]:password@]host[:port][/db]`` or
    ``unix:///path/to/redis.sock[?db=N]``; the keyword arguments override
    its parts. ``timeout`` limits each command (None: no limit; a blocking
    command such as BLPOP gets its own wait on top); ``connect_timeout``
    limits opening a connection; ``pool_timeout`` limits the wait for a free
    connection when ``max_connections`` are busy. Creating a client opens
    nothing: connections are made on first use, in the running kernel.

    ``tracer``, when set, is called as each command starts, as
    ``tracer(name)`` (the command's name, or ``MULTI`` or ``PIPELINE`` for a
    pipeline); it returns None or an object whose ``end_query(error)`` is
    called once when the command ends (``error`` None if it succeeded). See
    :class:`~corofw.web.tracing.Tracing`.
    """

    tracer: Callable[[str], Any] | None = None

    def __init__(self, url: str | None = None, *, host: str | None = None,
                 port: int | None = None, db: int | None = None,
                 password: str | None = None, username: str | None = None,
                 unix_socket: str | None = None, decode_responses: bool = False,
                 max_connections: int = 64, timeout: float | None = None,
                 connect_timeout: float | None = 5.0,
                 pool_timeout: float | None = 5.0) -> None:
        parts = _parse_url(url) if url else {}
        self.host: str = host or parts.get("host") or "127.0.0.1"
        self.port: int = port or parts.get("port") or 6379
        self.unix_socket: str | None = unix_socket or parts.get("path")
        self.db: int = db if db is not None else parts.get("db", 0)
        self.username: str | None = username or parts.get("username")
        self.password: str | None = password or parts.get("password")
        self.decode_responses = decode_responses
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.address = self.unix_socket or f"{self.host}:{self.port}"
        self.pool = ConnectionPool(self.connect, max_connections, pool_timeout)

    def __repr__(self) -> str:
        return f"<Redis {self.address} db={self.db} {self.pool!r}>"

    def __enter__(self) -> Redis:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the pool's connections (those in use as they come back)."""
        self.pool.close()

    # -- commands ------------------------------------------------------------

    def execute(self, *args: Any, timeout: float | None | EllipsisType = ...) -> Coro[Any]:
        """Run any command and return its reply as RESP gives it; an error
        reply raises :class:`ResponseError`. ``timeout`` overrides the
        client's command timeout for this call."""
        seconds = self.timeout if timeout is ... else timeout
        run = self._run(encode_command(args), None, seconds)
        return run if self.tracer is None else self._traced(run, args[0])

    def _command(self, args: tuple[Any, ...], convert: Convert | None = None,
                 block: float | None = None) -> Coro[Any]:
        seconds = self.timeout
        if block is not None and seconds is not None:
            seconds = None if block == 0 else seconds + block
        run = self._run(encode_command(args), convert, seconds)
        return run if self.tracer is None else self._traced(run, args[0])

    def _traced(self, run: Coro[Any], name: Any) -> Coro[Any]:
        """``run`` reported to the tracer."""
        tracer = self.tracer
        trace = None if tracer is None else tracer(
            name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name))
        if trace is None:
            return (yield from run)
        try:
            reply = yield from run
        except BaseException as exc:
            trace.end_query(exc)
            raise
        trace.end_query(None)
        return reply

    def _run(self, payload: bytes, convert: Convert | None, seconds: float | None) -> Coro[Any]:
        pool = self.pool
        conn = pool.take_idle()
        if conn is None:
            conn = yield from pool.acquire()
        deadline = None
        try:
            if seconds is not None:
                deadline = conn.arm((yield from current_task()), seconds, "command")
            reply = yield from conn.call(payload)
        except Cancelled as exc:
            pool.discard(conn)
            if deadline is not None and exc.scope is deadline:
                raise RedisTimeout(f"a Redis command timed out after {seconds:g} s") from None
            raise
        except BaseException:
            pool.discard(conn)
            raise
        if deadline is not None:
            deadline.clear()
        pool.release(conn)
        if type(reply) is ResponseError:
            raise reply
        return reply if convert is None else convert(reply)

    def _run_many(self, payload: bytes, count: int) -> Coro[list[Any]]:
        """Send a batch on one pooled connection and read its ``count``
        replies."""
        pool = self.pool
        conn = pool.take_idle()
        if conn is None:
            conn = yield from pool.acquire()
        deadline = None
        seconds = self.timeout
        try:
            if seconds is not None:
                deadline = conn.arm((yield from current_task()), seconds, "pipeline")
            replies = yield from conn.call_many(payload, count)
        except Cancelled as exc:
            pool.discard(conn)
            if deadline is not None and exc.scope is deadline:
                raise RedisTimeout(f"a Redis pipeline timed out after {seconds:g} s") from None
            raise
        except BaseException:
            pool.discard(conn)
            raise
        if deadline is not None:
            deadline.clear()
        pool.release(conn)
        return replies

    def pipeline(self, transaction: bool = True) -> Pipeline:
        """A :class:`Pipeline`: queue commands, then send them all in one
        round trip with ``yield from p.execute()``. With ``transaction``
        (the default, as in redis-py) they run inside MULTI/EXEC, so no
        other client's command runs between them."""
        return Pipeline(self, transaction)

    def subscribe(self, *channels: Any) -> Coro[PubSub]:
        """A :class:`~corofw.data.redis_pubsub.PubSub` on a connection of
        its own (outside the pool), subscribed to ``channels`` when this
        returns."""
        return self._subscriber("subscribe", channels)

    def psubscribe(self, *patterns: Any) -> Coro[PubSub]:
        """As :meth:`subscribe`, to channels matching glob ``patterns``."""
        return self._subscriber("psubscribe", patterns)

    def _subscriber(self, method: str, names: tuple[Any, ...]) -> Coro[PubSub]:
        if self.pool.closed:
            raise RedisConnectionError("the Redis client was closed")
        conn = yield from self.connect()
        sub = PubSub(conn)
        try:
            yield from getattr(sub, method)(*names)
        except BaseException:
            sub.close()
            raise
        return sub

    # -- connections ------------------------------------------------------------

    def connect(self) -> Coro[Connection]:
        """A new connection, authenticated and on the client's database
        (the pool calls this; so does pub/sub). ``connect_timeout`` covers
        it all, from the TCP handshake to the last setup reply."""
        deadline = None
        if self.connect_timeout is not None:
            deadline = Deadline((yield from current_task()))
            deadline.set(self.connect_timeout, "connect")
        conn = None
        try:
            sock = yield from self._open_socket()
            conn = Connection(sock, Reader(encoding="utf-8" if self.decode_responses else None),
                              self.address)
            setup = self._setup_commands()
            if setup:
                for reply in (yield from conn.call_many(encode_commands(setup), len(setup))):
                    if isinstance(reply, ResponseError):
                        raise reply
            return conn
        except BaseException as exc:
            if conn is not None:
                conn.close()
            if isinstance(exc, Cancelled) and deadline is not None and exc.scope is deadline:
                raise RedisTimeout(f"connecting to redis at {self.address} took longer than "
                                   f"{self.connect_timeout:g} s") from None
            raise
        finally:
            if deadline is not None:
                deadline.close()

    def _open_socket(self) -> Coro[Socket]:
        try:
            if self.unix_socket is None:
                return (yield from open_connection(self.host, self.port,
                                                   label=f"redis {self.address}"))
            sock = Socket(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            label_fd(sock.fd, f"redis {self.address}")
            try:
                yield from sock.connect(self.unix_socket)
            except BaseException:
                sock.close()
                raise
            return sock
        except socket.gaierror as exc:
            raise RedisConnectionError(f"cannot resolve redis host {self.host!r}: "
                                       f"{exc.strerror}") from None
        except OSError as exc:
            refused = exc.errno == errno.ECONNREFUSED or isinstance(exc, ConnectionRefusedError)
            reason = "connection refused" if refused else str(exc)
            raise RedisConnectionError(f"cannot connect to redis at {self.address}: "
                                       f"{reason}") from None

    def _setup_commands(self) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        if self.password is not None:
            commands.append(("AUTH", self.username, self.password) if self.username
                            else ("AUTH", self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class Pipeline(Commands["Pipeline"]):
    """Commands queued to run in one round trip. Every helper (``set``,
    ``get``, ...) and ``execute_command`` queue a command and return the
    pipeline; :meth:`execute` sends them and returns their values in order.
    The pipeline is empty again afterwards and may be reused."""

    def __init__(self, client: Redis, transaction: bool = True) -> None:
        self.client = client
        self.transaction = transaction
        self._queued: list[tuple[tuple[Any, ...], Convert | None]] = []

    def __repr__(self) -> str:
        return f"<Pipeline {len(self._queued)} commands transaction={self.transaction}>"

    def __len__(self) -> int:
        return len(self._queued)

    def _command(self, args: tuple[Any, ...], convert: Convert | None = None,
                 block: float | None = None) -> Pipeline:
        encode_command(args)  # a bad argument fails here, where it was written
        self._queued.append((args, convert))
        return self

    def execute(self, raise_on_error: bool = True) -> Coro[list[Any]]:
        """Send every queued command at once and read all the replies.

        With ``raise_on_error`` (the default) the first error reply is raised
        as :class:`ResponseError` once all replies are read; without it, error
        replies are left in the list as ResponseError values. In a transaction
        an error found while queueing (e.g. a wrong number of arguments)
        makes Redis discard the whole transaction: it is raised either way.
        """
        queued, self._queued = self._queued, []
        if not queued:
            return []
        commands = [args for args, _ in queued]
        if self.transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        run = self.client._run_many(encode_commands(commands), len(commands))
        if self.client.tracer is not None:
            run = self.client._traced(run, "MULTI" if self.transaction else "PIPELINE")
        replies = yield from run
        if self.transaction:
            replies = _transaction_result(replies)
        results = []
        first_error = None
        for reply, (_, convert) in zip(replies, queued, strict=True):
            if isinstance(reply, ResponseError):
                first_error = first_error or reply
            elif convert is not None:
                reply = convert(reply)
            results.append(reply)
        if first_error is not None and raise_on_error:
            raise first_error
        return results


def _transaction_result(replies: list[Any]) -> list[Any]:
    """EXEC's array of results, or the error that made Redis discard the
    transaction."""
    for reply in replies[:-1]:
        if isinstance(reply, ResponseError):
            raise reply  # MULTI refused, or a command refused while queueing
    result = replies[-1]
    if isinstance(result, ResponseError):
        raise result
    if result is None:
        raise RedisError("the transaction was aborted (a watched key changed)")
    results: list[Any] = result  # EXEC's reply: an array
    return results


def _parse_url(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    found: dict[str, Any] = {}
    if parts.scheme == "unix":
        found["path"] = unquote(parts.path)
    elif parts.scheme == "redis":
        found["host"] = parts.hostname
        found["port"] = parts.port
        db = parts.path.strip("/")
        if db:
            if not db.isdigit():
                raise ValueError(f"the database in a Redis URL is a number, got {db!r}")
            found["db"] = int(db)
    elif parts.scheme == "rediss":
        raise ValueError("rediss:// (TLS) is not supported yet; use redis:// or unix://")
    else:
        raise ValueError(f"a Redis URL starts with redis:// or unix://, got {url!r}")
    if parts.username:
        found["username"] = unquote(parts.username)
    if parts.password is not None:
        found["password"] = unquote(parts.password)
    for item in parts.query.split("&") if parts.query else ():
        name, _, value = item.partition("=")
        if name == "db":
            found["db"] = int(value)
        else:
            raise ValueError(f"unknown option {name!r} in the Redis URL")
    return found
