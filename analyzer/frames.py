"""Turn raw series into one tidy table: a row per (project, region, service, revision, time step).

Columns (NaN where a metric had no data in that step):

==================  ==============================================================================
mem_mean, mem_p50,  memory utilization across the revision's instances, fraction of the limit
mem_p99, mem_max    (from ``container/memory/utilizations``; from ``container/memory/usage`` divided
                    by the revision's memory limit when utilizations are absent)
cpu_mean            CPU utilization across instances, fraction of the limit
lat_p50, lat_p95,   request latency percentiles, ms (all response codes and routes merged)
lat_p99
req_rate, err_rate  requests per second; 5xx responses per second
inst_active,        mean instance count in the step, by state
inst_idle
billable_s          billable instance-seconds in the step
cpu_alloc_s         allocated vCPU-seconds in the step
mem_alloc_gibs      allocated GiB-seconds in the step
requests            requests in the step
==================  ==============================================================================

Only what the analysis reads is computed: a percentile costs a pass over every step's buckets, so
the CPU's percentiles and the memory's p95 are not read (``READ``).

A revision that runs sidecars reports memory and CPU per container: ``metrics`` holds the ingress
container's, and ``sidecars`` each sidecar's memory on its own (the mem_* columns above, a fraction of
that container's own limit, plus ``container``), so a sidecar's leak can be found without mixing it in.

Semantics of the input: a DELTA point is an amount over [startTime, endTime]; a GAUGE DOUBLE point of
a natively-DELTA metric is a per-second rate (what ALIGN_RATE returns; an INT64 point never is);
distributions falling in the same step are merged by adding bucket counts, then percentiles are read
from the merged buckets.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from analyzer.distributions import percentiles
from analyzer.model import Histograms, Problem, RawData, RawSeries, RevisionInfo, ServiceInfo, ServiceKey

KEY_COLUMNS = ["project", "region", "service", "revision"]
METRIC_COLUMNS = [
    "mem_mean", "mem_p50", "mem_p99", "mem_max",
    "cpu_mean",
    "lat_p50", "lat_p95", "lat_p99",
    "req_rate", "err_rate", "requests",
    "inst_active", "inst_idle",
    "billable_s", "cpu_alloc_s", "mem_alloc_gibs",
]  # fmt: skip
NATIVELY_DELTA = frozenset(
    {
        "request_count",
        "container/billable_instance_time",
        "container/cpu/allocation_time",
        "container/memory/allocation_time",
    }
)
AMOUNT_COLUMNS = {
    "container/billable_instance_time": "billable_s",
    "container/cpu/allocation_time": "cpu_alloc_s",
    "container/memory/allocation_time": "mem_alloc_gibs",
}
DISTRIBUTION_PREFIX = {
    "container/memory/utilizations": "mem",
    "container/cpu/utilizations": "cpu",
    "request_latencies": "lat",
    "container/memory/usage": "memusage",
}
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1.0}
# What is read of each distribution metric (its mean, percentiles): the columns the analysis uses.
READ = {"mem": ("mean", "p50", "p99", "max"), "cpu": ("mean",), "lat": ("p50", "p95", "p99"),
        "memusage": ("mean", "p50", "p99", "max")}
# Reported per container (``container_name``): a revision with sidecars has one series per container.
PER_CONTAINER = frozenset({"container/memory/utilizations", "container/cpu/utilizations", "container/memory/usage"})
SIDECAR_METRICS = ("container/memory/utilizations", "container/memory/usage")  # kept per sidecar: memory only
MEMORY_COLUMNS = [f"mem_{name}" for name in READ["mem"]]
SIDECAR_COLUMNS = [*KEY_COLUMNS, "container", "ts", *MEMORY_COLUMNS]
SeriesKey = tuple[str, str, str, str]  # project, region, service, revision


@dataclass(slots=True)
class Frames:
    """The analysis input: the tidy metrics table plus what is known about each revision."""

    metrics: pd.DataFrame
    revisions: dict[tuple[ServiceKey, str], RevisionInfo]
    step_seconds: int
    window_start: datetime
    window_end: datetime
    services: list[ServiceKey] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    # Each sidecar container's memory (SIDECAR_COLUMNS), apart from the ingress container's in ``metrics``.
    sidecars: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SIDECAR_COLUMNS))
    # Rows from before the window (``metrics``' columns): a revision serving at the window start, read
    # from its deploy (``sources.live``), so the analysis knows how this service's revisions begin.
    # Never priced nor judged: only the memory envelope reads them (``history_of``).
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=[*KEY_COLUMNS, "ts"]))
    # Row positions of each service in ``metrics``, found once (``dataclasses.replace`` starts afresh).
    _positions: dict[tuple[str, str, str], np.ndarray] | None = field(default=None, init=False, repr=False,
                                                                       compare=False)
    _body: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)  # metrics, no names
    # Row positions of each service in ``history``, found once.
    _history_positions: dict[tuple[str, str, str], np.ndarray] | None = field(default=None, init=False, repr=False,
                                                                               compare=False)

    def service_metrics(self, key: ServiceKey) -> pd.DataFrame:
        """The service's rows, in table order, without the project, region and service columns (the key
        says them; every detector takes rows of this table again and again, and a string column costs
        a take as much as all the numbers do): one grouping of the table for every service, not a
        comparison of every row's names per service."""
        positions = getattr(self, "_positions", None)  # absent in Frames pickled before it existed
        if positions is None:
            grouped = self.metrics.groupby(["project", "region", "service"], sort=False).indices
            positions = self._positions = {cast(tuple[str, str, str], k): np.asarray(v) for k, v in grouped.items()}
        found = positions.get((key.project, key.region, key.service))
        body = getattr(self, "_body", None)
        if body is None:
            body = self._body = self.metrics.drop(columns=["project", "region", "service"])
        return rows_at(body, found if found is not None else np.empty(0, dtype=np.intp))

    def history_of(self, key: ServiceKey) -> pd.DataFrame:
        """The service's rows from before the window (``history``), without its names' columns, in
        (revision, time) order: empty for most services."""
        history: pd.DataFrame | None = getattr(self, "history", None)  # absent in Frames pickled before it
        if history is None or history.empty:
            return pd.DataFrame(columns=["revision", "ts"])
        positions = getattr(self, "_history_positions", None)
        if positions is None:  # grouped once: a fleet's batch asks for every service's
            grouped = history.groupby(["project", "region", "service"], sort=False).indices
            positions = self._history_positions = {cast(tuple[str, str, str], k): np.asarray(v)
                                                   for k, v in grouped.items()}
        found = positions.get((key.project, key.region, key.service))
        if found is None:
            return pd.DataFrame(columns=["revision", "ts"])
        return history.take(found).drop(columns=["project", "region", "service"])

    def sidecar_memory(self, key: ServiceKey) -> pd.DataFrame:
        """The service's rows of ``sidecars`` (empty for a service without sidecars)."""
        m = self.sidecars
        if m.empty:
            return m
        mask = (m["project"] == key.project) & (m["region"] == key.region) & (m["service"] == key.service)
        return m.loc[mask]

    def revisions_of(self, key: ServiceKey) -> list[RevisionInfo]:
        """The service's revisions, oldest deploy first."""
        found = [info for (k, _), info in self.revisions.items() if k == key]
        far = datetime.max.replace(tzinfo=UTC)
        return sorted(found, key=lambda r: (r.create_time or far, r.revision))


