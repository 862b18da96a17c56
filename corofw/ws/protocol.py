"""The WebSocket connection state machine, sans-I/O (RFC 6455 sections 5-7).

``conn.receive_data(data)`` hands over received bytes (``b""`` at the end
of the stream); ``conn.next_event()`` (or ``for event in conn.events()``)
gives each complete event, ``None`` once more bytes are needed;
``conn.send(event)`` gives the bytes to write. The design is described in
:mod:`corofw.ws.frames`.
"""

from __future__ import annotations

import codecs
import os
import zlib
from collections.abc import Iterator
from typing import Any

from .deflate import Deflater, PerMessageDeflate
from .events import (
    BytesMessage,
    CloseCode,
    CloseConnection,
    ConnectionState,
    Event,
    LocalProtocolError,
    Ping,
    Pong,
    RemoteProtocolError,
    Role,
    TextMessage,
)
from .frames import (
    FIN,
    KNOWN_OPCODES,
    MAX_CONTROL_PAYLOAD,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RSV1,
    apply_mask,
    close_payload,
    frame_header,
    parse_close_payload,
)

DEFAULT_MAX_MESSAGE_SIZE = 1 << 20
_PROTOCOL_ERROR = CloseCode.PROTOCOL_ERROR
_Utf8Decoder = codecs.getincrementaldecoder("utf-8")
_OPEN = ConnectionState.OPEN
_LOCAL_CLOSING = ConnectionState.LOCAL_CLOSING
_REMOTE_CLOSING = ConnectionState.REMOTE_CLOSING
_CLOSED = ConnectionState.CLOSED


