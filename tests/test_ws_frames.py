"""The WebSocket connection state machine, byte by byte (RFC 6455).

Sections follow the Autobahn testsuite's categories: framing, pings and
pongs, reserved bits, opcodes, fragmentation, UTF-8 handling, close
handling, limits; then masking and what a caller may not send. Frames are
built by hand here (not with corofw's own builder) and every case is fed
both whole and one byte at a time, which must give the same events and the
same error.
"""

from __future__ import annotations

import pytest
from ws_util import (
    BINARY,
    CLOSE,
    CONT,
    KEY,
    PING,
    PONG,
    RSV1,
    RSV2,
    RSV3,
    TEXT,
    Outcome,
    close_frame_payload,
    failing_byte,
    frame,
    receive,
    run_chunks,
    server_frame,
)

from corofw.ws import (
    BytesMessage,
    CloseConnection,
    Connection,
    ConnectionState,
    LocalProtocolError,
    Ping,
    Pong,
    Role,
    TextMessage,
)
from corofw.ws.frames import apply_mask

# -- 1. framing --------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 128, 65535, 65536, 65537, 300_000])
def test_text_and_binary_of_every_length_class(size):
    text = ("*" * size)
    data = frame(TEXT, text.encode()) + frame(BINARY, b"\xfe" * size)
    if size > 70_000:  # byte by byte is quadratic in pytest's comparison only; feed whole
        assert run_chunks([data], Role.SERVER, {}).events == [TextMessage(text),
                                                         BytesMessage(b"\xfe" * size)]
        return
    assert receive(data) == Outcome([TextMessage(text), BytesMessage(b"\xfe" * size)], None)


def test_many_frames_in_one_buffer_come_out_in_order():
    messages = [TextMessage(f"message {i}") for i in range(200)]
    data = b"".join(frame(TEXT, m.data.encode()) for m in messages)
    assert receive(data).events == messages


def test_client_receives_unmasked_frames():
    data = server_frame(TEXT, b"hello") + server_frame(BINARY, b"\x00" * 200)
    assert receive(data, Role.CLIENT).events == [TextMessage("hello"), BytesMessage(b"\0" * 200)]


def test_payload_arriving_in_pieces_is_unmasked_at_every_offset():
    payload = bytes(range(256)) * 3
    data = frame(BINARY, payload)
    for piece in (1, 2, 3, 5, 7, 64):
        conn = Connection(Role.SERVER)
        events = []
        for i in range(0, len(data), piece):
            conn.receive_data(data[i:i + piece])
            events.extend(conn.events())
        assert events == [BytesMessage(payload)]


# -- 2. pings and pongs --------------------------------------------------------

@pytest.mark.parametrize("payload", [b"", b"ping", b"\x00\xff\xfe" * 41 + b"ab", bytes(125)])
def test_ping_and_pong_payloads_up_to_125_bytes(payload):
    outcome = receive(frame(PING, payload) + frame(PONG, payload))
    assert outcome == Outcome([Ping(payload), Pong(payload)], None)
    assert outcome.events[0].response() == Pong(payload)


@pytest.mark.parametrize("opcode", [PING, PONG])
def test_control_frame_over_125_bytes_fails_on_its_length(opcode):
    data = frame(opcode, bytes(126))
    assert receive(data).code == 1002
    assert failing_byte(data) == 2


def test_unsolicited_pongs_and_many_pings():
    data = frame(PONG, b"unsolicited") + b"".join(frame(PING, b"%d" % i) for i in range(10))
    assert receive(data).events == [Pong(b"unsolicited")] + [Ping(b"%d" % i) for i in range(10)]


def test_pong_for_a_ping_is_sent_back():
    server = Connection(Role.SERVER)
    server.receive_data(frame(PING, b"are you there"))
    (ping,) = server.events()
    assert server.send(ping.response()) == server_frame(PONG, b"are you there")


# -- 3. reserved bits ----------------------------------------------------------

@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2, RSV2 | RSV3, RSV1 | RSV2 | RSV3])
@pytest.mark.parametrize("opcode", [TEXT, BINARY, PING, PONG, CLOSE])
def test_reserved_bits_without_an_extension_fail_at_once(rsv, opcode):
    data = frame(TEXT, b"before") + frame(opcode, b"\x03\xe8", rsv=rsv) + frame(TEXT, b"after")
    assert receive(data) == Outcome([TextMessage("before")], 1002)
    assert failing_byte(frame(opcode, b"\x03\xe8", rsv=rsv)) == 2


# -- 4. opcodes ----------------------------------------------------------------

