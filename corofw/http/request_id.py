"""Request ids: taken from a header the client (or a proxy) sent, or made.

An id made here is a per-process random prefix (hex) followed by a counter
(``5f0c9a3e21d7-42``): unique across the worker processes of a server and
across restarts (the prefix is 48 random bits, drawn again in a forked
child), and cheap (no randomness per request). The server keeps a made id
as its number and writes the text out only where it goes (the response
header, the log line, ``request.id``). An id taken from a request
must be 1 to 128 visible ASCII characters (``!`` to ``~``); any other
value is ignored and an id is made instead, so an id is always safe to
write in a log line or a response header.
"""

from __future__ import annotations

import itertools
import os
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .messages import Request

#: the header an id is taken from and echoed in, unless configured otherwise
DEFAULT_HEADER = "x-request-id"
MAX_LENGTH = 128

_VALID = re.compile(rb"[!-~]{1,%d}" % MAX_LENGTH).fullmatch
_prefix = ""
_counter: itertools.count[int]  # set by _reseed(), below


def _reseed() -> None:
    global _prefix, _counter
    _prefix = os.urandom(6).hex() + "-"
    _counter = itertools.count(1)


_reseed()
os.register_at_fork(after_in_child=_reseed)


def new_request_id() -> str:
    """A fresh id, unique in this process and, with high probability,
    across processes and restarts."""
    return f"{_prefix}{next(_counter)}"


def made_id(number: int) -> str:
    """The text of the id this process made with ``number``."""
    return f"{_prefix}{number}"


def valid_request_id(value: bytes) -> bool:
    """Whether ``value`` may be taken as an id: 1 to 128 visible ASCII."""
    return _VALID(value) is not None


class RequestIds:
    """Where a server's request ids come from and where they go.

    ``header`` (lower case) is the request header an id is taken from and
    the response header it is echoed in; None takes no id from requests
    and echoes none. ``always``: every request gets an id (the access log
    is on); otherwise only a request whose ``id`` is read has one."""

    __slots__ = ("header", "_name", "always", "_made")

    def __init__(self, header: str | None = DEFAULT_HEADER, always: bool = False) -> None:
        self.header = header.lower() if header else None
        self._name = self.header.encode("latin-1") if self.header else None
        self.always = always
        self._made: tuple[str, bytes] = ("", b"")  # (prefix, the echo of a made id's number)

    def assign(self, request: Request) -> str:
        """The id of ``request``: its header's value when valid, else a new one."""
        name = self._name
        if name is not None:
            value = request.headers.first_raw(name)
            if value is not None and _VALID(value) is not None:
                return value.decode("ascii")
        return new_request_id()

    def echo(self, request: Request) -> bytes:
        """The header line that gives the response the request's id, or
        b"" when the request has none (nobody needed one) or echoing is off.
        With ``always``, a request without an id gets one here (this is
        :meth:`assign` inlined, a made id kept as its number: the server
        calls it for every response)."""
        header = self.header
        if header is None:
            return b""
        ident = request._id
        kind = type(ident)
        if kind is str:
            return f"{header}: {ident}\r\n".encode("ascii")
        if kind is int:
            number: int = ident  # type: ignore[assignment]  # (no cast() call per response)
        elif not self.always:
            return b""
        else:
            name: bytes = self._name  # type: ignore[assignment]  # set with header
            headers = request.headers
            value = None
            if headers._items is None:  # as received: first_raw inlined, one call less
                for key, raw in headers._raw or ():
                    if key == name:
                        value = raw
                        break
            else:
                value = headers.first_raw(name)
            if value is not None and _VALID(value) is not None:
                request._id = value.decode("ascii")
                return b"%s: %s\r\n" % (name, value)
            number = request._id = next(_counter)
        made = self._made
        if made[0] is not _prefix:  # the first made id, or a forked child's own prefix
            line = f"{header.replace('%', '%%')}: {_prefix}%d\r\n".encode("ascii")
            made = self._made = (_prefix, line)
        return made[1] % number


#: what ``request.id`` uses for a request that no server gave its own
DEFAULT_IDS = RequestIds()
