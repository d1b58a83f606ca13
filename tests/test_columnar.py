"""The columnar protobuf parsers equal the REST JSON parser on every page shape.

Live pages are parsed straight from protobuf (``sources/columnar.py``: ``Page`` decodes a whole page's
wire bytes with numpy, ``parse_time_series`` reads one series point by point and is the fallback)
while snapshots are parsed from the REST JSON that ``fetch`` writes (``sources/restjson.py``); all
must give the same ``RawSeries``, so a live run and its replayed snapshot give the same findings.
The wire shapes below are written byte by byte, so the page decoder meets what the protobuf runtime
accepts and not only what it writes: zeros left out, negative int64s, unknown fields, absent
start times, nanos, short bucket counts.
"""

from __future__ import annotations

import struct
import warnings
from typing import Any

import numpy as np
import pytest
from google.cloud import monitoring_v3
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer.model import RawSeries
from analyzer.sources import columnar, protowire, restjson
from tests.test_live import _pages


def _parsed(parse: Any, message: Any) -> list[RawSeries] | str:
    try:
        return list(parse(message, source="s"))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return f"malformed: {type(exc).__name__}"


def same_parse(a: list[RawSeries], b: list[RawSeries]) -> None:
    """Two readers' series of one message are equal (asserts)."""
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        _same_series(x, y)


def _same_series(a: RawSeries, b: RawSeries) -> None:
    for name in ("metric", "metric_kind", "value_type", "project", "region", "service", "revision",
                 "metric_labels"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.start_times, b.start_times)
    np.testing.assert_array_equal(a.end_times, b.end_times)
    if a.values is not None or b.values is not None:
        assert a.values is not None and b.values is not None
        np.testing.assert_array_equal(a.values, b.values)
    else:
        ha, hb = a.histograms, b.histograms
        assert ha is not None and hb is not None
        for name in ("bounds", "counts", "count", "mean", "range_min", "range_max"):
            np.testing.assert_array_equal(getattr(ha, name), getattr(hb, name), err_msg=name)


def check_page(page: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflowing bucket bounds, in both parsers alike
        _compare_page(page)


def _compare_page(page: Any) -> None:
    body = json_format.MessageToDict(page)
    read = columnar.Page(page)
    wire = columnar.Page.from_wire(page.SerializeToString())  # the live path: bytes no one has parsed
    assert (wire.indices, wire.next_page_token, wire.execution_errors) == (
        read.indices, page.next_page_token, list(page.execution_errors))
    for index, (message, ts) in enumerate(zip(body.get("timeSeries", []), page.time_series, strict=True)):
        from_json = _parsed(restjson.parse_time_series, message)
        assert wire.metric_type(index) == read.metric_type(index)
        for from_proto in (_parsed(columnar.parse_time_series, ts), _parsed(read.parse, index),
                           _parsed(wire.parse, index)):
            if isinstance(from_json, str) or isinstance(from_proto, str):
                assert isinstance(from_json, str) and isinstance(from_proto, str), (from_json, from_proto)
                continue
            same_parse(from_json, from_proto)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pages())
def test_protobuf_parser_equals_rest_json_parser(page: Any) -> None:
    check_page(page)


# ---------------------------------------------------------------------------------------------
# Wire shapes written byte by byte


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # a negative int64 is its two's complement: ten bytes
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _field(number: int, wire: int, payload: bytes | int | float) -> bytes:
    tag = _varint(number << 3 | wire)
    if wire == protowire.VARINT:
        assert isinstance(payload, int)
        return tag + _varint(payload)
    if wire == protowire.I64:
        return tag + struct.pack("<d", payload)
    if wire == protowire.I32:
        assert isinstance(payload, int)
        return tag + struct.pack("<I", payload)
    assert isinstance(payload, bytes)
    return tag + _varint(len(payload)) + payload


def _len(number: int, *parts: bytes) -> bytes:
    return _field(number, protowire.LEN, b"".join(parts))


_UNKNOWN = (_field(99, protowire.VARINT, 7) + _field(98, protowire.I32, 5) + _field(97, protowire.I64, 2.5)
            + _len(96, b"junk\x2a\x0a"))  # \x2a\x0a: looks like the start of a point


def _stamp(seconds: int, nanos: int = 0, *, unknown: bool = False) -> bytes:
    parts = [_field(1, protowire.VARINT, seconds)] if seconds else []  # proto3 leaves 0 out
    if nanos:
        parts.insert(0, _field(2, protowire.VARINT, nanos))  # nanos first: any order is valid
    return b"".join(parts) + (_UNKNOWN if unknown else b"")


