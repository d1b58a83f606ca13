"""Chart data and geometry for the reports.

``chart_specs`` picks what each chart of a service shows (series, the memory limit, deploys, the
periods a revision with findings served); it is shared by the HTML report and the email digest.
``svg_chart`` scales a spec into SVG coordinates, ticks and labelled deploy markers: only numbers and
labels, the SVG markup lives in ``templates/partials/chart.svg.j2``. Where a series has more points
than the chart has columns, each column keeps its lowest and highest point (``extremes``), so spikes
and troughs survive a month of data. ``sparkline`` draws the overview's small memory chart. The
digest draws the same specs as PNG (``analyzer.render.digest``).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from analyzer.analysis import ServiceResult, hourly
from analyzer.analysis.findings import RevisionEvidence
from analyzer.analysis.memory import LeakEvidence, signal_words
from analyzer.analysis.timeline import RevisionSpan
from analyzer.model import FindingKind, FloatArray

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 30, 30
MAX_POINTS = 360
COLUMNS = 120  # columns of a chart's width (6 units each), each drawn as its lowest and highest point
LABEL_WIDTH = 86  # px a deploy label needs before the next one must move to another row
LABEL_ROWS = 2
MAX_LABELS = LABEL_ROWS * (WIDTH - LEFT - RIGHT) // LABEL_WIDTH  # deploy labels a chart has room for

# One palette for the SVG (CSS variables in report.css) and the PNG charts of the digest.
PALETTE: dict[str, str] = {
    "s1": "#0969da",
    "s2": "#bc4c00",
    "s3": "#8250df",
    "trough": "#1a7f37",
    "trend": "#cf222e",
    "load": "#6e7781",
    "limit": "#b3261e",
    "deploy": "#57606a",
    "band": "#fff1ef",
}


@dataclass(frozen=True, slots=True)
class SeriesSpec:
    label: str
    css: str  # a palette key: s1..s3, trough, trend, load
    values: pd.Series  # indexed by UTC timestamps
    width: float = 1.6
    dashed: bool = False
    how: str = "mean"  # how the digest's PNG merges points when there are too many: mean, max, min
    split_at_nan: bool = False  # a NaN separates pieces that must not be joined (the trend of each climb)


@dataclass(frozen=True, slots=True)
class Deploy:
    when: pd.Timestamp
    revision: str
    short: str  # the revision without the service prefix, for the marker label
    labelled: bool = True  # False: a bare line (too many deploys to label; this one had no findings)


@dataclass(frozen=True, slots=True)
class Band:
    start: pd.Timestamp
    end: pd.Timestamp
    label: str


@dataclass(slots=True)
class ChartSpec:
    """What one chart shows, before any scaling."""

    chart_id: str
    title: str
    unit: str
    description: str  # alt text: what the chart shows, in words
    start: pd.Timestamp
    end: pd.Timestamp
    series: list[SeriesSpec] = field(default_factory=list)
    reference: tuple[float, str] | None = None  # a horizontal line (value, label), e.g. the memory limit
    deploys: list[Deploy] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    floor_zero: bool = True
    fixed_high: float | None = None


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    css: str
    segments: tuple[str, ...]  # "x,y x,y …" per polyline (a data gap starts a new one)


@dataclass(frozen=True, slots=True)
class Tick:
    pos: float
    label: str


@dataclass(frozen=True, slots=True)
class Marker:
    x: float
    label: str
    title: str
    label_y: float
    anchor: str  # "start" or "end" (near the right edge)


@dataclass(frozen=True, slots=True)
class BandBox:
    x: float
    width: float
    label: str


@dataclass(frozen=True, slots=True)
class ReferenceLine:
    y: float
    label: str


@dataclass(slots=True)
class Chart:
    chart_id: str
    title: str
    description: str
    unit: str
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    bands: list[BandBox] = field(default_factory=list)
    reference: ReferenceLine | None = None
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not any(line.segments for line in self.lines)


def epoch_ns(index: pd.DatetimeIndex) -> np.ndarray:
    """Nanoseconds since the epoch whatever the index's resolution (pandas keeps s, ms, us or ns)."""
    return np.asarray(index.as_unit("ns").asi8, dtype=np.float64)