@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcodes_fail(opcode):
    data = frame(TEXT, b"valid") + frame(opcode, b"payload") + frame(PING)
    assert receive(data) == Outcome([TextMessage("valid")], 1002)


# -- 5. fragmentation ----------------------------------------------------------

def test_fragmented_text_and_binary():
    data = (frame(TEXT, b"frag", fin=False) + frame(CONT, b"men", fin=False)
            + frame(CONT, b"ted") + frame(BINARY, b"\x01", fin=False) + frame(CONT, b"\x02"))
    assert receive(data).events == [TextMessage("fragmented"), BytesMessage(b"\x01\x02")]


def test_control_frames_between_fragments():
    data = (frame(TEXT, b"one ", fin=False) + frame(PING, b"p") + frame(CONT, b"two ", fin=False)
            + frame(PONG, b"q") + frame(CONT, b"three"))
    assert receive(data).events == [Ping(b"p"), Pong(b"q"), TextMessage("one two three")]


def test_empty_fragments():
    data = (frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b"x",
            fin=False) + frame(CONT, b""))
    assert receive(data).events == [TextMessage("x")]
    assert receive(frame(BINARY, fin=False) + frame(CONT)).events == [BytesMessage(b"")]


def test_a_thousand_one_byte_fragments():
    data = frame(BINARY, b"a", fin=False) + frame(CONT, b"b", fin=False) * 998 + frame(CONT, b"c")
    assert receive(data).events == [BytesMessage(b"a" + b"b" * 998 + b"c")]


@pytest.mark.parametrize("data", [
    frame(CONT, b"no message to continue"),
    frame(CONT, b"no message to continue", fin=False),
    frame(TEXT, b"done") + frame(CONT, b"too late"),
], ids=["final", "not final", "after a finished message"])
def test_continuation_without_a_message_fails(data):
    assert receive(data).code == 1002


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_new_message_inside_a_fragmented_one_fails(opcode):
    data = frame(TEXT, b"start", fin=False) + frame(opcode, b"intruder")
    assert receive(data) == Outcome([], 1002)


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_fragmented_control_frames_fail(opcode):
    data = frame(opcode, b"\x03\xe8", fin=False) + frame(CONT, b"rest")
    assert receive(data).code == 1002
    assert failing_byte(data) == 2


# -- 6. UTF-8 handling ---------------------------------------------------------

VALID_UTF8 = ["κόσμε", "\x00", "\u007f\u0080\u07ff\u0800\uffff", "\U00010000\U0010ffff",
              "\ue000\ufffd\ufeff", "Hello-µ@ßöäüàá-UTF-8!!"]
INVALID_UTF8 = [
    b"\x80", b"\xbf", b"\x80\xbf\x80", b"\xc0\xaf", b"\xc1\xbf", b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf", b"\xf0\x80\x80\xaf", b"\xf0\x8f\xbf\xbf", b"\xf8\x88\x80\x80\xaf",
    b"\xfc\x84\x80\x80\x80\xaf", b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xfe", b"\xff",
    b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xed\xa0\x80\xed\xb0\x80", b"\xc2", b"\xe2\x82",
    b"\xf0\x9f\x98", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
    b"\xc2\x41", b"\xe2\x28\xa1",
]


@pytest.mark.parametrize("text", VALID_UTF8)
def test_valid_utf8_split_at_every_byte_across_two_fragments(text):
    encoded = text.encode()
    for cut in range(len(encoded) + 1):
        data = frame(TEXT, encoded[:cut], fin=False) + frame(CONT, encoded[cut:])
        assert receive(data).events == [TextMessage(text)]


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_fails_with_1007(payload):
    assert receive(frame(TEXT, payload)).code == 1007
    fragments = b"".join(frame(CONT if i else TEXT, payload[i:i + 1], fin=i == len(payload) - 1)
                         for i in range(len(payload)))
    assert receive(fragments).code == 1007


def test_binary_messages_are_not_checked_for_utf8():
    assert receive(frame(BINARY, b"\xff\xfe")).events == [BytesMessage(b"\xff\xfe")]


def test_invalid_utf8_fails_fast_in_an_unfinished_message():
    valid = frame(TEXT, "κόσμε".encode(), fin=False)
    invalid = frame(CONT, b"\xf4\x90\x80\x80", fin=False)
    data = valid + invalid + frame(CONT, b"never needed")
    assert failing_byte(data) <= len(valid) + 6 + 2


