"""Cloud Monitoring ``ListTimeSeriesResponse`` protobuf pages straight into column arrays.

The live path's parser. A page holds up to 100,000 points; converting it to REST JSON dicts first
and then reading the dicts (what ``fetch --snapshot`` must write anyway) costs ~20× what receiving
the page costs, and reading each point through the protobuf runtime (``parse_time_series``, about a
microsecond per submessage) still ~10×. So ``Page`` reads the page's wire bytes with numpy:

1. the page's bytes, as they came off the wire (``Page.from_wire``, the report's path through
   ``sources/rawpages.py``) or serialized once from the client's message (``Page``, when ``fetch``
   needs the messages for REST JSON), and the points of every series located at once
   (``protowire.records``);
2. points that share a layout with others of their length (the usual case: aligned points differ
   only in their values) are read from the same byte columns, all at once (``_Template``): seconds,
   doubles, int64s, a distribution's count, mean, range and bucket counts;
3. the rest are walked field by field, every point side by side (``protowire.walk``): zeros left
   out, any field order, unknown fields, short bucket counts, packed or not;
4. a series with anything else (a group, a string value, a point without an end time) is left to
   ``parse_time_series``, the exact reader, which also says what is wrong with it.

The result is the same ``RawSeries`` that ``restjson.parse_time_series`` makes of the page's REST
JSON (``tests/test_columnar.py`` checks the equality on generated pages, on wire shapes written byte
by byte and on the fakes' real responses), so live, snapshot and demo data meet in one
representation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
from google.api.distribution_pb2 import Distribution
from google.cloud import monitoring_v3
from google.protobuf.message import DecodeError

from analyzer.model import METRIC_KINDS, VALUE_TYPES, Histograms, RawSeries
from analyzer.sources import protowire as pw
from analyzer.sources.restjson import METRIC_PREFIX, bucket_bounds

_DISTRIBUTION = VALUE_TYPES.index("DISTRIBUTION")
_SCALAR_FIELDS = ("double_value", "int64_value", "bool_value")
BucketOptions = Distribution.BucketOptions


def _times(points: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) epoch seconds per point; a point without a start time starts at its end."""
    intervals = [p.interval for p in points]
    ends = np.fromiter((i.end_time.seconds for i in intervals), np.int64, n)
    starts = np.fromiter((i.start_time.seconds for i in intervals), np.int64, n)
    unset = starts == 0
    if unset.any():
        # 0 is also 1970-01-01T00:00:00Z, written when the field is present: ask only those points.
        for index in np.flatnonzero(unset):
            if not intervals[index].HasField("start_time"):
                starts[index] = ends[index]
    missing = ends == 0
    if missing.any() and any(not intervals[i].HasField("end_time") for i in np.flatnonzero(missing)):
        raise ValueError("a point has no interval.endTime")
    return starts, ends


