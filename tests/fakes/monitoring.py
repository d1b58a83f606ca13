"""A fake Cloud Monitoring MetricService (ListTimeSeries) that Google's real client can talk to.

It stores raw time series (loaded from REST JSON ``TimeSeries`` objects, or from arrays for large
synthetic fleets) and answers ListTimeSeries the way the analyzer relies on:

- ``name = projects/P`` selects series whose ``resource.labels.project_id`` is P, or any project of
  P's metrics scope when P is a scoping project (``add_scope``): each keeps its own project_id;
- the filter subset: ``metric.type``, ``resource.type``, ``metric.labels.K``, ``resource.labels.K``,
  ``project`` compared with ``=``, ``!=`` or ``:`` to a string or to ``one_of(...)``,
  ``starts_with(...)``, ``ends_with(...)``, ``has_substring(...)``, ``monitoring.regex.full_match(...)``;
  ``AND``, ``OR``, ``NOT``, parentheses. Exactly one ``metric.type = "..."`` must be ANDed in at the
  top. Anything else is INVALID_ARGUMENT;
- the interval is ``(start, end]``; aligned periods end at ``end``, ``end - P``, ... (anchored on
  the interval's end, so every aligned point of every series shares the same boundaries);
- aligners ALIGN_NONE, DELTA, RATE, MEAN, SUM, MIN, MAX, COUNT, PERCENTILE_99/95/50/05; reducers
  REDUCE_NONE, SUM, MEAN, MIN, MAX, COUNT, PERCENTILE_99/95/50/05, with ``group_by_fields``;
  result kinds and value types as documented on ``Aggregation.Aligner`` / ``Reducer``;
- distributions are merged by adding bucket counts (identical bucket options required), with
  count, mean and sum of squared deviations combined exactly;
- ``page_size`` counts points (FULL view; series are split across pages when needed) or series
  (HEADERS view), max 100,000; ``next_page_token`` is bound to the other request fields;
- injected faults and latency and a call log through a shared ``Behaviour``.

Deliberate simplifications, documented so a test never relies on them: periods with no raw point
produce no aligned point (the real API interpolates DELTA/RATE gaps); percentiles interpolate
linearly inside the bucket holding the rank (the underflow bucket answers its upper bound, the
overflow bucket its lower bound); numeric percentile reducers use linear interpolation between
order statistics; times are whole seconds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import grpc
import numpy as np
from google.api import distribution_pb2, metric_pb2
from google.cloud import monitoring_v3
from google.protobuf import json_format, timestamp_pb2

from tests.fakes.server import Behaviour, abort, unary

SERVICE = "google.monitoring.v3.MetricService"
TimeSeriesPb: Any = monitoring_v3.TimeSeries.pb()
RequestPb: Any = monitoring_v3.ListTimeSeriesRequest.pb()
ResponsePb: Any = monitoring_v3.ListTimeSeriesResponse.pb()
Aligner = monitoring_v3.Aggregation.Aligner
Reducer = monitoring_v3.Aggregation.Reducer
MAX_PAGE_SIZE = 100_000
PERCENTILES = {"PERCENTILE_99": 99.0, "PERCENTILE_95": 95.0, "PERCENTILE_50": 50.0, "PERCENTILE_05": 5.0}


class InvalidArgument(ValueError):
    """The request is not valid (or uses something the fake does not implement)."""


# ---------------------------------------------------------------------------------------------
# Stored and computed series


@dataclass
class Dists:
    """Distribution values of n points sharing one bucket layout."""

    options: dict[str, Any]  # REST JSON bucketOptions ({} when there are none)
    bounds: np.ndarray  # finite boundaries; buckets = len(bounds) + 1
    counts: np.ndarray  # (n, buckets) int64
    count: np.ndarray  # (n,) int64
    mean: np.ndarray  # (n,) float64
    ssd: np.ndarray  # (n,) float64 sum of squared deviations

    @property
    def layout(self) -> str:
        return json.dumps(self.options, sort_keys=True)

    def take(self, index: np.ndarray) -> Dists:
        return replace(
            self,
            counts=self.counts[index],
            count=self.count[index],
            mean=self.mean[index],
            ssd=self.ssd[index],
        )


@dataclass
class Series:
    """One time series, points oldest first (raw as stored, or the result of aggregation)."""

    metric_type: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    kind: str  # GAUGE | DELTA
    value_type: str  # INT64 | DOUBLE | BOOL | DISTRIBUTION
    starts: np.ndarray
    ends: np.ndarray
    values: np.ndarray | None = None
    dists: Dists | None = None
    unit: str = ""

    @property
    def header(self) -> tuple[Any, ...]:
        return (
            self.metric_type,
            tuple(sorted(self.metric_labels.items())),
            self.resource_type,
            tuple(sorted(self.resource_labels.items())),
        )

    def __len__(self) -> int:
        return len(self.ends)


def bucket_bounds(options: Mapping[str, Any]) -> np.ndarray:
    if not options:
        return np.empty(0)
    if "linearBuckets" in options:
        o = options["linearBuckets"]
        return float(o.get("offset", 0)) + float(o.get("width", 0)) * np.arange(
            int(o.get("numFiniteBuckets", 0)) + 1
        )
    if "exponentialBuckets" in options:
        o = options["exponentialBuckets"]
        n = int(o.get("numFiniteBuckets", 0))
        return float(o.get("scale", 0)) * float(o.get("growthFactor", 0)) ** np.arange(n + 1)
    if "explicitBuckets" in options:
        return np.asarray([float(b) for b in options["explicitBuckets"].get("bounds", [])])
    raise InvalidArgument(f"unknown bucketOptions {sorted(options)}")


def merge_groups(d: Dists, groups: np.ndarray, n_groups: int) -> Dists:
    """Merge the points of ``d`` that share a group id: counts add, mean and deviation combine exactly."""
    count = np.bincount(groups, weights=d.count, minlength=n_groups)
    total = np.bincount(groups, weights=d.count * d.mean, minlength=n_groups)
    mean = np.divide(total, count, out=np.zeros(n_groups), where=count > 0)
    ssd = np.bincount(groups, weights=d.ssd + d.count * (d.mean - mean[groups]) ** 2, minlength=n_groups)
    counts = np.zeros((n_groups, d.counts.shape[1]), dtype=np.int64)
    np.add.at(counts, groups, d.counts)
    return replace(d, counts=counts, count=count.astype(np.int64), mean=mean, ssd=ssd)


def distribution_percentile(counts: np.ndarray, bounds: np.ndarray, mean: float, q: float) -> float:
    """The q-th percentile (0..100) of one distribution: linear inside the bucket holding the rank."""
    total = int(counts.sum())
    if total == 0:
        return 0.0
    if len(bounds) == 0:
        return float(mean)
    rank = q / 100.0 * total
    below = 0
    for i, c in enumerate(counts):
        if c == 0:
            continue
        if below + c >= rank:
            lower = bounds[i - 1] if i > 0 else bounds[0]
            upper = bounds[i] if i < len(bounds) else bounds[-1]
            return float(lower + (rank - below) / c * (upper - lower))
        below += int(c)
    return float(bounds[-1])  # pragma: no cover - the loop always reaches the rank


# ---------------------------------------------------------------------------------------------
# Filters

TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>!=|[=:(),])|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))')
FUNCTIONS = {"one_of", "starts_with", "ends_with", "has_substring", "monitoring.regex.full_match"}
Predicate = Callable[[Series], bool]


@dataclass
class Term:
    field: str
    op: str
    function: str  # "" for a plain string
    args: list[str]

    def value_of(self, s: Series) -> str | None:
        if self.field == "metric.type":
            return s.metric_type
        if self.field == "resource.type":
            return s.resource_type
        if self.field == "project":
            return s.resource_labels.get("project_id")
        scope, _, key = self.field.partition(".label")
        key = key.removeprefix("s").removeprefix(".")
        return (s.metric_labels if scope == "metric" else s.resource_labels).get(key)

    def __call__(self, s: Series) -> bool:
        value = self.value_of(s)
        if value is None:
            return self.op == "!="
        if self.op == ":":
            hit = self.args[0] in value
        elif self.function in ("", "one_of"):
            hit = value in self.args
        elif self.function == "starts_with":
            hit = value.startswith(self.args[0])
        elif self.function == "ends_with":
            hit = value.endswith(self.args[0])
        elif self.function == "has_substring":
            hit = self.args[0] in value
        else:
            hit = re.fullmatch(self.args[0], value) is not None
        return hit if self.op != "!=" else not hit


FIELD = re.compile(
    r"^(metric\.type|resource\.type|project|(metric|resource)\.labels?\.[A-Za-z_][A-Za-z0-9_]*)$"
)


class FilterParser:
    """Recursive descent over the subset of the Monitoring filter language the analyzer uses."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        position = 0
        text = text.rstrip()
        while position < len(text):
            match = TOKEN.match(text, position)
            if not match or match.end() == position:
                raise InvalidArgument(
                    f"filter: unexpected character at {position}: {text[position : position + 20]!r}"
                )
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind)))
            position = match.end()
        self.at = 0
        self.metric_terms: list[Term] = []
        self.top_metric_types: list[str] = []

    def parse(self) -> tuple[str, Predicate]:
        predicate = self.conjunction_of_disjunctions()
        if self.at != len(self.tokens):
            raise InvalidArgument(f"filter: unexpected {self.tokens[self.at][1]!r}")
        if len(self.top_metric_types) != 1 or len(self.metric_terms) != 1:
            raise InvalidArgument(
                'filter must name exactly one metric type: metric.type = "..." ANDed at the top'
            )
        return self.top_metric_types[0], predicate

    def peek(self) -> str:
        return self.tokens[self.at][1] if self.at < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> tuple[str, str]:
        if self.at >= len(self.tokens):
            raise InvalidArgument("filter: unexpected end")
        kind, text = self.tokens[self.at]
        if expected is not None and text != expected:
            raise InvalidArgument(f"filter: expected {expected!r}, got {text!r}")
        self.at += 1
        return kind, text

    def conjunction_of_disjunctions(self) -> Predicate:
        """The top level: AND binds tighter than OR, but top-level AND terms are checked for metric.type."""
        disjuncts = [self.conjunction(top=True)]
        while self.peek() == "OR":
            self.take()
            disjuncts.append(self.conjunction(top=False))
        if len(disjuncts) > 1:
            self.top_metric_types.clear()  # metric.type inside an OR is not "exactly one"
            return lambda s: any(d(s) for d in disjuncts)
        return disjuncts[0]

    def conjunction(self, *, top: bool) -> Predicate:
        terms = [self.unary(top=top)]
        while self.peek() == "AND":
            self.take()
            terms.append(self.unary(top=top))
        return terms[0] if len(terms) == 1 else (lambda s: all(t(s) for t in terms))

    def unary(self, *, top: bool) -> Predicate:
        if self.peek() == "NOT":
            self.take()
            inner = self.unary(top=False)
            return lambda s: not inner(s)
        if self.peek() == "(":
            self.take("(")
            inner = self.disjunction()
            self.take(")")
            return inner
        return self.comparison(top=top)

    def disjunction(self) -> Predicate:
        terms = [self.conjunction(top=False)]
        while self.peek() == "OR":
            self.take()
            terms.append(self.conjunction(top=False))
        return terms[0] if len(terms) == 1 else (lambda s: any(t(s) for t in terms))

    def comparison(self, *, top: bool) -> Predicate:
        kind, name = self.take()
        if kind != "word" or not FIELD.match(name):
            raise InvalidArgument(f"filter: {name!r} is not a field the fake understands")
        _, op = self.take()
        if op not in ("=", "!=", ":"):
            raise InvalidArgument(f"filter: expected =, != or : after {name}, got {op!r}")
        kind, value = self.take()
        if kind == "str":
            term = Term(name, op, "", [_unquote(value)])
        elif kind == "word" and value in FUNCTIONS and op != ":":
            self.take("(")
            args = [self.string()]
            while self.peek() == ",":
                self.take(",")
                args.append(self.string())
            self.take(")")
            if value != "one_of" and len(args) != 1:
                raise InvalidArgument(f"filter: {value}() takes one argument")
            term = Term(name, op, value, args)
        else:
            raise InvalidArgument(f"filter: unexpected {value!r} after {name} {op}")
        if name == "metric.type":
            self.metric_terms.append(term)
            if top and op == "=" and term.function == "":
                self.top_metric_types.append(term.args[0])
        return term

    def string(self) -> str:
        kind, value = self.take()
        if kind != "str":
            raise InvalidArgument(f"filter: expected a quoted string, got {value!r}")
        return _unquote(value)


