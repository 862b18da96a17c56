"""Path-parameter converters: how ``{name:kind}`` matches, converts, and builds.

A converter is three things: a regular expression for the decoded text of
the parameter, ``to_python`` turning the matched text into a value, and
``to_url`` turning a value back into text (``url_for`` percent-encodes it).

Converters live in one registry shared by every router, so register custom
ones before the routes that use them::

    register_converter("slug", Converter(r"[a-z0-9-]+"))
    register_converter("hex", Converter(r"[0-9a-f]+", lambda s: int(s, 16), "{:x}".format))
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any


class Converter:
    """Matches ``regex``, converts with ``to_python``, builds with ``to_url``.

    Pass the three parts to the constructor or subclass and override them.
    ``to_python`` may raise ``ValueError`` to reject a matched value: the
    route then does not match. ``to_url`` returns unencoded text, which
    ``url_for`` checks against ``regex`` before percent-encoding it.
    """

    regex: str = "[^/]+"

    def __init__(self, regex: str | None = None,
                 to_python: Callable[[str], Any] | None = None,
                 to_url: Callable[[Any], str] | None = None) -> None:
        if regex is not None:
            self.regex = regex
        if to_python is not None:
            self.to_python = to_python  # type: ignore[method-assign,assignment,unused-ignore]
        if to_url is not None:
            self.to_url = to_url  # type: ignore[method-assign,assignment,unused-ignore]
        try:
            compiled = re.compile(self.regex)
        except re.error as exc:
            raise ValueError(f"invalid converter regex {self.regex!r}: {exc}") from None
        self.groups = compiled.groups
        self.matcher = re.compile(f"(?:{self.regex})", re.DOTALL)

    def to_python(self, value: str) -> Any:
        """The handler's value for the matched text (here: the text
        itself); raise ``ValueError`` to make the route not match."""
        return value

    def to_url(self, value: Any) -> str:
        """The unencoded path text for ``value`` (here: ``str(value)``);
        ``url_for`` checks it against ``regex``."""
        return str(value)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.regex!r}>"


class StrConverter(Converter):
    """One non-empty path segment, without '/'. The default kind."""

    regex = "[^/]+"

    def to_url(self, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(f"expected a str, got {type(value).__name__}")
        return value


class PathConverter(StrConverter):
    """The rest of the path: one or more characters, '/' included."""

    regex = ".+"


class IntConverter(Converter):
    """A non-negative decimal integer (ASCII digits), converted to ``int``."""

    regex = "[0-9]+"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an int, got {type(value).__name__}")
        return str(value)


class FloatConverter(Converter):
    """A non-negative decimal number such as ``3`` or ``2.5``, converted to
    ``float``. No sign, exponent, ``inf`` or ``nan``."""

    regex = r"[0-9]+(?:\.[0-9]+)?"

    def to_python(self, value: str) -> float:
        return float(value)

    def to_url(self, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"expected a float, got {type(value).__name__}")
        return format(Decimal(repr(float(value))), "f")


class UUIDConverter(Converter):
    """A UUID in its hyphenated form, converted to ``uuid.UUID``."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> uuid.UUID:
        return uuid.UUID(value)

    def to_url(self, value: Any) -> str:
        return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))


CONVERTERS: dict[str, Converter] = {
    "str": StrConverter(),
    "path": PathConverter(),
    "int": IntConverter(),
    "float": FloatConverter(),
    "uuid": UUIDConverter(),
}


def register_converter(name: str, converter: Converter, *, replace: bool = False) -> None:
    """Make ``{param:name}`` use ``converter`` in patterns registered from now on.

    Raises ``ValueError`` if ``name`` is already taken, unless ``replace``.
    """
    if not name.isidentifier():
        raise ValueError(f"converter name must be an identifier, not {name!r}")
    if not isinstance(converter, Converter):
        raise TypeError(f"expected a Converter instance, got {type(converter).__name__}")
    if name in CONVERTERS and not replace:
        raise ValueError(f"a converter named {name!r} is already registered")
    CONVERTERS[name] = converter


def get_converter(name: str) -> Converter:
    """The converter registered as ``name`` (``KeyError`` if none)."""
    return CONVERTERS[name]