def rows_at(table: pd.DataFrame, positions: np.ndarray) -> pd.DataFrame:
    """``table.take(positions)``; a slice when the positions are one ascending stretch (a service's
    rows, a revision's: the table's order keeps them together), which copies nothing."""
    if len(positions) and bool((np.diff(positions) == 1).all()):
        return table.iloc[int(positions[0]) : int(positions[-1]) + 1]
    return table.take(positions)


def _input_spacing(series: list[RawSeries]) -> int:
    """The typical spacing of points in the input (60 s raw, or the query's alignment period): the
    median over series of each one's median spacing. Read for every series at once: an aligned
    series' spacing is one value throughout (its median is that value), found with one pass over all
    of them; a series with several spacings takes its own median."""
    times = [s.end_times for s in series if len(s.end_times) > 2]
    if not times:
        return 60
    lengths = np.fromiter((len(t) for t in times), dtype=np.intp, count=len(times))
    starts = np.cumsum(lengths) - lengths
    gaps = np.diff(np.concatenate(times))
    # The gap from one series' last point to the next one's first belongs to neither: it is replaced by
    # the gap before it (the series' own last), which leaves every series' smallest and largest as they are.
    across = starts[1:] - 1
    gaps[across] = gaps[across - 1]
    low, high = np.minimum.reduceat(gaps, starts), np.maximum.reduceat(gaps, starts)
    spacings = low.astype(np.float64).astype(np.int64)  # int(np.median(...)) of a series of one spacing
    for i in np.flatnonzero(low != high):
        spacings[i] = int(np.median(np.diff(times[i])))
    return int(np.median(spacings))