def _point(end: int, value: bytes, *, start: int | None = None, nanos: int = 0, unknown: bool = False,
           value_first: bool = False) -> bytes:
    interval = _len(2, _stamp(end, nanos, unknown=unknown))
    if start is not None:
        interval = _len(1, _stamp(start, unknown=unknown)) + interval
    parts = [_len(1, interval), _len(2, value)]
    if value_first:
        parts.reverse()
    return _len(5, *parts, _UNKNOWN if unknown else b"")


def _distribution(counts: list[int], *, packed: bool = True, mean: float = 0.0, count: int | None = None,
                  options: bytes | None = None, low_high: tuple[float, float] | None = None) -> bytes:
    parts = [_field(1, protowire.VARINT, sum(counts) if count is None else count)]
    if mean:
        parts.append(_field(2, protowire.I64, mean))
    if low_high is not None:
        parts.append(_len(4, b"".join(_field(n, protowire.I64, v) for n, v in zip((1, 2), low_high, strict=True)
                                     if v)))
    if options is not None:
        parts.append(_len(6, options))
    if packed:
        parts.append(_len(7, b"".join(_varint(c) for c in counts)))
    else:
        parts.extend(_field(7, protowire.VARINT, c) for c in counts)
    parts.append(_len(10, _field(1, protowire.I64, 3.0)))  # an exemplar: read by neither parser
    return _len(5, *parts)


_LINEAR = _len(1, _field(1, protowire.VARINT, 3) + _field(2, protowire.I64, 0.5))  # 3 finite buckets: 5
_EXPLICIT = _len(3, _len(1, struct.pack("<3d", 1.0, 2.0, 4.0)))  # 4 buckets


def _series(metric: str, value_type: int, points: list[bytes], *, unknown: bool = False) -> bytes:
    resource = _len(1, b"cloud_run_revision") + b"".join(
        _len(2, _len(1, k.encode()), _len(2, v.encode()))
        for k, v in (("service_name", "svc"), ("revision_name", "svc-1"), ("location", "r"), ("project_id", "p"))
    )
    head = _len(1, _len(3, b"run.googleapis.com/" + metric.encode())) + _len(2, resource)
    head += _field(3, protowire.VARINT, 2) + _field(4, protowire.VARINT, value_type)
    return _len(1, head, *points, _len(8, b"ms"), _UNKNOWN if unknown else b"")


