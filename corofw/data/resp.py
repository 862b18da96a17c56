"""RESP, the Redis protocol, without I/O: encode commands, parse replies.

A :class:`Reader` is fed whatever bytes arrived (``feed``) and hands back
one complete reply per ``gets()`` call, or :data:`NEED_DATA` when the
bytes so far end inside a reply. It never touches a socket, so it is
tested byte by byte and a client drives it from any event loop.

Replies map to Python values as hiredis maps them, so the C reader and the
pure-Python one are interchangeable:

=====================  ===========================================
RESP2                  Python
=====================  ===========================================
``+OK``                ``b"OK"``
``-ERR ...``           a :class:`ResponseError` *value* (not raised)
``:42``                ``42``
``$3 abc`` / ``$-1``   ``b"abc"`` / ``None``
``*2 ...`` / ``*-1``   ``[...]`` (nested as sent) / ``None``
=====================  ===========================================

RESP3's types are read too: null ``_`` is ``None``, booleans ``#t``/``#f``
are ``True``/``False``, doubles ``,`` are floats, big numbers ``(`` are
their digits as bytes, verbatim strings ``=`` are their text without the
``txt:`` prefix, maps ``%`` are dicts, and sets ``~``, pushes ``>`` and
attributes ``|`` are lists (an attribute as a flat key, value list).

With ``encoding`` set, strings (simple, bulk, verbatim, big numbers) are
decoded to ``str``; a string that does not decode raises
``UnicodeDecodeError`` once its whole reply has been read. Error messages
are always ``str`` (UTF-8, undecodable bytes replaced).

Malformed input raises :class:`RedisProtocolError` as soon as it is seen;
after that the reader raises it again on every call: the stream cannot be
resynchronised. The pure-Python reader is strict about every byte; hiredis,
used by :class:`Reader` when it is installed, skips the two bytes after a
bulk string without checking that they are CRLF.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from .redis_errors import RedisProtocolError, ResponseError

try:
    import hiredis
except ImportError:  # pragma: no cover - exercised where hiredis is missing
    hiredis = None  # type: ignore[assignment]  # the pure-Python reader is used


class _NeedData:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


#: What ``Reader.gets()`` returns while the bytes fed so far end inside a reply.
NEED_DATA: Any = _NeedData()

_INT = re.compile(rb"0|-?[1-9][0-9]*")
_DOUBLE = re.compile(rb"(-?)([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")
_BIG_NUMBER = re.compile(rb"-?[0-9]*")
_SPECIAL_DOUBLES = {b"inf": "inf", b"-inf": "-inf", b"nan": "nan", b"-nan": "nan"}
_INT64 = 2 ** 63
_MAX_ELEMENTS = 2 ** 32 - 1
_LONGEST_LINE = 512  # longer than any valid number line; bounds a line without CRLF
_STRING_LINES = frozenset(b"+-")
_TYPES = frozenset(b"$*:+-=_#,(%~>|")
_AGGREGATES = {ord("*"): 1, ord("~"): 1, ord(">"): 1, ord("%"): 2, ord("|"): 2}
_MAP = ord("%")
_COMPACT_AT = 65536


# -- commands ----------------------------------------------------------------

def encode_command(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings.

    Arguments may be ``bytes``, ``str`` (sent as UTF-8), ``int``, ``float``
    (sent as ``repr``), ``bytearray`` or ``memoryview``. ``bool`` and
    ``None`` raise ``TypeError``: Redis has no such types, and guessing
    (``"True"``? ``1``?) would store something the caller did not mean.
    """
    if not args:
        raise ValueError("a Redis command needs at least its name")
    out = [b"*%d\r\n" % len(args)]
    append = out.append
    for arg in args:
        kind = type(arg)
        if kind is bytes:
            data = arg
        elif kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        else:
            data = _argument(arg)
        append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def encode_commands(commands: Iterable[Sequence[Any]]) -> bytes:
    """Several commands back to back, to be sent in one write (a pipeline)."""
    return b"".join([encode_command(args) for args in commands])


