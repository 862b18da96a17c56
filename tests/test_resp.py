"""RESP without I/O: the pure-Python reader and hiredis's agree on every
reply tree, however the bytes are split; malformed input is a protocol
error at once; commands encode as arrays of bulk strings."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corofw.data.redis_errors import RedisProtocolError, ResponseError
from corofw.data.resp import (
    NEED_DATA,
    HiredisReader,
    PythonReader,
    Reader,
    encode_command,
    encode_commands,
    hiredis,
)

READERS = [PythonReader]
if hiredis is not None:
    READERS.append(HiredisReader)
needs_hiredis = pytest.mark.skipif(hiredis is None, reason="hiredis is not installed "
                                                           "(pip install 'corofw[redis]')")
CRLF = b"\r\n"


# -- generating replies: (bytes on the wire, the value a reader must give) --------

def _line(kind: bytes, text: bytes) -> bytes:
    return kind + text + CRLF


def _bulk(kind: bytes, data: bytes) -> bytes:
    return kind + b"%d" % len(data) + CRLF + data + CRLF


line_text = st.binary(max_size=20).filter(lambda b: b"\r" not in b and b"\n" not in b)
int64 = st.integers(-2 ** 63, 2 ** 63 - 1)

resp2_scalars = st.one_of(
    line_text.map(lambda t: (_line(b"+", t), t)),
    line_text.map(lambda t: (_line(b"-", t), ResponseError(t.decode("utf-8", "replace")))),
    int64.map(lambda n: (_line(b":", b"%d" % n), n)),
    st.binary(max_size=40).map(lambda b: (_bulk(b"$", b), b)),
    st.just((b"$-1\r\n", None)),
)
resp3_scalars = st.one_of(
    st.just((b"_\r\n", None)),
    st.booleans().map(lambda v: (b"#t\r\n" if v else b"#f\r\n", v)),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda f: (_line(b",", repr(f).encode()), f)),
    st.integers().map(lambda n: (_line(b"(", str(n).encode()), str(n).encode())),
    st.tuples(st.sampled_from([b"txt", b"mkd"]), st.binary(max_size=20)).map(
        lambda p: (_bulk(b"=", p[0] + b":" + p[1]), p[1])),
)


def _aggregate(kind: bytes, children: list[tuple[bytes, object]]) -> tuple[bytes, object]:
    head = kind + b"%d" % len(children) + CRLF
    return head + b"".join(wire for wire, _ in children), [value for _, value in children]


def _map(kind: bytes, pairs: list[tuple[tuple[bytes, object], tuple[bytes, object]]]):
    head = kind + b"%d" % len(pairs) + CRLF
    wire = head + b"".join(k[0] + v[0] for k, v in pairs)
    if kind == b"|":
        return wire, [x for k, v in pairs for x in (k[1], v[1])]
    return wire, dict((k[1], v[1]) for k, v in pairs)


def replies(scalars):
    """Reply trees over ``scalars``. A map's keys are distinct, as Redis
    sends them (hiredis pairs duplicate keys with odd values)."""
    def extend(children):
        return st.one_of(
            st.lists(children, max_size=5).map(lambda c: _aggregate(b"*", c)),
            st.just((b"*-1\r\n", None)),
        ) if scalars is resp2_scalars else st.one_of(
            st.sampled_from([b"*", b"~", b">"]).flatmap(
                lambda k: st.lists(children, max_size=5).map(lambda c: _aggregate(k, c))),
            st.sampled_from([b"%", b"|"]).flatmap(
                lambda k: st.lists(st.tuples(scalars, children), max_size=4,
                                   unique_by=lambda pair: pair[0][1]).map(
                    lambda pairs: _map(k, pairs))),
        )
    return st.recursive(scalars, extend, max_leaves=25)


resp2_replies = replies(resp2_scalars)
resp3_replies = replies(st.one_of(resp2_scalars, resp3_scalars))


def canonical(value):
    """A value with types made explicit, so that 1, True and 1.0 differ and
    NaN equals NaN; error values compare by message."""
    if isinstance(value, ResponseError):
        return ("error", value.message)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else value.hex())
    if isinstance(value, list):
        return ("list", [canonical(v) for v in value])
    if isinstance(value, dict):
        return ("map", [(canonical(k), canonical(v)) for k, v in value.items()])
    return (type(value).__name__, value)


def read_all(reader_class, chunks, encoding=None):
    reader = reader_class(encoding=encoding)
    values = []
    for chunk in chunks:
        reader.feed(chunk)
        while (value := reader.gets()) is not NEED_DATA:
            values.append(value)
    return values


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


# -- agreement -----------------------------------------------------------------

@pytest.mark.parametrize("reader_class", READERS)
@given(tree=resp3_replies, cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_each_reader_gives_the_generated_value_in_any_split(reader_class, tree, cuts):
    wire, expected = tree
    for chunks in ([wire], split(wire, cuts), [wire[i:i + 1] for i in range(len(wire))]):
        assert [canonical(v) for v in read_all(reader_class, chunks)] == [canonical(expected)]


@needs_hiredis
@given(trees=st.lists(resp3_replies, min_size=1, max_size=5),
       cuts=st.lists(st.integers(0, 10_000), max_size=10))
def test_python_and_hiredis_readers_agree_on_a_stream_of_replies(trees, cuts):
    wire = b"".join(w for w, _ in trees)
    for chunks in ([wire], split(wire, cuts), [wire[i:i + 1] for i in range(len(wire))]):
        python = [canonical(v) for v in read_all(PythonReader, chunks)]
        assert python == [canonical(v) for v in read_all(HiredisReader, chunks)]
        assert python == [canonical(v) for _, v in trees]


def _utf8(value):
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    return value


text_scalars = st.one_of(
    st.text(max_size=10).filter(lambda t: "\r" not in t and "\n" not in t).map(
        lambda t: (_line(b"+", t.encode()), t.encode())),
    st.text(max_size=10).map(lambda t: (_bulk(b"$", t.encode()), t.encode())),
    int64.map(lambda n: (_line(b":", b"%d" % n), n)),
    st.just((b"$-1\r\n", None)),
)


@pytest.mark.parametrize("reader_class", READERS)
@given(tree=replies(text_scalars), cuts=st.lists(st.integers(0, 10_000), max_size=8))
def test_with_an_encoding_strings_are_decoded(reader_class, tree, cuts):
    wire, expected = tree
    got = read_all(reader_class, split(wire, cuts), encoding="utf-8")
    assert [canonical(v) for v in got] == [canonical(_utf8(expected))]


@pytest.mark.parametrize("reader_class", READERS)
def test_an_undecodable_string_fails_after_its_whole_reply_is_read(reader_class):
    reader = reader_class(encoding="utf-8")
    reader.feed(b"*3\r\n$1\r\na\r\n$2\r\n\xff\xfe\r\n+b\r\n+OK\r\n")
    with pytest.raises(UnicodeDecodeError):
        reader.gets()
    assert reader.gets() == "OK"


@pytest.mark.parametrize("reader_class", READERS)
def test_error_messages_are_always_text(reader_class):
    reader = reader_class()
    reader.feed(b"-WRONGTYPE Operation against a key \xff\r\n")
    error = reader.gets()
    assert isinstance(error, ResponseError)
    assert error.kind == "WRONGTYPE"
    assert error.message == "WRONGTYPE Operation against a key \ufffd"


@pytest.mark.parametrize("reader_class", READERS)
def test_nan_map_keys_stay_apart_and_special_doubles_parse(reader_class):
    reader = reader_class()
    reader.feed(b"%2\r\n,nan\r\n:1\r\n,NaN\r\n:2\r\n*3\r\n,inf\r\n,-INF\r\n,-0\r\n")
    assert len(reader.gets()) == 2
    inf, minus_inf, zero = reader.gets()
    assert (inf, minus_inf, zero, math.copysign(1, zero)) == (math.inf, -math.inf, 0.0, -1.0)


def test_the_default_reader_is_hiredis_when_installed():
    assert Reader is (HiredisReader if hiredis is not None else PythonReader)


# -- malformed input -------------------------------------------------------------

MALFORMED = [
    b"!3\r\nbad\r\n",          # unknown type byte
    b"\r\n",
    b"*1\r\n\r\n",
    b":12a\r\n", b":\r\n", b":+5\r\n", b":007\r\n", b":-0\r\n", b":1 \r\n",
    b":9223372036854775808\r\n",
    b"$abc\r\n", b"$\r\n", b"$-2\r\n", b"$03\r\n", b"$+3\r\nabc\r\n", b"$-0\r\n",
    b"*-2\r\n", b"*00\r\n", b"*4294967296\r\n",
    b"+a\rb\r\n", b"-ERR a\nb\r\n",
    b",abc\r\n", b",1.5x\r\n", b",+1\r\n", b",1e400\r\n", b",1e-400\r\n", b",\r\n",
    b",0x10\r\n", b",Infinity\r\n",
    b"#x\r\n", b"#tt\r\n", b"_x\r\n", b"(1a\r\n", b"(+12\r\n",
    b"=3\r\nabc\r\n", b"=5\r\nab:de\r\n",
    b"%1\r\n*1\r\n:1\r\n:2\r\n",  # a map keyed by an array
]
STRICT_ONLY = [
    b"$3\r\nabcd\r\n",          # bulk string longer than announced
    b"$3\r\nabc\r\r",
    b"=6\r\ntxt:abXY:1\r\n",
    b":" + b"1" * 600,           # a number line that never ends
]


@pytest.mark.parametrize("reader_class", READERS)
@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_input_is_a_protocol_error_and_stays_one(reader_class, data):
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        reader = reader_class()
        with pytest.raises(RedisProtocolError):
            read_all_with_reader(reader, chunks)
        reader.feed(b"+OK\r\n")
        with pytest.raises(RedisProtocolError):
            reader.gets()


def read_all_with_reader(reader, chunks):
    for chunk in chunks:
        reader.feed(chunk)
        while reader.gets() is not NEED_DATA:
            pass


@pytest.mark.parametrize("data", STRICT_ONLY)
def test_the_python_reader_checks_every_byte(data):
    reader = PythonReader()
    with pytest.raises(RedisProtocolError):
        read_all_with_reader(reader, [data])


@given(st.binary(max_size=60))
def test_random_bytes_give_replies_or_a_protocol_error_never_anything_else(data):
    reader = PythonReader()
    try:
        read_all_with_reader(reader, [data[i:i + 1] for i in range(len(data))])
    except RedisProtocolError:
        pass


def test_a_huge_array_fed_byte_by_byte_is_parsed_once():
    count = 20_000
    wire = b"*%d\r\n" % count + b":7\r\n" * count
    reader = PythonReader()
    for i in range(len(wire)):
        reader.feed(wire[i:i + 1])
        value = reader.gets()
    assert value == [7] * count


# -- commands --------------------------------------------------------------------

def test_encode_command_sends_arrays_of_bulk_strings():
    assert encode_command(["SET", b"k\r\n", 12, 1.5, "é", bytearray(b"x"), memoryview(b"y")]) \
        == (b"*7\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$3\r\n1.5\r\n$2\r\n\xc3\xa9\r\n"
            b"$1\r\nx\r\n$1\r\ny\r\n")
    assert encode_commands([["PING"], ["GET", "k"]]) == \
        b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"


@pytest.mark.parametrize("bad", [True, None, object(), [1]])
def test_encode_command_refuses_values_redis_has_no_type_for(bad):
    with pytest.raises(TypeError, match="cannot send"):
        encode_command(["SET", "k", bad])


def test_encode_command_needs_a_name():
    with pytest.raises(ValueError):
        encode_command([])


@given(st.lists(st.one_of(st.binary(max_size=30), st.text(max_size=10), int64), min_size=1,
                max_size=8))
def test_an_encoded_command_reads_back_as_its_arguments(args):
    (value,) = read_all(PythonReader, [encode_command(args)])
    assert value == [a if isinstance(a, bytes) else str(a).encode() for a in args]


@pytest.mark.parametrize("reader_class", READERS)
def test_has_data_tells_bytes_left_after_a_reply(reader_class):
    reader = reader_class()
    reader.feed(b"+OK\r\n")
    assert reader.gets() == b"OK" and not reader.has_data()
    reader.feed(b"+OK\r\n:1")
    assert reader.gets() == b"OK" and reader.has_data()
    reader.feed(b"\r\n")
    assert reader.gets() == 1 and not reader.has_data()