def _unquote(token: str) -> str:
    return re.sub(r"\\(.)", r"\1", token[1:-1])


def parse_filter(text: str) -> tuple[str, Predicate]:
    """The metric type named and a predicate over series; InvalidArgument if outside the subset."""
    if not text.strip():
        raise InvalidArgument("filter is required")
    return FilterParser(text).parse()


# ---------------------------------------------------------------------------------------------
# Aggregation


@dataclass(frozen=True)
class Aggregation:
    period: int = 0
    aligner: str = "ALIGN_NONE"
    reducer: str = "REDUCE_NONE"
    group_by: tuple[str, ...] = ()


def _invalid_aligner(aligner: str, s: Series) -> InvalidArgument:
    return InvalidArgument(
        f'Field aggregation.perSeriesAligner had an invalid value of "{aligner}": The aligner cannot be '
        f"applied to metrics with kind {s.kind} and value type {s.value_type}."
    )


def align(s: Series, agg: Aggregation, start: int, end: int) -> Series | None:
    """The series restricted to (start, end] and aligned to periods ending at end, end - P, ..."""
    inside = np.flatnonzero((s.ends > start) & (s.ends <= end))
    if len(inside) == 0:
        return None
    if agg.aligner == "ALIGN_NONE":
        return replace(
            s,
            starts=s.starts[inside],
            ends=s.ends[inside],
            values=None if s.values is None else s.values[inside],
            dists=None if s.dists is None else s.dists.take(inside),
        )
    period = agg.period
    k = (end - s.ends[inside]) // period
    boundaries, groups = np.unique(end - k * period, return_inverse=True)
    groups = groups.reshape(-1)
    n = len(boundaries)
    numeric = s.values is not None and s.value_type in ("INT64", "DOUBLE")
    name = agg.aligner.removeprefix("ALIGN_")
    out_kind, out_type = "GAUGE", "DOUBLE"
    values: np.ndarray | None = None
    dists: Dists | None = None
    if name in ("DELTA", "SUM") and s.dists is not None:
        if name == "DELTA" and s.kind != "DELTA":
            raise _invalid_aligner(agg.aligner, s)
        dists = merge_groups(s.dists.take(inside), groups, n)
        out_kind, out_type = s.kind, "DISTRIBUTION"
    elif name in PERCENTILES and s.dists is not None:
        merged = merge_groups(s.dists.take(inside), groups, n)
        values = np.asarray(
            [
                distribution_percentile(merged.counts[i], merged.bounds, merged.mean[i], PERCENTILES[name])
                for i in range(n)
            ]
        )
    elif numeric and s.values is not None:
        v = s.values[inside]
        sums = np.bincount(groups, weights=v, minlength=n)
        tally = np.bincount(groups, minlength=n)
        if name in ("DELTA", "SUM"):
            if name == "DELTA" and s.kind != "DELTA":
                raise _invalid_aligner(agg.aligner, s)
            values, out_kind, out_type = sums, s.kind, s.value_type
        elif name == "RATE" and s.kind == "DELTA":
            values = sums / period
        elif name == "MEAN":
            values = sums / tally
        elif name in ("MIN", "MAX"):
            values = np.full(n, np.inf if name == "MIN" else -np.inf)
            (np.minimum if name == "MIN" else np.maximum).at(values, groups, v)
            out_type = s.value_type
        elif name == "COUNT":
            values, out_type = tally.astype(np.float64), "INT64"
        else:
            raise _invalid_aligner(agg.aligner, s)
    else:
        raise _invalid_aligner(agg.aligner, s)
    starts = boundaries - period if out_kind == "DELTA" else boundaries.copy()
    return replace(
        s, kind=out_kind, value_type=out_type, starts=starts, ends=boundaries, values=values, dists=dists
    )


