"""Chart geometry for the HTML report: series scaled into SVG coordinates, ticks and deploy markers.

Only numbers and labels are produced here; the SVG markup lives in ``templates/chart.svg.j2``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.analysis import ServiceResult

WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 14, 30
MAX_POINTS = 360


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    css: str  # a class from the stylesheet: s1..s3, trough, trend, load
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


@dataclass(slots=True)
class Chart:
    chart_id: str
    title: str
    description: str  # alt text: what the chart shows, in words
    unit: str
    lines: list[Line] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not any(line.segments for line in self.lines)


class _Scale:
    def __init__(self, start: pd.Timestamp, end: pd.Timestamp, low: float, high: float) -> None:
        self.t0 = start.value
        self.span = max(end.value - start.value, 1)
        self.low = low
        self.high = high if high > low else low + 1.0

    def x(self, ts: np.ndarray) -> np.ndarray:
        return LEFT + (ts - self.t0) / self.span * (WIDTH - RIGHT - LEFT)

    def y(self, v: np.ndarray) -> np.ndarray:
        return HEIGHT - BOTTOM - (v - self.low) / (self.high - self.low) * (HEIGHT - BOTTOM - TOP)


def _downsample(series: pd.Series, step: pd.Timedelta) -> pd.Series:
    if len(series) <= MAX_POINTS:
        return series
    return series.resample(step).mean()


def _segments(series: pd.Series, scale: _Scale, gap: pd.Timedelta) -> tuple[str, ...]:
    series = series.dropna()
    if series.empty:
        return ()
    xs = scale.x(series.index.asi8.astype(np.float64))
    ys = scale.y(series.to_numpy(dtype=np.float64))
    breaks = np.flatnonzero(np.diff(series.index.asi8) > gap.value) + 1
    parts = []
    for a, b in zip([0, *breaks], [*breaks, len(xs)], strict=True):
        parts.append(" ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[a:b], ys[a:b], strict=True)))
    return tuple(parts)


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [round(first + i * step, 10) for i in range(int((high - first) / step) + 1)]


def _time_ticks(start: pd.Timestamp, end: pd.Timestamp, scale: _Scale) -> list[Tick]:
    days = (end - start) / pd.Timedelta(days=1)
    freq = "1D" if days > 2 else "6h" if days > 0.5 else "1h"
    stamps = pd.date_range(start.ceil(freq), end, freq=freq)
    if len(stamps) > 8:
        stamps = stamps[:: math.ceil(len(stamps) / 8)]
    fmt = "%a %d %b" if freq == "1D" else "%d %b %H:%M"
    return [Tick(float(scale.x(np.asarray([s.value], dtype=np.float64))[0]), s.strftime(fmt)) for s in stamps]


def _chart(result: ServiceResult, chart_id: str, title: str, unit: str, description: str,
           series: list[tuple[str, str, pd.Series]], *, floor_zero: bool = True,
           fixed_high: float | None = None, step_seconds: int = 300) -> Chart:
    view = result.view
    start, end = view.rows["ts"].min(), view.rows["ts"].max()
    values = [s.dropna().to_numpy(dtype=np.float64) for _, _, s in series]
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.empty(0)
    high = float(finite.max()) if finite.size else 1.0
    low = 0.0 if floor_zero or not finite.size else float(finite.min())
    if fixed_high is not None:
        high = max(high, fixed_high)
    ticks = nice_ticks(low, high * 1.05 if high > 0 else 1.0)
    scale = _Scale(start, end, min(low, ticks[0]), max(ticks[-1], high))
    bucket = pd.Timedelta(seconds=max(step_seconds, int((end - start).total_seconds() / MAX_POINTS) or 1))
    gap = max(bucket * 3, pd.Timedelta(seconds=step_seconds * 3))
    chart = Chart(chart_id, title, description, unit)
    for label, css, s in series:
        segs = _segments(_downsample(s, bucket), scale, gap)
        chart.lines.append(Line(label, css, segs))
    chart.y_ticks = [Tick(float(scale.y(np.asarray([t]))[0]), f"{t:g}") for t in ticks]
    chart.x_ticks = _time_ticks(start, end, scale)
    for span in view.spans:
        if start <= span.deploy_time <= end and span.deploy_time_known:
            x = float(scale.x(np.asarray([span.deploy_time.value], dtype=np.float64))[0])
            chart.markers.append(Marker(x, span.name, f"{span.name} deployed {span.deploy_time:%Y-%m-%d %H:%M} UTC"))
    return chart


def _by_ts(rows: pd.DataFrame, column: str, how: str = "mean") -> pd.Series:
    return rows.groupby("ts")[column].agg(how)


def service_charts(result: ServiceResult, step_seconds: int) -> list[Chart]:
    """Memory, instances vs load, latency and CPU charts for one service."""
    view = result.view
    rows = view.rows
    if rows.empty:
        return []
    charts: list[Chart] = []
    memory = [("typical instance (mean)", "s1", _by_ts(rows, "mem_mean") * 100),
              ("worst instance (max)", "s2", _by_ts(rows, "mem_max", "max") * 100)]
    for item in result.evidence:
        if item.leak is not None:
            leak = item.leak
            memory.append((f"troughs of {item.span.name}", "trough", leak.troughs * 100))
            hours = (leak.troughs.index - leak.troughs.index[0]) / pd.Timedelta(hours=1)
            fitted = leak.troughs.median() + leak.fit_slope_per_hour * (hours - np.median(hours))
            memory.append((f"trend of {item.span.name}", "trend", pd.Series(fitted * 100, index=leak.troughs.index)))
    leak_text = "; ".join(f.summary for f in result.findings if f.kind.value == "memory_baseline_rise")
    charts.append(_chart(result, "mem", "Memory utilization", "% of limit",
                         "Memory as a percentage of the limit, typical and worst instance, with deploys marked. "
                         + (leak_text or "No rising baseline found."),
                         memory, fixed_high=100.0, step_seconds=step_seconds))
    totals = view.totals
    instances = totals["inst_active"] + totals["inst_idle"].fillna(0.0)
    load = totals["req_rate"]
    load_scaled = load / max(float(load.max()), 1e-9) * max(float(instances.max()), 1.0)
    creep_text = "; ".join(f.summary for f in result.findings if f.kind.value == "instance_creep")
    charts.append(_chart(result, "inst", "Instances against load", "instances",
                         "Instance count (active and idle) and request rate scaled to the same height. "
                         + (creep_text or "Instances follow the load."),
                         [("instances", "s1", instances), ("request rate (scaled)", "load", load_scaled)],
                         step_seconds=step_seconds))
    charts.append(_chart(result, "lat", "Request latency", "ms",
                         "Request latency percentiles p50, p95 and p99 in milliseconds.",
                         [("p50", "s1", _by_ts(rows, "lat_p50")), ("p95", "s2", _by_ts(rows, "lat_p95")),
                          ("p99", "s3", _by_ts(rows, "lat_p99"))], step_seconds=step_seconds))
    charts.append(_chart(result, "cpu", "CPU utilization", "% of limit",
                         "CPU utilization of the typical instance as a percentage of its limit.",
                         [("typical instance (mean)", "s1", _by_ts(rows, "cpu_mean") * 100)],
                         fixed_high=None, step_seconds=step_seconds))
    return charts
