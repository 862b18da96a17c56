"""Reading a request body as text or JSON: what a client sends, whatever
charset or number it names, gives a value the app can send back, and
escapes in the body stay literal."""

from __future__ import annotations

import random
from types import GeneratorType

import pytest

from corofw import MalformedBody, Request, Response, Router, run
from corofw.http.charsets import TEXT_CHARSETS, text_codec


def text_of(charset: str, body: bytes) -> str:
    return Request("POST", "/", headers={"content-type": f"text/plain; charset={charset}"},
                   body=body).text


def test_text_decodes_real_charsets():
    assert text_of("latin-1", b"caf\xe9") == "café"
    assert text_of("utf-16", "hé".encode("utf-16")) == "hé"
    assert text_of('"Windows-1252"', b"\x80") == "€"
    assert text_of("Shift_JIS", "日本".encode("shift_jis")) == "日本"


@pytest.mark.parametrize(("charset", "body"), [
    ("unicode_escape", b"\\ud800"),
    ("utf-7", b"+2AA-"),
    ("unicode_escape", b"\\x3cscript\\x3e"),
    ("raw_unicode_escape", b"\\u003c"),
    ("utf-7", b"+ADw-script+AD4-"),
    ("hz", b"~{!:~}"),
    ("iso-2022-kr", b"\x1b$)C"),
])
def test_text_from_a_client_charset_is_sendable_and_keeps_escapes_literal(charset, body):
    text = text_of(charset, body)
    text.encode("utf-8")  # no lone surrogates
    assert "<" not in text
    assert text == body.decode("utf-8", "replace")  # not a charset: read as UTF-8


@pytest.mark.parametrize("charset", ["nope", "hex", "rot13", "base64", "idna", "punycode",
                                     "undefined", "a\x00b", "utf-8" * 20, ""])
def test_text_falls_back_to_utf8_for_what_is_not_a_charset(charset):
    assert text_codec(charset) == "utf-8"
    assert text_of(charset, b"caf\xc3\xa9 \xff") == "café \ufffd"


@pytest.mark.parametrize("codec", sorted(TEXT_CHARSETS))
def test_text_in_every_charset_taken_has_no_lone_surrogates(codec):
    noise = random.Random(codec)
    for _ in range(50):
        body = bytes(noise.randrange(256) for _ in range(noise.randrange(1, 64)))
        text = text_of(codec, body)
        text.encode("utf-8")
    assert text_of(codec, b"\xd8\x00\xdc").encode("utf-8")  # half a surrogate pair too


@pytest.mark.parametrize("body", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e999",
                                  b"[1.5e400]", b"-1E+999", b"1" + b"0" * 400 + b".5",
                                  "[1e999]".encode("utf-16")])
def test_json_refuses_what_is_not_json_or_beyond_a_float(body):
    with pytest.raises(MalformedBody) as raised:
        Request("POST", "/", body=body).json()
    assert raised.value.status == 400
    assert str(raised.value.detail).startswith("request body is not valid JSON: ")


def test_json_keeps_numbers_a_float_holds():
    body = b'[1e-400, 2.5, 1e308, -0.0, 12345678901234567890, "1e999", "NaN"]'
    assert Request("POST", "/", body=body).json() == [
        0.0, 2.5, 1e308, -0.0, 12345678901234567890, "1e999", "NaN"]


def test_json_echoed_back_is_sent_even_with_a_lone_surrogate():
    routes = Router()

    @routes.post("/echo")
    def echo(request):
        return {"got": request.json()}

    response = routes.handle(Request("POST", "/echo", body=b'"\\ud800 \\u00e9"'))
    if isinstance(response, GeneratorType):
        response = run(response)
    assert response.status == 200
    assert response.body == b'{"got":"\\ud800 \\u00e9"}'
    assert Response.json({"é": 1}).body == '{"é":1}'.encode()