def group_value(s: Series, field_name: str) -> str | None:
    scope, _, key = field_name.partition(".label")
    key = key.removeprefix("s").removeprefix(".")
    return (s.metric_labels if scope == "metric" else s.resource_labels).get(key)


def reduce(series: list[Series], agg: Aggregation) -> list[Series]:
    """Combine aligned series that share the values of ``group_by`` (all of them if none)."""
    groups: dict[tuple[str | None, ...], list[Series]] = {}
    for s in series:
        groups.setdefault(tuple(group_value(s, f) for f in agg.group_by), []).append(s)
    return [_reduce_group(members, agg, key) for key, members in groups.items()]


def _reduce_group(members: list[Series], agg: Aggregation, key: tuple[str | None, ...]) -> Series:
    first = members[0]
    times = np.unique(np.concatenate([m.ends for m in members]))
    slots = [np.searchsorted(times, m.ends) for m in members]
    name = agg.reducer.removeprefix("REDUCE_")
    metric_labels: dict[str, str] = {}
    resource_labels: dict[str, str] = {}
    for field_name, value in zip(agg.group_by, key, strict=True):
        if value is not None:
            target = metric_labels if field_name.startswith("metric.") else resource_labels
            target[field_name.partition(".label")[2].removeprefix("s").removeprefix(".")] = value
    out = replace(
        first,
        metric_labels=metric_labels,
        resource_labels=resource_labels,
        ends=times,
        starts=times - agg.period if first.kind == "DELTA" else times.copy(),
        values=None,
        dists=None,
    )
    if first.dists is not None:
        if any(m.dists is None or m.dists.layout != first.dists.layout for m in members):
            raise InvalidArgument(
                "the fake reduces distributions only when their bucket options are identical"
            )
        stacked = Dists(
            first.dists.options,
            first.dists.bounds,
            np.concatenate([m.dists.counts for m in members if m.dists is not None]),
            np.concatenate([m.dists.count for m in members if m.dists is not None]),
            np.concatenate([m.dists.mean for m in members if m.dists is not None]),
            np.concatenate([m.dists.ssd for m in members if m.dists is not None]),
        )
        merged = merge_groups(stacked, np.concatenate(slots), len(times))
        if name == "SUM":
            return replace(out, dists=merged)
        if name == "MEAN":
            return replace(out, value_type="DOUBLE", values=merged.mean)
        if name == "COUNT":
            present = np.bincount(np.concatenate(slots), minlength=len(times))
            return replace(out, value_type="INT64", values=present.astype(np.float64))
        if name in PERCENTILES:
            return replace(
                out,
                value_type="DOUBLE",
                values=np.asarray(
                    [
                        distribution_percentile(
                            merged.counts[i], merged.bounds, merged.mean[i], PERCENTILES[name]
                        )
                        for i in range(len(times))
                    ]
                ),
            )
        raise InvalidArgument(f"{agg.reducer} cannot be applied to DISTRIBUTION values")
    grid = np.full((len(times), len(members)), np.nan)
    for column, (member, slot) in enumerate(zip(members, slots, strict=True)):
        assert member.values is not None
        grid[slot, column] = member.values
    present = ~np.isnan(grid)
    if name == "SUM":
        return replace(out, values=np.where(present, grid, 0.0).sum(axis=1))
    if name == "MEAN":
        return replace(out, value_type="DOUBLE", values=np.nanmean(grid, axis=1))
    if name in ("MIN", "MAX"):
        return replace(out, values=(np.nanmin if name == "MIN" else np.nanmax)(grid, axis=1))
    if name == "COUNT":
        return replace(out, value_type="INT64", values=present.sum(axis=1).astype(np.float64))
    if name in PERCENTILES:
        return replace(out, value_type="DOUBLE", values=np.nanpercentile(grid, PERCENTILES[name], axis=1))
    raise InvalidArgument(f"the fake does not implement {agg.reducer}")


