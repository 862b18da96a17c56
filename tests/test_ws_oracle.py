"""Property tests of the WebSocket protocol layer (hypothesis), with wsproto
as an independent parser.

1. Random message sequences round-trip between a client-role and a
   server-role connection, both ways, cut into random pieces, with and
   without permessage-deflate.
2. What wsproto sends (fragmented messages, pings, pongs, a close;
   compressed or not), corofw reads as wsproto meant it.
3. What corofw sends, wsproto reads back identically, compressed or not.
4. A differential on hand-built frames, valid and not: corofw gives the
   events wsproto gives and fails with the close code wsproto fails with.
   The one deliberate difference: close code 1014 (Bad Gateway, in IANA's
   registry) is accepted by corofw and refused by wsproto.

Runs derandomized and small by default; HYPOTHESIS_PROFILE=fuzz (registered
in conftest.py) runs a hundred times more examples with fresh randomness.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from ws_util import BINARY, CLOSE, CONT, KEY, PING, PONG, RSV1, RSV2, RSV3, TEXT, frame, run_chunks

from corofw.ws import (
    BytesMessage,
    CloseConnection,
    Connection,
    ConnectionState,
    PerMessageDeflate,
    Ping,
    Pong,
    Role,
    TextMessage,
)

wsproto = pytest.importorskip("wsproto", reason="wsproto is the parsing oracle (test extra)")
from wsproto.extensions import PerMessageDeflate as WsprotoDeflate  # noqa: E402
from wsproto.frame_protocol import FrameProtocol, Opcode, ParseFailed  # noqa: E402

_PROFILE = settings()
FUZZING = _PROFILE.max_examples > 1000
if FUZZING:
    pytestmark = pytest.mark.timeout(0)


def fuzz_settings(examples: int) -> settings:
    scaled = examples * _PROFILE.max_examples // 100 if FUZZING else examples
    return settings(max_examples=scaled, derandomize=not FUZZING, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# -- strategies ----------------------------------------------------------------

big_payloads = st.tuples(st.integers(60_000, 70_000), st.integers(0, 255)).map(
    lambda t: bytes([t[1]]) * t[0])
payloads = st.one_of(st.binary(max_size=300), st.binary(min_size=126, max_size=400),
                     big_payloads)
messages = st.one_of(
    st.text(max_size=200).map(TextMessage),
    payloads.map(BytesMessage),
    st.binary(max_size=125).map(Ping),
    st.binary(max_size=125).map(Pong),
)
window_bits = st.none() | st.integers(9, 15)
deflate_params = st.none() | st.builds(PerMessageDeflate, st.booleans(), st.booleans(),
                                       window_bits, window_bits)


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` cut at ``points`` (modulo its length), without empty pieces:
    an empty piece would say the stream ended."""
    edges = [0, *sorted(p % (len(data) + 1) for p in points), len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False) if b > a]


def receive_all(conn: Connection, chunks: list[bytes]) -> list:
    events = []
    for chunk in chunks:
        conn.receive_data(chunk)
        events.extend(conn.events())
    return events


# -- 1. corofw to corofw ---------------------------------------------------------

@fuzz_settings(150)
@given(st.lists(messages, max_size=10),
       deflate_params | st.just(PerMessageDeflate(True, True, 8, 8)),
       st.lists(st.integers(0, 1 << 20), max_size=15), st.integers(1000, 4999))
def test_messages_round_trip_between_client_and_server(sequence, params, points, close_code):
    if 1004 <= close_code <= 1006 or 1015 <= close_code <= 2999:
        close_code = 1000
    client = Connection(Role.CLIENT, deflate=params)
    server = Connection(Role.SERVER, deflate=params)
    for sender, receiver in ((client, server), (server, client)):
        wire = b"".join(sender.send(event) for event in sequence)
        assert receive_all(receiver, cut(wire, points)) == sequence
    wire = client.send(CloseConnection(close_code, "bye"))
    assert receive_all(server, cut(wire, points)) == [CloseConnection(close_code, "bye")]
    client.receive_data(server.send(CloseConnection(close_code)))
    assert list(client.events()) == [CloseConnection(close_code, "")]
    assert client.state is server.state is ConnectionState.CLOSED


# -- 2 and 3. wsproto against corofw -------------------------------------------------

def agreed_header(params: PerMessageDeflate) -> str:
    parts = ["permessage-deflate"]
    if params.server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if params.client_no_context_takeover:
        parts.append("client_no_context_takeover")
    if params.server_max_window_bits:
        parts.append(f"server_max_window_bits={params.server_max_window_bits}")
    if params.client_max_window_bits:
        parts.append(f"client_max_window_bits={params.client_max_window_bits}")
    return "; ".join(parts)


def wsproto_side(client: bool, params: PerMessageDeflate | None) -> FrameProtocol:
    extensions = []
    if params is not None:
        extension = WsprotoDeflate()
        extension.finalize(agreed_header(params))
        extensions.append(extension)
    return FrameProtocol(client=client, extensions=extensions)


