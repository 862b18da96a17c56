"""The response a :class:`~corofw.http.client.Client` call returns.

Shaped like httpx's: ``status_code``, ``reason_phrase``, ``headers``
(case-insensitive), ``content``, ``text``, ``json()``,
``raise_for_status()``. A streamed response (``stream=True``) reads its
body on demand through the exchange that fetched it, and holds its pool
slot until the body has been read or the response closed.
"""

from __future__ import annotations

import json as _json
from collections.abc import Sequence
from typing import Any

from ..kernel.traps import TASK, Coro
from .client_errors import DecodingError, HTTPStatusError, RemoteProtocolError
from .decoders import Decoder, codings_of
from .exchange import Exchange
from .headers import Headers
from .parser import DEFAULT_RESPONSE_LIMITS, ProtocolError

_decode_json = _json.JSONDecoder().decode
DECODED_PIECE = 65536
MAX_DECODED = DEFAULT_RESPONSE_LIMITS.max_body_bytes


class ClientResponse:
    """A response: ``status_code``, ``reason_phrase``, ``http_version``,
    ``headers``, ``url`` and ``method`` of the request that got it,
    ``elapsed`` (seconds, once the body has been read), ``history`` (the
    redirects followed to get it, oldest first). With
    ``stream=True`` the body is read with ``yield from resp.read_chunk()``
    (``b""`` at the end) or ``yield from resp.read()``; call :meth:`close`
    (or use ``with``) if you stop early: until then the response holds its
    pool slot.

    With ``decompress`` (see :class:`~corofw.http.client.Client`), a gzip
    or deflate body is decoded as it is read: ``read_chunk()`` gives at
    most 64 KiB of decoded bytes at a time, and a body read whole may
    decode to at most 1 GiB (more is a DecodingError)."""

    __slots__ = ("status_code", "reason_phrase", "http_version", "headers", "url", "method",
                 "elapsed", "history", "_content", "_exchange", "_keep_alive", "_decoder")

    def __init__(self, exchange: Exchange, whole_request_sent: bool = True,
                 decompress: bool = False) -> None:
        conn = exchange.conn
        assert conn is not None
        head = conn.parser.head
        assert head is not None
        self.status_code = head.status
        self.reason_phrase = head.reason
        self.http_version = head.version
        self.headers = Headers.from_raw(head.fields)
        self.url = exchange.url
        self.method = exchange.method
        self.elapsed = 0.0
        self.history: Sequence[ClientResponse] = ()
        self._decoder: Decoder | None = None
        if decompress and "content-encoding" in self.headers:
            codings = codings_of(self.headers.get("content-encoding"))
            if codings:
                self._decoder = Decoder(codings, self.url)
        self._content: bytes | None = None
        self._exchange: Exchange | None = exchange
        # Not reused: a switched protocol (101), or an early answer to a
        # request whose body was not all sent.
        self._keep_alive = head.keep_alive and head.status != 101 and whole_request_sent

    def __repr__(self) -> str:
        return f"<ClientResponse [{self.status_code} {self.reason_phrase}]>"

    @property
    def content(self) -> bytes:
        """The whole body (for a streamed response, once read)."""
        if self._content is None:
            raise RuntimeError("the body of a streamed response has not been read; "
                               "use `yield from response.read()`")
        return self._content

    @property
    def text(self) -> str:
        """The body decoded with the Content-Type charset; UTF-8 when there
        is none or Python does not know it (as httpx does). Undecodable
        bytes become U+FFFD."""
        charset = None
        for part in (self.headers.get("content-type") or "").split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset":
                charset = value.strip().strip('"')
        if charset:
            try:
                return self.content.decode(charset, "replace")
            except LookupError:
                pass  # unknown, or not a text encoding
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        """The body parsed as JSON (UTF-8, or UTF-16/32 as ``json.loads``
        detects them)."""
        content = self.content
        if b"\x00" in content[:4] or content[:3] == b"\xef\xbb\xbf":
            return _json.loads(content)  # UTF-16/32, or a UTF-8 BOM: let json detect it
        return _decode_json(content.decode("utf-8", "surrogatepass"))

    @property
    def is_success(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self.status_code < 300

    @property
    def is_error(self) -> bool:
        """True for a 4xx or 5xx status."""
        return self.status_code >= 400

    def raise_for_status(self) -> ClientResponse:
        """Raise :class:`HTTPStatusError` for a 4xx/5xx status; else return self."""
        if self.status_code >= 400:
            kind = "client error" if self.status_code < 500 else "server error"
            raise HTTPStatusError(f"{kind} {self.status_code} {self.reason_phrase}",
                                  self.url, self)
        return self

    def read_chunk(self) -> Coro[bytes]:
        """The next piece of the body; ``b""`` once it has all been read."""
        decoder = self._decoder
        if decoder is None:
            return (yield from self._read_raw())
        while True:
            out = decoder.read(DECODED_PIECE)
            if out:
                return out
            if self._exchange is None:
                self._decoder = None
                decoder.finish()
                return b""
            decoder.feed((yield from self._read_raw()))

    def read(self) -> Coro[bytes]:
        """The rest of the body (all of it, if nothing was read yet)."""
        if self._content is None:
            parts = []
            size = 0
            while True:
                data = yield from self.read_chunk()
                if not data:
                    break
                size += len(data)
                if size > MAX_DECODED and self._decoder is not None:
                    self.close()
                    raise DecodingError(f"the response body decodes to more than "
                                        f"{MAX_DECODED} bytes", self.url)
                parts.append(data)
            self._content = b"".join(parts)
        return self._content

    def _read_raw(self) -> Coro[bytes]:
        """The next piece of the body as it came (still encoded)."""
        exchange = self._exchange
        if exchange is None:
            return b""
        task = yield TASK
        try:
            data, done = yield from exchange.read_body(task)
        except BaseException:
            self._finish(False)
            raise
        if done:
            self._finish(True)
        return data

    def close(self) -> None:
        """Stop reading: the connection is closed, not reused."""
        if self._exchange is not None:
            self._finish(False)

    def __enter__(self) -> ClientResponse:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        """``with (yield from client.get(url, stream=True)) as resp:`` gives
        the connection back even when the block stops reading early."""
        self.close()

    def _body_with_head(self) -> tuple[bytes, bool] | None:
        """Take what of the body came with the head (most bodies do): None
        when that was all of it (``content`` is set and the connection
        given back), else ``(data, done)`` for :meth:`_read_all`."""
        exchange = self._exchange
        assert exchange is not None and exchange.conn is not None
        try:
            data, done = exchange.conn.parser.read_body()
        except ProtocolError as exc:
            self.close()
            raise RemoteProtocolError(exc.message, self.url) from None
        if done and self._decoder is None:
            self._content = data
            self._finish(True)
            return None
        return data, done

    def _read_all(self, data: bytes, done: bool) -> Coro[None]:
        """Read the whole body, whose start (``data``, all of it if
        ``done``) came with the head."""
        exchange = self._exchange
        assert exchange is not None
        if done:
            self._finish(True)
        if self._decoder is not None:
            self._decoder.feed(data)
            try:
                yield from self.read()
            except BaseException:
                self.close()
                raise
            return
        parts = [data] if data else []
        try:
            while not done:
                data, done = yield from exchange.read_body()
                if data:
                    parts.append(data)
        except BaseException:
            self._finish(False)
            raise
        self._content = b"".join(parts)
        self._finish(True)

    def _finish(self, complete: bool) -> None:
        exchange, self._exchange = self._exchange, None
        if exchange is not None:
            self.elapsed = exchange.finish(complete and self._keep_alive)
