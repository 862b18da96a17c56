"""The Redis client's errors: one type per way a command can fail.

Every error derives from :class:`RedisError`. The connection and timeout
errors also derive from the built-in ``ConnectionError`` and
``TimeoutError``, so code written against those keeps working.
"""

from __future__ import annotations


class RedisError(Exception):
    """Base of every error the Redis client raises."""


class ResponseError(RedisError):
    """The server answered a command with an error reply.

    ``message`` is the server's text (``"WRONGTYPE Operation against a key
    holding the wrong kind of value"``); ``kind`` is its first word
    (``"WRONGTYPE"``, ``"ERR"``, ``"NOSCRIPT"``...), the prefix Redis uses to
    classify errors. The connection stays usable: the reply was read whole.
    """

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message

    @property
    def kind(self) -> str:
        """The error's first word, e.g. ``"ERR"`` or ``"WRONGTYPE"``."""
        return self.message.split(" ", 1)[0]


class RedisProtocolError(RedisError):
    """The server sent bytes that are not valid RESP. The connection they
    came on is closed: nothing after them can be trusted."""


class RedisConnectionError(RedisError, ConnectionError):
    """The connection could not be opened, or broke (reset, closed by the
    server, the server restarted) while a command was in flight."""


class RedisTimeout(RedisError, TimeoutError):
    """A command took longer than its timeout. Its connection is closed,
    since the reply could still arrive later and be taken for the answer
    to the next command."""


class RedisPoolTimeout(RedisTimeout):
    """Every connection of the pool stayed busy for longer than the pool
    timeout."""
