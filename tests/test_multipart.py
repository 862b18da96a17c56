"""The sans-I/O multipart/form-data and urlencoded parsers: round trips of
random forms fed in random pieces and byte by byte, and every malformed
body or limit answered with the right error."""

from __future__ import annotations

import re
from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corofw.http.forms import UrlencodedParser
from corofw.http.multipart import (
    DEFAULT_FORM_LIMITS,
    FormError,
    FormLimitError,
    FormLimits,
    MultipartError,
    MultipartParser,
    PartData,
    PartEnd,
    PartStart,
    check_boundary,
    encode_multipart,
    parse_options_header,
)

BOUNDARY_CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"
boundaries = st.builds(lambda body, space: body if not space else body[:1] + " " + body[1:],
                       st.text(alphabet=BOUNDARY_CHARS, min_size=2, max_size=69), st.booleans())
names = st.text(st.characters(blacklist_categories=("Cs", "Cc"), whitelist_characters="\t\r\n\""),
                max_size=12)
fields = st.tuples(names, st.binary(max_size=300))
files = st.tuples(names, st.binary(max_size=2000), names,
                  st.sampled_from(["text/plain", "application/octet-stream", "image/png"]))


def collect(parser: MultipartParser, pieces) -> list[tuple]:
    """The parts as (name, filename, content, headers) after feeding ``pieces``."""
    parts: list[tuple] = []
    current = None
    for piece in pieces:
        for event in parser.feed(piece):
            if isinstance(event, PartStart):
                assert current is None
                current = [event.name, event.filename, b"", event.headers]
            elif isinstance(event, PartData):
                assert current is not None and event.data
                current[2] += event.data
            else:
                assert isinstance(event, PartEnd) and current is not None
                parts.append(tuple(current))
                current = None
    parser.finish()
    assert current is None
    return parts


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


def quoted(name: str) -> str:
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def expected(parts) -> list[tuple]:
    out = []
    for part in parts:
        if len(part) == 4:
            out.append((quoted(part[0]), quoted(part[2]), part[1]))
        else:
            out.append((quoted(part[0]), None, part[1]))
    return out


@given(boundaries, st.lists(st.one_of(fields, files), max_size=6),
       st.lists(st.integers(min_value=0), max_size=12))
def test_random_forms_round_trip_in_random_pieces(boundary, parts, cuts):
    try:
        body = encode_multipart(parts, boundary)
    except ValueError:  # the boundary occurs in a value
        return
    limits = FormLimits(max_file_size=None)
    got = collect(MultipartParser(boundary, limits), split(body, cuts))
    assert [(name, filename, content) for name, filename, content, _ in got] == \
        expected(parts)
    for (_, filename, _, headers), part in zip(got, parts, strict=True):
        if filename is not None:
            assert ("content-type", part[3]) in headers


@given(boundaries, st.lists(st.one_of(fields, files), max_size=3))
def test_random_forms_fed_byte_by_byte(boundary, parts):
    try:
        body = encode_multipart(parts, boundary)
    except ValueError:
        return
    pieces = [body[i:i + 1] for i in range(len(body))]
    got = collect(MultipartParser(boundary), pieces)
    assert [(name, filename, content) for name, filename, content, _ in got] == \
        expected(parts)


@given(st.binary(max_size=400), st.lists(st.integers(min_value=0), max_size=8))
def test_any_bytes_give_events_or_a_form_error_never_anything_else(junk, cuts):
    parser = MultipartParser("xyz")
    try:
        for piece in split(b"--xyz\r\n" + junk, cuts):
            parser.feed(piece)
        parser.finish()
    except FormError:
        pass


def test_data_that_looks_like_a_boundary_but_is_not():
    # CR, LF, "--" and the boundary's prefix inside the content are content
    content = b"a\r\nb\r\n--\r\n--bound\r\n--boun\rx\r"
    body = encode_multipart([("f", content)], "boundary")
    assert collect(MultipartParser("boundary"), [body])[0][2] == content
    pieces = [body[i:i + 1] for i in range(len(body))]
    assert collect(MultipartParser("boundary"), pieces)[0][2] == content


def test_preamble_epilogue_and_transport_padding_are_ignored():
    body = (b"a preamble\r\n--b  \t\r\n"
            b'Content-Disposition: form-data; name="x"\r\n\r\n1\r\n'
            b"--b\r\n"
            b'content-disposition: FORM-DATA; NAME="y"; filename="f.txt"\r\n'
            b"Content-Type: text/plain\r\n\r\n2\r\n"
            b"--b-- \r\nan epilogue --b\r\n")
    assert [(n, f, c) for n, f, c, _ in collect(MultipartParser("b"), [body])] == \
        [("x", None, b"1"), ("y", "f.txt", b"2")]