class _Scale:
    def __init__(self, start: pd.Timestamp, end: pd.Timestamp, low: float, high: float) -> None:
        self.t0 = float(start.value)  # Timestamp.value is always nanoseconds
        self.span = max(float(end.value - start.value), 1.0)
        self.low = low
        self.high = high if high > low else low + 1.0

    def x(self, ns: np.ndarray) -> np.ndarray:
        return LEFT + (ns - self.t0) / self.span * (WIDTH - RIGHT - LEFT)

    def x_at(self, stamp: pd.Timestamp) -> float:
        return float(self.x(np.asarray([stamp.value], dtype=np.float64))[0])

    def y(self, v: np.ndarray) -> np.ndarray:
        return HEIGHT - BOTTOM - (v - self.low) / (self.high - self.low) * (HEIGHT - BOTTOM - TOP)

    def y_at(self, value: float) -> float:
        return float(self.y(np.asarray([value], dtype=np.float64))[0])


def downsample(
    series: pd.Series, step: pd.Timedelta, how: str = "mean", max_points: int = MAX_POINTS
) -> pd.Series:
    if len(series) <= max_points:
        return series
    return series.resample(step).agg(how)


def extremes(ns: np.ndarray, values: np.ndarray, *, start: float, end: float, columns: int) -> np.ndarray:
    """Which points to draw when there are more than pixels: per column of ``[start, end]`` (epoch ns) the
    lowest and the highest point, in time order, so that a one-step spike and a one-step trough both
    survive (a mean per bucket flattens them). ``ns`` ascending, ``values`` finite; returns indices."""
    if len(ns) <= 2 * columns:
        return np.arange(len(ns))
    column = np.clip(((ns - start) / max(end - start, 1.0) * columns).astype(np.int64), 0, columns - 1)
    by_column = np.lexsort((values, column))  # per column, lowest value first and highest last
    first = np.flatnonzero(np.r_[True, np.diff(column[by_column]) != 0])
    last = np.r_[first[1:] - 1, len(by_column) - 1]
    return np.unique(np.concatenate([by_column[first], by_column[last]]))


def points(xs: np.ndarray, ys: np.ndarray) -> str:
    """An SVG ``points`` list at whole units (a unit is at most a pixel or two of a chart as shown),
    without what draws nothing: a point equal to the one before it, or inside a horizontal run."""
    x = np.rint(xs).astype(np.int64)
    y = np.rint(ys).astype(np.int64)
    keep = np.ones(len(x), dtype=bool)
    if len(x) > 1:
        keep[1:] = (x[1:] != x[:-1]) | (y[1:] != y[:-1])
        x, y = x[keep], y[keep]
        flat = np.zeros(len(x), dtype=bool)
        flat[1:-1] = (y[1:-1] == y[:-2]) & (y[1:-1] == y[2:])
        x, y = x[~flat], y[~flat]
    return " ".join(f"{a},{b}" for a, b in zip(x.tolist(), y.tolist(), strict=True))


def spacing(series: pd.Series) -> pd.Timedelta:
    """The typical distance between a series' points (a 2 h trough series is not a data gap)."""
    if len(series) < 2:
        return pd.Timedelta(0)
    return pd.Timedelta(np.median(np.diff(epoch_ns(pd.DatetimeIndex(series.index)))), unit="ns")


def _segments(
    series: pd.Series, scale: _Scale, gap: pd.Timedelta, *, split_at_nan: bool = False
) -> tuple[str, ...]:
    """Polyline point lists; a line breaks at a gap in time longer than ``gap`` (and at NaN if asked).
    Each piece keeps the lowest and highest point of every column (``extremes``), not every point."""
    if split_at_nan:
        run_id = series.isna().cumsum().to_numpy()
        pieces = [series[(run_id == i)].dropna() for i in np.unique(run_id)]
        return tuple(p for piece in pieces if len(piece) for p in _segments(piece, scale, gap))
    series = series.dropna()
    if series.empty:
        return ()
    ns = epoch_ns(pd.DatetimeIndex(series.index))
    values = series.to_numpy(dtype=np.float64)
    breaks = np.flatnonzero(np.diff(ns) > gap.value) + 1
    parts = []
    for a, b in zip([0, *breaks], [*breaks, len(ns)], strict=True):
        keep = a + extremes(ns[a:b], values[a:b], start=scale.t0, end=scale.t0 + scale.span, columns=COLUMNS)
        xs, ys = scale.x(ns[keep]), scale.y(values[keep])
        parts.append(points(xs, ys))
    return tuple(parts)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def time_ticks(start: pd.Timestamp, end: pd.Timestamp) -> tuple[list[pd.Timestamp], str]:
    """Tick times and their strftime format for a window (at most eight ticks)."""
    days = (end - start) / pd.Timedelta(days=1)
    freq = "1D" if days > 2 else "6h" if days > 0.5 else "1h"
    stamps = list(pd.date_range(start.ceil(freq), end, freq=freq))
    if len(stamps) > 8:
        stamps = stamps[:: math.ceil(len(stamps) / 8)]
    return stamps, "%a %d %b" if freq == "1D" else "%d %b %H:%M"