GROUP_FIELD = re.compile(r"^(metric|resource)\.labels?\.[A-Za-z_][A-Za-z0-9_]*$")
ALIGNERS = {
    "ALIGN_NONE",
    "ALIGN_DELTA",
    "ALIGN_RATE",
    "ALIGN_MEAN",
    "ALIGN_SUM",
    "ALIGN_MIN",
    "ALIGN_MAX",
    "ALIGN_COUNT",
    *(f"ALIGN_{p}" for p in PERCENTILES),
}
REDUCERS = {
    "REDUCE_NONE",
    "REDUCE_SUM",
    "REDUCE_MEAN",
    "REDUCE_MIN",
    "REDUCE_MAX",
    "REDUCE_COUNT",
    *(f"REDUCE_{p}" for p in PERCENTILES),
}


def aggregation_of(request: Any) -> Aggregation:
    a = request.aggregation
    aligner = Aligner(a.per_series_aligner).name
    reducer = Reducer(a.cross_series_reducer).name
    if aligner not in ALIGNERS:
        raise InvalidArgument(f"the fake does not implement {aligner}")
    if reducer not in REDUCERS:
        raise InvalidArgument(f"the fake does not implement {reducer}")
    period = int(a.alignment_period.seconds)
    if aligner != "ALIGN_NONE" and period < 60:
        raise InvalidArgument(
            f'Field aggregation.alignmentPeriod had an invalid value of "{period}s": '
            "The alignment period must be at least 60 seconds when an aligner is given."
        )
    if reducer != "REDUCE_NONE" and aligner == "ALIGN_NONE":
        raise InvalidArgument("A cross-series reducer requires a per-series aligner other than ALIGN_NONE.")
    for name in a.group_by_fields:
        if not GROUP_FIELD.match(name):
            raise InvalidArgument(f"group_by_fields: the fake does not understand {name!r}")
    return Aggregation(period, aligner, reducer, tuple(a.group_by_fields) if reducer != "REDUCE_NONE" else ())


