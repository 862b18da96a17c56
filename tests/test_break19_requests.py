"""request.text with a charset the client chose: the text is always a
str that can be sent back as UTF-8, and escapes in the body stay literal."""

from __future__ import annotations

import pytest

from corofw import Request


def text_of(charset: str, body: bytes) -> str:
    return Request("POST", "/", headers={"content-type": f"text/plain; charset={charset}"},
                   body=body).text


def test_text_decodes_real_charsets():
    assert text_of("latin-1", b"caf\xe9") == "café"
    assert text_of("utf-16", "hé".encode("utf-16")) == "hé"


@pytest.mark.xfail(strict=True, reason="Request.text decodes with any Python text codec the "
                   "client names: charset=unicode_escape or utf-7 turn body escapes into "
                   "characters (a lone surrogate, so echoing request.text is a 500 with a "
                   "traceback; '\\x3cscript\\x3e' becomes '<script>')")
@pytest.mark.parametrize(("charset", "body"), [
    ("unicode_escape", b"\\ud800"),
    ("utf-7", b"+2AA-"),
    ("unicode_escape", b"\\x3cscript\\x3e"),
])
def test_text_from_a_client_charset_is_sendable_and_keeps_escapes_literal(charset, body):
    text = text_of(charset, body)
    text.encode("utf-8")  # no lone surrogates
    assert "<" not in text
