"""The WebSocket opening handshake (RFC 6455 section 4, RFC 7692 section 5):
the server's checks and answers, the client's request and its checks, and
both against the ``websockets`` package's sans-I/O protocols, messages
(compressed or not) included."""

from __future__ import annotations

import base64

import pytest

from corofw.http.headers import Headers
from corofw.http.parser import RequestParser
from corofw.ws import (
    BytesMessage,
    ClientHandshake,
    CloseConnection,
    HandshakeFailed,
    PerMessageDeflate,
    Ping,
    Pong,
    Role,
    TextMessage,
    UpgradeRejected,
    accept_key,
    accept_upgrade,
    is_websocket_upgrade,
)

RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def upgrade_headers(**changes: str | None) -> list[tuple[str, str]]:
    """A valid upgrade request's headers; ``changes`` replace (``None``
    removes) one, named with underscores for dashes."""
    headers = {"Host": "example.com", "Upgrade": "websocket", "Connection": "Upgrade",
               "Sec-WebSocket-Key": RFC_KEY, "Sec-WebSocket-Version": "13"}
    for name, value in changes.items():
        name = name.replace("_", "-")
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    return list(headers.items())


def rejection(*args, **kwargs) -> UpgradeRejected:
    with pytest.raises(UpgradeRejected) as raised:
        accept_upgrade(*args, **kwargs)
    return raised.value


# -- server side -----------------------------------------------------------------

def test_accept_key_matches_the_rfc_example():
    assert accept_key(RFC_KEY) == RFC_ACCEPT


def test_valid_request_gets_the_101_headers():
    accepted = accept_upgrade("GET", upgrade_headers())
    assert accepted.headers == [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                ("Sec-WebSocket-Accept", RFC_ACCEPT)]
    assert accepted.subprotocol is None and accepted.deflate is None
    assert accepted.response_head() == (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + RFC_ACCEPT.encode() + b"\r\n\r\n")
    conn = accepted.connection(max_message_size=10)
    assert conn.role is Role.SERVER and conn.max_message_size == 10


@pytest.mark.parametrize("shape", ["str pairs", "bytes pairs", "Headers", "parsed Headers",
                                   "dict"])
def test_headers_in_every_shape_the_project_uses(shape):
    pairs = upgrade_headers()
    headers = {
        "str pairs": pairs,
        "bytes pairs": [(n.lower().encode(), v.encode()) for n, v in pairs],
        "Headers": Headers(pairs),
        "parsed Headers": Headers.from_raw([(n.lower().encode(), v.encode()) for n, v in pairs]),
        "dict": dict(pairs),
    }[shape]
    assert dict(accept_upgrade("GET", headers).headers)["Sec-WebSocket-Accept"] == RFC_ACCEPT


def test_names_and_tokens_are_case_insensitive_and_lists_are_read():
    headers = [(n.upper(), v) for n, v in upgrade_headers(Upgrade="WebSocket",
                                                          Connection="keep-alive, Upgrade")]
    assert accept_upgrade("GET", headers).headers[2] == ("Sec-WebSocket-Accept", RFC_ACCEPT)
    assert is_websocket_upgrade(headers)
    assert not is_websocket_upgrade([("Host", "example.com")])


@pytest.mark.parametrize("changes", [{"Upgrade": None}, {"Connection": None},
                                     {"Upgrade": "h2c"}, {"Connection": "keep-alive"}])
def test_a_request_that_is_not_an_upgrade_gets_426(changes):
    rejected = rejection("GET", upgrade_headers(**changes))
    assert rejected.status == 426
    assert ("Upgrade", "websocket") in rejected.headers


@pytest.mark.parametrize("version", ["8", "12", "14", "13, 8", None])
def test_another_version_gets_426_naming_13(version):
    rejected = rejection("GET", upgrade_headers(Sec_WebSocket_Version=version))
    assert rejected.status == 426
    assert rejected.headers == [("Sec-WebSocket-Version", "13")]