class Connection:
    """One WebSocket connection's protocol state, for either ``role``.

    ``max_message_size`` bounds a received message (after decompression);
    a bigger one fails the connection with 1009 as soon as a frame header
    or inflated output shows it. ``deflate`` holds the permessage-deflate
    parameters agreed in the handshake, if any: then messages we send are
    compressed, and compressed ones we receive are inflated.

    Events are whole messages (:class:`TextMessage`, :class:`BytesMessage`),
    :class:`Ping`, :class:`Pong` and :class:`CloseConnection`. Answering a
    ping (``send(ping.response())`` while the state is ``OPEN``; a ping that
    arrives after our close frame needs no answer) and a close
    (``send(close.response())`` while the state is ``REMOTE_CLOSING``) is
    the caller's job. The end of the stream before both close frames
    crossed gives a ``CloseConnection(1006)``.
    """

    __slots__ = ("role", "max_message_size", "_state", "_client", "_mask_bit", "_deflater",
                 "_buf", "_pos", "_eof", "_failed", "_reading", "_frame_left", "_frame_fin",
                 "_frame_key", "_key_offset", "_msg_opcode", "_msg_compressed", "_msg_parts",
                 "_msg_size", "_decoder")

    def __init__(self, role: Role, *, max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
                 deflate: PerMessageDeflate | None = None) -> None:
        self.role = role
        self.max_message_size = max_message_size
        self._state = _OPEN
        self._client = role is Role.CLIENT
        self._mask_bit = 0 if self._client else 0x80  # the MASK bit frames we read must have
        self._deflater = Deflater(deflate, role) if deflate is not None else None
        self._buf = bytearray()
        self._pos = 0
        self._eof = False
        self._failed = False
        self._reading = True           # frames are parsed: neither failed nor past a close
        self._frame_left = -1          # payload bytes still due in the current frame
        self._frame_fin = False
        self._frame_key: bytes | None = None
        self._key_offset = 0
        self._msg_opcode = 0           # OP_TEXT or OP_BINARY while a message is open
        self._msg_compressed = False
        self._msg_parts: list[Any] = []  # str pieces of a text message, bytes of a binary one
        self._msg_size = 0
        self._decoder: codecs.IncrementalDecoder | None = None

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self._state.value}>"

    @property
    def state(self) -> ConnectionState:
        """Where the close handshake stands."""
        return self._state

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; ``b""`` means the peer closed the stream."""
        if not data:
            self._eof = True
            return
        if self._eof or not self._reading:
            return
        if self._pos:
            del self._buf[:self._pos]
            self._pos = 0
        self._buf += data

    def events(self) -> Iterator[Event]:
        """Every event the received bytes complete, in order."""
        while (event := self.next_event()) is not None:
            yield event

    def next_event(self) -> Event | None:
        """The next event, or ``None`` until more bytes arrive.
        :class:`RemoteProtocolError` when the peer broke the protocol."""
        if not self._reading:
            return self._at_end()
        try:
            event = self._parse()
        except RemoteProtocolError as error:
            self._fail(error)
            raise
        if event is None and self._eof:
            return self._at_end()
        return event

    def _at_end(self) -> Event | None:
        if not self._eof or self._state is _CLOSED:
            return None
        state, self._state = self._state, _CLOSED
        self._reading = False
        self._buf = bytearray()
        self._pos = 0
        if state is _REMOTE_CLOSING or self._failed:
            return None
        return CloseConnection(CloseCode.ABNORMAL, "the stream ended without a close frame")

    def _fail(self, error: RemoteProtocolError) -> None:
        self._failed = True
        self._reading = False
        self._buf = bytearray()
        self._pos = 0
        self._msg_parts = []
        if self._state is _OPEN:
            error.close_frame = self.send(CloseConnection(error.code, error.reason[:100]))
        self._state = _LOCAL_CLOSING if not self._eof else _CLOSED

    def _parse(self) -> Event | None:
        while True:
            if self._frame_left >= 0:
                event = self._payload()
                if event is not None or self._frame_left >= 0:
                    return event
                continue
            buf = self._buf
            pos = self._pos
            avail = len(buf) - pos
            if avail < 2:
                return None
            first, second = buf[pos], buf[pos + 1]
            opcode = first & 0x0F
            if (first & 0x70 or not 0 < opcode < 3 or self._msg_opcode
                    or second & 0x80 != self._mask_bit):
                self._check_start(first, second, opcode)
            length = second & 0x7F
            size = 2
            if length == 126:
                size = 4
                if avail < 4:
                    return None
                length = buf[pos + 2] << 8 | buf[pos + 3]
                if length < 126:
                    raise RemoteProtocolError(_PROTOCOL_ERROR, "frame length not minimally encoded")
            elif length == 127:
                size = 10
                if avail < 10:
                    return None
                length = int.from_bytes(buf[pos + 2:pos + 10], "big")
                if length >> 63:
                    raise RemoteProtocolError(_PROTOCOL_ERROR, "frame length over 2**63 - 1")
                if length < 65536:
                    raise RemoteProtocolError(_PROTOCOL_ERROR, "frame length not minimally encoded")
            compressed = bool(first & RSV1) if opcode else self._msg_compressed
            # A compressed frame over the limit is refused at its header too,
            # as websockets refuses any frame over max_size: none is streamed into.
            if not opcode & 0x8 and (self._msg_size + length if not compressed
                                     else length) > self.max_message_size:
                raise RemoteProtocolError(CloseCode.MESSAGE_TOO_BIG,
                                          f"message over {self.max_message_size} bytes")
            masked = second & 0x80
            if masked:
                size += 4
                if avail < size:
                    return None
            key = bytes(buf[pos + size - 4:pos + size]) if masked else None
            start = pos + size
            end = start + length
            if opcode & 0x8:
                if len(buf) < end:
                    return None
                self._pos = end
                payload = buf[start:end]
                return self._control(opcode, apply_mask(payload, key) if key else bytes(payload))
            if opcode:
                if first & FIN and len(buf) >= end and not compressed:
                    self._pos = end
                    return self._single_frame(opcode, buf[start:end], key)
                self._msg_opcode = opcode
                self._msg_compressed = compressed
            self._pos = start
            self._frame_left = length
            self._frame_fin = bool(first & FIN)
            self._frame_key = key
            self._key_offset = 0

    def _check_start(self, first: int, second: int, opcode: int) -> None:
        """Fail on what the first two bytes of a frame already show."""
        if first & 0x70:
            if first & 0x30:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "reserved bits RSV2/RSV3 set")
            if self._deflater is None:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "RSV1 set without an extension")
            if opcode == OP_CONTINUATION or opcode & 0x8:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "RSV1 set on a frame that "
                                                           "does not start a message")
        if opcode not in KNOWN_OPCODES:
            raise RemoteProtocolError(_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if bool(second & 0x80) is self._client:
            raise RemoteProtocolError(_PROTOCOL_ERROR, "masked frame from the server"
                                      if self._client else "unmasked frame from the client")
        if opcode & 0x8:
            if not first & FIN:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "fragmented control frame")
            if second & 0x7F > MAX_CONTROL_PAYLOAD:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "control frame over 125 bytes")
        elif opcode == OP_CONTINUATION:
            if not self._msg_opcode:
                raise RemoteProtocolError(_PROTOCOL_ERROR, "continuation frame without a "
                                                           "message to continue")
        elif self._msg_opcode:
            raise RemoteProtocolError(_PROTOCOL_ERROR, "new message before the last one "
                                                       "finished")

    def _control(self, opcode: int, payload: bytes) -> Event:
        if opcode == OP_PING:
            return Ping(payload)
        if opcode == OP_PONG:
            return Pong(payload)
        code, reason = parse_close_payload(payload)
        self._state = _REMOTE_CLOSING if self._state is _OPEN else _CLOSED
        self._reading = False
        self._buf = bytearray()
        self._pos = 0
        return CloseConnection(code, reason)

    def _single_frame(self, opcode: int, payload: bytearray, key: bytes | None) -> Event:
        data = apply_mask(payload, key) if key else bytes(payload)
        if opcode == OP_BINARY:
            return BytesMessage(data)
        try:
            return TextMessage(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise RemoteProtocolError(CloseCode.INVALID_PAYLOAD, "text message is not UTF-8")

    def _payload(self) -> Event | None:
        """Consume what has arrived of the current data frame's payload."""
        left = self._frame_left
        pos = self._pos
        take = min(left, len(self._buf) - pos)
        if take == 0 and left:
            return None
        chunk = self._buf[pos:pos + take]
        self._pos = pos + take
        self._frame_left = left = left - take
        key = self._frame_key
        if key is not None and take:
            data = apply_mask(chunk, key, self._key_offset)
            self._key_offset = (self._key_offset + take) & 3
        else:
            data = bytes(chunk)
        final = not left and self._frame_fin
        if not left:
            self._frame_left = -1
        return self._message_data(data, final)

    def _message_data(self, data: bytes, final: bool) -> Event | None:
        if self._msg_compressed:
            budget = self.max_message_size - self._msg_size
            try:
                data = self._deflater.decompress(data, budget, final)  # type: ignore[union-attr]
            except zlib.error as error:
                raise RemoteProtocolError(CloseCode.INVALID_PAYLOAD,
                                          f"compressed message is not DEFLATE data: {error}")
            if len(data) > budget:
                raise RemoteProtocolError(CloseCode.MESSAGE_TOO_BIG,
                                          f"message over {self.max_message_size} bytes")
        self._msg_size += len(data)
        opcode = self._msg_opcode
        if opcode == OP_TEXT:
            self._msg_parts.append(self._decode(data, final))
        elif data:
            self._msg_parts.append(data)
        if not final:
            return None
        parts = self._msg_parts
        self._msg_parts = []
        self._msg_opcode = 0
        self._msg_size = 0
        if opcode == OP_TEXT:
            return TextMessage("".join(parts))
        return BytesMessage(b"".join(parts))

    def _decode(self, data: bytes, final: bool) -> str:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _Utf8Decoder()
        try:
            text = decoder.decode(data, final)
        except UnicodeDecodeError:
            raise RemoteProtocolError(CloseCode.INVALID_PAYLOAD, "text message is not UTF-8")
        if final:
            decoder.reset()
        else:
            pending = decoder.getstate()[0]
            # the decoder waits for a third byte before refusing a surrogate
            if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
                raise RemoteProtocolError(CloseCode.INVALID_PAYLOAD, "text message is not UTF-8")
        return text

    # -- sending -------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """The bytes that carry ``event`` to the peer.

        Messages, pings and pongs are for an ``OPEN`` connection. A
        :class:`CloseConnection` moves ``OPEN`` to ``LOCAL_CLOSING``, or
        answers the peer's close (``REMOTE_CLOSING`` to ``CLOSED``).
        :class:`LocalProtocolError` for anything else."""
        if isinstance(event, TextMessage):
            return self._send_message(OP_TEXT, event.data.encode("utf-8"))
        if isinstance(event, BytesMessage):
            return self._send_message(OP_BINARY, bytes(event.data))
        if isinstance(event, (Ping, Pong)):
            if self._state is not _OPEN:
                raise LocalProtocolError(f"cannot send {type(event).__name__} in state "
                                         f"{self._state.value}")
            payload = bytes(event.payload)
            if len(payload) > MAX_CONTROL_PAYLOAD:
                raise LocalProtocolError("ping and pong payloads are at most 125 bytes")
            return self._frame(FIN | (OP_PING if isinstance(event, Ping) else OP_PONG), payload)
        if isinstance(event, CloseConnection):
            return self._send_close(event)
        raise TypeError(f"cannot send {event!r}")

    def _send_message(self, opcode: int, payload: bytes) -> bytes:
        if self._state is not _OPEN:
            raise LocalProtocolError(f"cannot send a message in state {self._state.value}")
        deflater = self._deflater
        if deflater is not None and deflater.compresses:
            return self._frame(FIN | RSV1 | opcode, deflater.compress(payload))
        return self._frame(FIN | opcode, payload)

    def _send_close(self, event: CloseConnection) -> bytes:
        state = self._state
        if state is not _OPEN and state is not _REMOTE_CLOSING:
            raise LocalProtocolError(f"cannot send a close frame in state {state.value}")
        try:
            payload = close_payload(event.code, event.reason)
        except ValueError as error:
            raise LocalProtocolError(str(error))
        self._state = _LOCAL_CLOSING if state is _OPEN else _CLOSED
        return self._frame(FIN | OP_CLOSE, payload)

    def _frame(self, first_byte: int, payload: bytes) -> bytes:
        if self._client:
            key = os.urandom(4)
            return frame_header(first_byte, len(payload), key) + apply_mask(payload, key)
        return frame_header(first_byte, len(payload)) + payload