# ---------------------------------------------------------------------------------------------
# Protobuf conversion


def _labels(mapping: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in mapping.items()}


def series_from_pb(ts: Any) -> Series:
    kind = metric_pb2.MetricDescriptor.MetricKind.Name(ts.metric_kind)
    value_type = metric_pb2.MetricDescriptor.ValueType.Name(ts.value_type)
    if kind not in ("GAUGE", "DELTA"):
        raise InvalidArgument(f"the fake stores GAUGE and DELTA series, not {kind}")
    points = list(ts.points)
    ends = np.asarray([p.interval.end_time.seconds for p in points], dtype=np.int64)
    starts = np.asarray(
        [
            p.interval.start_time.seconds
            if p.interval.HasField("start_time")
            else p.interval.end_time.seconds
            for p in points
        ],
        dtype=np.int64,
    )
    order = np.argsort(ends, kind="stable")
    values: np.ndarray | None = None
    dists: Dists | None = None
    if value_type == "DISTRIBUTION" or any(
        p.value.WhichOneof("value") == "distribution_value" for p in points
    ):
        value_type = "DISTRIBUTION"
        raw = [p.value.distribution_value for p in points]
        options = json_format.MessageToDict(raw[0].bucket_options) if raw else {}
        bounds = bucket_bounds(options)
        width = len(bounds) + 1
        counts = np.zeros((len(raw), width), dtype=np.int64)
        for i, d in enumerate(raw):
            if json_format.MessageToDict(d.bucket_options) != options:
                raise InvalidArgument("the fake stores one bucket layout per series")
            if d.bucket_counts:
                counts[i, : len(d.bucket_counts)] = list(d.bucket_counts)
            elif not options:
                counts[i, 0] = d.count
        dists = Dists(
            options,
            bounds,
            counts[order],
            np.asarray([d.count for d in raw], dtype=np.int64)[order],
            np.asarray([d.mean for d in raw])[order],
            np.asarray([d.sum_of_squared_deviation for d in raw])[order],
        )
    else:

        def scalar(p: Any) -> float:
            which = p.value.WhichOneof("value")
            return float(getattr(p.value, which)) if which else 0.0

        values = np.asarray([scalar(p) for p in points], dtype=np.float64)[order]
    return Series(
        ts.metric.type,
        _labels(ts.metric.labels),
        ts.resource.type,
        _labels(ts.resource.labels),
        kind,
        value_type,
        starts[order],
        ends[order],
        values,
        dists,
        ts.unit,
    )




