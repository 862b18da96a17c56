"""permessage-deflate (RFC 7692): negotiating it and compressing messages.

:class:`PerMessageDeflate` is one value for three uses: the settings a
client offers or a server is willing to grant, and, after the handshake, the
parameters both sides agreed on (``None`` window bits mean 15, the largest).
A server calls :meth:`PerMessageDeflate.accept` with the client's offers, a
client sends :meth:`PerMessageDeflate.offer` and checks the answer with
:meth:`PerMessageDeflate.verify_response`. :class:`Deflater` is the per
connection state: one compressor for what we send, one decompressor for
what we receive, each created on first use and dropped after every message
when its side gave up context takeover, so an idle connection holds no zlib
memory in that case.

Decompression is bounded: :meth:`Deflater.decompress` never produces more
than the caller's budget plus one byte, so a small message that inflates
to gigabytes is detected after ``budget + 1`` bytes (a 1009 close), not
after exhausting memory.

zlib cannot compress with an 8-bit window; when 8 bits were agreed for our
side we send every message uncompressed, which the extension allows.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from .events import Role

EXTENSION_NAME = "permessage-deflate"
_TAIL = b"\x00\x00\xff\xff"
_EMPTY_BLOCK = b"\x00"
_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_PARAM = re.compile(rf";[ \t]*({_TOKEN})(?:[ \t]*=[ \t]*({_TOKEN}|{_QUOTED}))?")
_EXTENSION = re.compile(
    rf"[ \t,]*({_TOKEN})((?:[ \t]*;[ \t]*{_TOKEN}(?:[ \t]*=[ \t]*(?:{_TOKEN}|{_QUOTED}))?)*)"
    r"[ \t]*(?:,|\Z)")
_FULL_TOKEN = re.compile(_TOKEN)
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])")
_PARAMETERS = frozenset({"server_no_context_takeover", "client_no_context_takeover",
                         "server_max_window_bits", "client_max_window_bits"})

Params = list[tuple[str, "str | None"]]


def parse_extensions(values: Iterable[str]) -> list[tuple[str, Params]]:
    """The extensions of ``Sec-WebSocket-Extensions`` header values (RFC
    6455 section 9.1), in order: ``(name, [(param, value or None), ...])``,
    names lower-cased, quoted values unquoted. ``ValueError`` for a value
    that does not follow the grammar."""
    extensions: list[tuple[str, Params]] = []
    for value in values:
        pos = 0
        while value[pos:].strip(" \t,"):
            extension = _EXTENSION.match(value, pos)
            if extension is None:
                raise ValueError(f"malformed extension list: {value!r}")
            params: Params = [(param.group(1).lower(), _unquote(param.group(2)))
                              for param in _PARAM.finditer(extension.group(2))]
            extensions.append((extension.group(1).lower(), params))
            pos = extension.end()
    return extensions


def _unquote(value: str | None) -> str | None:
    if value is None or not value.startswith('"'):
        return value
    unquoted = re.sub(r"\\(.)", r"\1", value[1:-1])
    if not _FULL_TOKEN.fullmatch(unquoted):
        raise ValueError(f"quoted extension parameter is not a token: {value}")
    return unquoted


def _window_bits(value: str | None) -> int:
    if value is None or not _WINDOW_BITS.fullmatch(value):
        raise ValueError(f"window bits must be 8 to 15, not {value!r}")
    return int(value)


def _read_params(params: Params) -> dict[str, str | None]:
    """Params as a dict; ``ValueError`` for an unknown or repeated one."""
    seen: dict[str, str | None] = {}
    for name, value in params:
        if name not in _PARAMETERS:
            raise ValueError(f"unknown permessage-deflate parameter {name!r}")
        if name in seen:
            raise ValueError(f"permessage-deflate parameter {name!r} repeated")
        if name.endswith("_no_context_takeover") and value is not None:
            raise ValueError(f"{name} takes no value")
        seen[name] = value
    return seen


@dataclass(frozen=True)
class PerMessageDeflate:
    """permessage-deflate settings, or the parameters agreed on.

    ``server_no_context_takeover`` / ``client_no_context_takeover``: that
    side starts every message with an empty compression context (its peer
    may then forget the context too). ``server_max_window_bits`` /
    ``client_max_window_bits``: the largest LZ77 window that side's
    compressor may use, 8 to 15 (``None``: 15). ``level`` is zlib's
    compression level for what we send; it is never negotiated.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    level: int = zlib.Z_DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        for bits in (self.server_max_window_bits, self.client_max_window_bits):
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError(f"window bits must be 8 to 15, not {bits}")

    def header_value(self) -> str:
        """These parameters as a ``Sec-WebSocket-Extensions`` element: a
        server's answer."""
        parts = [EXTENSION_NAME]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.server_max_window_bits is not None:
            parts.append(f"server_max_window_bits={self.server_max_window_bits}")
        if self.client_max_window_bits is not None:
            parts.append(f"client_max_window_bits={self.client_max_window_bits}")
        return "; ".join(parts)

    def offer(self) -> str:
        """The ``Sec-WebSocket-Extensions`` value a client sends. It always
        says the client can limit its window, so a server may ask for less."""
        if self.client_max_window_bits is None:
            return self.header_value() + "; client_max_window_bits"
        return self.header_value()

    def accept(self, offers: list[tuple[str, Params]]) -> tuple[str, PerMessageDeflate] | None:
        """Server side: the first permessage-deflate offer this server can
        grant, as ``(response header value, agreed parameters)``; ``None``
        when there is none. Offers with unknown, repeated or invalid
        parameters are declined (RFC 7692 section 5.1)."""
        for name, params in offers:
            if name == EXTENSION_NAME:
                try:
                    agreed = self._grant(_read_params(params))
                except ValueError:
                    continue
                return agreed.header_value(), agreed
        return None

    def _grant(self, offered: dict[str, str | None]) -> PerMessageDeflate:
        """What these settings grant for one offer (``ValueError`` for an
        invalid window size): what either side asked, the smaller windows."""
        server_bits = self.server_max_window_bits
        if "server_max_window_bits" in offered:
            asked = _window_bits(offered["server_max_window_bits"])
            server_bits = asked if server_bits is None else min(asked, server_bits)
        client_bits = None
        if "client_max_window_bits" in offered:  # the client can limit its window
            value = offered["client_max_window_bits"]
            limits = [self.client_max_window_bits, None if value is None else _window_bits(value)]
            client_bits = min((bits for bits in limits if bits is not None), default=None)
        return PerMessageDeflate(
            self.server_no_context_takeover or "server_no_context_takeover" in offered,
            self.client_no_context_takeover or "client_no_context_takeover" in offered,
            server_bits, client_bits, self.level)

    def verify_response(self, params: Params) -> PerMessageDeflate:
        """Client side: the agreed parameters of the server's answer to
        :meth:`offer`. ``ValueError`` when the answer is not one the offer
        allows (unknown or repeated parameters, a window larger than
        offered, a requested parameter left out)."""
        answered = _read_params(params)
        server_nct = "server_no_context_takeover" in answered
        if self.server_no_context_takeover and not server_nct:
            raise ValueError("server ignored server_no_context_takeover")
        server_bits: int | None = None
        if "server_max_window_bits" in answered:
            server_bits = _window_bits(answered["server_max_window_bits"])
            if (self.server_max_window_bits is not None
                    and server_bits > self.server_max_window_bits):
                raise ValueError("server_max_window_bits larger than offered")
        elif self.server_max_window_bits is not None:
            raise ValueError("server ignored server_max_window_bits")
        client_bits = self.client_max_window_bits
        if "client_max_window_bits" in answered:
            granted = _window_bits(answered["client_max_window_bits"])
            if client_bits is not None and granted > client_bits:
                raise ValueError("client_max_window_bits larger than offered")
            client_bits = granted
        client_nct = self.client_no_context_takeover or "client_no_context_takeover" in answered
        return PerMessageDeflate(server_nct, client_nct, server_bits, client_bits, self.level)


