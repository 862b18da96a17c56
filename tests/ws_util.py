"""Helpers of the WebSocket tests: frames built by hand, and feeding a
connection whole and one byte at a time."""

from __future__ import annotations

from dataclasses import dataclass

from corofw.ws import Connection, ConnectionState, RemoteProtocolError, Role
from corofw.ws.frames import apply_mask

KEY = b"\x37\xfa\x21\x3d"
TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
RSV1, RSV2, RSV3 = 0x40, 0x20, 0x10


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
          key: bytes | None = KEY, length_size: int | None = None) -> bytes:
    """A frame built by hand: masked with ``key`` (as a client sends) unless
    it is None, its length in ``length_size`` extra bytes (0, 2 or 8) when
    given, else in the fewest."""
    size = len(payload)
    if length_size is None:
        length_size = 0 if size < 126 else 2 if size < 65536 else 8
    mask_bit = 0x80 if key is not None else 0
    first = (0x80 if fin else 0) | rsv | opcode
    if length_size == 0:
        head = bytes([first, mask_bit | size])
    elif length_size == 2:
        head = bytes([first, mask_bit | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first, mask_bit | 127]) + size.to_bytes(8, "big")
    if key is None:
        return head + payload
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def server_frame(opcode: int, payload: bytes = b"", **kwargs) -> bytes:
    return frame(opcode, payload, key=None, **kwargs)


def close_frame_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@dataclass
class Outcome:
    events: list
    code: int | None  # the close code of the RemoteProtocolError, if one was raised


def run_chunks(chunks: list[bytes], role: Role, options: dict) -> Outcome:
    conn = Connection(role, **options)
    events: list = []
    try:
        for chunk in chunks:
            conn.receive_data(chunk)
            events.extend(conn.events())
    except RemoteProtocolError as error:
        assert conn.state is ConnectionState.LOCAL_CLOSING
        # the close frame to write carries the code; nothing more is parsed
        assert error.close_frame[0] == 0x88
        payload = error.close_frame[2:] if role is Role.SERVER else \
            apply_mask(error.close_frame[6:], error.close_frame[2:6])
        assert int.from_bytes(payload[:2], "big") == error.code
        conn.receive_data(frame(TEXT, b"after the failure"))
        assert list(conn.events()) == []
        conn.receive_data(b"")
        assert list(conn.events()) == []
        assert conn.state is ConnectionState.CLOSED
        return Outcome(events, error.code)
    return Outcome(events, None)


def receive(data: bytes, role: Role = Role.SERVER, **options) -> Outcome:
    """What a connection makes of ``data``, fed whole and byte by byte
    (which must agree)."""
    whole = run_chunks([data], role, options)
    bytewise = run_chunks([data[i:i + 1] for i in range(len(data))], role, options)
    assert bytewise == whole
    return whole


def failing_byte(data: bytes, role: Role = Role.SERVER, **options) -> int:
    """How many bytes of ``data``, fed one at a time, it takes to fail."""
    conn = Connection(role, **options)
    for count in range(1, len(data) + 1):
        conn.receive_data(data[count - 1:count])
        try:
            list(conn.events())
        except RemoteProtocolError:
            return count
    raise AssertionError("never failed")