def build(raw: RawData, *, step_seconds: int = 300) -> Frames:
    """Build the tidy table. ``step_seconds`` is raised to the input's own spacing if coarser."""
    problems = list(raw.problems)
    step = max(step_seconds, _input_spacing(raw.series))
    keys: dict[tuple[str, str, str, str], int] = {}
    for s in raw.series:
        keys.setdefault((s.project, s.region, s.service, s.revision), len(keys))
    revisions = _revision_table(raw, keys)
    grid = _Grid.of(raw.series, step)
    columns: list[_Column] = []
    by_metric: dict[str, list[RawSeries]] = defaultdict(list)
    ingress, sidecar_series = _split_containers(raw.series, revisions, problems)
    for s in ingress:
        by_metric[s.metric].append(s)
    for metric, group in by_metric.items():
        kind = "scalar" if group[0].histograms is None else "distribution"
        if metric in DISTRIBUTION_PREFIX and kind == "distribution":
            columns.extend(_distribution_columns(group, keys, grid, DISTRIBUTION_PREFIX[metric]))
        elif metric in DISTRIBUTION_PREFIX:
            columns.extend(_reduced_distribution_columns(group, keys, grid, DISTRIBUTION_PREFIX[metric]))
            problems.append(Problem(metric, "came as numbers, not distributions (an aligner such as "
                                    "ALIGN_PERCENTILE_99 or ALIGN_MEAN reduced it): read as the level of every "
                                    "percentile", "query it with ALIGN_DELTA to keep the distribution"))
        elif metric == "container/instance_count":
            columns.extend(_instance_columns(group, keys, grid))
        elif metric == "request_count":
            columns.extend(_request_columns(group, keys, grid))
        elif metric in AMOUNT_COLUMNS:
            columns.append(_Column(AMOUNT_COLUMNS[metric], *_amounts(group, keys, grid)))
        # other known metrics (startup latencies, concurrency) are read but not yet used
    metrics, ranks = _assemble(columns, keys, grid)
    metrics = _usage_to_utilization(metrics, revisions, problems)
    sidecars = _sidecar_memory(sidecar_series, keys, grid, revisions, problems)
    if raw.window_start and raw.window_end:
        start, end = raw.window_start, raw.window_end
    elif len(metrics):
        start = metrics["ts"].min().to_pydatetime()
        end = metrics["ts"].max().to_pydatetime() + pd.Timedelta(seconds=step)
    else:
        start = end = datetime.fromtimestamp(0, UTC)
    services = sorted(
        set(raw.services) | {ServiceKey(p, r, s) for p, r, s, _ in keys},
        key=lambda k: (k.project, k.region, k.service),
    )
    metrics, ranks, history = _split_history(metrics, ranks, start)
    if len(sidecars):
        sidecars = sidecars.loc[(sidecars["ts"] >= pd.Timestamp(start)).to_numpy()].reset_index(drop=True)
    frames = Frames(metrics, revisions, step, start, end, services, problems, sidecars, history)
    frames._positions = _service_positions(ranks, keys)
    return frames


def _split_history(metrics: pd.DataFrame, ranks: np.ndarray,
                   start: datetime) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame]:
    """(the window's rows, their ranks, the rows before the window): points a source read before the
    window (a revision's first hours after a deploy that predates it) are kept apart, so nothing that
    prices or judges the window sees them."""
    early = (metrics["ts"] < pd.Timestamp(start)).to_numpy() if len(metrics) else np.zeros(0, dtype=bool)
    if not early.any():
        return metrics, ranks, metrics.iloc[:0]
    return (metrics.loc[~early].reset_index(drop=True), ranks[~early],
            metrics.loc[early].reset_index(drop=True))


def _service_positions(ranks: np.ndarray, keys: dict[SeriesKey, int]) -> dict[tuple[str, str, str], np.ndarray]:
    """Each service's row positions in the table ``_assemble`` built, from each row's rank of its
    revision's names (the table is sorted by them, so a service's rows are one run): found once on
    integers, where ``Frames.service_metrics`` would group three string columns."""
    services = sorted({key[:3] for key in keys})
    number = {service: i for i, service in enumerate(services)}
    of_rank = np.asarray([number[key[:3]] for key in sorted(keys)], dtype=np.intp)
    bounds = np.searchsorted(of_rank[ranks], np.arange(len(services) + 1))
    return {service: np.arange(bounds[i], bounds[i + 1]) for i, service in enumerate(services)
            if bounds[i + 1] > bounds[i]}