def value_range(spec: ChartSpec) -> tuple[float, float]:
    """The y range a chart needs: its data, the reference line and ``fixed_high``."""
    values = [s.values.dropna().to_numpy(dtype=np.float64) for s in spec.series]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    high = float(finite.max()) if finite.size else 1.0
    low = 0.0 if spec.floor_zero or not finite.size else float(finite.min())
    for extra in (spec.fixed_high, spec.reference[0] if spec.reference else None):
        if extra is not None:
            high = max(high, extra)
    return low, high


def _markers(spec: ChartSpec, scale: _Scale) -> list[Marker]:
    """Deploy markers with their labels spread over rows so that neighbours do not overlap."""
    markers: list[Marker] = []
    row_end = [-math.inf] * LABEL_ROWS
    for deploy in spec.deploys:
        x = scale.x_at(deploy.when)
        title = f"{deploy.revision} deployed {deploy.when:%Y-%m-%d %H:%M} UTC"
        if not deploy.labelled:
            markers.append(Marker(x, "", title, TOP - 3, "start"))
            continue
        anchor = "end" if x > WIDTH - RIGHT - LABEL_WIDTH else "start"
        span = (x - LABEL_WIDTH, x) if anchor == "end" else (x, x + LABEL_WIDTH)
        row = next((i for i, end in enumerate(row_end) if span[0] >= end), LABEL_ROWS - 1)
        row_end[row] = span[1]
        markers.append(
            Marker(
                x,
                deploy.short,
                title,
                TOP - 18 + 11 * row,
                anchor,
            )
        )
    return markers


def svg_chart(spec: ChartSpec, *, step_seconds: int = 300) -> Chart:
    """Scale a spec into the SVG coordinates of ``templates/partials/chart.svg.j2``."""
    start, end = spec.start, spec.end
    low, high = value_range(spec)
    ticks = nice_ticks(low, high * 1.05 if high > 0 else 1.0)
    scale = _Scale(start, end, min(low, ticks[0]), max(ticks[-1], high))
    gap = pd.Timedelta(seconds=step_seconds * 3)
    chart = Chart(spec.chart_id, spec.title, spec.description, spec.unit)
    for s in spec.series:
        values = s.values
        own_gap = max(gap, spacing(values.dropna()) * 2.5)
        chart.lines.append(
            Line(s.label, s.css, _segments(values, scale, own_gap, split_at_nan=s.split_at_nan))
        )
    chart.y_ticks = [Tick(scale.y_at(t), f"{t:g}") for t in ticks]
    stamps, fmt = time_ticks(start, end)
    chart.x_ticks = [Tick(scale.x_at(s), s.strftime(fmt)) for s in stamps]
    chart.markers = _markers(spec, scale)
    for band in spec.bands:
        x0, x1 = scale.x_at(max(band.start, start)), scale.x_at(min(band.end, end))
        if x1 > x0:
            chart.bands.append(BandBox(x0, x1 - x0, band.label))
    if spec.reference is not None:
        chart.reference = ReferenceLine(scale.y_at(spec.reference[0]), spec.reference[1])
    return chart


def _by_ts(rows: pd.DataFrame, column: str, how: str = "mean") -> pd.Series:
    return rows.groupby("ts")[column].agg(how)


def step_highest(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, FloatArray]:
    """Each step's highest ``column`` value, as ``_by_ts(rows, column, "max").dropna()`` (NaN skipped,
    a step without any left out): the steps' epoch nanoseconds and the values, in time order."""
    steps = hourly.by_step(rows["ts"])
    if not len(steps.starts):
        return np.empty(0), np.empty(0)
    highest = np.fmax.reduceat(rows[column].to_numpy(dtype=np.float64)[steps.order], steps.starts)
    held = ~np.isnan(highest)
    return epoch_ns(steps.index()[held]), highest[held]


def trend_runs(troughs: pd.Series, min_drop: float = 0.02) -> list[pd.Series]:
    """The troughs split where they fall (an OOM kill or new instances reset memory), for drawing the
    fitted slope through each climb; runs shorter than three bins are left out. Display only: the
    detector's own segmentation decides the finding."""
    values = troughs.to_numpy(dtype=np.float64)
    starts = [0, *(np.flatnonzero(np.diff(values) < -min_drop) + 1).tolist(), len(values)]
    return [troughs.iloc[a:b] for a, b in itertools.pairwise(starts) if b - a >= 3]