def test_large_part_is_handed_on_as_it_arrives():
    parser = MultipartParser("b")
    events = parser.feed(b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n')
    assert isinstance(events[0], PartStart)
    for _ in range(100):
        events = parser.feed(b"x" * 10000)
        assert events == [PartData(b"x" * 10000)]
    assert parser.feed(b"\r") == []  # may begin the boundary: held back
    assert parser.feed(b"y") == [PartData(b"\ry")]
    assert parser.feed(b"\r\n--b--") == [PartEnd()]
    assert parser.done


def test_filename_forms():
    def filename(disposition: str):
        body = (f"--b\r\nContent-Disposition: form-data; {disposition}\r\n\r\n"
                f"x\r\n--b--").encode()
        return collect(MultipartParser("b"), [body])[0][:2]

    assert filename('name="f"; filename=""') == ("f", "")
    assert filename('name=f; filename=plain.txt') == ("f", "plain.txt")
    assert filename(r'name="a\"b"; filename="c\\d\e"') == ('a"b', "c\\d\\e")
    # browsers send a backslash as is: one at the end does not escape the quote
    assert filename(r'name="a\"; filename="C:\dir\f.txt"') == ("a\\", "C:\\dir\\f.txt")
    assert filename("name=\"f\"; filename=\"x\"; filename*=UTF-8''%E2%82%AC.txt") == \
        ("f", "€.txt")
    assert filename('name="f"; filename="caf\u00e9.txt"') == ("f", "café.txt")


def test_parse_options_header():
    assert parse_options_header('multipart/form-data; boundary="a b"; charset=UTF-8;') == \
        ("multipart/form-data", {"boundary": "a b", "charset": "UTF-8"})
    assert parse_options_header("TEXT/Plain") == ("text/plain", {})
    for bad in ("", "; a=1", "a; b", "a; b=", 'a; b="unterminated', "a; b=1; b=2",
                "a; b*=nocharset", "a; b*=bogus''%FF"):
        with pytest.raises(ValueError):
            parse_options_header(bad)


@pytest.mark.parametrize("boundary", ["", "x" * 71, "ends in space ", "tab\there", "a;b",
                                      "quo\"te", "é"])
def test_bad_boundaries_are_refused(boundary):
    with pytest.raises(MultipartError, match="bad multipart boundary"):
        check_boundary(boundary)
    with pytest.raises(MultipartError):
        MultipartParser(boundary)


def test_good_boundaries():
    for boundary in ("a", "x" * 70, "----WebKitFormBoundary7MA4YWxkTrZu0gW", "a b'()+_,-./:=?"):
        assert check_boundary(boundary) == boundary.encode()


PART = b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nvalue\r\n'


@pytest.mark.parametrize(("body", "message"), [
    (b"", "has no boundary line"),
    (b"no boundary here at all", "has no boundary line"),
    (b"--b", "truncated"),
    (b"--b\r\n", "truncated"),
    (b'--b\r\nContent-Disposition: form-data; name="f"\r\n', "truncated"),
    (b'--b\r\nContent-Disposition: form-data; name="f"\r\n\r\nval', "truncated in part 'f'"),
    (PART, "truncated"),
    (PART + b"--b", "truncated"),
    (PART + b"--b-", "truncated"),
    (b"--bx\r\n", "must be followed by CRLF or '--'"),
    (PART + b"--b?", "must be followed by CRLF or '--'"),
    (b"--b\r\n\r\nx\r\n--b--", "no Content-Disposition"),
    (b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--", "no Content-Disposition"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\n'
     b'Content-Disposition: form-data; name="b"\r\n\r\nx\r\n--b--', "more than one"),
    (b'--b\r\nContent-Disposition: attachment; name="a"\r\n\r\nx\r\n--b--',
     "not 'form-data' with a name"),
    (b'--b\r\nContent-Disposition: form-data; filename="a"\r\n\r\nx\r\n--b--',
     "not 'form-data' with a name"),
    (b'--b\r\nContent-Disposition: form-data; name="a\r\n\r\nx\r\n--b--', "malformed"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\n folded\r\n\r\nx\r\n--b--',
     "folded"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\nno colon\r\n\r\nx\r\n--b--',
     "malformed multipart part header line"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\nX y: 1\r\n\r\nx\r\n--b--',
     "malformed multipart part header line"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\nX: 1\x00\r\n\r\nx\r\n--b--',
     "control character"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\nX: 1\r\n\r\nx\r\n--b--',
     "control character"),
    (b"--b" + b" " * 300 + b"\r\n", "too much padding"),
])
def test_malformed_bodies_are_400_naming_the_problem(body, message):
    for pieces in ([body], [body[i:i + 1] for i in range(len(body))]):
        parser = MultipartParser("b")
        with pytest.raises(MultipartError, match=message.replace("?", r"\?")) as info:
            for piece in pieces:
                parser.feed(piece)
            parser.finish()
        assert info.value.status == 400


def test_no_boundary_in_a_long_preamble():
    parser = MultipartParser("b", FormLimits(max_part_header_size=100))
    with pytest.raises(MultipartError, match="no multipart boundary line in the first 100"):
        parser.feed(b"x" * 200)


def limited(body: bytes, **limits) -> MultipartError | FormLimitError:
    parser = MultipartParser("b", FormLimits(**limits))
    with pytest.raises(FormError) as info:
        parser.feed(body)
        parser.finish()
    return info.value


def field(name: str, value: bytes = b"v") -> bytes:
    return b'--b\r\nContent-Disposition: form-data; name="%s"\r\n\r\n%s\r\n' % (
        name.encode(), value)


def file(name: str, content: bytes = b"c") -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="%s"; filename="f"\r\n\r\n%s\r\n'
            % (name.encode(), content))


