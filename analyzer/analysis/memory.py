"""Rising memory baseline: the troughs of a revision's memory climb (a leak), as opposed to
warm-up, GC sawtooth, traffic-driven working set, or a deploy that steps to a new flat level.

Method, per revision and after its warm-up:

1. troughs: the minimum of fleet-typical memory (mean across instances) in each bin longer than the
   GC sawtooth, so the sawtooth's peaks and the working set of busy minutes drop out;
2. the troughs are adjusted for load per instance (a joint least-squares fit of time and load), so a
   busier fleet is not read as a leak;
3. resets (OOM kills, instance replacement) and level steps split the troughs into segments; the
   trend is measured *within* segments (pooled Theil–Sen slope and Mann–Kendall test with an
   autocorrelation-corrected variance), so a step to a new flat level has no slope and a leak that
   keeps being reset by OOM kills still has one;
4. a finding needs a significant slope above a floor (fraction of the limit per day), a total rise
   above a floor, and a climb lasting long enough; the onset is the hinge of a flat-then-rising fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.analysis import stats
from analyzer.analysis.timeline import RevisionSpan, ServiceView
from analyzer.config import DetectionConfig
from analyzer.model import FloatArray


@dataclass(frozen=True, slots=True)
class LeakEvidence:
    revision: str
    onset: pd.Timestamp
    slope_per_day: float  # fraction of the limit per day
    rise: float  # fraction of the limit over the climb
    p_value: float
    hours: float
    trough_start: float
    trough_end: float
    trough_high: float  # the highest trough (before any reset)
    peak_end: float  # worst instance at the end (mem_max)
    peak_max: float  # worst instance at any time (≈ 1.0 means OOM kills)
    segments: int
    onset_at_deploy: bool
    troughs: pd.Series  # the adjusted trough series (for charts)
    fit_start: float
    fit_slope_per_hour: float


def troughs(rows: pd.DataFrame, bin_minutes: int) -> pd.DataFrame:
    """Per bin: the lowest typical memory, the mean load per instance, the highest worst instance."""
    signal = rows["mem_mean"].where(rows["mem_mean"].notna(), rows["mem_p50"])
    inst = rows["inst_active"].where(rows["inst_active"] > 0)
    frame = pd.DataFrame({
        "ts": rows["ts"].to_numpy(),
        "trough": signal.to_numpy(),
        "load": (rows["req_rate"] / inst).to_numpy(),
        "peak": rows["mem_max"].to_numpy(),
    }).set_index("ts")
    binned = frame.resample(f"{bin_minutes}min").agg({"trough": "min", "load": "mean", "peak": "max"})
    return binned.dropna(subset=["trough"])


def _split_points(y: FloatArray, min_jump: float) -> list[int]:
    """Indices where a new segment starts: resets and steps, judged against the troughs' own
    bin-to-bin noise around their typical change.

    A leak's troughs rise in many small steps and fall in a few large ones (an OOM kill or the
    replacement of old instances), so drops are split at a lower threshold than rises; a rise far
    above the typical change is a level step, not part of a climb.
    """
    if len(y) < 3:
        return []
    diffs = np.diff(y)
    typical = float(np.median(diffs))
    noise = 1.4826 * float(np.median(np.abs(diffs - typical)))
    drop = max(3.0 * noise, min_jump)
    jump = max(6.0 * noise, min_jump)
    deviation = diffs - typical
    return [i + 1 for i in np.flatnonzero((deviation < -drop) | (deviation > jump))]


def _segments(n: int, splits: list[int], min_len: int) -> list[tuple[int, int]]:
    edges = [0, *splits, n]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True) if b - a >= min_len]


def _load_adjusted(hours: FloatArray, y: FloatArray, load: FloatArray, segs: list[tuple[int, int]]) -> FloatArray:
    """Remove the part of the troughs explained by load per instance (fit jointly with time)."""
    if not np.isfinite(load).all() or np.nanstd(load) <= 0 or len(y) < 8:
        return y
    columns = [hours, (load - load.mean()) / load.std()]
    for a, b in segs[1:]:
        indicator = np.zeros(len(y))
        indicator[a:b] = 1.0
        columns.append(indicator)
    design = np.column_stack([np.ones(len(y)), *columns])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    load_coef = float(coef[2])
    # Only remove a positive load effect (more in-flight work, more memory); never invent one.
    return y - max(load_coef, 0.0) * columns[1]


def _pooled_trend(hours: FloatArray, y: FloatArray, segs: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Within-segment Theil–Sen slope (per hour), Mann–Kendall p-value, effective sample size."""
    slopes: list[FloatArray] = []
    s_total = 0.0
    var_total = 0.0
    n_eff = 0.0
    for a, b in segs:
        x, v = hours[a:b], y[a:b]
        i, j = np.triu_indices(len(v), k=1)
        slopes.append((v[j] - v[i]) / (x[j] - x[i]))
        trend = stats.mann_kendall(x, v)
        n = len(v)
        s_total += float(np.sign(v[j] - v[i]).sum())
        factor = n / trend.n_effective
        var_total += n * (n - 1) * (2 * n + 5) / 18.0 * factor
        n_eff += trend.n_effective
    if not slopes or var_total <= 0:
        return 0.0, 1.0, 0.0
    slope = float(np.median(np.concatenate(slopes)))
    z = (s_total - 1.0) / math.sqrt(var_total) if s_total > 0 else 0.0
    return slope, 0.5 * math.erfc(z / math.sqrt(2.0)), n_eff