def wsproto_events(proto: FrameProtocol, chunks: list[bytes]) -> tuple[list, int | None]:
    """What wsproto reads: whole messages and control frames, then the close
    code of its ParseFailed, if any."""
    events: list = []
    parts: list = []
    try:
        for chunk in chunks:
            proto.receive_bytes(chunk)
            for received in proto.received_frames():
                if received.opcode is Opcode.PING:
                    events.append(Ping(bytes(received.payload)))
                elif received.opcode is Opcode.PONG:
                    events.append(Pong(bytes(received.payload)))
                elif received.opcode is Opcode.CLOSE:
                    events.append(CloseConnection(int(received.payload[0]), received.payload[1]))
                else:
                    parts.append(received.payload)
                    if received.message_finished:
                        events.append(TextMessage("".join(parts))
                                      if received.opcode is Opcode.TEXT
                                      else BytesMessage(b"".join(parts)))
                        parts = []
    except ParseFailed as error:
        return events, int(error.code)
    return events, None


@st.composite
def fragmented(draw, message):
    """``message`` as wsproto send_data pieces (text cut between characters)."""
    data = message.data
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(edges, edges[1:], strict=False)]


@fuzz_settings(150)
@given(st.data(), st.lists(messages, max_size=8), deflate_params, st.booleans(),
       st.lists(st.integers(0, 1 << 20), max_size=10))
def test_corofw_reads_what_wsproto_sends(data, sequence, params, from_client, points):
    sender = wsproto_side(from_client, params)
    wire = b""
    for event in sequence:
        if isinstance(event, Ping):
            wire += sender.ping(event.payload)
        elif isinstance(event, Pong):
            wire += sender.pong(event.payload)
        else:
            pieces = data.draw(fragmented(event))
            for i, piece in enumerate(pieces):
                wire += sender.send_data(piece, fin=i == len(pieces) - 1)
    wire += sender.close(4321, "done")
    receiver = Connection(Role.SERVER if from_client else Role.CLIENT, deflate=params)
    assert receive_all(receiver, cut(wire, points)) == [*sequence, CloseConnection(4321, "done")]


@fuzz_settings(150)
@given(st.lists(messages, max_size=8), deflate_params, st.booleans(),
       st.lists(st.integers(0, 1 << 20), max_size=10))
def test_wsproto_reads_what_corofw_sends(sequence, params, from_client, points):
    sender = Connection(Role.CLIENT if from_client else Role.SERVER, deflate=params)
    wire = b"".join(sender.send(event) for event in sequence)
    wire += sender.send(CloseConnection(1001, "going away"))
    receiver = wsproto_side(not from_client, params)
    assert wsproto_events(receiver, cut(wire, points)) == (
        [*sequence, CloseConnection(1001, "going away")], None)


# -- 4. differential on hand-built frames --------------------------------------------

CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 3000, 4999,
               0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000]
INVALID_UTF8 = [b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xff", b"\xe2\x82"]
text_bytes = st.one_of(
    st.text(max_size=30).map(lambda s: s.encode()),
    st.tuples(st.text(max_size=10), st.sampled_from(INVALID_UTF8), st.text(max_size=10)).map(
        lambda t: t[0].encode() + t[1] + t[2].encode()),
)


@st.composite
def raw_frames(draw):
    opcode = draw(st.sampled_from([TEXT, TEXT, BINARY, CONT, CONT, CLOSE, PING, PONG, 3, 0xB]))
    if opcode == CLOSE:
        payload = draw(st.one_of(
            st.just(b""), st.binary(min_size=1, max_size=1),
            st.tuples(st.sampled_from(CLOSE_CODES), text_bytes).map(
                lambda t: t[0].to_bytes(2, "big") + t[1])))
    elif opcode in (TEXT, CONT):
        payload = draw(text_bytes)
    else:
        payload = draw(st.binary(max_size=130))
    return frame(opcode, payload,
                 fin=draw(st.sampled_from([True, True, False])),
                 rsv=draw(st.sampled_from([0] * 10 + [RSV1, RSV2, RSV3])),
                 key=draw(st.sampled_from([KEY] * 8 + [None])),
                 length_size=draw(st.sampled_from([None] * 8 + [2, 8])))


@fuzz_settings(400)
@given(st.lists(raw_frames(), min_size=1, max_size=8), st.lists(st.integers(0, 1 << 16),
                                                                 max_size=6))
@example([frame(TEXT, b"\xed\xa0", fin=False), frame(CONT, b"\x80")], [])
@example([frame(CLOSE, b"\x03\xf5")], [])  # 1013 Try Again Later
def test_corofw_fails_where_wsproto_fails(frames, points):
    wire = b"".join(frames)
    ours = run_chunks(cut(wire, points), Role.SERVER, {})
    theirs = wsproto_events(wsproto_side(False, None), cut(wire, points))
    assert (ours.events, ours.code) == theirs


def test_close_code_1014_is_the_deliberate_difference():
    wire = frame(CLOSE, (1014).to_bytes(2, "big"))
    assert run_chunks([wire], Role.SERVER, {}).events == [CloseConnection(1014, "")]
    assert wsproto_events(wsproto_side(False, None), [wire]) == ([], 1002)