def _argument(arg: Any) -> bytes:
    if isinstance(arg, bool) or arg is None:
        raise TypeError(f"cannot send {arg!r} to Redis: convert it to bytes, str or a number "
                        f"first")
    if isinstance(arg, (bytes, bytearray, memoryview)):
        return bytes(arg)
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int):
        return b"%d" % arg
    if isinstance(arg, float):
        return repr(arg).encode()
    raise TypeError(f"cannot send a {type(arg).__name__} to Redis: convert it to bytes, str "
                    f"or a number first")


# -- replies -------------------------------------------------------------------

class PythonReader:
    """A RESP2/RESP3 reply reader in pure Python (the fallback when hiredis
    is missing). Resumes where it stopped: an aggregate fed one byte at a
    time is parsed once, not re-parsed from its start on every byte."""

    __slots__ = ("_buffer", "_pos", "_stack", "_encoding", "_failure", "_decode_error")

    def __init__(self, encoding: str | None = None) -> None:
        self._buffer = bytearray()
        self._pos = 0
        self._stack: list[list[Any]] = []  # [kind, expected items, items]
        self._encoding = encoding
        self._failure: RedisProtocolError | None = None
        self._decode_error: UnicodeDecodeError | None = None

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        buffer = self._buffer
        if self._pos >= _COMPACT_AT or (self._pos and self._pos == len(buffer)):
            del buffer[:self._pos]
            self._pos = 0
        buffer += data

    def has_data(self) -> bool:
        """True when bytes fed are left over after the last complete reply."""
        return self._pos < len(self._buffer) or bool(self._stack)

    def gets(self) -> Any:
        """The next complete reply, or :data:`NEED_DATA`."""
        if self._failure is not None:
            raise self._failure
        try:
            return self._next_reply()
        except RedisProtocolError as exc:
            self._failure = exc
            raise

    def _next_reply(self) -> Any:
        buffer = self._buffer
        stack = self._stack
        pos = self._pos
        while True:
            if pos >= len(buffer):
                break
            kind = buffer[pos]
            if kind not in _TYPES:
                raise RedisProtocolError(f"unknown reply type byte {chr(kind)!r}")
            eol = buffer.find(b"\r\n", pos + 1)
            if eol < 0:
                if kind not in _STRING_LINES and len(buffer) - pos > _LONGEST_LINE:
                    raise RedisProtocolError(f"no end of line after {chr(kind)!r} within "
                                             f"{_LONGEST_LINE} bytes")
                break
            line = bytes(buffer[pos + 1:eol])
            following = eol + 2
            if kind == 36:  # $
                size = _length(line, "bulk string")
                if size < 0:
                    value = None
                else:
                    end = following + size
                    if end + 2 > len(buffer):
                        break
                    if buffer[end:end + 2] != b"\r\n":
                        raise RedisProtocolError("bulk string not followed by CRLF")
                    value = self._text(bytes(buffer[following:end]))
                    following = end + 2
            elif kind in _AGGREGATES:
                count = _count(line)
                if count < 0:
                    value = None
                elif count == 0:
                    value = {} if kind == _MAP else []
                else:
                    stack.append([kind, count * _AGGREGATES[kind], []])
                    pos = following
                    continue
            elif kind == 58:  # :
                value = _integer(line)
            elif kind == 43:  # +
                value = self._text(_simple(line))
            elif kind == 45:  # -
                value = ResponseError(_simple(line).decode("utf-8", "replace"))
            elif kind == 61:  # =
                size = _length(line, "verbatim string")
                if size < 0:
                    value = None
                else:
                    end = following + size
                    if end + 2 > len(buffer):
                        break
                    text = bytes(buffer[following:end])
                    if size < 4 or text[3:4] != b":" or buffer[end:end + 2] != b"\r\n":
                        raise RedisProtocolError("malformed verbatim string")
                    value = self._text(text[4:])
                    following = end + 2
            else:
                value = _scalar3(kind, line)
                if type(value) is bytes:
                    value = self._text(value)
            pos = following
            while stack:
                frame = stack[-1]
                items = frame[2]
                items.append(value)
                if len(items) < frame[1]:
                    break
                stack.pop()
                value = _finish(frame[0], items)
            else:
                self._pos = pos
                error = self._decode_error
                if error is not None:
                    self._decode_error = None
                    raise error
                return value
        self._pos = pos
        return NEED_DATA

    def _text(self, data: bytes) -> Any:
        if self._encoding is None:
            return data
        try:
            return data.decode(self._encoding)
        except UnicodeDecodeError as exc:
            if self._decode_error is None:
                self._decode_error = exc
            return None