class Deflater:
    """One connection's compression state for the agreed ``params``, seen
    from ``role``: what we send is compressed with our side's parameters,
    what we receive is inflated with the peer's."""

    __slots__ = ("_level", "_send_bits", "_send_reset", "_receive_bits", "_receive_reset",
                 "_compressor", "_decompressor")

    def __init__(self, params: PerMessageDeflate, role: Role) -> None:
        server = (params.server_max_window_bits or 15, params.server_no_context_takeover)
        client = (params.client_max_window_bits or 15, params.client_no_context_takeover)
        ours, theirs = (server, client) if role is Role.SERVER else (client, server)
        self._level = params.level
        self._send_bits, self._send_reset = ours
        self._receive_bits, self._receive_reset = theirs
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    @property
    def compresses(self) -> bool:
        """Whether :meth:`compress` may be used (not with an 8-bit window)."""
        return self._send_bits > 8

    def compress(self, data: bytes) -> bytes:
        """A whole message's compressed payload (RSV1 goes on its frame)."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(self._level, zlib.DEFLATED, -self._send_bits)
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        self._compressor = None if self._send_reset else compressor
        if out.endswith(_TAIL):
            out = out[:-4]
        return out or _EMPTY_BLOCK

    def decompress(self, data: bytes, budget: int, final: bool) -> bytes:
        """Inflate the next piece of a compressed message, at most
        ``budget + 1`` bytes of output (more than ``budget`` means the
        message is too big; stop reading it). ``final`` marks its last
        piece. ``zlib.error`` for data that is not DEFLATE."""
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(-max(self._receive_bits, 9))
        out = decompressor.decompress(data, budget + 1) if data else b""
        if final and len(out) <= budget:
            out += decompressor.decompress(_TAIL, budget + 1 - len(out))
        if final and (self._receive_reset or decompressor.eof):
            self._decompressor = None
        return out