_DOUBLE, _INT64, _DIST = 3, 2, 5
T0 = 1_780_000_000
_SHAPES = {
    "doubles with zeros left out": _series("container/billable_instance_time", _DOUBLE, [
        _point(T0 + 60 * i, _field(3, protowire.I64, float(i % 3)) if i % 3 else b"", start=T0 + 60 * i - 60)
        for i in range(40, 0, -1)]),
    "negative and huge int64s": _series("request_count", _INT64, [
        _point(T0 + 60 * i, _field(2, protowire.VARINT, v), start=T0 + 60 * i - 60)
        for i, v in enumerate([-1, 0, -(2**63), 2**63 - 1, 2**53 + 1, 5, -300])][::-1]),
    "no start times, nanos": _series("container/instance_count", _INT64, [
        _point(T0 + 60 * i, _field(2, protowire.VARINT, i), nanos=500_000_000 * (i % 2)) for i in range(30, 0, -1)]),
    "unknown fields everywhere, value first": _series("container/instance_count", _DOUBLE, [
        _point(T0 + 60 * i, _field(3, protowire.I64, 1.5) + _UNKNOWN, start=T0, unknown=True, value_first=i % 2 == 0)
        for i in range(30, 0, -1)], unknown=True),
    "epoch zero start and bool values": _series("container/instance_count", 1, [
        _point(T0 + 60 * i, _field(1, protowire.VARINT, i % 2), start=0) for i in range(9, 0, -1)]),
    "distributions: short, unpacked, two layouts, ranges": _series("request_latencies", _DIST, [
        _point(T0 + 60 * i, _distribution(
            [i, 0, 3][: 1 + i % 3], packed=i % 4 != 0, mean=1.25 * i,
            options=_LINEAR if i % 5 else _EXPLICIT, low_high=(0.5, 9.0 * i) if i % 2 else None))
        for i in range(60, 0, -1)]),
    "distributions without options or counts, big counts": _series("container/memory/utilizations", _DIST, [
        _point(T0 + 60 * i, _distribution([2**40 + i, 300, 0] if i % 3 else [], count=2**62 if i % 2 else 0,
                                          options=_LINEAR if i % 4 else None), start=T0 + 60 * i - 60)
        for i in range(40, 0, -1)]),
    "a scalar point in a distribution series": _series("request_latencies", _DIST, [
        _point(T0 + 120, _distribution([1, 2], options=_LINEAR)), _point(T0 + 60, _field(3, protowire.I64, 2.0)),
        _point(T0, b"")]),
    "equal end times keep their order": _series("request_count", _INT64, [
        _point(T0 + 60 * (i // 3), _field(2, protowire.VARINT, i)) for i in range(30, 0, -1)]),
}


@pytest.mark.parametrize("shape", sorted(_SHAPES))
def test_page_decoder_reads_wire_shapes_column_wise(shape: str) -> None:
    data = _SHAPES[shape] + _SHAPES["doubles with zeros left out"]
    page = monitoring_v3.ListTimeSeriesResponse.pb().FromString(data)
    for read in (columnar.Page(page), columnar.Page.from_wire(data)):
        assert read.columns is not None
        for index, series in enumerate(page.time_series):
            share = read.columns.share(index)
            assert share is not None, "the column path left this series to the exact reader"
            same_parse(columnar.parse_time_series(series, source="s"), share.series(series, "s"))
    check_page(page)


def test_page_decoder_leaves_what_it_does_not_read_to_the_exact_reader() -> None:
    """A string value, a point without an end time, more counts than buckets: that series is read
    (and rejected) by the exact reader, its neighbour still column-wise. A group (a wire type proto3
    never writes) among the unknown fields: the whole page is read the exact way."""
    group = b"\x4b" + _field(1, protowire.VARINT, 1) + b"\x4c"  # field 9: START_GROUP .. END_GROUP
    shapes = {
        "group": _series("request_count", _INT64, [_point(T0, _field(2, protowire.VARINT, 4) + group)]),
        "string": _series("request_count", _INT64, [_point(T0, _len(4, b"text"))]),
        "no end": _series("request_count", _INT64, [_len(5, _len(2, _field(2, protowire.VARINT, 1)))]),
        "counts": _series("request_latencies", _DIST, [_point(T0, _distribution([1] * 7, options=_LINEAR))]),
    }
    for name, data in shapes.items():
        data += _SHAPES["negative and huge int64s"]
        page = monitoring_v3.ListTimeSeriesResponse.pb().FromString(data)
        check_page(page)
        for read in (columnar.Page(page), columnar.Page.from_wire(data)):
            if name == "group":
                assert read.columns is None
            else:
                assert read.columns is not None and read.columns.share(1) is not None
                assert isinstance(_parsed(read.parse, 0), str)
            _same_outcome(_parsed(read.parse, 1), _parsed(columnar.parse_time_series, page.time_series[1]))


def _same_outcome(a: list[RawSeries] | str, b: list[RawSeries] | str) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        same_parse(a, b)


_values = st.one_of(
    st.builds(lambda v: _field(3, protowire.I64, v) if v else b"", st.floats(allow_nan=False)),
    st.builds(lambda v: _field(2, protowire.VARINT, v), st.integers(-(2**63), 2**63 - 1)),
    st.builds(lambda c, packed, o: _distribution(c, packed=packed, options=o),
              st.lists(st.integers(0, 2**63 - 1), max_size=5), st.booleans(), st.sampled_from([_LINEAR, _EXPLICIT])),
)


@st.composite
def _wire_pages(draw: st.DrawFn) -> bytes:
    series = []
    for _ in range(draw(st.integers(1, 3))):
        distribution = draw(st.booleans())
        values = _values if not distribution else _values.filter(lambda v: v.startswith(b"\x2a"))
        points = [
            _point(T0 - 60 * i, draw(values), start=draw(st.sampled_from([None, T0 - 60 * i - 60, 0])),
                   nanos=draw(st.sampled_from([0, 1, 999_999_999])), unknown=draw(st.integers(0, 5)) == 0,
                   value_first=draw(st.booleans()))
            for i in range(draw(st.integers(1, 40)))
        ]
        series.append(_series("request_latencies" if distribution else "request_count",
                              _DIST if distribution else _DOUBLE, points, unknown=draw(st.booleans())))
    return b"".join(series)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_wire_pages())
def test_page_decoder_equals_exact_reader_on_random_wire_pages(data: bytes) -> None:
    page = monitoring_v3.ListTimeSeriesResponse.pb().FromString(data)
    for read in (columnar.Page(page), columnar.Page.from_wire(data)):
        assert read.columns is not None
        for index, series in enumerate(page.time_series):
            assert read.columns.share(index) is not None
            _same_outcome(_parsed(read.parse, index), _parsed(columnar.parse_time_series, series))
    check_page(page)


def test_walk_reads_any_field_order_and_packed_or_unpacked() -> None:
    """What the runtime accepts but never writes: fields out of order, unpacked repeated counts
    mixed with packed ones, a field the runtime would take as unknown for its wire type."""
    messages = [
        _field(7, protowire.VARINT, 5) + _len(7, _varint(6) + _varint(2**40)) + _field(1, protowire.VARINT, 3),
        _field(1, protowire.I64, 1.0) + _len(7, b"") + _field(7, protowire.VARINT, -1) + _field(2, protowire.I64, 0.5),
    ]
    buf = protowire.padded(b"".join(messages))
    starts = np.array([0, len(messages[0])])
    fields = protowire.walk(buf, starts, starts + [len(m) for m in messages])
    present, value, _ = fields.one(1, protowire.VARINT)
    assert present.tolist() == [True, False] and value[0] == 3  # the I64 field 1 is not this field
    flat, buckets = columnar._bucket_counts(buf, fields)
    assert buckets.tolist() == [3, 1]
    assert flat.tolist() == [5.0, 6.0, float(2**40), -1.0]


def test_wire_page_reads_points_split_by_another_field_the_exact_way() -> None:
    """The runtime takes points wherever they are in a series; when another field sits among them the
    wire reader cannot cut the series' header out around one run, so that series is read exactly."""
    points = [_point(T0 + 60 * i, _field(2, protowire.VARINT, i)) for i in range(30, 0, -1)]
    data = _series("request_count", _INT64, [*points[:12], _len(8, b"1"), *points[12:]])
    data += _SHAPES["negative and huge int64s"]
    page = monitoring_v3.ListTimeSeriesResponse.pb().FromString(data)
    wire = columnar.Page.from_wire(data)
    assert wire.columns is not None and wire.columns.share(0) is None and wire.columns.share(1) is not None
    for index, series in enumerate(page.time_series):
        same_parse(wire.parse(index, source="s"), columnar.parse_time_series(series, source="s"))
    check_page(page)


def test_wire_page_of_bytes_that_do_not_parse() -> None:
    """Truncated bytes: DecodeError from the page, as the client's parse would fail; a series whose own
    bytes do not parse is a malformed series (a Problem), its neighbour still read."""
    good = _SHAPES["negative and huge int64s"]
    with pytest.raises(DecodeError):
        columnar.Page.from_wire(good + b"\x12\x05ab")  # a next_page_token running past the end
    broken = _len(1, _len(1, b"\x0a\x05ab"))  # a metric whose type runs past its message
    wire = columnar.Page.from_wire(broken + good)
    assert isinstance(_parsed(wire.parse, 0), str)
    page = monitoring_v3.ListTimeSeriesResponse.pb().FromString(good)
    same_parse(wire.parse(1, source="s"), columnar.parse_time_series(page.time_series[0], source="s"))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(2, 60), st.data())
def test_template_rows_fit_by_words_as_by_bytes(length: int, count: int, data: Any) -> None:
    """A template's fit test reads whole 8-byte words (the row runs into the next point's bytes); it
    must agree with comparing the row's own bytes one by one."""
    draw = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    width = -(-length // columnar.WORD) * columnar.WORD
    rows = np.tile(draw.integers(0, 256, width, dtype=np.uint8), (count, 1))
    changed = draw.random((count, width)) < 0.02  # a few bytes differ, inside the point or past its end
    rows[changed] = draw.integers(0, 256, int(changed.sum()), dtype=np.uint8)
    compared = draw.choice(np.array([0, 0x80, 0xFF], np.uint8), length)
    template = columnar._Template(compared, None, (0, 1), 0, (0, 0), None)
    by_bytes = ~(((rows[:, :length] ^ rows[0, :length]) & compared) != 0).any(axis=1)
    assert np.array_equal(template.fit(rows), by_bytes)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 2**64 - 1) | st.integers(0, 300), min_size=1, max_size=80))
def test_varints_at_many_positions_equal_the_one_by_one_reader(values: list[int]) -> None:
    """Varints of every length side by side (most one byte, a few up to ten) read at once."""
    data = b"".join(_varint(v) for v in values)
    buf = protowire.padded(data)
    positions, at = [], 0
    for _ in values:
        positions.append(at)
        at = protowire._varint(data, at)[1]
    read, after = protowire.varints_at(buf, np.array(positions, np.int64))
    assert read.tolist() == values
    assert after.tolist() == [*positions[1:], len(data)]
