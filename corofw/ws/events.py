"""What a WebSocket connection hands its caller, and what it accepts to send.

Events are whole messages and control frames: fragments are assembled by
:class:`~corofw.ws.protocol.Connection` before a caller sees them. Two
errors tell whose fault a failure is: :class:`RemoteProtocolError` (the peer
broke RFC 6455; it carries the close code to answer with) and
:class:`LocalProtocolError` (the caller asked for something the protocol
forbids, such as sending after a close).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Role(Enum):
    """Which end of the connection we are: a server reads masked frames and
    writes unmasked ones, a client the reverse."""

    SERVER = "server"
    CLIENT = "client"


class ConnectionState(Enum):
    """``OPEN``: messages flow both ways. ``LOCAL_CLOSING``: we sent a close
    frame and wait for the peer's. ``REMOTE_CLOSING``: the peer sent one and
    we owe the answer. ``CLOSED``: both close frames crossed, or the transport
    ended."""

    OPEN = "open"
    LOCAL_CLOSING = "local closing"
    REMOTE_CLOSING = "remote closing"
    CLOSED = "closed"


class CloseCode:
    """Status codes of RFC 6455 section 7.4 (and IANA's registry)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005         # never on the wire: a close frame without a code
    ABNORMAL = 1006          # never on the wire: the transport ended first
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


@dataclass(slots=True)
class TextMessage:
    """A complete text message (its UTF-8 already checked and decoded)."""

    data: str


@dataclass(slots=True)
class BytesMessage:
    """A complete binary message."""

    data: bytes


@dataclass(slots=True)
class Ping:
    """A ping; the peer expects :meth:`response` sent back soon."""

    payload: bytes = b""

    def response(self) -> Pong:
        """The pong that answers this ping."""
        return Pong(self.payload)


@dataclass(slots=True)
class Pong:
    """A pong: the answer to a ping, or an unsolicited heartbeat."""

    payload: bytes = b""


@dataclass(slots=True)
class CloseConnection:
    """A close frame, sent or received. ``code`` 1005 stands for a close frame
    without a status code; a received ``1006`` means the transport ended
    without any close frame."""

    code: int = CloseCode.NORMAL
    reason: str = ""

    def response(self) -> CloseConnection:
        """The close frame that completes the handshake the peer began: the
        same code echoed, without the reason (RFC 6455 section 5.5.1)."""
        return CloseConnection(self.code)


Event = TextMessage | BytesMessage | Ping | Pong | CloseConnection


class ProtocolError(Exception):
    """Base of the WebSocket protocol errors."""


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol. Write ``close_frame`` (a close frame
    carrying ``code``: 1002, 1007 or 1009) and close the transport; the
    connection ignores whatever else arrives."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{reason} (close code {code})")
        self.code = code
        self.reason = reason
        self.close_frame = b""


class LocalProtocolError(ProtocolError):
    """The caller asked for something RFC 6455 forbids, e.g. a message after
    the close frame, a control payload over 125 bytes, or close code 1006."""
