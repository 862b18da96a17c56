"""Which charset a body's text is decoded with.

A client names the charset (``Content-Type: text/plain; charset=...``), so
only real character sets are taken: those of the WHATWG Encoding Standard
that browsers send (UTF-8, UTF-16, the ISO 8859 and Windows code pages,
KOI8, Mac Roman and Cyrillic, the Chinese, Japanese and Korean multi-byte
sets) and UTF-32, under any alias Python knows (``latin1``,
``windows-1252``, ``sjis``). Python's other text codecs are not
charsets: ``unicode_escape`` and ``raw_unicode_escape`` turn ``\\x3c``
into ``<`` and ``\\ud800`` into a lone surrogate, and the stateful escape
encodings (UTF-7, HZ, ISO-2022) let bytes that a filter saw as harmless
decode to other text; browsers refuse them too. Anything else falls back
to UTF-8.
"""

from __future__ import annotations

import codecs
from functools import lru_cache

#: Python codec names (``codecs.lookup(label).name``) of the charsets taken
TEXT_CHARSETS = frozenset({
    "utf-8", "utf-8-sig", "utf-16", "utf-16-be", "utf-16-le",
    "utf-32", "utf-32-be", "utf-32-le",
    "ascii", *(f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)),
    *(f"cp{n}" for n in range(1250, 1259)), "cp874", "cp866", "tis-620",
    "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic",
    "big5", "big5hkscs", "cp950", "gb2312", "gbk", "gb18030",
    "euc_jp", "shift_jis", "cp932", "euc_kr", "cp949",
})

_MAX_LABEL = 64  # longer than any charset name (IANA's longest has 45 characters)


def content_type_charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of ``content_type`` as sent, or None."""
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset":
            return value.strip().strip('"') or None
    return None


def text_codec(charset: str | None) -> str:
    """The codec to decode a body whose charset is ``charset``: its Python
    name when it is one of :data:`TEXT_CHARSETS`, else ``"utf-8"``.
    Decoding with it and ``errors="replace"`` always gives text free of
    lone surrogates, so it can be encoded as UTF-8 again."""
    if not charset or len(charset) > _MAX_LABEL:
        return "utf-8"
    return _known_codec(charset.lower())


@lru_cache(maxsize=64)
def _known_codec(label: str) -> str:
    try:
        name = codecs.lookup(label).name
    except (LookupError, ValueError):  # unknown, or a NUL in the label
        return "utf-8"
    return name if name in TEXT_CHARSETS else "utf-8"
