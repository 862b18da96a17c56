"""WebSocket (RFC 6455, RFC 7692), sans-I/O: frames, the connection state
machine, permessage-deflate and the opening handshake."""

from .deflate import PerMessageDeflate
from .events import (
    BytesMessage,
    CloseCode,
    CloseConnection,
    ConnectionState,
    Event,
    LocalProtocolError,
    Ping,
    Pong,
    ProtocolError,
    RemoteProtocolError,
    Role,
    TextMessage,
)
from .handshake import (
    ClientAccepted,
    ClientHandshake,
    HandshakeError,
    HandshakeFailed,
    ServerHandshake,
    UpgradeRejected,
    accept_key,
    accept_upgrade,
    is_websocket_upgrade,
)
from .protocol import DEFAULT_MAX_MESSAGE_SIZE, Connection

__all__ = ["DEFAULT_MAX_MESSAGE_SIZE", "BytesMessage", "ClientAccepted", "ClientHandshake",
           "CloseCode", "CloseConnection", "Connection", "ConnectionState", "Event",
           "HandshakeError", "HandshakeFailed", "LocalProtocolError", "PerMessageDeflate", "Ping",
           "Pong", "ProtocolError", "RemoteProtocolError", "Role", "ServerHandshake",
           "TextMessage", "UpgradeRejected", "accept_key", "accept_upgrade",
           "is_websocket_upgrade"]