def _length(line: bytes, what: str) -> int:
    if line == b"-1":
        return -1
    if not _INT.fullmatch(line) or line[:1] == b"-" or int(line) >= _INT64:
        raise RedisProtocolError(f"bad {what} length {line[:40]!r}")
    return int(line)


def _count(line: bytes) -> int:
    if line == b"-1":
        return -1
    if not _INT.fullmatch(line) or line[:1] == b"-" or int(line) > _MAX_ELEMENTS:
        raise RedisProtocolError(f"bad aggregate length {line[:40]!r}")
    return int(line)


def _integer(line: bytes) -> int:
    if _INT.fullmatch(line):
        value = int(line)
        if -_INT64 <= value < _INT64:
            return value
    raise RedisProtocolError(f"bad integer {line[:40]!r}")


def _simple(line: bytes) -> bytes:
    if b"\r" in line or b"\n" in line:
        raise RedisProtocolError("CR or LF inside a simple string")
    return line


def _scalar3(kind: int, line: bytes) -> Any:
    """RESP3's one-line types: null, boolean, double, big number."""
    if kind == 95:  # _
        if line:
            raise RedisProtocolError(f"bad null {line[:40]!r}")
        return None
    if kind == 35:  # #
        if line in (b"t", b"T"):
            return True
        if line in (b"f", b"F"):
            return False
        raise RedisProtocolError(f"bad boolean {line[:40]!r}")
    if kind == 44:  # ,
        return _double(line)
    if _BIG_NUMBER.fullmatch(line):  # "(", the only type left
        return line
    raise RedisProtocolError(f"bad big number {line[:40]!r}")


def _double(line: bytes) -> float:
    special = _SPECIAL_DOUBLES.get(line.lower())
    if special is not None:
        return float(special)  # a new object each time, as hiredis gives: NaN keys stay apart
    match = _DOUBLE.fullmatch(line)
    if match is not None and len(line) < 326:
        value = float(line)
        underflow = value == 0.0 and match.group(2).strip(b"0.")
        if not math.isinf(value) and not underflow:
            return value
    raise RedisProtocolError(f"bad double {line[:40]!r}")


def _finish(kind: int, items: list[Any]) -> Any:
    if kind != _MAP:
        return items
    try:
        return dict(zip(items[::2], items[1::2], strict=True))
    except TypeError:
        raise RedisProtocolError("a map key is an aggregate") from None


class HiredisReader:
    """The same reader, backed by hiredis's C parser."""

    __slots__ = ("_reader",)

    def __init__(self, encoding: str | None = None) -> None:
        if hiredis is None:
            raise RuntimeError("hiredis is not installed (pip install 'corofw[redis]')")
        self._reader = hiredis.Reader(protocolError=RedisProtocolError,
                                      replyError=ResponseError, notEnoughData=NEED_DATA,
                                      encoding=encoding)

    def feed(self, data: bytes) -> None:
        """Append bytes received from the server."""
        self._reader.feed(data)

    def has_data(self) -> bool:
        """True when bytes fed are left over after the last complete reply."""
        return self._reader.has_data()

    def gets(self) -> Any:
        """The next complete reply, or :data:`NEED_DATA`."""
        try:
            return self._reader.gets()
        except (TypeError, MemoryError) as exc:  # a map keyed by an aggregate; a huge count
            raise RedisProtocolError(f"malformed reply: {exc!r}") from None


#: The reader a client should use: hiredis's when it is installed.
Reader: type[PythonReader] | type[HiredisReader] = (
    HiredisReader if hiredis is not None else PythonReader)