def _split_containers(series: list[RawSeries], revisions: dict[tuple[ServiceKey, str], RevisionInfo],
                      problems: list[Problem]) -> tuple[list[RawSeries], list[RawSeries]]:
    """Per-container metrics of a revision that runs sidecars: (every series but the sidecars'
    per-container ones, the sidecars' ones). The service is analyzed on the ingress container (the one
    ``RevisionInfo`` says serves requests), so a sidecar's memory neither mixes into the service's nor
    is divided by the wrong limit; the sidecars' series are handed on for their own leak check. Said
    once per service."""
    names: dict[tuple[SeriesKey, str], set[str]] = defaultdict(set)  # (revision, metric) -> containers
    for s in series:
        if s.metric in PER_CONTAINER:
            key = (s.project, s.region, s.service, s.revision)
            names[(key, s.metric)].add(s.metric_labels.get("container_name", ""))
    chosen: dict[tuple[SeriesKey, str], str] = {}
    said: dict[ServiceKey, tuple[set[str], set[str]]] = {}  # service -> (ingress names, sidecar names)
    unknown: dict[ServiceKey, set[str]] = defaultdict(set)
    for (key, metric), found in names.items():
        if len(found) < 2:
            continue
        service = ServiceKey(*key[:3])
        ingress = (revisions.get((service, key[3])) or RevisionInfo(*key)).ingress_container
        if ingress is None or ingress.name not in found:
            unknown[service].add(key[3])
            continue
        chosen[(key, metric)] = ingress.name
        ingresses, sidecars = said.setdefault(service, (set(), set()))
        ingresses.add(ingress.name)
        sidecars.update(found - {ingress.name, ""})
    for service, (ingresses, sidecars) in sorted(said.items(), key=lambda item: str(item[0])):
        problems.append(Problem(str(service), f"runs sidecar containers ({', '.join(sorted(sidecars))}): memory "
                                f"and CPU are those of the ingress container {', '.join(sorted(ingresses))} "
                                "(each sidecar's memory is checked for leaks on its own)"))
    for service, revs in sorted(unknown.items(), key=lambda item: str(item[0])):
        problems.append(Problem(str(service), f"revisions {', '.join(sorted(revs))} report several containers and "
                                "which one serves requests is unknown: their memory and CPU are merged",
                                "include revisions/*.json (Cloud Run Admin API) so the ingress container is known"))
    if not chosen:
        return series, []
    def kept(s: RawSeries) -> bool:
        container = s.metric_labels.get("container_name", "")
        return chosen.get(((s.project, s.region, s.service, s.revision), s.metric), container) == container

    return ([s for s in series if s.metric not in PER_CONTAINER or kept(s)],
            [s for s in series if s.metric in PER_CONTAINER and not kept(s)])


def _sidecar_memory(series: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid,
                    revisions: dict[tuple[ServiceKey, str], RevisionInfo], problems: list[Problem]) -> pd.DataFrame:
    """Each sidecar's memory as the ingress container's is read (``SIDECAR_COLUMNS``): utilization of
    its own limit, or its usage divided by its own limit (``ContainerInfo``)."""
    by_container: dict[str, dict[str, list[RawSeries]]] = defaultdict(lambda: defaultdict(list))
    for s in series:
        if s.metric in SIDECAR_METRICS:
            by_container[s.metric_labels.get("container_name", "")][s.metric].append(s)
    tables = []
    for container, by_metric in sorted(by_container.items()):
        columns: list[_Column] = []
        for metric, group in by_metric.items():
            read = _distribution_columns if group[0].histograms is not None else _reduced_distribution_columns
            columns.extend(read(group, keys, grid, DISTRIBUTION_PREFIX[metric]))
        table = _usage_to_utilization(_assemble(columns, keys, grid)[0], revisions, problems, container=container)
        tables.append(table.assign(container=container).reindex(columns=SIDECAR_COLUMNS))
    if not tables:
        return pd.DataFrame(columns=SIDECAR_COLUMNS)
    return pd.concat(tables, ignore_index=True)