@pytest.mark.parametrize("key", [None, "", "not base64!", base64.b64encode(bytes(15)).decode(),
                                 base64.b64encode(bytes(17)).decode(), "dGhlIHNhbXBsZSBub25jZQ"])
def test_missing_or_invalid_key_gets_400(key):
    rejected = rejection("GET", upgrade_headers(Sec_WebSocket_Key=key))
    assert rejected.status == 400
    assert "Sec-WebSocket-Key" in rejected.reason


def test_two_keys_get_400():
    assert rejection("GET", [*upgrade_headers(), ("Sec-WebSocket-Key", RFC_KEY)]).status == 400


def test_method_other_than_get_gets_405_and_http10_gets_400():
    rejected = rejection("POST", upgrade_headers())
    assert (rejected.status, rejected.headers) == (405, [("Allow", "GET")])
    assert rejection("GET", upgrade_headers(), http_version="HTTP/1.0").status == 400


def test_origins():
    allowed = {"https://app.example"}
    assert accept_upgrade("GET", upgrade_headers(Origin="https://app.example"), origins=allowed)
    assert rejection("GET", upgrade_headers(Origin="https://evil.example"),
                     origins=allowed).status == 403
    assert rejection("GET", upgrade_headers(), origins=allowed).status == 403
    assert accept_upgrade("GET", upgrade_headers(), origins={None, *allowed})


def test_subprotocol_is_the_servers_first_choice_the_client_offered():
    headers = [*upgrade_headers(Sec_WebSocket_Protocol="mqtt, chat.v1"),
               ("Sec-WebSocket-Protocol", "chat.v2")]
    accepted = accept_upgrade("GET", headers, subprotocols=["chat.v2", "chat.v1"])
    assert accepted.subprotocol == "chat.v2"
    assert ("Sec-WebSocket-Protocol", "chat.v2") in accepted.headers
    none_shared = accept_upgrade("GET", headers, subprotocols=["graphql-ws"])
    assert none_shared.subprotocol is None
    assert all(name != "Sec-WebSocket-Protocol" for name, _ in none_shared.headers)


def test_permessage_deflate_is_granted_only_when_the_server_allows_it():
    headers = upgrade_headers(Sec_WebSocket_Extensions="x-unknown, permessage-deflate; "
                                                       "client_max_window_bits")
    assert accept_upgrade("GET", headers).deflate is None
    accepted = accept_upgrade("GET", headers,
                              deflate=PerMessageDeflate(client_no_context_takeover=True))
    assert ("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover"
            ) in accepted.headers
    assert accepted.deflate == PerMessageDeflate(client_no_context_takeover=True)
    declined = accept_upgrade("GET", upgrade_headers(
        Sec_WebSocket_Extensions="permessage-deflate; bogus"), deflate=PerMessageDeflate())
    assert declined.deflate is None
    assert all(name != "Sec-WebSocket-Extensions" for name, _ in declined.headers)


def test_malformed_extension_header_gets_400():
    headers = upgrade_headers(Sec_WebSocket_Extensions="permessage-deflate;;")
    assert rejection("GET", headers, deflate=PerMessageDeflate()).status == 400


# -- client side -----------------------------------------------------------------

def answer_for(handshake: ClientHandshake, **extra: str) -> list[tuple[str, str]]:
    headers = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
               ("Sec-WebSocket-Accept", accept_key(handshake.key))]
    return headers + [(name.replace("_", "-"), value) for name, value in extra.items()]