@pytest.mark.parametrize("payload, fails_at", [
    (b"ok\xf4\x90\x80\x80 then more", 4),   # beyond U+10FFFF: its second byte
    (b"ok\xed\xa0\x80 then more", 4),        # a surrogate: its second byte
    (b"ok\xc0\xaf then more", 3),            # an overlong form: its first byte
    (b"ok\xff then more", 3),
])
def test_invalid_utf8_fails_fast_inside_one_frame(payload, fails_at):
    data = frame(TEXT, payload)
    assert failing_byte(data) == 6 + fails_at


def test_code_point_cut_at_the_end_of_a_message_fails():
    data = frame(TEXT, b"\xe2\x82", fin=False) + frame(CONT, b"")
    assert receive(data).code == 1007


# -- 7. close handling ---------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
               3000, 3999, 4000, 4999]
INVALID_CODES = [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_with_a_valid_code_is_echoed(code):
    server = Connection(Role.SERVER)
    server.receive_data(frame(CLOSE, close_frame_payload(code, b"bye")))
    (close,) = server.events()
    assert close == CloseConnection(code, "bye")
    assert server.state is ConnectionState.REMOTE_CLOSING
    assert server.send(close.response()) == server_frame(CLOSE, close_frame_payload(code))
    assert server.state is ConnectionState.CLOSED


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_with_an_invalid_code_fails(code):
    assert receive(frame(CLOSE, close_frame_payload(code))).code == 1002


def test_close_without_a_code_is_1005_and_answered_without_one():
    server = Connection(Role.SERVER)
    server.receive_data(frame(CLOSE))
    (close,) = server.events()
    assert close == CloseConnection(1005, "")
    assert server.send(close.response()) == server_frame(CLOSE)


def test_close_payload_of_one_byte_fails():
    assert receive(frame(CLOSE, b"\x03")).code == 1002


def test_close_reason_of_123_bytes_and_invalid_utf8():
    reason = "é" * 61 + "x"
    assert receive(frame(CLOSE, close_frame_payload(1000, reason.encode()))).events == [
        CloseConnection(1000, reason)]
    assert receive(frame(CLOSE, close_frame_payload(1000, b"\xce\xba\xed\xa0\x80"))).code == 1007
    assert receive(frame(CLOSE, close_frame_payload(1000, b"x" * 124))).code == 1002


def test_everything_after_a_close_frame_is_ignored():
    data = (frame(TEXT, b"before") + frame(CLOSE, close_frame_payload(1000))
            + frame(TEXT, b"after") + frame(PING) + b"\xff\xff garbage")
    assert receive(data) == Outcome([TextMessage("before"), CloseConnection(1000, "")], None)


def test_close_in_the_middle_of_a_fragmented_message():
    data = frame(TEXT, b"unfinished", fin=False) + frame(CLOSE, close_frame_payload(1001))
    assert receive(data).events == [CloseConnection(1001, "")]


def test_close_handshake_we_start():
    client = Connection(Role.CLIENT)
    sent = client.send(CloseConnection(1000, "done"))
    assert client.state is ConnectionState.LOCAL_CLOSING
    assert sent[0] == 0x88 and apply_mask(sent[6:], sent[2:6]) == close_frame_payload(1000, b"done")
    with pytest.raises(LocalProtocolError):
        client.send(TextMessage("too late"))
    with pytest.raises(LocalProtocolError):
        client.send(CloseConnection(1000))
    # messages the server sent before it saw our close still arrive
    client.receive_data(server_frame(TEXT, b"in flight") + server_frame(CLOSE, b"\x03\xe8"))
    assert list(client.events()) == [TextMessage("in flight"), CloseConnection(1000, "")]
    assert client.state is ConnectionState.CLOSED


def test_close_handshake_the_peer_starts():
    server = Connection(Role.SERVER)
    server.receive_data(frame(CLOSE, close_frame_payload(1001, b"going")))
    (close,) = server.events()
    with pytest.raises(LocalProtocolError):
        server.send(TextMessage("not after the peer's close"))
    with pytest.raises(LocalProtocolError):
        server.send(Ping())
    server.send(close.response())
    assert server.state is ConnectionState.CLOSED
    server.receive_data(b"")
    assert list(server.events()) == []


@pytest.mark.parametrize("data", [b"", frame(TEXT, b"abc")[:4], frame(TEXT, b"a", fin=False)],
                         ids=["nothing", "half a frame", "half a message"])
def test_end_of_stream_without_a_close_is_1006(data):
    server = Connection(Role.SERVER)
    server.receive_data(data)
    server.receive_data(b"")
    assert list(server.events()) == [CloseConnection(1006, "the stream ended without a close "
                                                           "frame")]
    assert server.state is ConnectionState.CLOSED
    assert list(server.events()) == []


def test_end_of_stream_after_our_close_is_1006_but_after_theirs_is_quiet():
    server = Connection(Role.SERVER)
    server.send(CloseConnection())
    server.receive_data(b"")
    assert [e.code for e in server.events()] == [1006]
    server = Connection(Role.SERVER)
    server.receive_data(frame(CLOSE) + b"")
    list(server.events())
    server.receive_data(b"")
    assert list(server.events()) == []
    assert server.state is ConnectionState.CLOSED


# -- 9. limits -----------------------------------------------------------------

def test_message_at_the_limit_passes_and_one_byte_more_fails():
    assert receive(frame(BINARY, bytes(1000)), max_message_size=1000).events == [
        BytesMessage(bytes(1000))]
    assert receive(frame(BINARY, bytes(1001)), max_message_size=1000).code == 1009


def test_oversized_frame_fails_on_its_header_before_the_payload():
    data = bytes([0x82, 0xFF]) + (2_000_000).to_bytes(8, "big") + KEY + bytes(6)
    assert failing_byte(data[:20], max_message_size=1 << 20) == 10  # before the mask key


def test_fragmented_message_over_the_limit_fails():
    data = frame(TEXT, b"a" * 600, fin=False) + frame(CONT, b"b" * 600)
    assert receive(data, max_message_size=1000).code == 1009
    assert failing_byte(data, max_message_size=1000) == len(frame(TEXT, b"a" * 600)) + 4


def test_limit_applies_per_message():
    data = frame(TEXT, b"a" * 800) + frame(TEXT, b"b" * 800)
    assert len(receive(data, max_message_size=1000).events) == 2


def test_64_bit_length_with_the_top_bit_set_fails():
    data = bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + KEY
    assert receive(data).code == 1002
    assert failing_byte(data) == 10


@pytest.mark.parametrize("size, length_size", [(0, 2), (125, 2), (125, 8), (126, 8),
                                               (65535, 8)])
def test_lengths_not_minimally_encoded_fail(size, length_size):
    data = frame(BINARY, bytes(size), length_size=length_size)
    assert run_chunks([data], Role.SERVER, {}).code == 1002
    assert failing_byte(data[:14]) == 2 + length_size


# -- masking -------------------------------------------------------------------

def test_server_refuses_unmasked_frames_and_client_masked_ones():
    assert receive(server_frame(TEXT, b"hi")) == Outcome([], 1002)
    assert receive(frame(TEXT, b"hi"), Role.CLIENT) == Outcome([], 1002)
    assert failing_byte(server_frame(TEXT, b"hi")) == 2


def test_client_masks_with_a_fresh_key_and_server_does_not_mask():
    client, server = Connection(Role.CLIENT), Connection(Role.SERVER)
    first, second = client.send(BytesMessage(b"same")), client.send(BytesMessage(b"same"))
    assert first[1] & 0x80 and first[2:6] != second[2:6]
    assert apply_mask(first[6:], first[2:6]) == b"same"
    assert server.send(BytesMessage(b"same")) == server_frame(BINARY, b"same")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 126, 65536])