def _scalars(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for index, value in enumerate(values):
        which = value.WhichOneof("value")
        if which in _SCALAR_FIELDS:
            out[index] = float(getattr(value, which))
        elif which is None:  # an empty TypedValue: proto3 zero
            out[index] = 0.0
        else:
            raise ValueError(f"unsupported point value {which}")
    return out


def _layout_key(dist: Any, cache: dict[bytes, str]) -> str:
    if not dist.bucket_counts or not dist.HasField("bucket_options"):
        return ""
    raw = dist.bucket_options.SerializeToString(deterministic=True)
    key = cache.get(raw)
    if key is None:
        key = cache[raw] = "b" + raw.hex()  # never "": an empty BucketOptions still has buckets
    return key


def _histograms(dists: list[Any]) -> Iterator[tuple[np.ndarray, Histograms]]:
    """Distribution values as column arrays, one Histograms per bucket layout met (usually one)."""
    cache: dict[bytes, str] = {}
    keys = [_layout_key(d, cache) for d in dists]
    layouts: dict[str, list[int]] = {}
    for index, key in enumerate(keys):
        layouts.setdefault(key, []).append(index)
    for key, members in layouts.items():
        chosen = [dists[i] for i in members]
        n = len(chosen)
        if key:
            bounds = bucket_bounds_of(chosen[0].bucket_options)
            width = len(bounds) + 1
            lengths = np.fromiter((len(d.bucket_counts) for d in chosen), np.int64, n)
            if lengths.max() > width:
                raise ValueError(f"{int(lengths.max())} bucketCounts for {width} buckets")
            flat = np.fromiter(chain.from_iterable(d.bucket_counts for d in chosen), np.float64, int(lengths.sum()))
            counts = np.zeros((n, width))
            rows = np.repeat(np.arange(n), lengths)
            columns = np.arange(len(flat)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            counts[rows, columns] = flat  # missing trailing counts are 0
            count = np.fromiter((d.count for d in chosen), np.float64, n)
        else:
            bounds = np.empty(0)
            count = np.fromiter((d.count for d in chosen), np.float64, n)
            counts = count[:, None].copy()
        mean = np.fromiter((d.mean for d in chosen), np.float64, n)
        has_range = np.fromiter((d.HasField("range") for d in chosen), bool, n)
        low = np.full(n, np.nan)
        high = np.full(n, np.nan)
        for row in np.flatnonzero(has_range):
            low[row], high[row] = chosen[row].range.min, chosen[row].range.max
        yield np.asarray(members), Histograms(bounds, counts, count, mean, low, high)


def bucket_bounds_of(options: Any) -> np.ndarray:
    """The finite bucket boundaries of a ``BucketOptions`` message (the REST reader's rules)."""
    which = options.WhichOneof("options")
    if which == "linear_buckets":
        o = options.linear_buckets
        return bucket_bounds({"linearBuckets": {"numFiniteBuckets": o.num_finite_buckets, "width": o.width,
                                                "offset": o.offset}})
    if which == "exponential_buckets":
        o = options.exponential_buckets
        return bucket_bounds({"exponentialBuckets": {"numFiniteBuckets": o.num_finite_buckets,
                                                     "growthFactor": o.growth_factor, "scale": o.scale}})
    if which == "explicit_buckets":
        return bucket_bounds({"explicitBuckets": {"bounds": list(options.explicit_buckets.bounds)}})
    raise ValueError("unknown bucketOptions []")


def metric_type(series: Any) -> str:
    """The ``metric.type`` of a ``TimeSeries`` message, as the API names it."""
    return str(series.metric.type)


def parse_time_series(series: Any, *, source: str) -> list[RawSeries]:
    """One ``TimeSeries`` protobuf message (one RawSeries per bucket layout in it); ValueError on
    anything malformed. Equal to ``restjson.parse_time_series`` of the message's REST JSON.

    The exact reader, point by point through the protobuf runtime: ``Page`` reads whole pages
    column-wise and falls back to this for whatever it leaves alone."""
    points = series.points[::-1]  # the API returns newest first
    n = len(points)
    starts, ends = _times(points, n)
    values = [p.value for p in points]
    is_distribution = any(v.WhichOneof("value") == "distribution_value" for v in values)
    identity = _identity(series, is_distribution, source)
    if identity["value_type"] != "DISTRIBUTION":
        return _scalar_series(identity, starts, ends, _scalars(values))
    return _distribution_series(identity, starts, ends, _histograms([v.distribution_value for v in values]))


def _identity(series: Any, has_distribution: bool, source: str) -> dict[str, Any]:
    """The RawSeries fields that are not points."""
    value_type = VALUE_TYPES[series.value_type] if series.value_type < len(VALUE_TYPES) else str(series.value_type)
    is_distribution = series.value_type == _DISTRIBUTION or has_distribution
    labels = series.resource.labels
    return {
        "metric": series.metric.type.removeprefix(METRIC_PREFIX),
        # An unset kind is omitted from REST JSON, which the REST reader takes as GAUGE: so here too.
        "metric_kind": METRIC_KINDS[series.metric_kind] if 0 < series.metric_kind < len(METRIC_KINDS)
        else ("GAUGE" if series.metric_kind == 0 else str(series.metric_kind)),
        "value_type": "DISTRIBUTION" if is_distribution else (value_type if series.value_type else "DOUBLE"),
        "project": labels.get("project_id", ""),
        "region": labels.get("location", ""),
        "service": labels.get("service_name", ""),
        "revision": labels.get("revision_name", ""),
        "metric_labels": dict(series.metric.labels),
        "source": source,
    }


def _scalar_series(identity: dict[str, Any], starts: np.ndarray, ends: np.ndarray,
                   values: np.ndarray) -> list[RawSeries]:
    """Points oldest first (in API order, reversed, they are newest first)."""
    order = np.argsort(ends, kind="stable")
    return [RawSeries(**identity, start_times=starts[order], end_times=ends[order], values=values[order])]


def _distribution_series(identity: dict[str, Any], starts: np.ndarray, ends: np.ndarray,
                         layouts: Iterable[tuple[np.ndarray, Histograms]]) -> list[RawSeries]:
    out = []
    for index, hist in layouts:
        order = np.argsort(ends[index], kind="stable")
        out.append(RawSeries(
            **identity,
            start_times=starts[index][order],
            end_times=ends[index][order],
            histograms=Histograms(hist.bounds, hist.counts[order], hist.count[order], hist.mean[order],
                                  hist.range_min[order], hist.range_max[order]),
        ))
    return out


# ---------------------------------------------------------------------------------------------
# Whole pages, column-wise (protowire): what the live path uses


_POINTS_TAG = 0x2A  # TimeSeries.points: field 5, LEN
# TypedValue's oneof, by field number: bool 1, int64 2 (VARINT), double 3 (I64), string 4, distribution 5 (LEN)
_BOOL, _INT64, _DOUBLE, _STRING, _DIST = 1, 2, 3, 4, 5
_VALUE_WIRES = {_BOOL: pw.VARINT, _INT64: pw.VARINT, _DOUBLE: pw.I64, _STRING: pw.LEN, _DIST: pw.LEN}


class Page:
    """One ``ListTimeSeriesResponse`` page, its points read column-wise.

    ``Page(message)``: a page the protobuf runtime has parsed (the client's message; ``fetch
    --snapshot`` needs it for the REST JSON), serialized once (C speed) to be read here.
    ``Page.from_wire(data)``: the page's bytes as they came off the wire (``sources/rawpages.py``), which
    no one has parsed: only the small parts the column reader does not read (the page's token and
    execution errors, each series' labels and kinds) go through the runtime, and its points never do.

    ``parse`` cuts each series' share of the columns. A series the column reader leaves alone
    (``protowire.Unusual``: a group, a doubled field; or anything the exact reader would reject) is
    read by ``parse_time_series``, so the result is always that reader's, only faster.
    """

    def __init__(self, page: Any) -> None:
        self.next_page_token: str = page.next_page_token
        self.execution_errors: list[Any] = list(page.execution_errors)
        self._messages = page.time_series
        self._headers: dict[int, Any] = {}
        self._data = page.SerializeToString()
        try:
            self._spans = _split_page(self._data)[0]
        except pw.Unusual:
            self._spans = []
        self.columns = None
        if len(self._spans) == len(self._messages):  # else the series are not where the runtime has them
            self.columns = self._read(lambda index: len(self._messages[index].points))

    @classmethod
    def from_wire(cls, data: bytes) -> Page:
        """A page from its wire bytes; DecodeError when they are not a ListTimeSeriesResponse."""
        try:
            series, rest = _split_page(data)
        except pw.Unusual:  # a group or the like at the top: let the runtime read the whole page
            return cls(_RESPONSE.FromString(data))
        head = _RESPONSE.FromString(rest)  # the token, execution errors, unit: all but the series
        page = cls.__new__(cls)
        page.next_page_token, page.execution_errors = head.next_page_token, list(head.execution_errors)
        page._messages, page._headers, page._data, page._spans = None, {}, data, series
        page.columns = page._read(None)
        return page

    def _read(self, count: Callable[[int], int] | None) -> _Columns | None:
        try:
            return _Columns.read(self._data, count, self._spans)
        except pw.Unusual:
            return None

    @property
    def indices(self) -> range:
        return range(len(self._spans) if self._messages is None else len(self._messages))

    def metric_type(self, index: int) -> str:
        return metric_type(self._header(index))

    def parse(self, index: int, *, source: str) -> list[RawSeries]:
        """Series ``index`` of the page, as ``parse_time_series`` reads it."""
        share = self.columns.share(index) if self.columns is not None else None
        if share is None:
            return parse_time_series(self._series(index), source=source)
        try:
            return share.series(self._header(index), source)
        except _Exact:
            return parse_time_series(self._series(index), source=source)

    def _series(self, index: int) -> Any:
        """The whole ``TimeSeries`` message (the exact reader's input)."""
        if self._messages is not None:
            return self._messages[index]
        try:
            series = _TIME_SERIES.FromString(self._data[slice(*self._spans[index])])
        except DecodeError as exc:
            raise ValueError(f"the series' bytes do not parse: {exc}") from exc
        self._headers[index] = series  # it is also the series' header: parsed once
        return series

    def _header(self, index: int) -> Any:
        """The series without its points, for its labels and kinds: cut out of the wire bytes when
        the points are one run there (parsing the points too is what this reader exists to avoid)."""
        if self._messages is not None:
            return self._messages[index]
        header = self._headers.get(index)
        if header is None:
            run = self.columns.runs.get(index) if self.columns is not None else None
            if run is None:
                header = self._series(index)
            else:
                (a, b), (first, last) = self._spans[index], run
                header = _TIME_SERIES.FromString(self._data[a:first] + self._data[last:b])
            self._headers[index] = header
        return header


_RESPONSE = monitoring_v3.ListTimeSeriesResponse.pb()
_TIME_SERIES = monitoring_v3.TimeSeries.pb()


def _split_page(data: bytes) -> tuple[list[tuple[int, int]], bytes]:
    """(each series' payload span, every other top-level field's bytes in wire order)."""
    series, rest = [], []
    for number, wire, value, after, at in pw.fields_of(data, 0, len(data)):
        if (number, wire) == (1, pw.LEN):
            series.append((value, after))
        else:
            rest.append(data[at:after])
    return series, b"".join(rest)


class _Exact(Exception):
    """This series is for the exact reader (it may well raise the error the user must see)."""


@dataclass
class _Columns:
    """Every point of a page: times, scalar values and distributions, in page order."""

    chains: dict[int, tuple[int, int]]  # series index -> its points [a, b)
    runs: dict[int, tuple[int, int]]  # series index -> where its points' bytes start and end in the page
    starts: np.ndarray
    ends: np.ndarray
    has_end: np.ndarray
    kind: np.ndarray  # the TypedValue oneof's field number (0: none)
    scalars: np.ndarray
    dists: _Distributions

    @classmethod
    def read(cls, data: bytes, count: Callable[[int], int] | None, spans: list[tuple[int, int]]) -> _Columns:
        """``count``: how many points series i has, when the runtime knows (None: found in the bytes);
        ``spans``: each series' payload in ``data``."""
        buf = pw.padded(data)
        chains, runs, starts, ends = _points(data, buf, count, spans)
        n = len(starts)
        start_s, end_s, kind = (np.zeros(n, np.int64) for _ in range(3))
        has_start, has_end, scalars = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n)
        dist_of = np.full((n, 2), -1, np.int64)
        blocks: list[_DistBlock] = []
        walked = _read_by_template(data, buf, starts, ends, (start_s, end_s, has_start, has_end, kind, scalars),
                                   blocks)
        fields = pw.walk(buf, starts[walked], ends[walked])
        has_interval, interval_at, interval_end = fields.one(1, pw.LEN)
        has_value, value_at, value_end = fields.one(2, pw.LEN)
        start_s[walked], end_s[walked], has_start[walked], has_end[walked] = _intervals(
            buf, has_interval, interval_at, interval_end)
        kind[walked], scalars[walked], dist_of[walked] = _values(buf, has_value, value_at, value_end)
        dists = _Distributions.read(buf, dist_of, blocks)
        return cls(chains, runs, np.where(has_start, start_s, end_s), end_s, has_end, kind, scalars, dists)

    def share(self, index: int) -> _Share | None:
        span = self.chains.get(index)
        return None if span is None else _Share(self, slice(span[1] - 1, span[0] - 1 if span[0] else None, -1))


@dataclass
class _Share:
    """One series' points in a page's columns (newest first there, so the slice runs backwards)."""

    columns: _Columns
    points: slice

    def series(self, message: Any, source: str) -> list[RawSeries]:
        c, at = self.columns, self.points
        kind = c.kind[at]
        if not c.has_end[at].all():
            raise _Exact("a point has no interval.endTime")
        identity = _identity(message, bool((kind == _DIST).any()), source)
        if identity["value_type"] != "DISTRIBUTION":
            if (kind == _STRING).any():
                raise _Exact("a string value")
            return _scalar_series(identity, c.starts[at], c.ends[at], c.scalars[at])
        return _distribution_series(identity, c.starts[at], c.ends[at], c.dists.layouts(c.dists.of_point[at]))


def _points(data: bytes, buf: np.ndarray, count: Callable[[int], int] | None, spans: list[tuple[int, int]]
            ) -> tuple[dict[int, tuple[int, int]], dict[int, tuple[int, int]], np.ndarray, np.ndarray]:
    """Where each series' points are: ({series: [a, b) in the returned payload starts and ends},
    {series: its points' bytes [first tag, end)}, payload starts, payload ends)."""
    chosen, firsts, limits, counts = [], [], [], []
    for index, (a, b) in enumerate(spans):
        first = next((at for number, wire, _, _, at in pw.fields_of(data, a, b) if (number, wire) == (5, pw.LEN)), None)
        if first is not None and data[first] == _POINTS_TAG:
            chosen.append(index)
            firsts.append(first)
            limits.append(b)
            counts.append(count(index) if count is not None else 0)
    starts, ends, chain, complete = pw.records(
        buf, np.array(firsts, np.int64), np.array(limits, np.int64), _POINTS_TAG,
        np.array(counts, np.int64) if count is not None else None, b"\x0a\x12")
    bounds = np.searchsorted(chain, np.arange(len(chosen) + 1))
    chains, runs = {}, {}
    for k, index in enumerate(chosen):
        a, b = int(bounds[k]), int(bounds[k + 1])
        # The points must be one run: no more of them after the chain (the runtime writes them together).
        if complete[k] and b > a and all(
            number != 5 for number, *_ in pw.fields_of(data, int(ends[b - 1]), limits[k])
        ):
            chains[index] = (a, b)
            runs[index] = (firsts[k], int(ends[b - 1]))
    return chains, runs, starts, ends


@dataclass
class _DistBlock:
    """Distribution values read by one template: every point's columns, the options they share."""

    points: np.ndarray
    count: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    options: bytes | None  # the BucketOptions' bytes, None when absent
    counts: np.ndarray  # points x bucket counts (one byte each when they fit, else float)


Span = tuple[int, int]  # columns [a, b) of a point's bytes


@dataclass
class _DistTemplate:
    count: Span | None
    mean: Span | None
    low: Span | None
    high: Span | None
    has_range: bool
    options: bytes | None
    counts: list[Span]

    def read(self, rows: np.ndarray, points: np.ndarray) -> _DistBlock:
        def doubles(span: Span | None, default: float) -> np.ndarray:
            return np.full(len(rows), default) if span is None else _column_double(rows, span)

        count = np.zeros(len(rows)) if self.count is None else _column_varint(rows, *self.count).astype(np.float64)
        no_range = np.nan if not self.has_range else 0.0
        if all(b - a == 1 for a, b in self.counts):  # every count one byte: a slice of the rows
            first = self.counts[0][0] if self.counts else 0
            counts = rows[:, first : first + len(self.counts)].copy()  # bytes: made float per series
        else:
            counts = np.stack([_column_varint(rows, a, b).astype(np.float64) for a, b in self.counts], axis=1)
        return _DistBlock(points, count, doubles(self.mean, 0.0), doubles(self.low, no_range),
                          doubles(self.high, no_range), self.options, counts)


@dataclass
class _Template:
    """Where a point's leaves sit in its bytes, learnt from one point: every point of the same length
    whose other bytes (tags, lengths, bucket options) and varint lengths are the same reads from the
    same columns, all at once."""

    compared: np.ndarray  # per column, the bits that must equal the first point's: all but a value's;
    # a varint's continuation bit (so that it has the same length)
    start: Span | None  # start_time.seconds' columns ((0, 0): present but 0; None: absent)
    end: Span
    kind: int  # the TypedValue oneof's field number, 0 for none
    value: Span
    dist: _DistTemplate | None

    @classmethod
    def learn(cls, data: bytes, a: int, b: int) -> _Template | None:
        """The template of the point ``data[a:b]``, or None if it is not a plain point."""
        top = _only(data, a, b, {(1, pw.LEN), (2, pw.LEN)})
        if top is None or (1, pw.LEN) not in top:
            return None
        interval = _only(data, *top[(1, pw.LEN)], {(1, pw.LEN), (2, pw.LEN)})
        value = _only(data, *top.get((2, pw.LEN), (a, a)),
                      {(_BOOL, pw.VARINT), (_INT64, pw.VARINT), (_DOUBLE, pw.I64), (_DIST, pw.LEN)})
        if interval is None or value is None or len(value) > 1 or (2, pw.LEN) not in interval:
            return None
        compared = np.full(b - a, 0xFF, np.uint8)
        stamps: list[Span | None] = []
        for which in (1, 2):
            stamp = _only(data, *interval.get((which, pw.LEN), (a, a)), {(1, pw.VARINT), (2, pw.VARINT)})
            if stamp is None:
                return None
            for at, after in stamp.values():
                compared[at - a : after - a] = 0x80
            present = (which, pw.LEN) in interval
            seconds = stamp.get((1, pw.VARINT))
            stamps.append(None if not present else (0, 0) if seconds is None else (seconds[0] - a, seconds[1] - a))
        kind, (at, after) = next(((number, span) for (number, _), span in value.items()), (0, (a, a)))
        dist = None
        if kind == _DIST:
            dist = _learn_distribution(data, at, after, a, compared)
            if dist is None:
                return None
        else:
            compared[at - a : after - a] = 0x80 if kind in (_BOOL, _INT64) else 0
        end = stamps[1]
        assert end is not None
        return cls(compared, stamps[0], end, kind, (at - a, after - a), dist)

    def fit(self, rows: np.ndarray) -> np.ndarray:
        """Which rows have the first row's bytes wherever ``compared`` says: compared eight bytes at a
        time, one word column after another (a reduction across each row's bytes cost six times more)."""
        mask = np.zeros(rows.shape[1], np.uint8)
        mask[: len(self.compared)] = self.compared
        words, mask_words = rows.view(np.uint64), mask.view(np.uint64)
        differ = np.zeros(len(rows), np.uint64)
        for column in np.flatnonzero(mask_words).tolist():
            differ |= (words[:, column] ^ words[0, column]) & mask_words[column]
        fits: np.ndarray = differ == 0
        return fits

    def read(self, rows: np.ndarray, out: tuple[np.ndarray, ...], points: np.ndarray,
             blocks: list[_DistBlock]) -> np.ndarray:
        """Read the rows (one point each, ``WORD``-byte wide with the next point's first bytes after it)
        that fit; returns which did."""
        fits = self.fit(rows)
        if not fits.all():
            rows, points = rows[fits], points[fits]
        start_s, end_s, has_start, has_end, kind, scalars = out
        if self.start is not None:
            start_s[points], has_start[points] = _column_varint(rows, *self.start), True
        end_s[points], has_end[points] = _column_varint(rows, *self.end), True
        kind[points] = self.kind
        if self.kind == _DOUBLE:
            scalars[points] = _column_double(rows, self.value)
        elif self.kind == _INT64:
            scalars[points] = _column_varint(rows, *self.value).astype(np.float64)
        elif self.kind == _BOOL:
            scalars[points] = _column_varint(rows, *self.value) != 0
        elif self.dist is not None:
            blocks.append(self.dist.read(rows, points))
        return fits


def _learn_distribution(data: bytes, a: int, b: int, point: int, compared: np.ndarray) -> _DistTemplate | None:
    """A Distribution without exemplars or unpacked counts; marks its value bytes in ``compared``."""
    fields = _only(data, a, b, {(1, pw.VARINT), (2, pw.I64), (3, pw.I64), (4, pw.LEN), (6, pw.LEN), (7, pw.LEN)})
    if fields is None:
        return None
    bounds: dict[tuple[int, int], Span] = {}
    if (4, pw.LEN) in fields:
        bounds = _only(data, *fields[(4, pw.LEN)], {(1, pw.I64), (2, pw.I64)}) or {}
        if (4, pw.LEN) in fields and len(bounds) != len(list(pw.fields_of(data, *fields[(4, pw.LEN)]))):
            return None

    def span(found: dict[tuple[int, int], Span], key: tuple[int, int], bits: int) -> Span | None:
        if key not in found:
            return None
        at, after = found[key]
        compared[at - point : after - point] = bits
        return at - point, after - point

    count = span(fields, (1, pw.VARINT), 0x80)
    mean = span(fields, (2, pw.I64), 0)
    span(fields, (3, pw.I64), 0)  # sum_of_squared_deviation: not read
    low, high = span(bounds, (1, pw.I64), 0), span(bounds, (2, pw.I64), 0)
    packed = span(fields, (7, pw.LEN), 0x80)
    counts: list[Span] = []
    if packed is not None:
        ends = [i + 1 for i in range(*packed) if data[point + i] < 0x80]
        counts = list(zip([packed[0], *ends[:-1]], ends, strict=True))
    options = fields.get((6, pw.LEN))
    return _DistTemplate(count, mean, low, high, (4, pw.LEN) in fields,
                         None if options is None else data[options[0] : options[1]], counts)


def _only(data: bytes, a: int, b: int, allowed: set[tuple[int, int]]) -> dict[tuple[int, int], tuple[int, int]] | None:
    """{(number, wire): (value start, end)} of a message holding only allowed fields, each once."""
    found: dict[tuple[int, int], tuple[int, int]] = {}
    for number, wire, value, after, at in pw.fields_of(data, a, b):
        key = (number, wire)
        if key not in allowed or key in found:
            return None
        found[key] = (value if wire == pw.LEN else at + 1, after)  # one-byte tags: field numbers < 16
    return found


def _column_double(rows: np.ndarray, span: Span) -> np.ndarray:
    return np.ascontiguousarray(rows[:, span[0] : span[1]]).view("<f8").ravel().astype(np.float64)


def _column_varint(rows: np.ndarray, a: int, b: int) -> np.ndarray:
    """The varints at columns [a, b) of every row (all of that length), as int64."""
    value = np.zeros(len(rows), np.uint64)
    for digit in range(b - a):
        value |= (rows[:, a + digit] & 0x7F).astype(np.uint64) << np.uint64(7 * digit)
    return pw.signed(value)


WORD = 8  # template rows are this many bytes wide a piece (uint64), so that they compare word by word
assert pw.PAD >= WORD - 1
_TEMPLATE_MIN = 16  # fewer points of one length are not worth learning a template


def _read_by_template(data: bytes, buf: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                      out: tuple[np.ndarray, ...], blocks: list[_DistBlock]) -> np.ndarray:
    """Read the points that share a layout with others of their length; returns the indices of the
    points left for the walk (odd ones out)."""
    lengths = ends - starts
    left = np.ones(len(starts), bool)
    if not len(starts) or lengths.max() >= 1 << 15:
        return np.flatnonzero(left)
    order = np.argsort(lengths.astype(np.int16), kind="stable")
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    for group in np.split(order, cuts):
        if len(group) < _TEMPLATE_MIN:
            continue
        first = int(group[0])
        template = _Template.learn(data, int(starts[first]), int(ends[first]))
        if template is None:
            continue
        width = -(-int(lengths[first]) // WORD) * WORD  # whole words; the data's padding holds the overrun
        rows = np.lib.stride_tricks.sliding_window_view(buf, width)[starts[group]]  # rows, not bytes
        left[group[template.read(rows, out, group, blocks)]] = False
    return np.flatnonzero(left)


def _intervals(buf: np.ndarray, has: np.ndarray, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """(start seconds, end seconds, has start_time, has end_time) per point; nanos are not read (the
    exact reader drops them too)."""
    n = len(has)
    fields = pw.walk(buf, at[has].astype(np.int64), end[has])
    stamps = []
    for number in (1, 2):  # start_time, end_time
        present, stamp_at, stamp_end = fields.one(number, pw.LEN)
        seconds_of = pw.walk(buf, stamp_at[present].astype(np.int64), stamp_end[present]).one(1, pw.VARINT)[1]
        seconds = np.zeros(n, np.int64)
        inner = np.zeros(len(present), np.int64)
        inner[present] = pw.signed(seconds_of)
        seconds[has] = inner
        found = np.zeros(n, bool)
        found[has] = present
        stamps.append((seconds, found))
    (start, has_start), (end_s, has_end) = stamps
    return start, end_s, has_start, has_end


def _values(buf: np.ndarray, has: np.ndarray, at: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """(the oneof's field number, the scalar value as float, the distribution's (start, end) or -1)."""
    n = len(has)
    fields = pw.walk(buf, at[has].astype(np.int64), end[has])
    inner_kind = np.zeros(int(has.sum()), np.int64)
    inner_value = np.zeros(len(inner_kind))
    dist_at = np.full((len(inner_kind), 2), -1, np.int64)
    for number, wire in _VALUE_WIRES.items():
        present, value, value_end = fields.one(number, wire)
        if (inner_kind[present] != 0).any():
            raise pw.Unusual("two members of a oneof")  # the runtime keeps the last; not worth a path
        inner_kind[present] = number
        if number == _BOOL:
            inner_value[present] = value[present] != 0
        elif number == _INT64:
            inner_value[present] = pw.signed(value[present]).astype(np.float64)
        elif number == _DOUBLE:
            inner_value[present] = pw.fixed64_at(buf, value[present].astype(np.int64))
        elif number == _DIST:
            dist_at[present, 0], dist_at[present, 1] = value[present].astype(np.int64), value_end[present]
    kind, scalars, dist = np.zeros(n, np.int64), np.zeros(n), np.full((n, 2), -1, np.int64)
    kind[has], scalars[has], dist[has] = inner_kind, inner_value, dist_at
    return kind, scalars, dist


@dataclass
class _Distributions:
    """Every distribution value of a page, by point (points without one read as an empty one)."""

    of_point: np.ndarray  # row in the arrays below, or -1
    count: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    layout: np.ndarray  # index into layouts, or -1 (no bucket counts, or no bucket options)
    bounds: list[np.ndarray | None]  # per layout (None: options the exact reader rejects)
    bucket_start: np.ndarray  # each distribution's counts: flat[bucket_start : bucket_start + buckets]
    buckets: np.ndarray
    flat: np.ndarray

    @classmethod
    def read(cls, buf: np.ndarray, dist_at: np.ndarray, blocks: list[_DistBlock]) -> _Distributions:
        """The walked distributions (``dist_at``: payload (start, end) per point, or -1) then the
        templates' blocks, then one empty distribution for the points without one."""
        has = dist_at[:, 0] >= 0
        walked = int(has.sum())
        of_point = np.full(len(has), walked + sum(len(b.points) for b in blocks), np.int64)
        of_point[has] = np.arange(walked)
        fields = pw.walk(buf, dist_at[has, 0], dist_at[has, 1])
        count = pw.signed(fields.one(1, pw.VARINT)[1]).astype(np.float64)
        has_mean, mean_at, _ = fields.one(2, pw.I64)
        mean = np.zeros(fields.count)
        mean[has_mean] = pw.fixed64_at(buf, mean_at[has_mean].astype(np.int64))
        low, high = _ranges(buf, fields)
        flat, buckets = _bucket_counts(buf, fields)
        book = _LayoutBook()
        layout = book.walked(buf, fields, buckets)
        columns = [[count], [mean], [low], [high], [layout], [flat], [buckets]]
        row = walked
        for block in blocks:
            of_point[block.points] = np.arange(row, row + len(block.points))
            row += len(block.points)
            width = block.counts.shape[1]
            key = book.id_of(block.options) if block.options is not None and width else -1
            for column, values in zip(columns, (block.count, block.mean, block.low, block.high,
                                                np.full(len(block.points), key), block.counts.ravel(),
                                                np.full(len(block.points), width)), strict=True):
                column.append(values)
        for column, empty in zip(columns, (0.0, 0.0, np.nan, np.nan, -1, None, 0), strict=True):
            if empty is not None:
                column.append(np.array([empty]))
        count, mean, low, high, layout, flat, buckets = (_joined(c) for c in columns)
        buckets = buckets.astype(np.int64)
        return cls(of_point, count, mean, low, high, layout.astype(np.int64), book.bounds,
                   np.cumsum(buckets) - buckets, buckets, flat)

    def layouts(self, rows: np.ndarray) -> Iterator[tuple[np.ndarray, Histograms]]:
        """The ``_histograms`` of these distributions, one per layout met."""
        layout, count = self.layout[rows], self.count[rows]
        met, first = np.unique(layout, return_index=True)
        groups = []
        for key in met[np.argsort(first)]:  # in order of first appearance, as _histograms groups
            members = np.flatnonzero(layout == key)
            bounds = np.empty(0) if key < 0 else self.bounds[key]
            if bounds is None:
                raise _Exact("bucket options the exact reader rejects")
            chosen = rows[members]
            counts = count[members][:, None].copy() if key < 0 else self._counts(chosen, len(bounds) + 1)
            groups.append((members, Histograms(bounds, counts, count[members], self.mean[chosen],
                                               self.low[chosen], self.high[chosen])))
        return iter(groups)

    def _counts(self, rows: np.ndarray, width: int) -> np.ndarray:
        lengths = self.buckets[rows]
        if lengths.max(initial=0) > width:
            raise _Exact("more bucket counts than buckets")
        counts = np.zeros((len(rows), width))
        if len(rows) and (lengths == width).all():
            counts[:] = self.flat[(self.bucket_start[rows][:, None] + np.arange(width))]
            return counts
        picked = pw.spans(self.bucket_start[rows], self.bucket_start[rows] + lengths)
        counts[np.repeat(np.arange(len(rows)), lengths), picked - np.repeat(self.bucket_start[rows], lengths)] = (
            self.flat[picked])  # missing trailing counts are 0
        return counts


def _ranges(buf: np.ndarray, fields: pw.Fields) -> tuple[np.ndarray, np.ndarray]:
    """(range.min, range.max) per distribution: NaN without a range, 0.0 for an unset bound."""
    has, at, end = fields.one(4, pw.LEN)
    low, high = np.full(fields.count, np.nan), np.full(fields.count, np.nan)
    inner = pw.walk(buf, at[has].astype(np.int64), end[has])
    for number, out in ((1, low), (2, high)):
        present, value_at, _ = inner.one(number, pw.I64)
        values = np.zeros(inner.count)
        values[present] = pw.fixed64_at(buf, value_at[present].astype(np.int64))
        out[has] = values
    return low, high


def _bucket_counts(buf: np.ndarray, fields: pw.Fields) -> tuple[np.ndarray, np.ndarray]:
    """(every bucket count as float, in distribution then wire order; how many each has). Packed and
    unpacked occurrences may mix, as the runtime accepts."""
    hit = (fields.number == 7) & ((fields.wire == pw.LEN) | (fields.wire == pw.VARINT))
    order = np.flatnonzero(hit)
    if (np.diff(fields.message[order]) < 0).any():  # by distribution, then wire order
        order = order[np.argsort(fields.message[order], kind="stable")]
    packed = fields.wire[order] == pw.LEN
    values, run = pw.packed_varints(buf, fields.value[order][packed].astype(np.int64), fields.end[order][packed])
    rank = np.concatenate((np.flatnonzero(packed)[run], np.flatnonzero(~packed)))
    values = np.concatenate((values, fields.value[order][~packed]))
    if (~packed).any():
        sort = np.argsort(rank, kind="stable")
        values, rank = values[sort], rank[sort]
    owner = fields.message[order][rank]
    return pw.signed(values).astype(np.float64), np.bincount(owner, minlength=fields.count)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """The parts end to end; a lone non-empty part (the usual page: one template) is not copied."""
    filled = [p for p in parts if len(p)]
    return filled[0] if len(filled) == 1 else np.concatenate(parts)


class _LayoutBook:
    """The bucket layouts met in a page: equal options are one layout (as ``_layout_key``), however
    many distributions carry them; bounds per layout, None for options the exact reader rejects."""

    def __init__(self) -> None:
        self.ids: dict[bytes, int] = {}
        self.bounds: list[np.ndarray | None] = []

    def id_of(self, raw: bytes) -> int:
        options = BucketOptions.FromString(raw)
        key = options.SerializeToString(deterministic=True)
        if key not in self.ids:
            self.ids[key] = len(self.bounds)
            try:
                self.bounds.append(bucket_bounds_of(options))
            except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
                self.bounds.append(None)
        return self.ids[key]

    def walked(self, buf: np.ndarray, fields: pw.Fields, buckets: np.ndarray) -> np.ndarray:
        """Each walked distribution's layout (-1 without bucket counts or options)."""
        has, at, end = fields.one(6, pw.LEN)
        keyed = np.flatnonzero(has & (buckets > 0))
        at, end = at[keyed].astype(np.int64), end[keyed]
        layout = np.full(fields.count, -1, np.int64)
        for width in np.unique(end - at):
            same = np.flatnonzero(end - at == width)
            rows = buf[at[same][:, None] + np.arange(width)]
            if (rows == rows[0]).all():  # the usual page: one metric, one layout
                distinct, inverse = rows[:1], np.zeros(len(same), np.int64)
            else:
                distinct, inverse = np.unique(rows, axis=0, return_inverse=True)
            ids = np.asarray([self.id_of(raw.tobytes()) for raw in distinct], np.int64)
            layout[keyed[same]] = ids[inverse.ravel()]
        return layout