def test_client_request_headers_and_head():
    handshake = ClientHandshake(subprotocols=["chat.v2", "chat.v1"], deflate=PerMessageDeflate(),
                                origin="https://app.example")
    assert len(base64.b64decode(handshake.key, validate=True)) == 16
    assert ClientHandshake().key != ClientHandshake().key
    assert handshake.request_headers() == [
        ("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", handshake.key),
        ("Sec-WebSocket-Version", "13"), ("Sec-WebSocket-Protocol", "chat.v2, chat.v1"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("Origin", "https://app.example")]
    head = handshake.request_head("/chat?room=1", "example.com:8080")
    assert head.startswith(b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com:8080\r\n")
    assert head.endswith(b"\r\n\r\n")


def test_client_accepts_a_correct_answer():
    handshake = ClientHandshake(subprotocols=["chat"], deflate=PerMessageDeflate())
    accepted = handshake.verify(101, answer_for(
        handshake, Sec_WebSocket_Protocol="chat",
        Sec_WebSocket_Extensions="permessage-deflate; server_max_window_bits=10"))
    assert accepted.subprotocol == "chat"
    assert accepted.deflate == PerMessageDeflate(server_max_window_bits=10)
    assert accepted.connection().role is Role.CLIENT


@pytest.mark.parametrize("status, change", [
    (200, {}),
    (101, {"Upgrade": None}),
    (101, {"Connection": None}),
    (101, {"Sec-WebSocket-Accept": RFC_ACCEPT}),
    (101, {"Sec-WebSocket-Accept": None}),
    (101, {"Sec-WebSocket-Protocol": "other"}),
    (101, {"Sec-WebSocket-Protocol": "chat, other"}),
    (101, {"Sec-WebSocket-Extensions": "x-unknown"}),
    (101, {"Sec-WebSocket-Extensions": "permessage-deflate, permessage-deflate"}),
    (101, {"Sec-WebSocket-Extensions": "permessage-deflate; server_max_window_bits=20"}),
    (101, {"Sec-WebSocket-Extensions": "permessage-deflate;;"}),
])
def test_client_refuses_a_wrong_answer(status, change):
    handshake = ClientHandshake(subprotocols=["chat"], deflate=PerMessageDeflate())
    headers = dict(answer_for(handshake))
    for name, value in change.items():
        if value is None:
            headers.pop(name)
        else:
            headers[name] = value
    with pytest.raises(HandshakeFailed) as raised:
        handshake.verify(status, list(headers.items()))
    assert raised.value.status == status


def test_client_without_subprotocols_or_deflate_refuses_them():
    handshake = ClientHandshake()
    assert handshake.verify(101, answer_for(handshake)).deflate is None
    for extra in ({"Sec_WebSocket_Protocol": "chat"},
                  {"Sec_WebSocket_Extensions": "permessage-deflate"}):
        with pytest.raises(HandshakeFailed):
            handshake.verify(101, answer_for(handshake, **extra))


# -- against the websockets package ----------------------------------------------

websockets = pytest.importorskip("websockets", reason="websockets is an independent peer "
                                                      "(test extra)")
from websockets.client import ClientProtocol  # noqa: E402
from websockets.extensions.permessage_deflate import (  # noqa: E402
    ClientPerMessageDeflateFactory,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import Close, Opcode  # noqa: E402
from websockets.http11 import Response  # noqa: E402
from websockets.protocol import State  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402
from websockets.uri import parse_uri  # noqa: E402

MESSAGES = [TextMessage("hello"), BytesMessage(bytes(range(256)) * 300),
            TextMessage("κόσμε " * 500), Ping(b"are you there")]


def their_events(peer) -> list:
    events = []
    for event in peer.events_received():
        if event.opcode is Opcode.TEXT:
            events.append(TextMessage(event.data.decode()))
        elif event.opcode is Opcode.BINARY:
            events.append(BytesMessage(bytes(event.data)))
        elif event.opcode is Opcode.PING:
            events.append(Ping(bytes(event.data)))
        elif event.opcode is Opcode.CLOSE:
            close = Close.parse(event.data)
            events.append(CloseConnection(close.code, close.reason))
    return events


def send_theirs(peer, event) -> None:
    if isinstance(event, TextMessage):
        peer.send_text(event.data.encode())
    elif isinstance(event, BytesMessage):
        peer.send_binary(event.data)
    else:
        peer.send_ping(event.payload)


@pytest.mark.parametrize("theirs, ours", [
    (None, None),
    (ClientPerMessageDeflateFactory(), PerMessageDeflate()),
    (ClientPerMessageDeflateFactory(server_max_window_bits=10, client_max_window_bits=12,
                                    server_no_context_takeover=True),
     PerMessageDeflate(client_no_context_takeover=True)),
    (ClientPerMessageDeflateFactory(), None),
], ids=["plain", "deflate", "deflate with limits", "deflate refused"])
def test_websockets_client_against_corofw_server(theirs, ours):
    client = ClientProtocol(parse_uri("ws://example.com/chat"), subprotocols=["v2", "v1"],
                            extensions=[theirs] if theirs else None)
    client.send_request(client.connect())
    parser = RequestParser()
    parser.feed(b"".join(client.data_to_send()))
    request = parser.next_request()
    accepted = accept_upgrade(request.method, request.headers, subprotocols=["v1"], deflate=ours)
    client.receive_data(accepted.response_head())
    (response,) = client.events_received()
    assert client.state is State.OPEN and client.handshake_exc is None
    assert client.subprotocol == "v1"
    assert bool(client.extensions) is (accepted.deflate is not None) is bool(theirs and ours)
    server = accepted.connection()
    for event in MESSAGES:
        send_theirs(client, event)
    server.receive_data(b"".join(client.data_to_send()))
    assert list(server.events()) == MESSAGES
    client.receive_data(b"".join(server.send(event) for event in MESSAGES))
    assert their_events(client) == MESSAGES
    client.receive_data(server.send(CloseConnection(1001, "bye")))
    assert their_events(client) == [CloseConnection(1001, "bye")]
    server.receive_data(b"".join(client.data_to_send()))  # its pong, and its close echoed
    assert list(server.events()) == [Pong(b"are you there"), CloseConnection(1001, "bye")]


@pytest.mark.parametrize("theirs, ours", [
    (None, None),
    (ServerPerMessageDeflateFactory(), PerMessageDeflate()),
    (ServerPerMessageDeflateFactory(server_max_window_bits=11, client_max_window_bits=10,
                                    client_no_context_takeover=True),
     PerMessageDeflate(server_no_context_takeover=True, client_max_window_bits=12)),
    (None, PerMessageDeflate()),
], ids=["plain", "deflate", "deflate with limits", "deflate refused"])
def test_corofw_client_against_websockets_server(theirs, ours):
    handshake = ClientHandshake(subprotocols=["v1", "v2"], deflate=ours)
    server = ServerProtocol(subprotocols=["v2"], extensions=[theirs] if theirs else None)
    server.receive_data(handshake.request_head("/chat", "example.com"))
    (request,) = server.events_received()
    response = server.accept(request)
    assert response.status_code == 101, response.body
    server.send_response(response)
    assert isinstance(response, Response)
    accepted = handshake.verify(response.status_code, response.headers.raw_items())
    assert accepted.subprotocol == "v2"
    assert (accepted.deflate is not None) is bool(theirs and ours)
    client = accepted.connection()
    server.data_to_send()
    server.receive_data(b"".join(client.send(event) for event in MESSAGES))
    assert their_events(server) == MESSAGES
    for event in MESSAGES:
        send_theirs(server, event)
    client.receive_data(b"".join(server.data_to_send()))  # its pong first
    assert list(client.events()) == [Pong(b"are you there"), *MESSAGES]
    server.receive_data(client.send(CloseConnection(1000, "done")))
    assert their_events(server) == [CloseConnection(1000, "done")]
    client.receive_data(b"".join(server.data_to_send()))  # its close echoed
    assert list(client.events()) == [CloseConnection(1000, "done")]