def _get(message: Mapping[str, Any], camel: str, default: Any = None) -> Any:
    """A proto3 JSON field by its camelCase name or its snake_case original."""
    if camel in message:
        return message[camel]
    return message.get(re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), camel), default)


class _Times:
    """RFC 3339 text to epoch seconds, parsed by protobuf's own Timestamp and cached (times repeat a lot)."""

    def __init__(self) -> None:
        self.cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        seconds = self.cache.get(text)
        if seconds is None:
            stamp = timestamp_pb2.Timestamp()
            stamp.FromJsonString(text)
            seconds = self.cache[text] = int(stamp.seconds)
        return seconds


_TIMES = _Times()


def series_from_json(body: Mapping[str, Any]) -> Series:
    """One REST JSON ``TimeSeries``, read without building protos (snapshots hold 100,000s of points).

    Anything outside the shapes below is handed to protobuf's own parser, which rejects what is invalid.
    """
    points = _get(body, "points", [])
    kinds = {next(iter(_get(p, "value", {})), None) for p in points}
    simple = kinds <= {
        "int64Value",
        "doubleValue",
        "boolValue",
        "distributionValue",
        "int64_value",
        "double_value",
        "bool_value",
        "distribution_value",
    }
    if not simple or len(kinds) > 1:
        return series_from_pb(json_format.ParseDict(body, TimeSeriesPb()))
    metric, resource = _get(body, "metric", {}), _get(body, "resource", {})
    kind = str(_get(body, "metricKind", "GAUGE"))
    if kind not in ("GAUGE", "DELTA"):
        raise InvalidArgument(f"the fake stores GAUGE and DELTA series, not {kind}")
    ends = np.asarray([_TIMES(_get(_get(p, "interval"), "endTime")) for p in points], dtype=np.int64)
    starts = np.asarray(
        [
            _TIMES(t) if (t := _get(_get(p, "interval"), "startTime")) else e
            for p, e in zip(points, ends, strict=True)
        ],
        dtype=np.int64,
    )
    order = np.argsort(ends, kind="stable")
    value_type = str(_get(body, "valueType", ""))
    values: np.ndarray | None = None
    dists: Dists | None = None
    if kinds & {"distributionValue", "distribution_value"}:
        value_type = "DISTRIBUTION"
        raw = [_get(_get(p, "value"), "distributionValue") for p in points]
        options = _get(raw[0], "bucketOptions", {}) if raw else {}
        bounds = bucket_bounds(_camel_options(options))
        counts = np.zeros((len(raw), len(bounds) + 1), dtype=np.int64)
        for i, d in enumerate(raw):
            if _get(d, "bucketOptions", {}) != options:
                raise InvalidArgument("the fake stores one bucket layout per series")
            buckets = [int(c) for c in _get(d, "bucketCounts", [])]
            if buckets:
                counts[i, : len(buckets)] = buckets
            elif not options:
                counts[i, 0] = int(_get(d, "count", 0))
        dists = Dists(
            _camel_options(options),
            bounds,
            counts[order],
            np.asarray([int(_get(d, "count", 0)) for d in raw], dtype=np.int64)[order],
            np.asarray([float(_get(d, "mean", 0.0)) for d in raw])[order],
            np.asarray([float(_get(d, "sumOfSquaredDeviation", 0.0)) for d in raw])[order],
        )
    else:
        values = np.asarray([float(next(iter(_get(p, "value", {}).values()), 0.0)) for p in points])[order]
        value_type = value_type or ("INT64" if kinds & {"int64Value", "int64_value"} else "DOUBLE")
    return Series(
        str(_get(metric, "type", "")),
        {str(k): str(v) for k, v in _get(metric, "labels", {}).items()},
        str(_get(resource, "type", "")),
        {str(k): str(v) for k, v in _get(resource, "labels", {}).items()},
        kind,
        value_type,
        starts[order],
        ends[order],
        values,
        dists,
        str(_get(body, "unit", "")),
    )


_OPTIONS: dict[str, dict[str, Any]] = {}


