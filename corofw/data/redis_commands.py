"""The common Redis commands, shared by the client and its pipelines.

Each helper builds the command's arguments and names how its reply becomes
a Python value, then hands both to ``_command``. On a
:class:`~corofw.data.redis.Redis` client that returns a coroutine (``value
= yield from r.get("k")``); on a :class:`~corofw.data.redis.Pipeline` it
queues the command and returns the pipeline, whose ``execute`` gives the
converted values in order. Any command not listed here goes through
``execute_command(*args)``, which returns the reply as the server sent it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

R = TypeVar("R")
Key = Any  # str, bytes, or anything encode_command accepts
Convert = Callable[[Any], Any]


def ok(reply: Any) -> bool | None:
    """``+OK`` is True; a null reply (e.g. SET NX on an existing key) is None."""
    return None if reply is None else reply in (b"OK", "OK")


def as_bool(reply: Any) -> bool:
    """An integer reply 1/0 as True/False."""
    return bool(reply)


def pairs(reply: Any) -> dict[Any, Any]:
    """A flat [field, value, ...] array as a dict."""
    it = iter(reply)
    return dict(zip(it, it, strict=True))


def pop_pair(reply: Any) -> tuple[Any, Any] | None:
    """BLPOP's [key, value] as a tuple; None when it timed out."""
    return None if reply is None else (reply[0], reply[1])