def test_what_one_side_sends_the_other_reads(size):
    for sender, receiver in ((Role.CLIENT, Role.SERVER), (Role.SERVER, Role.CLIENT)):
        out = Connection(sender)
        data = (out.send(TextMessage("t" * size)) + out.send(BytesMessage(b"b" * size))
                + out.send(Ping(b"p" * min(size, 125))) + out.send(CloseConnection(4000, "x")))
        assert run_chunks([data], receiver, {}).events == [
            TextMessage("t" * size), BytesMessage(b"b" * size), Ping(b"p" * min(size, 125)),
            CloseConnection(4000, "x")]


# -- what a caller may not send -------------------------------------------------

@pytest.mark.parametrize("event", [Ping(bytes(126)), Pong(bytes(126)), CloseConnection(1006),
                                   CloseConnection(1005, "a reason without a code"),
                                   CloseConnection(999), CloseConnection(1000, "x" * 124)])
def test_sending_what_the_protocol_forbids_raises(event):
    conn = Connection(Role.SERVER)
    with pytest.raises(LocalProtocolError):
        conn.send(event)
    assert conn.state is ConnectionState.OPEN


def test_sending_something_that_is_not_an_event_raises_type_error():
    with pytest.raises(TypeError):
        Connection(Role.SERVER).send("text")  # type: ignore[arg-type]
