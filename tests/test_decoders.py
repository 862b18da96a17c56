"""Content-Encoding decoding, sans-I/O: gzip and deflate (zlib-wrapped or
raw), chains, gzip members, corrupt and truncated input, and output that
never exceeds what the caller asks for, fed in pieces of any size."""

from __future__ import annotations

import gzip
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corofw import DecodingError
from corofw.http.decoders import Decoder, codings_of


def raw_deflate(data):
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


ENCODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "raw": raw_deflate}


def decode(codings, data, step, limit):
    decoder = Decoder(codings)
    out = []
    for i in range(0, len(data), step):
        decoder.feed(data[i:i + step])
        while piece := decoder.read(limit):
            assert len(piece) <= limit
            out.append(piece)
    decoder.finish()
    return b"".join(out)


@pytest.mark.parametrize("header, codings", [
    (None, None), ("", None), ("identity", None), ("gzip", ["gzip"]), ("X-Gzip", ["gzip"]),
    ("deflate", ["deflate"]), ("gzip, deflate", ["gzip", "deflate"]), ("br", None),
    ("gzip, br", None), ("identity, gzip", ["gzip"]),
])
def test_codings_of(header, codings):
    assert codings_of(header) == codings


@given(st.binary(max_size=3000), st.sampled_from(sorted(ENCODERS)),
       st.integers(1, 200), st.integers(1, 5000))
def test_round_trip_in_any_pieces(data, kind, step, limit):
    encoded = ENCODERS[kind](data)
    coding = "gzip" if kind == "gzip" else "deflate"
    assert decode([coding], encoded, step, limit) == data


def test_codings_are_undone_in_reverse_order():
    data = b"hello " * 1000
    encoded = gzip.compress(zlib.compress(data))  # deflate first, then gzip
    assert decode(["deflate", "gzip"], encoded, 7, 100) == data


def test_gzip_members_are_read_one_after_the_other():
    assert decode(["gzip"], gzip.compress(b"abc") + gzip.compress(b"def"), 3, 2) == b"abcdef"


def test_a_bomb_gives_no_more_than_is_asked():
    bomb = zlib.compress(b"\0" * (50 << 20), 9)  # 50 MiB in about 50 KiB
    decoder = Decoder(["deflate"])
    decoder.feed(bomb)
    assert len(decoder.read(65536)) == 65536
    assert len(decoder.read(10)) == 10
    # what is held back is input, never output: bounded by the compressed size
    assert len(decoder._stages[0].tail) <= len(bomb)


@pytest.mark.parametrize("coding, data, message", [
    ("gzip", b"not gzip at all", "could not be decoded"),
    ("gzip", gzip.compress(b"x" * 100)[:-4], "truncated"),
    ("deflate", zlib.compress(b"x" * 100)[:-3], "truncated"),
    ("deflate", zlib.compress(b"x") + b"more", "after the end"),
    ("gzip", gzip.compress(b"x") + b"junk", "could not be decoded"),
    ("deflate", b"\x78", "truncated"),
])
def test_corrupt_or_truncated_input(coding, data, message):
    with pytest.raises(DecodingError, match=message):
        decode([coding], data, 1000, 1000)


def test_an_empty_body_decodes_to_nothing():
    assert decode(["gzip"], b"", 1, 10) == b""