class Commands(Generic[R]):
    """Command helpers; ``R`` is what each returns (a coroutine for the
    client, the pipeline itself for a pipeline)."""

    def _command(self, args: tuple[Any, ...], convert: Convert | None = None,
                 block: float | None = None) -> R:
        """Send ``args``; ``convert`` turns the reply into the helper's value;
        ``block`` is how long the server may hold a blocking command (0:
        forever), added to the client's command timeout."""
        raise NotImplementedError

    def execute_command(self, *args: Any) -> R:
        """Any command, e.g. ``execute_command("ZADD", "scores", 10, "ann")``;
        the reply comes back as RESP gives it (see :mod:`corofw.data.resp`)."""
        return self._command(args)

    # -- connection and server --

    def ping(self) -> R:
        """PING: True when the server answers."""
        return self._command(("PING",), lambda reply: reply in (b"PONG", "PONG"))

    def echo(self, message: Any) -> R:
        """ECHO: ``message`` back from the server."""
        return self._command(("ECHO", message))

    def flushdb(self) -> R:
        """FLUSHDB: delete every key of the selected database; True."""
        return self._command(("FLUSHDB",), ok)

    # -- strings and keys --

    def get(self, key: Key) -> R:
        """GET: the value, or None when the key does not exist."""
        return self._command(("GET", key))

    def set(self, key: Key, value: Any, *, ex: float | None = None, px: int | None = None,
            nx: bool = False, xx: bool = False, keepttl: bool = False,
            get: bool = False) -> R:
        """SET: store ``value``, expiring in ``ex`` seconds or ``px``
        milliseconds; ``nx`` only if the key is new, ``xx`` only if it
        exists. True when stored, None when NX/XX prevented it; with
        ``get=True``, the old value (or None) instead."""
        args: list[Any] = ["SET", key, value]
        if ex is not None:
            args += ("PX", int(ex * 1000)) if isinstance(ex, float) else ("EX", ex)
        if px is not None:
            args += ("PX", px)
        if nx:
            args.append("NX")
        if xx:
            args.append("XX")
        if keepttl:
            args.append("KEEPTTL")
        if get:
            args.append("GET")
            return self._command(tuple(args))
        return self._command(tuple(args), ok)

    def mget(self, *keys: Key) -> R:
        """MGET: the values of ``keys`` in order (None for a missing key)."""
        return self._command(("MGET", *keys))

    def mset(self, mapping: Mapping[Key, Any]) -> R:
        """MSET: store every key/value pair of ``mapping`` at once; True."""
        return self._command(("MSET", *_flatten(mapping)), ok)

    def delete(self, *keys: Key) -> R:
        """DEL: delete ``keys``; the number that existed."""
        return self._command(("DEL", *keys))

    def exists(self, *keys: Key) -> R:
        """EXISTS: how many of ``keys`` exist."""
        return self._command(("EXISTS", *keys))

    def incr(self, key: Key, amount: int = 1) -> R:
        """INCRBY: add ``amount`` to the integer at ``key`` (0 if missing);
        the new value."""
        return self._command(("INCR", key) if amount == 1 else ("INCRBY", key, amount))

    def decr(self, key: Key, amount: int = 1) -> R:
        """DECRBY: subtract ``amount``; the new value."""
        return self._command(("DECR", key) if amount == 1 else ("DECRBY", key, amount))

    def expire(self, key: Key, seconds: int) -> R:
        """EXPIRE: delete ``key`` after ``seconds``; False if it does not exist."""
        return self._command(("EXPIRE", key, seconds), as_bool)

    def pexpire(self, key: Key, milliseconds: int) -> R:
        """PEXPIRE: delete ``key`` after ``milliseconds``; False if it does not
        exist."""
        return self._command(("PEXPIRE", key, milliseconds), as_bool)

    def ttl(self, key: Key) -> R:
        """TTL: seconds left to live; -1 without expiry, -2 if missing."""
        return self._command(("TTL", key))

    def pttl(self, key: Key) -> R:
        """PTTL: milliseconds left to live; -1 without expiry, -2 if missing."""
        return self._command(("PTTL", key))

    # -- hashes --

    def hget(self, key: Key, field: Any) -> R:
        """HGET: one field's value, or None."""
        return self._command(("HGET", key, field))

    def hset(self, key: Key, field: Any = None, value: Any = None,
             mapping: Mapping[Any, Any] | None = None) -> R:
        """HSET: set ``field`` to ``value`` and/or every pair of ``mapping``;
        the number of fields that were new."""
        args: list[Any] = ["HSET", key]
        if field is not None:
            args += (field, value)
        if mapping:
            args += _flatten(mapping)
        if len(args) == 2:
            raise ValueError("hset() needs a field and value, or a mapping")
        return self._command(tuple(args))

    def hgetall(self, key: Key) -> R:
        """HGETALL: every field and value, as a dict (empty if missing)."""
        return self._command(("HGETALL", key), pairs)

    def hdel(self, key: Key, *fields: Any) -> R:
        """HDEL: delete ``fields``; the number that existed."""
        return self._command(("HDEL", key, *fields))

    def hincrby(self, key: Key, field: Any, amount: int = 1) -> R:
        """HINCRBY: add ``amount`` to an integer field; the new value."""
        return self._command(("HINCRBY", key, field, amount))

    # -- lists --

    def lpush(self, key: Key, *values: Any) -> R:
        """LPUSH: insert ``values`` at the head; the list's new length."""
        return self._command(("LPUSH", key, *values))

    def rpush(self, key: Key, *values: Any) -> R:
        """RPUSH: append ``values``; the list's new length."""
        return self._command(("RPUSH", key, *values))

    def lpop(self, key: Key) -> R:
        """LPOP: remove and return the first item, or None."""
        return self._command(("LPOP", key))

    def rpop(self, key: Key) -> R:
        """RPOP: remove and return the last item, or None."""
        return self._command(("RPOP", key))

    def llen(self, key: Key) -> R:
        """LLEN: the list's length (0 if missing)."""
        return self._command(("LLEN", key))

    def lrange(self, key: Key, start: int = 0, stop: int = -1) -> R:
        """LRANGE: the items from ``start`` to ``stop`` inclusive (negative
        counts from the end)."""
        return self._command(("LRANGE", key, start, stop))

    def blpop(self, keys: Key | list[Key], timeout: float = 0) -> R:
        """BLPOP: wait up to ``timeout`` seconds (0: forever) for an item in
        the first non-empty list of ``keys``; ``(key, item)``, or None when
        the time ran out. The wait happens in the server: the task waits in
        epoll meanwhile, like any other."""
        return self._command(("BLPOP", *_keys(keys), timeout), pop_pair, block=timeout)

    def brpop(self, keys: Key | list[Key], timeout: float = 0) -> R:
        """BRPOP: as :meth:`blpop`, from the tail."""
        return self._command(("BRPOP", *_keys(keys), timeout), pop_pair, block=timeout)

    # -- sets --

    def sadd(self, key: Key, *members: Any) -> R:
        """SADD: add ``members``; how many were new."""
        return self._command(("SADD", key, *members))

    def smembers(self, key: Key) -> R:
        """SMEMBERS: every member, as a Python set."""
        return self._command(("SMEMBERS", key), set)

    # -- pub/sub --

    def publish(self, channel: Any, message: Any) -> R:
        """PUBLISH: send ``message`` on ``channel``; how many subscribers got it."""
        return self._command(("PUBLISH", channel, message))


def _flatten(mapping: Mapping[Any, Any]) -> list[Any]:
    out: list[Any] = []
    for key, value in mapping.items():
        out += (key, value)
    return out


def _keys(keys: Key | list[Key]) -> list[Key]:
    return list(keys) if isinstance(keys, (list, tuple)) else [keys]