def _trend(leak: LeakEvidence) -> pd.Series:
    """The fitted slope drawn through each climb (one shared slope, each run at its own level)."""
    pieces: list[pd.Series] = []
    for run in trend_runs(leak.troughs):
        hours = ((run.index - run.index[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        level = float(np.median(run.to_numpy() - leak.fit_slope_per_hour * hours))
        pieces.append(pd.Series(level + leak.fit_slope_per_hour * hours, index=run.index))
        # A NaN just after each run keeps the polylines of two climbs apart.
        pieces.append(pd.Series([np.nan], index=[run.index[-1] + pd.Timedelta(seconds=1)]))
    return pd.concat(pieces) if pieces else pd.Series(dtype=np.float64)


def _short(revision: str, service: str) -> str:
    prefix = f"{service}-"
    return (
        revision[len(prefix) :] if revision.startswith(prefix) and len(revision) > len(prefix) else revision
    )


def _memory_limit_label(spans: list[RevisionSpan]) -> str:
    limits = [s.info.memory_limit_gib for s in spans]
    known = sorted({gib for gib in limits if gib})
    if not all(limits):
        return "100 % = memory limit (or the highest usage seen, where the limit is unknown)"
    sizes = ", ".join(f"{gib * 1024:.0f} MiB" if gib < 1 else f"{gib:g} GiB" for gib in known)
    return f"memory limit ({sizes})"


def _memory_series(rows: pd.DataFrame, evidence: list[RevisionEvidence], service: str) -> list[SeriesSpec]:
    """Typical and worst instance, and the troughs (or the peaks, ``memory.PEAK``) and fitted trend of each
    confirmed leak (percent)."""
    memory = [
        SeriesSpec("typical instance (mean)", "s1", _by_ts(rows, "mem_mean") * 100, 1.2),
        SeriesSpec("worst instance (max)", "s2", _by_ts(rows, "mem_max", "max") * 100, 1.0, how="max"),
    ]
    for item in evidence:
        if item.leak is not None and item.leak.confirmed:
            what, whose = signal_words(item.leak.signal)
            memory.append(
                SeriesSpec(
                    f"{what} of {_short(item.span.name, service)} ({whose})",
                    "trough",
                    item.leak.troughs * 100,
                    2.2,
                )
            )
            memory.append(
                SeriesSpec(
                    "fitted trend of the troughs",
                    "trend",
                    _trend(item.leak) * 100,
                    2.0,
                    True,
                    split_at_nan=True,
                )
            )
    return memory


def chart_specs(result: ServiceResult) -> list[ChartSpec]:
    """Memory (with troughs, their fitted trend and the limit), the memory of each sidecar with a finding
    (on its own limit), instances against load, latency and CPU."""
    view = result.view
    rows = view.rows
    if rows.empty:
        return []
    start, end = rows["ts"].min(), rows["ts"].max()
    service = view.key.service
    flagged = {f.revision for f in result.findings}
    deploys = [
        Deploy(s.deploy_time, s.name, _short(s.name, service))
        for s in view.spans
        if s.deploy_time_known and start <= s.deploy_time <= end
    ]
    if len(deploys) > MAX_LABELS:  # labels would pile up: keep those of the story, lines for the rest
        story = flagged | {f.resolved_by for f in result.findings if f.resolved_by}
        deploys = [replace(d, labelled=d.revision in story) for d in deploys]
    bands = [Band(s.first_seen, s.last_seen, f"{s.name} (findings)") for s in view.spans if s.name in flagged]

    def spec(
        chart_id: str,
        title: str,
        unit: str,
        description: str,
        series: list[SeriesSpec],
        *,
        reference: tuple[float, str] | None = None,
        fixed_high: float | None = None,
    ) -> ChartSpec:
        return ChartSpec(
            chart_id,
            title,
            unit,
            description,
            start,
            end,
            series,
            reference=reference,
            deploys=deploys,
            bands=bands,
            fixed_high=fixed_high,
        )

    def said(kind: FindingKind) -> str:  # the service's own findings (a sidecar's have their own chart)
        return "; ".join(f.summary for f in result.findings if f.kind is kind and not f.container)

    memory = _memory_series(rows, result.evidence, service)
    specs = [
        spec(
            "mem",
            "Memory utilization",
            "% of limit",
            "Memory as a percentage of the limit for the typical and the worst instance, the limit at "
            "100 %, deploys marked. "
            + (said(FindingKind.MEMORY_BASELINE_RISE) or "No rising baseline found."),
            memory,
            reference=(100.0, _memory_limit_label(view.spans)),
            fixed_high=100.0,
        )
    ]
    for sidecar in result.sidecars:
        specs.append(
            spec(
                f"mem-{sidecar.container}",
                f"Memory utilization of sidecar {sidecar.container}",
                "% of its limit",
                f"Memory of the sidecar container {sidecar.container} as a percentage of its own limit for the "
                "typical and the worst instance, its limit at 100 %, deploys marked. "
                + "; ".join(f.summary for f in sidecar.findings),
                _memory_series(sidecar.view.rows, sidecar.evidence, service),
                reference=(100.0, _memory_limit_label(sidecar.view.spans)),
                fixed_high=100.0,
            )
        )
    totals = view.totals
    instances = totals["inst_active"] + totals["inst_idle"].fillna(0.0)
    load = totals["req_rate"]
    peak_load = float(load.max()) if load.notna().any() else 0.0
    load_scaled = load / max(peak_load, 1e-9) * max(float(instances.max()), 1.0)
    specs.append(
        spec(
            "inst",
            "Instances against load",
            "instances",
            "Instance count (active and idle) and the request rate scaled to the same height. "
            + (said(FindingKind.INSTANCE_CREEP) or "Instances follow the load."),
            [
                SeriesSpec("instances", "s1", instances),
                SeriesSpec(
                    f"request rate (scaled; peak {peak_load:,.1f} req/s)", "load", load_scaled, 1.2, True
                ),
            ],
        )
    )
    specs.append(
        spec(
            "lat",
            "Request latency",
            "ms",
            "Request latency percentiles p50, p95 and p99 in milliseconds. "
            + (said(FindingKind.LATENCY_REGRESSION) or "No latency regression found."),
            [
                SeriesSpec("p50", "s1", _by_ts(rows, "lat_p50")),
                SeriesSpec("p95", "s2", _by_ts(rows, "lat_p95"), 1.2),
                SeriesSpec("p99", "s3", _by_ts(rows, "lat_p99"), 1.0),
            ],
        )
    )
    specs.append(
        spec(
            "cpu",
            "CPU utilization",
            "% of limit",
            "CPU utilization of the typical instance as a percentage of its limit. "
            + (said(FindingKind.CPU_REGRESSION) or "No CPU regression found."),
            [SeriesSpec("typical instance (mean)", "s1", _by_ts(rows, "cpu_mean") * 100)],
        )
    )
    return specs


def service_charts(result: ServiceResult, step_seconds: int) -> list[Chart]:
    """The SVG charts of one service, in report order."""
    return [svg_chart(s, step_seconds=step_seconds) for s in chart_specs(result)]


SPARK_WIDTH, SPARK_HEIGHT = 240, 48  # viewBox units: drawn at half size, so a unit is half a pixel
SPARK_COLUMNS = 40


@dataclass(frozen=True, slots=True)
class Sparkline:
    """A service's worst-instance memory over the window as a tiny chart (0 to 100 % of the limit, the
    same scale on every row, so a climb toward the limit stands out in a list of services)."""

    segments: tuple[str, ...]  # "x,y x,y …" per polyline in a SPARK_WIDTH × SPARK_HEIGHT box
    peak_pct: float | None  # the highest worst-instance memory seen, % of the limit


def sparkline(result: ServiceResult, start: pd.Timestamp, end: pd.Timestamp, step_seconds: int) -> Sparkline:
    """The overview's memory sparkline of one service over ``[start, end]``: its lows and highs per
    column (``extremes``), broken where data is missing for more than three steps."""
    rows = result.view.rows
    if rows.empty:
        return Sparkline((), None)
    ns, values = step_highest(rows, "mem_max")
    if not len(values):
        return Sparkline((), None)
    values = values * 100
    t0, span = float(start.value), max(float(end.value - start.value), 1.0)
    breaks = np.flatnonzero(np.diff(ns) > step_seconds * 3e9) + 1
    segments = []
    for a, b in zip([0, *breaks], [*breaks, len(ns)], strict=True):
        keep = a + extremes(ns[a:b], values[a:b], start=t0, end=t0 + span, columns=SPARK_COLUMNS)
        xs = (ns[keep] - t0) / span * SPARK_WIDTH
        ys = SPARK_HEIGHT - np.clip(values[keep], 0.0, 100.0) / 100.0 * (SPARK_HEIGHT - 4) - 2
        segments.append(points(xs, ys))
    return Sparkline(tuple(segments), float(values.max()))
