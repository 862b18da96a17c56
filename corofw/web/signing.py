"""Signed values: text a client may hold and give back, but not forge.

::

    signer = Signer(["new key", "previous key"], salt="user-id")
    token = signer.sign("42")            # 'NDI.1a2b3c.<signature>'
    signer.unsign(token, max_age=3600)   # '42', or BadSignature / SignatureExpired

A token is ``base64url(value).timestamp.signature``, every part made of
cookie-safe characters, the signature an HMAC-SHA256 over the first two
parts. Keys rotate: the first key signs, every listed key verifies, so a
new key goes first and an old one stays listed until the tokens it signed
have expired. Each key is first derived with the ``salt``, so the same
secret used for sessions and for CSRF tokens gives tokens that are not
interchangeable. Values are signed, not encrypted: the client can read them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_MIN_KEY_BYTES = 16


class BadSignature(ValueError):
    """A token that was not signed with any of the keys (tampered,
    truncated, made with another key or salt, or not a token at all)."""


class SignatureExpired(BadSignature):
    """A correctly signed token older than the ``max_age`` asked for."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadSignature("malformed signed value") from None


def _base36(number: int) -> str:
    digits = []
    while True:
        number, rest = divmod(number, 36)
        digits.append(_DIGITS[rest])
        if not number:
            return "".join(reversed(digits))


class Signer:
    """Signs with the first of ``keys``, verifies with any of them.

    ``keys`` are ``str`` or ``bytes`` secrets of at least 16 bytes
    (``ValueError`` otherwise: a short key can be guessed offline from one
    token); ``salt`` names the purpose. ``clock`` gives the Unix time
    (``time.time``), for tests."""

    def __init__(self, keys: Iterable[str | bytes] | str | bytes, salt: str = "corofw.signed",
                 *, clock: Callable[[], float] = time.time) -> None:
        if isinstance(keys, (str, bytes)):
            keys = [keys]
        derived = []
        for key in keys:
            raw = key.encode() if isinstance(key, str) else bytes(key)
            if len(raw) < _MIN_KEY_BYTES:
                raise ValueError(f"a signing key must be at least {_MIN_KEY_BYTES} bytes "
                                 f"(use secrets.token_urlsafe(32)); got {len(raw)}")
            derived.append(hmac.new(raw, b"corofw-signer:" + salt.encode(),
                                    hashlib.sha256).digest())
        if not derived:
            raise ValueError("a Signer needs at least one key")
        self._keys = derived
        self._clock = clock

    def _signature(self, key: bytes, message: str) -> str:
        return _b64encode(hmac.new(key, message.encode("ascii"), hashlib.sha256).digest())

    def sign(self, value: str | bytes) -> str:
        """``value`` with the time and a signature, as a cookie-safe token."""
        data = value.encode() if isinstance(value, str) else bytes(value)
        message = f"{_b64encode(data)}.{_base36(int(self._clock()))}"
        return f"{message}.{self._signature(self._keys[0], message)}"

    def unsign_bytes(self, token: str, max_age: float | None = None) -> bytes:
        """The value ``token`` carries, as bytes; :class:`BadSignature` if
        no key signed it, :class:`SignatureExpired` if it is older than
        ``max_age`` seconds (None: any age)."""
        if not isinstance(token, str):
            raise BadSignature("a signed value must be a str")
        message, dot, signature = token.rpartition(".")
        payload, dot2, stamp = message.partition(".")
        if not dot or not dot2 or not stamp or not stamp.isalnum() or not token.isascii():
            raise BadSignature("malformed signed value")
        expected = [self._signature(key, message) for key in self._keys]
        # compare with every key, so the time taken does not say which matched
        matched = False
        for candidate in expected:
            matched |= hmac.compare_digest(candidate, signature)
        if not matched:
            raise BadSignature("signature does not match")
        if max_age is not None:
            age = self._clock() - int(stamp, 36)
            if age > max_age:
                raise SignatureExpired(f"signed {age:.0f} s ago, more than {max_age} s")
        return _b64decode(payload)

    def unsign(self, token: str, max_age: float | None = None) -> str:
        """The text ``token`` carries (as :meth:`unsign_bytes`, decoded as
        UTF-8; :class:`BadSignature` if it is not)."""
        data = self.unsign_bytes(token, max_age)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise BadSignature("signed value is not text") from None