def _bucket(times: np.ndarray, step: int) -> np.ndarray:
    # A point ending at 10:05:00 covers the minute before it, so it belongs to the 10:00 step.
    return ((times - 1) // step) * step


@dataclass(frozen=True, slots=True)
class _Grid:
    """Every (revision, step) of one build as one integer, ``key * span + step index``, in table order
    (by revision, then time). A column is its sorted codes and their values: columns meet by merging
    sorted integers, where a pandas MultiIndex would factorize and join two levels per column."""

    low: int  # the first step's start, epoch seconds
    step: int
    span: int  # steps from the first to the last

    @classmethod
    def of(cls, series: list[RawSeries], step: int) -> _Grid:
        ends = [s.end_times for s in series if len(s.end_times)]
        if not ends:
            return cls(0, step, 1)
        low = int(_bucket(np.asarray([min(int(e.min()) for e in ends)]), step)[0])
        high = int(_bucket(np.asarray([max(int(e.max()) for e in ends)]), step)[0])
        return cls(low, step, (high - low) // step + 1)

    def codes(self, key_id: int | np.ndarray, end_times: np.ndarray) -> np.ndarray:
        steps = (_bucket(end_times, self.step) - self.low) // self.step
        codes: np.ndarray = np.asarray(key_id, dtype=np.int64) * self.span + steps
        return codes

    def of_series(self, group: list[RawSeries], keys: dict[SeriesKey, int]) -> np.ndarray:
        """Each point's code, the series one after the other."""
        if not group:
            return np.empty(0, dtype=np.int64)
        return np.concatenate([self.codes(keys[(s.project, s.region, s.service, s.revision)], s.end_times)
                               for s in group])

    def keys_and_starts(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return codes // self.span, (codes % self.span) * self.step + self.low


@dataclass(frozen=True, slots=True)
class _Column:
    """One metric column: its values at its (sorted, distinct) codes of the grid."""

    name: str
    codes: np.ndarray
    values: np.ndarray


def _distinct(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(codes, return_inverse=True)``: by marking each code in a table as long as their range
    when the codes are dense (a batch's revisions times its steps, most of them present), which is
    several times faster than sorting them; by sorting otherwise."""
    if len(codes) == 0 or int(codes.max()) - int(codes.min()) > 4 * len(codes) + 4096:
        distinct, inverse = np.unique(codes, return_inverse=True)
        return distinct, inverse.reshape(-1)
    low = int(codes.min())
    offsets = codes - low
    seen = np.zeros(int(offsets.max()) + 1, dtype=bool)
    seen[offsets] = True
    rank = np.cumsum(seen) - 1
    return np.flatnonzero(seen).astype(np.int64) + low, rank[offsets]


def _by_step(codes: np.ndarray, values: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """The points' sum or mean per code, exactly as pandas' groupby gives them (NaN skipped; the sum of
    nothing is 0, the mean NaN): each point is its step's only one when the data is aligned to the
    step, and then it is its own sum and mean; otherwise pandas adds them up (its compensated sum)."""
    distinct, inverse = _distinct(codes)
    if len(distinct) == len(codes):
        out = np.empty(len(distinct), dtype=np.float64)
        out[inverse] = values
        return distinct, (np.where(np.isnan(out), 0.0, out) if how == "sum" else out)
    grouped = pd.Series(values).groupby(inverse, sort=True)
    return distinct, (grouped.sum() if how == "sum" else grouped.mean()).to_numpy(dtype=np.float64)


def _point_amounts(s: RawSeries) -> np.ndarray:
    """Each point as an amount over its interval (rates from ALIGN_RATE times the spacing; a DELTA
    or INT64 point is already an amount)."""
    assert s.values is not None
    if not s.points_are_rates or s.metric not in NATIVELY_DELTA:
        return s.values
    first_gap = float(np.median(np.diff(s.end_times))) if len(s.end_times) > 1 else 60.0
    spacing = np.diff(s.end_times, prepend=s.end_times[0] - first_gap)
    return s.values * spacing


def _values(values: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(values) if values else np.empty(0)


def _amounts(group: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    return _by_step(grid.of_series(group, keys), _values([_point_amounts(s) for s in group]), "sum")


def _request_columns(group: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid) -> list[_Column]:
    codes, requests = _amounts(group, keys, grid)
    errors_group = [s for s in group if s.metric_labels.get("response_code_class") == "5xx"
                    or s.metric_labels.get("response_code", "").startswith("5")]
    errors = requests * 0.0
    if errors_group:
        error_codes, error_values = _amounts(errors_group, keys, grid)
        at = np.minimum(np.searchsorted(error_codes, codes), max(len(error_codes) - 1, 0))
        found = (error_codes[at] == codes) if len(error_codes) else np.zeros(len(codes), dtype=bool)
        errors = np.where(found, error_values[at] if len(error_codes) else 0.0, 0.0)
    step = grid.step
    return [_Column("requests", codes, requests), _Column("req_rate", codes, requests / step),
            _Column("err_rate", codes, errors / step)]


def _instance_columns(group: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid) -> list[_Column]:
    out = []
    for state in ("active", "idle"):
        chosen = [s for s in group if s.metric_labels.get("state", "active") == state]
        if not chosen:
            continue
        key_ids = np.concatenate([np.full(len(s.end_times), keys[(s.project, s.region, s.service, s.revision)])
                                  for s in chosen])
        values = _values([s.values for s in chosen if s.values is not None])
        ends = np.concatenate([s.end_times for s in chosen])
        per_instant = _one_per_instant(key_ids, ends, values)
        if per_instant is None:
            frame = pd.DataFrame({
                "key": key_ids,
                "end": ends,
                "container": np.concatenate([np.full(len(s.end_times), s.metric_labels.get("container_name", ""))
                                             for s in chosen]),
                "value": values,
            })
            # Series of one container at one instant add up; containers of one instance are not extra
            # instances, so take the largest container's count; then average over the step.
            summed = frame.groupby(["key", "end", "container"], sort=False)["value"].sum()
            per_instant = summed.groupby(level=[0, 1]).max().reset_index()
        codes = grid.codes(per_instant["key"].to_numpy(), per_instant["end"].to_numpy())
        out.append(_Column(f"inst_{state}", *_by_step(codes, per_instant["value"].to_numpy(np.float64), "mean")))
    return out


def _one_per_instant(key_ids: np.ndarray, ends: np.ndarray, values: np.ndarray) -> pd.DataFrame | None:
    """The points as the sum-then-max over containers leaves them when nothing is to be added up or
    compared (one point per revision and instant, none NaN: pandas then sums and takes the maximum of
    single values, which returns each as it is), in (revision, instant) order; None otherwise."""
    if len(values) == 0 or np.isnan(values).any():
        return None
    order = np.lexsort((ends, key_ids))
    keys, instants = key_ids[order], ends[order]
    if ((keys[1:] == keys[:-1]) & (instants[1:] == instants[:-1])).any():
        return None
    return pd.DataFrame({"key": keys, "end": instants, "value": values[order]})


def _distribution_columns(group: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid,
                          prefix: str) -> list[_Column]:
    """Merge distributions per (revision, step) by bucket layout, then read percentiles."""
    layouts: dict[bytes, list[RawSeries]] = defaultdict(list)
    for s in group:
        if s.histograms is not None and len(s.end_times):
            layouts[s.histograms.bounds.tobytes()].append(s)
    wanted = tuple(name for name in READ[prefix] if name in QUANTILES)
    parts = [part for members in layouts.values()
             if (part := _merge_layout(members, keys, grid, wanted)) is not None]
    if not parts:
        return []
    codes, merged = parts[0]
    if len(parts) > 1:
        # Different bucket layouts in one step (rare): average their percentiles by sample count.
        table = pd.concat([pd.DataFrame(stats, index=part_codes) for part_codes, stats in parts])
        weights = table["count"]
        sums = table.drop(columns="count").mul(weights, axis=0).groupby(level=0).sum()
        table = sums.div(weights.groupby(level=0).sum(), axis=0)
        codes, merged = table.index.to_numpy(dtype=np.int64), {c: table[c].to_numpy() for c in table.columns}
    return [_Column(f"{prefix}_{name}", codes, merged[name]) for name in READ[prefix]]


def _reduced_distribution_columns(group: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid,
                                  prefix: str) -> list[_Column]:
    """A distribution metric already reduced to one number per point: that number for every column."""
    chosen = [s for s in group if s.values is not None]
    values = _values([s.values for s in chosen if s.values is not None])
    codes, level = _by_step(grid.of_series(chosen, keys), values, "mean")
    return [_Column(f"{prefix}_{name}", codes, level) for name in READ[prefix]]


def _merge_layout(members: list[RawSeries], keys: dict[SeriesKey, int], grid: _Grid,
                  wanted: tuple[str, ...]) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """The members' distributions merged per code (bucket counts added): each code's sample count,
    mean and the ``wanted`` percentiles (names of ``QUANTILES``), or None when no point holds a sample."""
    hists = [s.histograms for s in members if s.histograms is not None]
    codes = grid.of_series(members, keys)
    n = np.concatenate([h.count for h in hists])
    keep = n > 0
    if not keep.any():
        return None
    distinct, inverse = _distinct(codes[keep])
    size = len(distinct)
    n = n[keep]
    means = np.concatenate([h.mean for h in hists])[keep]
    total = np.bincount(inverse, weights=n, minlength=size)
    mean = np.bincount(inverse, weights=n * means, minlength=size) / total
    merged = {"count": total, "mean": mean}
    if not wanted:
        return distinct, merged
    if len(hists[0].bounds) == 0:  # no buckets: only the mean is known
        return distinct, {**merged, **{name: mean.copy() for name in wanted}}
    q = percentiles(_added_counts(hists, keep, inverse), hists[0].bounds, tuple(QUANTILES[name] for name in wanted),
                    **_range(hists, keep, inverse, size))
    return distinct, {**merged, **{name: q[:, i] for i, name in enumerate(wanted)}}


def _added_counts(hists: list[Histograms], keep: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """The bucket counts of the points kept, added up per code (``inverse``). Bucket counts are whole
    numbers, so summing them in any order gives the same floats. They are the largest arrays of a
    batch (points x buckets): copied only where needed (most series come in time order, one after
    the other, so their points are already in code order)."""
    counts = np.concatenate([h.counts for h in hists]) if len(hists) > 1 else hists[0].counts
    counts = counts if keep.all() else counts[keep]
    if (inverse[1:] < inverse[:-1]).any():
        order = np.argsort(inverse, kind="stable")
        counts, inverse = counts[order], inverse[order]
    starts = np.flatnonzero(np.diff(inverse, prepend=-1))
    if len(starts) < len(counts):  # else one point per step already (data aligned to the step)
        counts = np.add.reduceat(counts, starts, axis=0)
    return counts


def _range(hists: list[Histograms], keep: np.ndarray, inverse: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Each code's observed minimum and maximum over its points (NaN where none says)."""
    lows = np.concatenate([h.range_min for h in hists])[keep]
    highs = np.concatenate([h.range_max for h in hists])[keep]
    lower = np.full(size, np.inf)
    upper = np.full(size, -np.inf)
    np.minimum.at(lower, inverse, np.where(np.isnan(lows), np.inf, lows))
    np.maximum.at(upper, inverse, np.where(np.isnan(highs), -np.inf, highs))
    return {"lower": np.where(np.isfinite(lower), lower, np.nan), "upper": np.where(np.isfinite(upper), upper, np.nan)}


def _assemble(columns: list[_Column], keys: dict[SeriesKey, int], grid: _Grid) -> tuple[pd.DataFrame, np.ndarray]:
    """The table: a row per code any column has (NaN where a column has none), in (project, region,
    service, revision, time) order, the first column of a name winning; and each row's revision's rank
    in that order."""
    if not columns:
        return pd.DataFrame(columns=[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]), np.empty(0, dtype=np.intp)
    first: dict[str, _Column] = {}
    for column in columns:
        first.setdefault(column.name, column)
    codes = columns[0].codes
    if any(len(c.codes) != len(codes) or not np.array_equal(c.codes, codes) for c in columns[1:]):
        codes = np.unique(np.concatenate([c.codes for c in columns]))
    key_ids, starts = grid.keys_and_starts(codes)
    # Table order: the keys' names sorted (the grid's key ids are in the order first seen).
    rank = np.empty(len(keys), dtype=np.int64)
    rank[[i for _, i in sorted(keys.items())]] = np.arange(len(keys))
    order = np.lexsort((starts, rank[key_ids]))
    key_table = np.asarray(list(keys), dtype=object).reshape(-1, len(KEY_COLUMNS))
    data: dict[str, Any] = {name: key_table[key_ids[order], i] for i, name in enumerate(KEY_COLUMNS)}
    data["ts"] = pd.to_datetime(starts[order], unit="s", utc=True)
    for name in [*METRIC_COLUMNS, *(n for n in first if n not in METRIC_COLUMNS)]:
        found = first.get(name)
        if found is not None and len(found.codes) == len(codes):  # the column has every row (aligned data)
            values = found.values
        else:
            values = np.full(len(codes), np.nan)
            if found is not None:
                values[np.searchsorted(codes, found.codes)] = found.values
        # Amounts absent in a step were zero (Cloud Monitoring writes no DELTA point for an idle minute).
        if name in ("requests", "req_rate", "err_rate", "billable_s", "cpu_alloc_s", "mem_alloc_gibs"):
            values = np.where(np.isnan(values), 0.0, values)
        data[name] = values[order]
    # Built in one go, so the metric columns share one block: every detector takes rows of this
    # table (a revision's, a window's), and a take costs a call per block.
    return pd.DataFrame(data), rank[key_ids[order]]


def _revision_table(raw: RawData,
                    keys: dict[tuple[str, str, str, str], int]) -> dict[tuple[ServiceKey, str], RevisionInfo]:
    """Every revision seen in metrics or the Admin API, matched on (region, service, revision).

    The Admin API may name the project by number where Monitoring uses the ID, so the project of
    the metrics wins when both are present.
    """
    floors = {(s.key.region, s.key.service): s for s in raw.service_infos if s.min_instances > 0}
    by_name = {(r.region, r.service, r.revision): _with_service_floor(r, floors.get((r.region, r.service)))
               for r in raw.revisions}
    table: dict[tuple[ServiceKey, str], RevisionInfo] = {}
    for project, region, service, revision in keys:
        info = by_name.pop((region, service, revision), None)
        if info is None:
            info = RevisionInfo(project, region, service, revision)
        elif info.project != project:
            info = replace(info, project=project)
        table[(ServiceKey(project, region, service), revision)] = info
    for info in by_name.values():
        table[(info.key, info.revision)] = info
    return table


def _with_service_floor(info: RevisionInfo, service: ServiceInfo | None) -> RevisionInfo:
    """A service-level min-instances floor (``Service.scaling``) is divided among the revisions that
    take traffic, by their share (rounded up); a revision that takes none now held the whole floor
    while it served. The revision's own ``scaling`` wins when it is higher."""
    if service is None:
        return info
    if service.traffic and info.revision in service.traffic:
        share = math.ceil(service.min_instances * service.traffic[info.revision] / 100.0)
    else:
        share = service.min_instances
    return replace(info, min_instances=max(info.min_instances, share), service_min_instances=share)


def _memory_limit_gib(info: RevisionInfo, container: str) -> float | None:
    """The revision's (its ingress container's) memory limit, or that of its container ``container``."""
    if not container:
        return info.memory_limit_gib
    return next((c.memory_limit_gib for c in info.containers if c.name == container), None)


def _usage_to_utilization(metrics: pd.DataFrame, revisions: dict[tuple[ServiceKey, str], RevisionInfo],
                          problems: list[Problem], *, container: str = "") -> pd.DataFrame:
    """Fill mem_* from memory usage where utilizations were absent: bytes ÷ the revision's limit (the
    sidecar ``container``'s own, when given), or, when the limit is unknown, ÷ the highest usage the
    service (that container) showed, so the analysis stays unit-free."""
    usage_cols = [c for c in metrics.columns if c.startswith("memusage_")]
    if not usage_cols:
        return metrics
    keys = metrics[KEY_COLUMNS].itertuples(index=False)
    limits = np.asarray([
        _memory_limit_gib(revisions.get((ServiceKey(p, r, s), v)) or RevisionInfo(p, r, s, v), container) or np.nan
        for p, r, s, v in keys
    ]) * 2**30
    unknown = np.isnan(limits) & metrics["memusage_max"].notna().to_numpy()
    if unknown.any():
        service_peak = metrics.groupby(["project", "region", "service"])["memusage_max"].transform("max")
        limits = np.where(unknown, service_peak.to_numpy(), limits)
        for revision in sorted(set(metrics.loc[unknown, "revision"])):
            subject = f"{revision} (sidecar {container})" if container else revision
            problems.append(Problem(subject, "memory limit unknown: memory is read relative to the highest "
                                    "usage the service showed, so time-to-limit is not estimated",
                                    "include revisions/*.json (Cloud Run Admin API) in the snapshot"))
    for col in usage_cols:
        target = col.replace("memusage_", "mem_")
        fraction = metrics[col].to_numpy() / limits
        if target in metrics:
            metrics[target] = metrics[target].fillna(pd.Series(fraction, index=metrics.index))
        else:
            metrics[target] = fraction
    return metrics.drop(columns=usage_cols)
