"""WebSocket frames (RFC 6455 section 5): headers, masking, close payloads.

Design. The WebSocket layer is sans-I/O, like the HTTP parser: no sockets, no
kernel. :class:`~corofw.ws.protocol.Connection` takes bytes with
``receive_data`` and gives events (whole text and binary messages, pings,
pongs, close frames); ``send(event)`` gives the bytes to write. The same
class plays both roles: a server insists on masked frames and writes
unmasked ones, a client the reverse, masking with ``os.urandom`` keys.

Messages, not fragments, are what a caller sees: a handler wants messages,
and the maximum message size bounds what assembling costs. Payload bytes are
still consumed as they arrive, so a text message's UTF-8 is checked by an
incremental decoder across frames and partial frames: a code point cut at a
boundary waits for its next bytes, an impossible byte fails at once.

Everything a peer can get wrong is a :class:`RemoteProtocolError` carrying
the close code to answer with (1002 protocol error, 1007 invalid payload,
1009 too big) and the close frame to write; the connection then moves to
``LOCAL_CLOSING`` and ignores what else arrives. Strictness follows the RFC's
MUSTs: masking by role, reserved bits without an extension that defines
them, unknown opcodes, control frames over 125 bytes or fragmented,
continuation frames without a message and data frames inside one, lengths
that do not use the fewest bytes or set the 64-bit length's top bit, close
payloads of one byte, close codes that are reserved or local-only.

Parsing works on whole buffers: a header is read by indexing, a payload is
one slice, and unmasking XORs the payload as one big integer with the
repeated key, never a Python loop per byte. permessage-deflate (RFC 7692)
lives in :mod:`corofw.ws.deflate`; the opening handshake in
:mod:`corofw.ws.handshake`.

This module holds the frame-level pieces: opcodes, building a frame,
masking, and the close payload's rules.
"""

from __future__ import annotations

from .events import CloseCode, RemoteProtocolError

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
KNOWN_OPCODES = frozenset({OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG})

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10
MASK_BIT = 0x80
MAX_CONTROL_PAYLOAD = 125
MAX_CLOSE_REASON_BYTES = MAX_CONTROL_PAYLOAD - 2
MAX_FRAME_LENGTH = (1 << 63) - 1


def apply_mask(data: bytes | bytearray | memoryview, key: bytes, offset: int = 0) -> bytes:
    """``data`` XORed with the 4-byte masking ``key``, starting ``offset``
    bytes into the key's cycle (a payload unmasked in pieces). Masking and
    unmasking are the same operation."""
    size = len(data)
    if not size:
        return b""
    if offset:
        key = key[offset:] + key[:offset]
    repeated = (key * ((size + 3) >> 2))[:size]
    masked = int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")
    return masked.to_bytes(size, "little")


def frame_header(first_byte: int, length: int, key: bytes | None = None) -> bytes:
    """The header of a frame whose first byte (FIN, RSV bits, opcode) is
    ``first_byte`` and whose payload is ``length`` bytes, with the masking
    key appended when there is one. Lengths use the fewest bytes."""
    mask_bit = MASK_BIT if key is not None else 0
    if length < 126:
        header = bytes((first_byte, mask_bit | length))
    elif length < 65536:
        header = bytes((first_byte, mask_bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first_byte, mask_bit | 127)) + length.to_bytes(8, "big")
    return header + key if key is not None else header


def build_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False,
                key: bytes | None = None) -> bytes:
    """A whole frame: header, then the payload (masked with ``key`` when
    given, as a client must)."""
    first_byte = (FIN if fin else 0) | (RSV1 if rsv1 else 0) | opcode
    if key is None:
        return frame_header(first_byte, len(payload)) + payload
    return frame_header(first_byte, len(payload), key) + apply_mask(payload, key)


def is_valid_close_code(code: int) -> bool:
    """Whether ``code`` may travel in a close frame: 1000-1003, 1007-1014
    (defined by RFC 6455 and IANA), 3000-4999 (registered and private).
    1004 is reserved, 1005, 1006 and 1015 are local-only, 1016-2999 are
    reserved for future RFCs."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a received close frame's payload; an empty
    payload is code 1005. :class:`RemoteProtocolError` for a payload of one
    byte or a code that may not be sent (1002), or a reason that is not
    UTF-8 (1007)."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise RemoteProtocolError(CloseCode.PROTOCOL_ERROR, "close frame payload of one byte")
    code = int.from_bytes(payload[:2], "big")
    if not is_valid_close_code(code):
        raise RemoteProtocolError(CloseCode.PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise RemoteProtocolError(CloseCode.INVALID_PAYLOAD, "close reason is not valid UTF-8")
    return code, reason


def close_payload(code: int, reason: str) -> bytes:
    """The payload of a close frame we send; code 1005 means no payload.
    ``ValueError`` for a code that may not be sent or a reason over 123
    bytes of UTF-8."""
    if code == CloseCode.NO_STATUS:
        if reason:
            raise ValueError("a close frame without a code cannot carry a reason")
        return b""
    if not is_valid_close_code(code):
        raise ValueError(f"close code {code} may not be sent")
    encoded = reason.encode("utf-8")
    if len(encoded) > MAX_CLOSE_REASON_BYTES:
        raise ValueError(f"close reason is {len(encoded)} bytes of UTF-8; at most "
                         f"{MAX_CLOSE_REASON_BYTES} fit in a close frame")
    return code.to_bytes(2, "big") + encoded