@pytest.mark.parametrize(("body", "limits", "message"), [
    (field("a") + field("b") + field("c") + b"--b--", {"max_fields": 2},
     "more than 2 fields"),
    (file("a") + file("b") + b"--b--", {"max_files": 1}, "more than 1 files"),
    (field("a", b"x" * 11) + b"--b--", {"max_field_size": 10},
     "form field 'a' is larger than 10 bytes"),
    (file("up", b"x" * 11) + b"--b--", {"max_file_size": 10},
     "file 'f' \\(field 'up'\\) is larger than 10 bytes"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\nX-Long: ' + b"y" * 200,
     {"max_part_header_size": 100}, "header is larger than 100 bytes"),
    (b'--b\r\nContent-Disposition: form-data; name="a"\r\nX-Long: ' + b"y" * 200 +
     b"\r\n\r\nv\r\n--b--", {"max_part_header_size": 100}, "header is larger than 100 bytes"),
])
def test_limits_are_413_naming_the_limit(body, limits, message):
    error = limited(body, **limits)
    assert isinstance(error, FormLimitError) and error.status == 413
    assert re.search(message, str(error))


def test_limits_at_their_exact_value_pass():
    body = field("a", b"x" * 10) + file("f", b"y" * 10) + b"--b--"
    parser = MultipartParser("b", FormLimits(max_fields=1, max_files=1, max_field_size=10,
                                             max_file_size=10))
    assert [content for _, _, content, _ in collect(parser, [body])] == [b"x" * 10, b"y" * 10]


def test_form_limits_validate_themselves():
    with pytest.raises(ValueError, match="max_fields"):
        FormLimits(max_fields=-1)
    with pytest.raises(ValueError, match="spool_threshold"):
        FormLimits(spool_threshold=1.5)  # type: ignore[arg-type]
    assert FormLimits(max_file_size=None).max_file_size is None


def test_encoder_refuses_a_boundary_inside_a_value_and_control_characters():
    with pytest.raises(ValueError, match="occurs in part"):
        encode_multipart([("a", b"x--bnd")], "bnd")
    with pytest.raises(ValueError, match="control character"):
        encode_multipart([("a\x00", b"x")], "bnd")


# -- urlencoded -------------------------------------------------------------------


def urlencoded(pieces, limits=DEFAULT_FORM_LIMITS) -> list[tuple[str, str]]:
    parser = UrlencodedParser(limits)
    pairs = []
    for piece in pieces:
        pairs += parser.feed(piece)
    return pairs + parser.finish()


@given(st.lists(st.tuples(st.text(st.characters(blacklist_categories=("Cs",)), min_size=1),
                          st.text(st.characters(blacklist_categories=("Cs",))))),
       st.lists(st.integers(min_value=0), max_size=10))
def test_urlencoded_round_trip_in_random_pieces(pairs, cuts):
    body = urlencode(pairs).encode()
    assert urlencoded(split(body, cuts)) == pairs


@pytest.mark.parametrize(("body", "pairs"), [
    (b"a=1&b=2", [("a", "1"), ("b", "2")]),
    (b"a=1&&b=2&", [("a", "1"), ("b", "2")]),
    (b"flag&x=", [("flag", ""), ("x", "")]),
    (b"a=b=c", [("a", "b=c")]),
    (b"sp+ace=%2B+%20", [("sp ace", "+  ")]),
    (b"bad=%zz%4", [("bad", "%zz%4")]),
    (b"caf%C3%A9=%E2%82%AC", [("café", "€")]),
    (b"", []),
])
def test_urlencoded_rules(body, pairs):
    assert urlencoded([body]) == pairs


def test_urlencoded_errors():
    with pytest.raises(FormError, match="not valid UTF-8") as info:
        urlencoded([b"a=%FF"])
    assert info.value.status == 400
    with pytest.raises(FormLimitError, match="more than 2 fields"):
        urlencoded([b"a=1&b=2&c=3"], FormLimits(max_fields=2))
    with pytest.raises(FormLimitError, match="larger than 5 bytes"):
        urlencoded([b"a=1&b=123456"], FormLimits(max_field_size=5))
    with pytest.raises(FormLimitError, match="larger than 5 bytes"):  # while it arrives
        urlencoded([b"a=1&b=1234", b"56789"], FormLimits(max_field_size=5))
    assert urlencoded([b"a=1&b=1234"], FormLimits(max_fields=2, max_field_size=6)) == \
        [("a", "1"), ("b", "1234")]