def detect_leak(view: ServiceView, span: RevisionSpan, config: DetectionConfig) -> LeakEvidence | None:
    cfg = config.memory
    rows = view.revision_rows(span.name)
    rows = rows.loc[rows["ts"] >= span.first_seen + pd.Timedelta(minutes=config.warmup_minutes)]
    if rows["mem_mean"].notna().sum() + rows["mem_p50"].notna().sum() == 0:
        return None
    bins = troughs(rows, cfg.trough_window_minutes)
    min_points = max(6, math.ceil(cfg.min_duration_hours * 60 / cfg.trough_window_minutes))
    if len(bins) < min_points:
        return None
    hours = ((bins.index - bins.index[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
    y = bins["trough"].to_numpy(dtype=np.float64)
    segs = _segments(len(y), _split_points(y, max(cfg.min_rise, 0.02)), min_len=4)
    if not segs:
        return None
    adjusted = _load_adjusted(hours, y, bins["load"].to_numpy(dtype=np.float64), segs)
    slope, p_value, _ = _pooled_trend(hours, adjusted, segs)
    covered = sum(hours[b - 1] - hours[a] for a, b in segs)
    rise = slope * covered
    if (p_value > cfg.significance or slope * 24 < cfg.min_slope_per_day or rise < cfg.min_rise
            or covered < cfg.min_duration_hours):
        return None
    # A warm-up or cache fill rises and then levels off; a leak keeps climbing. Ask the later half
    # of each segment to climb too.
    later = [((a + b) // 2, b) for a, b in segs if b - (a + b) // 2 >= 3]
    if later and _pooled_trend(hours, adjusted, later)[0] < slope / 3:
        return None
    first_a, first_b = segs[0]
    fit = stats.hinge(hours[first_a:first_b], adjusted[first_a:first_b], min_after=max(3, min_points // 2))
    onset_index = first_a + fit.index
    onset_at_deploy = hours[onset_index] <= max(2.0, config.warmup_minutes / 60 + 1.0)
    onset = span.deploy_time if onset_at_deploy else pd.Timestamp(bins.index[onset_index])
    return LeakEvidence(
        revision=span.name,
        onset=onset,
        slope_per_day=slope * 24,
        rise=rise,
        p_value=p_value,
        hours=covered,
        trough_start=float(np.median(y[:3])),
        trough_end=float(np.median(y[-3:])),
        trough_high=float(np.max(y)),
        peak_end=_nanmax(bins["peak"].to_numpy()[-3:]),
        peak_max=_nanmax(bins["peak"].to_numpy()),
        segments=len(segs),
        onset_at_deploy=bool(onset_at_deploy),
        troughs=pd.Series(adjusted, index=bins.index),
        fit_start=float(fit.level),
        fit_slope_per_hour=slope,
    )


def _nanmax(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def hours_to_limit(evidence: LeakEvidence, *, limit: float = 1.0) -> float | None:
    """Hours until the worst instance reaches the limit at the fitted slope (None if no slope)."""
    if evidence.slope_per_day <= 0:
        return None
    level = evidence.peak_end if math.isfinite(evidence.peak_end) else evidence.trough_end
    return max(0.0, (limit - level) / (evidence.slope_per_day / 24))
