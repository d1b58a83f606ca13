"""Cloud Monitoring ``ListTimeSeriesResponse`` protobuf pages straight into column arrays.

The live path's parser. A page holds up to 100,000 points; converting it to REST JSON dicts first
and then reading the dicts (what ``fetch --snapshot`` must write anyway) costs ~20× what receiving
the page costs. Here each series' points are read once from the protobuf message into numpy
arrays, with no object per point kept. The result is the same ``RawSeries`` that
``restjson.parse_time_series`` makes of the page's REST JSON (``tests/test_columnar.py`` checks the
equality on generated pages and on the fakes' real responses), so live, snapshot and demo data meet
in one representation.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import chain
from typing import Any

import numpy as np

from analyzer.model import METRIC_KINDS, VALUE_TYPES, Histograms, RawSeries
from analyzer.sources.restjson import METRIC_PREFIX, bucket_bounds

_DISTRIBUTION = VALUE_TYPES.index("DISTRIBUTION")
_SCALAR_FIELDS = ("double_value", "int64_value", "bool_value")


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
    anything malformed. Equal to ``restjson.parse_time_series`` of the message's REST JSON."""
    points = series.points[::-1]  # the API returns newest first
    n = len(points)
    starts, ends = _times(points, n)
    values = [p.value for p in points]
    value_type = VALUE_TYPES[series.value_type] if series.value_type < len(VALUE_TYPES) else str(series.value_type)
    is_distribution = series.value_type == _DISTRIBUTION or any(
        v.WhichOneof("value") == "distribution_value" for v in values
    )
    labels = series.resource.labels
    identity = {
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
    if not is_distribution:
        order = np.argsort(ends, kind="stable")
        return [RawSeries(**identity, start_times=starts[order], end_times=ends[order], values=_scalars(values)[order])]
    out = []
    for index, hist in _histograms([v.distribution_value for v in values]):
        order = np.argsort(ends[index], kind="stable")
        out.append(RawSeries(
            **identity,
            start_times=starts[index][order],
            end_times=ends[index][order],
            histograms=Histograms(hist.bounds, hist.counts[order], hist.count[order], hist.mean[order],
                                  hist.range_min[order], hist.range_max[order]),
        ))
    return out