def _camel_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """bucketOptions in canonical form (camelCase, defaults omitted), so equal layouts compare equal."""
    key = json.dumps(options, sort_keys=True)
    if key not in _OPTIONS:
        parsed = json_format.ParseDict(options, distribution_pb2.Distribution.BucketOptions())
        _OPTIONS[key] = json_format.MessageToDict(parsed)
    return _OPTIONS[key]


class PbWriter:
    """Builds TimeSeries protos, reusing one parsed BucketOptions per layout."""

    def __init__(self) -> None:
        self.options: dict[str, Any] = {}

    def bucket_options(self, d: Dists) -> Any:
        key = d.layout
        if key not in self.options:
            self.options[key] = json_format.ParseDict(
                d.options, distribution_pb2.Distribution.BucketOptions()
            )
        return self.options[key]

    def series(self, s: Series, newest_first: Sequence[int] | range, *, headers_only: bool = False) -> Any:
        ts = TimeSeriesPb()
        ts.metric.type = s.metric_type
        ts.metric.labels.update(s.metric_labels)
        ts.resource.type = s.resource_type
        ts.resource.labels.update(s.resource_labels)
        ts.metric_kind = metric_pb2.MetricDescriptor.MetricKind.Value(s.kind)
        ts.value_type = metric_pb2.MetricDescriptor.ValueType.Value(s.value_type)
        if s.unit:
            ts.unit = s.unit
        if headers_only:
            return ts
        options = self.bucket_options(s.dists) if s.dists is not None else None
        for i in newest_first:
            point = ts.points.add()
            point.interval.end_time.seconds = int(s.ends[i])
            point.interval.start_time.seconds = int(s.starts[i])
            if s.dists is not None:
                d = point.value.distribution_value
                d.count = int(s.dists.count[i])
                d.mean = float(s.dists.mean[i])
                d.sum_of_squared_deviation = float(s.dists.ssd[i])
                if options is not None and s.dists.options:
                    d.bucket_options.CopyFrom(options)
                    d.bucket_counts.extend(int(c) for c in s.dists.counts[i])
            elif s.value_type == "INT64":
                point.value.int64_value = round(float(s.values[i]))  # type: ignore[index]
            elif s.value_type == "BOOL":
                point.value.bool_value = bool(s.values[i])  # type: ignore[index]
            else:
                point.value.double_value = float(s.values[i])  # type: ignore[index]
        return ts


# ---------------------------------------------------------------------------------------------
# The service


