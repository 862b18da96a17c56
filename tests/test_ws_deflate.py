"""permessage-deflate (RFC 7692): negotiation, compressed frames byte by
byte, context takeover, window bits and the bound on decompression (the
Autobahn testsuite's categories 12 and 13, as byte-level cases)."""

from __future__ import annotations

import tracemalloc
import zlib

import pytest
from ws_util import BINARY, CLOSE, CONT, PING, RSV1, TEXT, Outcome, frame, receive, server_frame

from corofw.ws import (
    BytesMessage,
    CloseConnection,
    Connection,
    PerMessageDeflate,
    Ping,
    RemoteProtocolError,
    Role,
    TextMessage,
)
from corofw.ws.deflate import parse_extensions

AGREED = PerMessageDeflate()


def deflate(data: bytes, bits: int = 15) -> bytes:
    """``data`` compressed as one message by plain zlib, tail removed."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


# -- extension header grammar --------------------------------------------------

def test_parse_extensions_grammar():
    assert parse_extensions(['permessage-deflate; client_max_window_bits, foo; a="1"; b',
                             "  X-Other  ,, permessage-deflate ;server_max_window_bits = 10 "]) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("foo", [("a", "1"), ("b", None)]),
        ("x-other", []),
        ("permessage-deflate", [("server_max_window_bits", "10")]),
    ]
    assert parse_extensions([""]) == []


@pytest.mark.parametrize("value", ["permessage-deflate;", "; a", "permessage-deflate a",
                                   'p; a="two words"', "p; a=", "p; =1", "p;; a"])
def test_parse_extensions_refuses_malformed_values(value):
    with pytest.raises(ValueError):
        parse_extensions([value])


# -- server: answering offers ---------------------------------------------------

def offers(value: str):
    return parse_extensions([value])


@pytest.mark.parametrize("offer, answer, agreed", [
    ("permessage-deflate", "permessage-deflate", PerMessageDeflate()),
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate", PerMessageDeflate()),
    ("permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover",
     PerMessageDeflate(server_no_context_takeover=True)),
    ("permessage-deflate; client_no_context_takeover",
     "permessage-deflate; client_no_context_takeover",
     PerMessageDeflate(client_no_context_takeover=True)),
    ("permessage-deflate; server_max_window_bits=10",
     "permessage-deflate; server_max_window_bits=10", PerMessageDeflate(server_max_window_bits=10)),
    ("permessage-deflate; client_max_window_bits=9",
     "permessage-deflate; client_max_window_bits=9", PerMessageDeflate(client_max_window_bits=9)),
    ('permessage-deflate; server_max_window_bits="12"',
     "permessage-deflate; server_max_window_bits=12", PerMessageDeflate(server_max_window_bits=12)),
])
def test_server_accepts_an_offer_as_made(offer, answer, agreed):
    assert PerMessageDeflate().accept(offers(offer)) == (answer, agreed)


def test_server_settings_limit_what_is_granted():
    server = PerMessageDeflate(server_no_context_takeover=True, client_no_context_takeover=True,
                               server_max_window_bits=11, client_max_window_bits=10)
    answer, agreed = server.accept(offers(
        "permessage-deflate; server_max_window_bits=13; client_max_window_bits=12"))
    assert answer == ("permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
                      " server_max_window_bits=11; client_max_window_bits=10")
    assert agreed == server
    # a client that cannot limit its window is still served (we inflate with 15 bits)
    answer, agreed = server.accept(offers("permessage-deflate"))
    assert "client_max_window_bits" not in answer and agreed.client_max_window_bits is None


@pytest.mark.parametrize("offer", [
    "permessage-deflate; unknown_param",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; server_max_window_bits",
    "permessage-deflate; server_max_window_bits=7",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=08",
    "permessage-deflate; client_max_window_bits=x",
    "permessage-deflate; client_no_context_takeover=1",
    "x-webkit-deflate-frame",
])
def test_server_declines_offers_it_cannot_take(offer):
    assert PerMessageDeflate().accept(offers(offer)) is None


def test_server_takes_the_first_offer_it_can():
    answer, agreed = PerMessageDeflate().accept(offers(
        "permessage-deflate; bogus, permessage-deflate; server_max_window_bits=9,"
        " permessage-deflate"))
    assert answer == "permessage-deflate; server_max_window_bits=9"


# -- client: offering and checking the answer -----------------------------------

def test_client_offer():
    assert PerMessageDeflate().offer() == "permessage-deflate; client_max_window_bits"
    assert PerMessageDeflate(True, True, 10, 12).offer() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=12")


def answer(value: str):
    ((name, params),) = parse_extensions([value])
    return params


def test_client_reads_the_answer():
    client = PerMessageDeflate(client_max_window_bits=12)
    agreed = client.verify_response(answer(
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10;"
        " client_max_window_bits=11"))
    assert agreed == PerMessageDeflate(server_no_context_takeover=True, server_max_window_bits=10,
                                       client_max_window_bits=11)
    assert PerMessageDeflate(client_no_context_takeover=True).verify_response([]) == \
        PerMessageDeflate(client_no_context_takeover=True)


@pytest.mark.parametrize("client, value", [
    (PerMessageDeflate(), "permessage-deflate; unknown"),
    (PerMessageDeflate(), "permessage-deflate; server_max_window_bits=16"),
    (PerMessageDeflate(), "permessage-deflate; client_max_window_bits"),
    (PerMessageDeflate(server_no_context_takeover=True), "permessage-deflate"),
    (PerMessageDeflate(server_max_window_bits=10), "permessage-deflate"),
    (PerMessageDeflate(server_max_window_bits=10),
     "permessage-deflate; server_max_window_bits=11"),
    (PerMessageDeflate(client_max_window_bits=10),
     "permessage-deflate; client_max_window_bits=11"),
])
def test_client_refuses_an_answer_its_offer_does_not_allow(client, value):
    with pytest.raises(ValueError):
        client.verify_response(answer(value))


def test_window_bits_out_of_range_are_refused_in_settings():
    with pytest.raises(ValueError):
        PerMessageDeflate(server_max_window_bits=16)
    with pytest.raises(ValueError):
        PerMessageDeflate(client_max_window_bits=7)


# -- receiving compressed frames -----------------------------------------------

def test_compressed_text_and_binary_byte_by_byte():
    data = (frame(TEXT, deflate("κόσμε ".encode() * 50), rsv=RSV1)
            + frame(BINARY, deflate(bytes(5000)), rsv=RSV1))
    assert receive(data, deflate=AGREED) == Outcome(
        [TextMessage("κόσμε " * 50), BytesMessage(bytes(5000))], None)


def test_uncompressed_messages_still_pass_when_deflate_was_agreed():
    assert receive(frame(TEXT, b"plain"), deflate=AGREED).events == [TextMessage("plain")]


def test_compressed_message_in_fragments_has_rsv1_on_the_first_only():
    compressed = deflate(b"fragmented and compressed " * 20)
    third = len(compressed) // 3
    data = (frame(TEXT, compressed[:third], fin=False, rsv=RSV1)
            + frame(PING, b"between")
            + frame(CONT, compressed[third:2 * third], fin=False)
            + frame(CONT, compressed[2 * third:]))
    assert receive(data, deflate=AGREED).events == [
        Ping(b"between"), TextMessage("fragmented and compressed " * 20)]
    bad = (frame(TEXT, compressed[:third], fin=False, rsv=RSV1)
           + frame(CONT, compressed[third:], rsv=RSV1))
    assert receive(bad, deflate=AGREED).code == 1002


@pytest.mark.parametrize("opcode", [PING, CLOSE])
def test_rsv1_on_a_control_frame_fails_even_with_deflate(opcode):
    assert receive(frame(opcode, b"\x03\xe8", rsv=RSV1), deflate=AGREED).code == 1002


def test_data_that_is_not_deflate_fails_with_1007():
    assert receive(frame(BINARY, b"\xff\xff\xff\xff", rsv=RSV1), deflate=AGREED).code == 1007


def test_invalid_utf8_inside_compressed_text_fails_with_1007():
    assert receive(frame(TEXT, deflate(b"ok \xed\xa0\x80"), rsv=RSV1), deflate=AGREED).code == 1007


def test_empty_compressed_message():
    assert receive(frame(TEXT, b"\x00", rsv=RSV1) + frame(BINARY, b"", rsv=RSV1),
                   deflate=AGREED).events == [TextMessage(""), BytesMessage(b"")]


def test_message_ending_its_deflate_stream_with_bfinal():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    final = compressor.compress(b"final block") + compressor.flush(zlib.Z_FINISH)
    data = frame(TEXT, final, rsv=RSV1) + frame(TEXT, deflate(b"next"), rsv=RSV1)
    assert receive(data, deflate=AGREED).events == [TextMessage("final block"),
                                                    TextMessage("next")]


def test_context_takeover_across_messages_is_followed():
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    pieces = []
    for _ in range(3):
        out = compressor.compress(b"repeated sentence, " * 10) + compressor.flush(zlib.Z_SYNC_FLUSH)
        pieces.append(frame(TEXT, out[:-4], rsv=RSV1))
    assert len(pieces[1]) < len(pieces[0])  # the second refers back to the first
    assert receive(b"".join(pieces), deflate=AGREED).events == [
        TextMessage("repeated sentence, " * 10)] * 3


# -- limits on decompression ---------------------------------------------------

def test_decompressed_size_is_bounded_by_the_message_limit():
    exact = frame(BINARY, deflate(bytes(1000)), rsv=RSV1)
    assert receive(exact, deflate=AGREED, max_message_size=1000).events == [
        BytesMessage(bytes(1000))]
    over = frame(BINARY, deflate(bytes(1001)), rsv=RSV1)
    assert receive(over, deflate=AGREED, max_message_size=1000).code == 1009


def test_fragmented_compressed_message_over_the_limit_fails():
    compressed = deflate(b"x" * 5000)
    data = frame(BINARY, compressed[:10], fin=False, rsv=RSV1) + frame(CONT, compressed[10:])
    assert receive(data, deflate=AGREED, max_message_size=4000).code == 1009


def test_zip_bomb_fails_with_1009_without_inflating_it():
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    bomb = b"".join(compressor.compress(zeros) for _ in range(64))  # 64 MiB in 64 KB
    bomb += compressor.flush(zlib.Z_SYNC_FLUSH)[:-4]
    data = frame(BINARY, bomb, rsv=RSV1, key=None)
    conn = Connection(Role.CLIENT, max_message_size=1 << 20, deflate=AGREED)
    tracemalloc.start()
    try:
        conn.receive_data(data)
        with pytest.raises(RemoteProtocolError) as raised:
            list(conn.events())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raised.value.code == 1009
    assert peak < len(data) * 4 + (4 << 20)


# -- sending -------------------------------------------------------------------

PARAMS = [PerMessageDeflate(), PerMessageDeflate(True, True),
          PerMessageDeflate(server_max_window_bits=9, client_max_window_bits=10),
          PerMessageDeflate(False, True, 12, 15), PerMessageDeflate(level=1)]


@pytest.mark.parametrize("params", PARAMS)
def test_both_roles_round_trip_compressed(params):
    client = Connection(Role.CLIENT, deflate=params)
    server = Connection(Role.SERVER, deflate=params)
    messages = [TextMessage("hello " * 100), BytesMessage(bytes(range(256)) * 40),
                TextMessage(""), BytesMessage(b"z")] * 3
    for sender, receiver in ((client, server), (server, client)):
        wire = b"".join(sender.send(m) for m in messages)
        assert wire[0] & RSV1
        receiver.receive_data(wire)
        assert list(receiver.events()) == messages


def test_compressed_frames_are_smaller_with_context_takeover():
    def sizes(params):
        server = Connection(Role.SERVER, deflate=params)
        return [len(server.send(TextMessage("a sentence worth remembering " * 4)))
                for _ in range(2)]
    takeover = sizes(PerMessageDeflate())
    assert takeover[1] < takeover[0]
    no_takeover = sizes(PerMessageDeflate(server_no_context_takeover=True))
    assert no_takeover[0] == no_takeover[1] == takeover[0]


def test_an_8_bit_window_sends_uncompressed():
    server = Connection(Role.SERVER, deflate=PerMessageDeflate(server_max_window_bits=8))
    assert server.send(TextMessage("x" * 300)) == server_frame(TEXT, b"x" * 300)
    client = Connection(Role.CLIENT, deflate=PerMessageDeflate(server_max_window_bits=8))
    client.receive_data(server.send(BytesMessage(bytes(300))))
    assert list(client.events()) == [BytesMessage(bytes(300))]


def test_control_frames_are_never_compressed():
    server = Connection(Role.SERVER, deflate=AGREED)
    assert server.send(Ping(b"ping")) == server_frame(PING, b"ping")
    assert server.send(CloseConnection(1000)) == server_frame(CLOSE, b"\x03\xe8")
