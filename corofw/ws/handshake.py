"""The WebSocket opening handshake (RFC 6455 section 4), sans-I/O.

Server side, :func:`accept_upgrade` checks an upgrade request (method,
headers, HTTP version) and returns a :class:`ServerHandshake`: the 101
response's headers, the chosen subprotocol and the agreed
permessage-deflate parameters. A request it cannot accept raises
:class:`UpgradeRejected` with the status to answer: 426 with
``Upgrade: websocket`` for a request that is not an upgrade, 426 with
``Sec-WebSocket-Version: 13`` for another version, 400 for a malformed
one, 403 for an Origin not allowed, 405 for a method other than GET.

Client side, :class:`ClientHandshake` makes a random key and the request's
headers, then :meth:`ClientHandshake.verify` checks the server's answer and
raises :class:`HandshakeFailed` for anything but a correct 101.

Headers are taken in any of the project's shapes: a
:class:`~corofw.http.headers.Headers`, a mapping, or ``(name, value)``
pairs of ``str`` or ``bytes``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .deflate import EXTENSION_NAME, PerMessageDeflate, parse_extensions
from .events import Role
from .protocol import DEFAULT_MAX_MESSAGE_SIZE, Connection

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"

HeadersLike = Any  # Headers, Mapping[str, str], or Iterable of (str | bytes, str | bytes)


def accept_key(key: str) -> str:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``."""
    digest = hashlib.sha1((key + GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


class HandshakeError(Exception):
    """The opening handshake cannot go on."""


class UpgradeRejected(HandshakeError):
    """A server must refuse this upgrade: answer ``status`` with
    ``headers`` and ``reason`` as the body, and keep speaking HTTP."""

    def __init__(self, status: int, reason: str,
                 headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = list(headers)


class HandshakeFailed(HandshakeError):
    """The server's answer does not open a WebSocket; ``status`` is the
    status it answered with."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


def _index(headers: HeadersLike) -> dict[str, list[str]]:
    """Header values by lower-case name, in order."""
    if hasattr(headers, "get_all") and hasattr(headers, "items"):
        pairs: Iterable[tuple[Any, Any]] = headers.items()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    index: dict[str, list[str]] = {}
    for name, value in pairs:
        if isinstance(name, (bytes, bytearray)):
            name = name.decode("latin-1")
        if isinstance(value, (bytes, bytearray)):
            value = value.decode("latin-1")
        index.setdefault(name.lower(), []).append(value)
    return index


def _tokens(values: list[str]) -> list[str]:
    """The comma-separated elements of a list-valued header, stripped."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _is_upgrade(index: dict[str, list[str]]) -> bool:
    return ("websocket" in (t.lower() for t in _tokens(index.get("upgrade", [])))
            and "upgrade" in (t.lower() for t in _tokens(index.get("connection", []))))


def is_websocket_upgrade(headers: HeadersLike) -> bool:
    """Whether a request asks to upgrade to WebSocket (``Upgrade: websocket``
    and ``Connection: upgrade``), however well-formed the rest is."""
    return _is_upgrade(_index(headers))


@dataclass(frozen=True)
class ServerHandshake:
    """An accepted upgrade: ``headers`` go in the 101 response,
    ``subprotocol`` and ``deflate`` are what was agreed (``None``: none)."""

    headers: list[tuple[str, str]]
    subprotocol: str | None
    deflate: PerMessageDeflate | None

    def response_head(self) -> bytes:
        """The whole 101 response head, ready to write."""
        lines = ["HTTP/1.1 101 Switching Protocols"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def connection(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Connection:
        """The server's protocol state for the upgraded connection."""
        return Connection(Role.SERVER, max_message_size=max_message_size, deflate=self.deflate)


def accept_upgrade(method: str, headers: HeadersLike, *, http_version: str = "HTTP/1.1",
                   subprotocols: Sequence[str] = (), deflate: PerMessageDeflate | None = None,
                   origins: Collection[str] | None = None) -> ServerHandshake:
    """Check a WebSocket upgrade request and agree on its options.

    ``subprotocols`` are the server's, in order of preference: the first
    the client also offered is chosen; with none in common the handshake
    goes on without one (the client decides whether that will do).
    ``deflate`` is what the server grants of permessage-deflate (``None``:
    never). ``origins``, when given, are the Origin values allowed (a
    browser page from elsewhere gets 403). :class:`UpgradeRejected` for a
    request that cannot be accepted."""
    index = _index(headers)
    if method != "GET":
        raise UpgradeRejected(405, "a WebSocket handshake must use GET", [("Allow", "GET")])
    if not _is_upgrade(index):
        raise UpgradeRejected(426, "this resource speaks only WebSocket",
                              [("Upgrade", "websocket"), ("Connection", "Upgrade")])
    if http_version in ("HTTP/1.0", "HTTP/0.9"):
        raise UpgradeRejected(400, "a WebSocket handshake needs HTTP/1.1")
    if [v.strip() for v in index.get("sec-websocket-version", [])] != [VERSION]:
        raise UpgradeRejected(426, "unsupported WebSocket version (13 is supported)",
                              [("Sec-WebSocket-Version", VERSION)])
    keys = index.get("sec-websocket-key", [])
    if len(keys) != 1 or not _is_valid_key(keys[0].strip()):
        raise UpgradeRejected(400, "missing or invalid Sec-WebSocket-Key")
    if origins is not None and index.get("origin", [None])[0] not in origins:
        raise UpgradeRejected(403, "origin not allowed")
    response = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                ("Sec-WebSocket-Accept", accept_key(keys[0].strip()))]
    offered = _tokens(index.get("sec-websocket-protocol", []))
    subprotocol = next((p for p in subprotocols if p in offered), None)
    if subprotocol is not None:
        response.append(("Sec-WebSocket-Protocol", subprotocol))
    agreed = None
    if deflate is not None and "sec-websocket-extensions" in index:
        try:
            extensions = parse_extensions(index["sec-websocket-extensions"])
        except ValueError as error:
            raise UpgradeRejected(400, f"invalid Sec-WebSocket-Extensions: {error}")
        granted = deflate.accept(extensions)
        if granted is not None:
            value, agreed = granted
            response.append(("Sec-WebSocket-Extensions", value))
    return ServerHandshake(response, subprotocol, agreed)


def _is_valid_key(key: str) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


@dataclass(frozen=True)
class ClientAccepted:
    """What the server agreed to: ``subprotocol`` and ``deflate``
    parameters (``None``: none)."""

    subprotocol: str | None
    deflate: PerMessageDeflate | None

    def connection(self, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Connection:
        """The client's protocol state for the upgraded connection."""
        return Connection(Role.CLIENT, max_message_size=max_message_size, deflate=self.deflate)


class ClientHandshake:
    """A client's side of the handshake: a fresh random key, the request
    headers that offer ``subprotocols`` (in order of preference) and
    ``deflate``, and the check of the server's answer."""

    def __init__(self, *, subprotocols: Sequence[str] = (),
                 deflate: PerMessageDeflate | None = None, origin: str | None = None) -> None:
        self.key = base64.b64encode(os.urandom(16)).decode("ascii")
        self.subprotocols = list(subprotocols)
        self.deflate = deflate
        self.origin = origin

    def request_headers(self) -> list[tuple[str, str]]:
        """The headers an upgrade request carries, besides Host."""
        headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                   ("Sec-WebSocket-Key", self.key), ("Sec-WebSocket-Version", VERSION)]
        if self.subprotocols:
            headers.append(("Sec-WebSocket-Protocol", ", ".join(self.subprotocols)))
        if self.deflate is not None:
            headers.append(("Sec-WebSocket-Extensions", self.deflate.offer()))
        if self.origin is not None:
            headers.append(("Origin", self.origin))
        return headers

    def request_head(self, target: str, host: str) -> bytes:
        """A whole GET request head for ``target`` on ``host``, ready to write."""
        lines = [f"GET {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{name}: {value}" for name, value in self.request_headers()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def verify(self, status: int, headers: HeadersLike) -> ClientAccepted:
        """Check the server's response; :class:`HandshakeFailed` unless it
        is a 101 that accepts this key and agrees only to what was offered."""
        if status != 101:
            raise HandshakeFailed(f"server answered {status} instead of 101", status)
        index = _index(headers)
        if not _is_upgrade(index):
            raise HandshakeFailed("101 response without Upgrade: websocket and "
                                  "Connection: upgrade", status)
        if index.get("sec-websocket-accept") != [accept_key(self.key)]:
            raise HandshakeFailed("wrong or missing Sec-WebSocket-Accept", status)
        subprotocol = None
        chosen = _tokens(index.get("sec-websocket-protocol", []))
        if chosen:
            if len(chosen) > 1 or chosen[0] not in self.subprotocols:
                raise HandshakeFailed(f"server chose a subprotocol not offered: "
                                      f"{', '.join(chosen)}", status)
            subprotocol = chosen[0]
        return ClientAccepted(subprotocol, self._agreed_deflate(index, status))

    def _agreed_deflate(self, index: dict[str, list[str]], status: int) -> PerMessageDeflate | None:
        if "sec-websocket-extensions" not in index:
            return None
        try:
            extensions = parse_extensions(index["sec-websocket-extensions"])
        except ValueError as error:
            raise HandshakeFailed(f"invalid Sec-WebSocket-Extensions: {error}", status)
        agreed = None
        for name, params in extensions:
            if name != EXTENSION_NAME or self.deflate is None or agreed is not None:
                raise HandshakeFailed(f"server agreed to an extension not offered: {name}",
                                      status)
            try:
                agreed = self.deflate.verify_response(params)
            except ValueError as error:
                raise HandshakeFailed(f"unacceptable permessage-deflate answer: {error}",
                                      status)
        return agreed