class FakeMetricService:
    """Holds raw series and answers ListTimeSeries; thread-safe, serves concurrent calls."""

    def __init__(self, behaviour: Behaviour | None = None, *, max_page_size: int = MAX_PAGE_SIZE) -> None:
        self.behaviour = behaviour or Behaviour()
        self.max_page_size = max_page_size
        self._series: dict[tuple[Any, ...], Series] = {}
        self._lock = threading.Lock()
        self._results: OrderedDict[str, list[Series]] = OrderedDict()
        self._scopes: dict[str, frozenset[str]] = {}

    # loading -----------------------------------------------------------------------------

    def add(self, series: Series) -> None:
        """Store a series; points of a series already stored (same labels) are appended to it."""
        with self._lock:
            self._results.clear()
            known = self._series.get(series.header)
            if known is None:
                self._series[series.header] = series
                return
            order = np.argsort(np.concatenate([known.ends, series.ends]), kind="stable")
            merged = replace(
                known,
                starts=np.concatenate([known.starts, series.starts])[order],
                ends=np.concatenate([known.ends, series.ends])[order],
                values=None
                if known.values is None or series.values is None
                else np.concatenate([known.values, series.values])[order],
                dists=None
                if known.dists is None or series.dists is None
                else replace(
                    known.dists,
                    counts=np.concatenate([known.dists.counts, series.dists.counts])[order],
                    count=np.concatenate([known.dists.count, series.dists.count])[order],
                    mean=np.concatenate([known.dists.mean, series.dists.mean])[order],
                    ssd=np.concatenate([known.dists.ssd, series.dists.ssd])[order],
                ),
            )
            self._series[series.header] = merged

    def add_scope(self, scope: str, members: Iterable[str]) -> None:
        """Make ``scope`` a metrics-scoping project: reading it returns its own series and its members'."""
        with self._lock:
            self._results.clear()
            self._scopes[scope] = frozenset(members) | {scope}

    def add_time_series(self, body: Mapping[str, Any]) -> None:
        """One ``TimeSeries`` in REST JSON (camelCase or snake_case), raw points."""
        self.add(series_from_json(body))

    def load_response(self, body: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """Every series of a ``timeSeries.list`` response body (or a list of such pages)."""
        for page in body if isinstance(body, Sequence) else [body]:
            for series in page.get("timeSeries", []):
                self.add_time_series(series)

    def add_arrays(
        self,
        *,
        metric: str,
        kind: str,
        value_type: str,
        resource: Mapping[str, str],
        ends: np.ndarray,
        values: np.ndarray | None = None,
        dists: Dists | None = None,
        starts: np.ndarray | None = None,
        metric_labels: Mapping[str, str] | None = None,
        resource_type: str = "cloud_run_revision",
    ) -> None:
        """Fast path for large synthetic fleets: points given as arrays, oldest first."""
        ends = np.asarray(ends, dtype=np.int64)
        if starts is None:
            starts = ends - 60 if kind == "DELTA" else ends.copy()
        self.add(
            Series(
                metric,
                dict(metric_labels or {}),
                resource_type,
                dict(resource),
                kind,
                value_type,
                np.asarray(starts, dtype=np.int64),
                ends,
                values,
                dists,
            )
        )

    # answering ---------------------------------------------------------------------------

    def query(self, request: Any) -> list[Series]:
        """The complete (unpaged) answer to a ListTimeSeriesRequest, sorted by labels."""
        match = re.fullmatch(r"projects/([^/]+)", request.name)
        if not match:
            raise InvalidArgument(f"name {request.name!r} is not projects/PROJECT")
        project = match.group(1)
        metric_type, predicate = parse_filter(request.filter)
        if not request.HasField("interval") or not request.interval.HasField("end_time"):
            raise InvalidArgument("interval.endTime is required")
        end = int(request.interval.end_time.seconds)
        start = int(request.interval.start_time.seconds) if request.interval.HasField("start_time") else end
        if start > end:
            raise InvalidArgument("interval.startTime is later than interval.endTime")
        if request.HasField("secondary_aggregation") or request.order_by:
            raise InvalidArgument("the fake implements neither secondary_aggregation nor order_by")
        agg = aggregation_of(request)
        with self._lock:
            projects = self._scopes.get(project, frozenset({project}))
            candidates = [
                s
                for s in self._series.values()
                if s.metric_type == metric_type and s.resource_labels.get("project_id") in projects
            ]
        aligned = [a for s in candidates if predicate(s) and (a := align(s, agg, start, end)) is not None]
        if agg.reducer != "REDUCE_NONE":
            aligned = reduce(aligned, agg)
        return sorted(
            aligned, key=lambda s: (sorted(s.resource_labels.items()), sorted(s.metric_labels.items()))
        )

    def _cached(self, request: Any) -> tuple[str, list[Series]]:
        bare = RequestPb()
        bare.CopyFrom(request)
        bare.page_token = ""
        bare.page_size = 0
        fingerprint = hashlib.sha256(bare.SerializeToString(deterministic=True)).hexdigest()[:16]
        with self._lock:
            if fingerprint in self._results:
                self._results.move_to_end(fingerprint)
                return fingerprint, self._results[fingerprint]
        result = self.query(request)
        with self._lock:
            self._results[fingerprint] = result
            while len(self._results) > 64:
                self._results.popitem(last=False)
        return fingerprint, result

    def page(self, request: Any) -> Any:
        """One ListTimeSeriesResponse page."""
        fingerprint, result = self._cached(request)
        series_at, point_at = 0, 0
        if request.page_token:
            try:
                token_print, series_text, point_text = (
                    base64.urlsafe_b64decode(request.page_token).decode().split(":")
                )
                series_at, point_at = int(series_text), int(point_text)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidArgument("page_token is not a token this server issued") from exc
            if token_print != fingerprint:
                raise InvalidArgument(
                    "page_token was issued for a different request: all other parameters must match"
                )
        limit = request.page_size if 0 < request.page_size <= self.max_page_size else self.max_page_size
        headers_only = request.view == monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
        response = ResponsePb()
        writer = PbWriter()
        room = limit
        while series_at < len(result) and room > 0:
            s = result[series_at]
            if headers_only:
                response.time_series.append(writer.series(s, (), headers_only=True))
                series_at, room = series_at + 1, room - 1
                continue
            newest_first = range(len(s) - 1 - point_at, -1, -1)
            taken = newest_first[:room]
            response.time_series.append(writer.series(s, taken))
            if len(taken) < len(newest_first):
                point_at += len(taken)
                room = 0
            else:
                series_at, point_at, room = series_at + 1, 0, room - len(taken)
        if series_at < len(result):
            response.next_page_token = base64.urlsafe_b64encode(
                f"{fingerprint}:{series_at}:{point_at}".encode()
            ).decode()
        return response

    def _list_time_series(self, request: Any, context: grpc.ServicerContext) -> Any:
        project = request.name.removeprefix("projects/")
        self.behaviour.enter("ListTimeSeries", project, request.filter, context)
        try:
            return self.page(request)
        except InvalidArgument as exc:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "ListTimeSeries": unary(self._list_time_series, RequestPb),
                },
            )
        ]


def points_of(series: Iterable[Series]) -> int:
    return sum(len(s) for s in series)
