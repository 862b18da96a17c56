"""W3C Trace Context headers: traceparent read strictly (version 00 and
future versions), tracestate passed on unchanged when valid, cut to its
bound when long; ids made at random, never all zeros."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from corofw.http.tracecontext import (
    MAX_TRACESTATE_LENGTH,
    TraceParent,
    format_traceparent,
    new_span_id,
    new_trace_and_span_ids,
    new_trace_id,
    parse_traceparent,
    parse_tracestate,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{PARENT}-01"

hex_ids = st.integers(1, 2**128 - 1).map(lambda n: f"{n:032x}")
span_ids = st.integers(1, 2**64 - 1).map(lambda n: f"{n:016x}")


# -- traceparent -----------------------------------------------------------------


def test_version_00_parsed():
    parent = parse_traceparent(VALID)
    assert parent == TraceParent(TRACE, PARENT, 1)
    assert parent.sampled
    assert not parse_traceparent(f"00-{TRACE}-{PARENT}-00").sampled


@pytest.mark.parametrize("value", [
    "",
    VALID.upper(),                                   # uppercase hex
    f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{TRACE}-{PARENT.upper()}-01",
    f"00-{TRACE}-{PARENT}-0A",
    f"00-{'0' * 32}-{PARENT}-01",                   # all-zero trace id
    f"00-{TRACE}-{'0' * 16}-01",                    # all-zero parent id
    f"ff-{TRACE}-{PARENT}-01",                      # version ff is invalid
    f"00-{TRACE}-{PARENT}-01-extra",                # version 00 has exactly four fields
    f"00-{TRACE}-{PARENT}-01 ",
    f"00-{TRACE}-{PARENT}-1",
    f"00-{TRACE[:-1]}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}0-01",
    f"00_{TRACE}_{PARENT}_01",
    f"0-{TRACE}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}-0g",
    f"00-{TRACE}-{PARENT}-01\n",
    f"zz-{TRACE}-{PARENT}-01",
    f"cc-{TRACE}-{PARENT}-01.",                     # a future version: end or "-" after flags
    f"cc-{TRACE}-{PARENT}-0",                       # shorter than 55 characters
])
def test_invalid_traceparent_refused(value):
    assert parse_traceparent(value) is None


def test_future_version_read_as_version_00_shape():
    assert parse_traceparent(f"cc-{TRACE}-{PARENT}-01") == TraceParent(TRACE, PARENT, 1)
    assert parse_traceparent(f"cc-{TRACE}-{PARENT}-09-what-comes-next") == \
        TraceParent(TRACE, PARENT, 9)
    assert parse_traceparent(f"01-{TRACE}-{PARENT}-00-") == TraceParent(TRACE, PARENT, 0)


def test_format_sends_version_00_and_only_the_sampled_flag():
    assert format_traceparent(TRACE, PARENT, 1) == VALID
    assert format_traceparent(TRACE, PARENT, 0xff) == VALID
    assert format_traceparent(TRACE, PARENT, 0x08) == f"00-{TRACE}-{PARENT}-00"


@given(hex_ids, span_ids, st.integers(0, 255))
def test_format_then_parse_round_trips(trace_id, span_id, flags):
    assert parse_traceparent(format_traceparent(trace_id, span_id, flags)) == \
        TraceParent(trace_id, span_id, flags & 1)


@given(st.text())
def test_parse_never_raises_and_accepts_only_the_grammar(value):
    parent = parse_traceparent(value)
    if parent is not None:
        assert len(value) >= 55 and value[2] == "-"
        assert value[:2] != "ff"
        assert set(parent.trace_id + parent.parent_id) <= set("0123456789abcdef")
        assert value[3:35] == parent.trace_id and value[36:52] == parent.parent_id


@given(st.text(alphabet=string.hexdigits + "-", min_size=55, max_size=60))
def test_parse_from_near_misses(value):
    parent = parse_traceparent(value)
    if parent is not None:
        assert value[:2] != "ff" and value == value.lower()[:55] + value[55:]
        assert value[3:55] == f"{parent.trace_id}-{parent.parent_id}-{parent.flags:02x}"
        assert len(value) == 55 or (value[:2] != "00" and value[55] == "-")


def test_new_ids_are_random_lowercase_hex():
    traces = {new_trace_id() for _ in range(100)}
    spans = {new_span_id() for _ in range(100)}
    assert len(traces) == 100 and len(spans) == 100
    for trace_id in traces:
        assert parse_traceparent(format_traceparent(trace_id, PARENT, 1)) is not None
    for span_id in spans:
        assert parse_traceparent(format_traceparent(TRACE, span_id, 1)) is not None
    pairs = {new_trace_and_span_ids() for _ in range(100)}
    assert len({trace for trace, _ in pairs}) == 100 and len({span for _, span in pairs}) == 100
    for trace_id, span_id in pairs:
        assert parse_traceparent(format_traceparent(trace_id, span_id, 1)) == \
            TraceParent(trace_id, span_id, 1)


# -- tracestate ------------------------------------------------------------------


@pytest.mark.parametrize("values", [
    ["congo=t61rcWkgMzE"],
    ["rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"],
    ["rojo=1 , congo=2,,"],
    ["tenant@vendor=x", "a-b_c*d/e=some value!"],
    ["k=" + "v" * 256],
    [",".join(f"k{i}=v" for i in range(32))],
])
def test_valid_tracestate_passed_on_unchanged(values):
    assert parse_tracestate(values) == ",".join(values)


@pytest.mark.parametrize("values", [
    [""],
    [" , "],
    ["Rojo=1"],                                    # keys are lowercase
    ["1abc=1"],                                    # a simple key starts with a letter
    ["rojo=1,rojo=2"],                             # a key given twice
    ["rojo=1", "rojo=2"],
    ["rojo"],
    ["rojo="],
    ["rojo=a,b"],
    ["rojo=x=y"],                                  # "=" is not allowed in a value
    ["rojo=val\u00e9"],
    ["k=" + "v" * 257],                            # values hold at most 256 characters
    ["t@" + "v" * 15 + "=1"],                       # a system id holds at most 14
    [",".join(f"k{i}=v" for i in range(33))],      # at most 32 members
])
def test_invalid_tracestate_dropped(values):
    assert parse_tracestate(values) is None


def test_long_tracestate_drops_long_members_first_then_from_the_end():
    long_one = "big=" + "x" * 200
    small = [f"k{i}=" + "v" * 40 for i in range(12)]   # 12 * 44 + 11 commas > 512
    value = ",".join([small[0], long_one, *small[1:]])
    kept = parse_tracestate([value])
    assert kept is not None and len(kept) <= MAX_TRACESTATE_LENGTH
    members = kept.split(",")
    assert long_one not in members
    assert members == small[:len(members)]
    assert len(members) == 11


@given(st.lists(st.tuples(st.from_regex(r"[a-z][a-z0-9_\-*/]{0,20}", fullmatch=True),
                          st.from_regex(r"[!-+\--<>-~]{1,60}", fullmatch=True)),
                min_size=1, max_size=32, unique_by=lambda kv: kv[0]))
def test_generated_tracestate_valid_and_bounded(pairs):
    value = ",".join(f"{k}={v}" for k, v in pairs)
    kept = parse_tracestate([value])
    assert kept is not None and len(kept) <= MAX_TRACESTATE_LENGTH
    if len(value) <= MAX_TRACESTATE_LENGTH:
        assert kept == value
    else:
        assert value.startswith(kept) or set(kept.split(",")) <= set(value.split(","))
