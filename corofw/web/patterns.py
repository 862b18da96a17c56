"""Route patterns: ``/users/{user_id:int}/files/{rest:path}``.

A pattern is literal text with parameters in braces, ``{name}`` or
``{name:kind}`` (kind defaults to ``str``; see :mod:`.converters`). It is
matched against the whole percent-decoded request path.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple
from urllib.parse import quote

from .converters import CONVERTERS, Converter, get_converter


class Param(NamedTuple):
    name: str
    kind: str
    converter: Converter


class PathPattern:
    """A parsed pattern.

    ``source`` is the text as written; ``shape`` is the same with parameter
    names dropped (``/users/{int}``), so two patterns with equal shapes
    match exactly the same paths. ``is_static`` patterns have no
    parameters. ``regex`` matches a whole path; ``converters`` pairs each
    parameter's group number in it with its converter. ``match(path)``
    returns the converted values in order, or ``None``; ``build(params)``
    gives the percent-encoded path.
    """

    __slots__ = ("source", "parts", "params", "shape", "is_static", "regex", "converters")

    def __init__(self, source: str, parts: list[str | Param]) -> None:
        self.source = source
        self.parts = parts
        self.params = [part for part in parts if isinstance(part, Param)]
        self.is_static = not self.params
        self.shape = "".join(part if isinstance(part, str) else "{" + part.kind + "}"
                             for part in parts)
        regex, groups, group = [], [], 1
        for part in parts:
            if isinstance(part, str):
                regex.append(re.escape(part))
            else:
                regex.append(f"({part.converter.regex})")
                groups.append((group, part.converter))
                group += 1 + part.converter.groups
        self.regex = re.compile("".join(regex), re.DOTALL)
        self.converters = groups

    def __repr__(self) -> str:
        return f"<PathPattern {self.source!r}>"

    @property
    def param_names(self) -> list[str]:
        """The names of the pattern's parameters, in order."""
        return [param.name for param in self.params]

    def with_prefix(self, prefix: str) -> PathPattern:
        """This pattern under a static ``prefix`` (``"/api"``)."""
        if not prefix:
            return self
        return PathPattern(prefix + self.source, [prefix, *self.parts])

    def match(self, path: str) -> list[Any] | None:
        """The converted parameter values if ``path`` matches, else ``None``
        (also when a converter rejects its text with ``ValueError``)."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        try:
            return [conv.to_python(found.group(group)) for group, conv in self.converters]
        except ValueError:
            return None

    def build(self, params: dict[str, Any], name: str = "") -> str:
        """The path with ``params`` filled in, percent-encoded.

        Raises ``TypeError`` for missing or unexpected parameters and
        ``ValueError`` for a value the converter cannot turn into text that
        this pattern would match again (a ``str`` value containing '/', a
        negative ``int``...), or that makes a ``.`` or ``..`` path segment:
        clients resolve those (``/files/..`` is requested as ``/``), and
        percent-encoding them does not help, since browsers treat ``%2e``
        as a dot too.

        The result never starts with ``//`` (which a browser reads as
        another host's URL): a ``path`` value that would make it so has its
        leading '/' percent-encoded (``/%2Fevil.com``), which the router
        decodes back to the same value, as Starlette does.
        """
        label = f"route {name!r} ({self.source})" if name else f"pattern {self.source!r}"
        expected = self.param_names
        missing = [key for key in expected if key not in params]
        unexpected = [key for key in params if key not in expected]
        if missing:
            raise TypeError(f"{label} needs parameter(s) {', '.join(missing)}")
        if unexpected:
            takes = ", ".join(expected) or "no parameters"
            raise TypeError(f"{label} got unexpected parameter(s) {', '.join(unexpected)}; "
                            f"it takes {takes}")
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(part)
                continue
            value = params[part.name]
            try:
                text = part.converter.to_url(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{label}: bad value {value!r} for {{{part.name}:{part.kind}}}: "
                                 f"{exc}") from None
            if not isinstance(text, str) or part.converter.matcher.fullmatch(text) is None:
                hint = "; use {name:path} to allow '/'" if "/" in str(text) else ""
                raise ValueError(f"{label}: {value!r} is not a valid value for "
                                 f"{{{part.name}:{part.kind}}}{hint}")
            pieces.append(text)
        path = "".join(pieces)
        if "/." in path:
            _refuse_dot_segments(path, label, params)
        url = quote(path, safe="/")
        if url.startswith("//"):
            url = "/%2F" + url[2:]
        return url


def _refuse_dot_segments(path: str, label: str, params: dict[str, Any]) -> None:
    for segment in path.split("/"):
        if segment in (".", ".."):
            dotted = ", ".join(f"{key}={value!r}" for key, value in params.items()
                               if "." in str(value))
            raise ValueError(f"{label}: {dotted} would make the path {path!r}, whose "
                             f"{segment!r} dot segment clients resolve before requesting "
                             f"it, so the link would lead to another URL")


def parse_pattern(source: str) -> PathPattern:
    """Parse ``source``; raise ``ValueError`` naming it if it is malformed
    (no leading '/', unbalanced braces, a bad or repeated parameter name,
    an unknown converter)."""
    if not isinstance(source, str):
        raise TypeError(f"route pattern must be a str, not {type(source).__name__}")
    if not source.startswith("/"):
        raise ValueError(f"route pattern {source!r} must start with '/'")
    parts: list[str | Param] = []
    seen: set[str] = set()
    position = 0
    while True:
        opening = source.find("{", position)
        closing = source.find("}", position)
        if opening == -1 or (closing != -1 and closing < opening):
            if closing != -1:
                raise ValueError(f"route pattern {source!r} has an unbalanced '}}' "
                                 f"at position {closing}")
            if position < len(source):
                parts.append(source[position:])
            return PathPattern(source, parts)
        if closing == -1:
            raise ValueError(f"route pattern {source!r} has an unclosed '{{' "
                             f"at position {opening}")
        inner = source[opening + 1:closing]
        if "{" in inner:
            raise ValueError(f"route pattern {source!r} has nested or unbalanced '{{'")
        name, colon, kind = inner.partition(":")
        if not colon:
            kind = "str"
        if not name.isidentifier():
            raise ValueError(f"route pattern {source!r}: {{{inner}}} needs a parameter name "
                             f"that is a Python identifier")
        if name in seen:
            raise ValueError(f"route pattern {source!r} repeats the parameter {name!r}")
        try:
            converter = get_converter(kind)
        except KeyError:
            known = ", ".join(sorted(CONVERTERS))
            raise ValueError(f"route pattern {source!r}: unknown converter {kind!r} "
                             f"in {{{inner}}} (known: {known})") from None
        seen.add(name)
        if opening > position:
            parts.append(source[position:opening])
        parts.append(Param(name, kind, converter))
        position = closing + 1
