"""What a quantity 'should' be for a given load, learned from a reference period.

Used to ask "how many instances (or dollars) would the previous revision have needed for this
traffic?": the quantity binned against request rate, interpolated between bins and extrapolated in
proportion to load beyond the busiest bin, so traffic growth alone is not an anomaly.

Two readings of a bin: its median (``statistic="median"``), right for "how many instances", and its
mean (``"mean"``), right for a cost, which is an expectation over skewed per-step use.

Where a quantity is the sum of parts each driven by its own load (CPU: work per request, the start-up
burst of each new instance, the background of each running one), ``fit_linear`` learns it as a
non-negative sum of them instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from analyzer.model import FloatArray

# Cloud Run removes a surplus instance after about this many idle minutes.
SCALE_IN_MINUTES = 15


def busiest_recent(rate: pd.Series, step_seconds: int) -> pd.Series:
    """The busiest request rate of each step and of the ``SCALE_IN_MINUTES`` before it (NaN where the
    step has none): the load a step's instances answer to. An instance started for a busy minute stays
    until it has sat idle that long, so a step's count (active and idle) is more after a busier quarter
    hour than before one at the same rate of its own. ``rate``: per step, on a sorted time index."""
    window = pd.Timedelta(minutes=SCALE_IN_MINUTES) + pd.Timedelta(seconds=step_seconds)
    return rate.rolling(window).max().where(rate.notna())


@dataclass(frozen=True, slots=True)
class LoadModel:
    load_points: FloatArray  # bin centres (request rate), increasing
    values: FloatArray  # the quantity in each bin, made non-decreasing with load
    slope_below: bool = False  # below the quietest bin: a power of load (``quiet_elasticity``), else flat
    quiet_share: float = 0.5  # the quietest share of the bins that power is fitted on
    # Below the quietest bin with ``slope_below``: the power of load (``quiet_elasticity``), worked out once;
    # None where the quietest bin is at zero load or value (then its straight slope to the next bin).
    elasticity: float | None = field(init=False)

    def __post_init__(self) -> None:
        points, values = self.load_points, self.values
        power = self.slope_below and len(points) > 1 and points[0] > 0 and values[0] > 0
        object.__setattr__(self, "elasticity", quiet_elasticity(points, values, self.quiet_share) if power else None)

    def predict(self, load: FloatArray) -> FloatArray:
        load = np.asarray(load, dtype=np.float64)
        points, values = self.load_points, self.values
        inside = np.interp(load, points, values)
        top_load, top_value = points[-1], values[-1]
        # Beyond the busiest load seen, assume the quantity grows in proportion to load: a reference
        # that sat on its min-instance floor says nothing about what more traffic needs, and
        # assuming too much is safer than calling traffic growth an anomaly.
        above = np.maximum(top_value * load / top_load, top_value) if top_load > 0 else inside
        predicted = np.where(load > top_load, above, inside)
        if self.slope_below and len(points) > 1 and points[1] > points[0]:
            # A quiet night after a busy reference is not priced at the reference's quietest level.
            if self.elasticity is not None:
                below = values[0] * (np.maximum(load, 0.0) / points[0]) ** self.elasticity
            else:
                slope = (values[1] - values[0]) / (points[1] - points[0])
                below = np.clip(values[0] - slope * (points[0] - load), 0.0, values[0])
            predicted = np.where(load < points[0], below, predicted)
        return np.asarray(predicted, dtype=np.float64)


@dataclass(frozen=True, slots=True)
class LinearModel:
    """The quantity as a sum of its drivers: ``columns @ coefficients``, every coefficient 0 or more."""

    coefficients: FloatArray

    def predict(self, columns: FloatArray) -> FloatArray:
        predicted: FloatArray = np.asarray(columns, dtype=np.float64) @ self.coefficients
        return predicted


def fit_linear(columns: FloatArray, value: FloatArray, *, min_points: int) -> LinearModel | None:
    """``value`` fitted on ``columns`` (points × drivers, no intercept) by least squares with every
    coefficient 0 or more, keeping only the drivers that earn their place: of every subset of the columns
    whose own fit has no negative coefficient, the one with the lowest Bayesian information criterion
    (n log(SSE / n) + k log n). Drivers that move together (requests and instances, under autoscaling) are
    not split at random when one alone explains the quantity, so a later change in how they relate (more
    instances for the same traffic) does not move the prediction for no reason. None with fewer than
    ``min_points`` points or no admissible fit."""
    columns = np.asarray(columns, dtype=np.float64)
    value = np.asarray(value, dtype=np.float64)
    n, drivers = columns.shape
    if n < min_points:
        return None
    best: FloatArray | None = None
    best_score = math.inf
    for subset in range(1, 2**drivers):
        used = [j for j in range(drivers) if subset >> j & 1]
        coefficients = np.linalg.lstsq(columns[:, used], value, rcond=None)[0]
        if (coefficients < 0).any():
            continue
        error = float(((columns[:, used] @ coefficients - value) ** 2).sum())
        score = n * math.log(max(error, 1e-300) / n) + len(used) * math.log(n)
        if score < best_score:
            best = np.zeros(drivers)
            best[used] = coefficients
            best_score = score
    return None if best is None else LinearModel(best)


def quiet_elasticity(points: FloatArray, values: FloatArray, share: float = 0.5) -> float:
    """How the quantity scales with load below the quietest bin: the log-log slope of the quietest
    ``share`` of the bins (by default half, at least two), between 0 (flat) and 1 (in proportion to
    load). A quantity that is 0 or more at no load and concave in load (use per request does not fall
    as traffic thins) lies between the two. Followed along the two quietest bins' straight slope
    instead, the expectation was wrong both ways: two bins either side of an instance step (2 → 3
    instances) reached zero at 57–70 % of the quietest load, so every step of a quieter night counted
    whole as an anomaly's excess; two bins on a flat stretch held a night at half the reference's
    traffic near the quietest bin's cost, so a leak's excess read small (docs/cost-model.md)."""
    half = max(2, round(len(points) * share))
    log_load, log_value = np.log(points[:half]), np.log(np.maximum(values[:half], 1e-12))
    if np.ptp(log_load) <= 0:
        return 1.0
    return min(max(float(np.polyfit(log_load, log_value, 1)[0]), 0.0), 1.0)


def fit(load: FloatArray, value: FloatArray, *, bins: int = 12, min_points: int = 12,
        statistic: Literal["median", "mean"] = "median", slope_below: bool = False,
        quiet_share: float = 0.5) -> LoadModel | None:
    """Fit on paired samples (NaNs dropped); None if there is too little reference data."""
    keep = np.isfinite(load) & np.isfinite(value)
    load, value = load[keep], value[keep]
    if len(load) < min_points:
        return None
    edges = np.unique(np.quantile(load, np.linspace(0.0, 1.0, bins + 1)))
    which = np.clip(np.searchsorted(edges, load, side="right") - 1, 0, max(len(edges) - 2, 0))
    counts = np.bincount(which, minlength=max(len(edges) - 1, 1))
    used = counts >= 2
    if not used.any():
        return None
    if statistic == "median":
        centres = _group_medians(which, counts, load)[used]
        levels = _group_medians(which, counts, value)[used]
    else:
        # Each bin's members in their original order, so np.mean sums them exactly as on a mask.
        order = np.argsort(which, kind="stable")
        ends = np.cumsum(counts)[used]
        starts = ends - counts[used]
        centres = np.array([np.mean(load[order[a:b]]) for a, b in zip(starts, ends, strict=True)])
        levels = np.array([np.mean(value[order[a:b]]) for a, b in zip(starts, ends, strict=True)])
    # The quantity should not fall as load rises; enforce it so noise in one bin does not mislead.
    return LoadModel(centres, np.maximum.accumulate(levels), slope_below, quiet_share)


def _group_medians(which: np.ndarray, counts: np.ndarray, values: FloatArray) -> FloatArray:
    """np.median of ``values`` within each group (``which``), all groups at once: sorted by group, then
    value; the middle member, or the mean of the two middle members (as np.median takes it)."""
    return _group_medians_sorted(values[np.lexsort((values, which))], counts)


def _group_medians_sorted(ordered: FloatArray, counts: np.ndarray) -> FloatArray:
    starts = np.cumsum(counts) - counts
    upper = starts + counts // 2
    lower = np.where(counts % 2 == 1, upper, upper - 1)
    last = max(len(ordered) - 1, 0)  # empty groups point anywhere: the caller drops them
    lower, upper = np.clip(lower, 0, last), np.clip(upper, 0, last)
    medians: FloatArray = np.where(counts % 2 == 1, ordered[upper], (ordered[lower] + ordered[upper]) / 2)
    return medians

def left_out_predictions(load: FloatArray, value: FloatArray, *, bins: int, min_points: int) -> FloatArray:
    """Each point's value as predicted at its load by the median model fitted without it (NaN where
    that fit has too little data): ``fit(...).predict`` once per point, every point at once. Equal to
    the last bit: the same quantiles, bins, medians and interpolation, one row per left-out point."""
    n = len(load)
    negative_zero = (np.signbit(load) & (load == 0)).any() or (np.signbit(value) & (value == 0)).any()
    if n < 2 or negative_zero or not (np.isfinite(load).all() and np.isfinite(value).all()):
        # NaN is dropped per fit; which of two equal zeros is a median depends on the rows' order
        return _left_out_one_by_one(load, value, bins=bins, min_points=min_points)
    order = np.argsort(load, kind="stable")
    others = np.arange(n - 1)[None, :] + (np.arange(n - 1)[None, :] >= np.arange(n)[:, None])  # row r: not r
    loads, values = load[order][others], value[order][others]  # row r leaves out the r-th lowest load
    which, counts = _row_bins(loads, bins)
    used = counts >= 2
    centres = _row_medians(which, counts, loads)
    levels = np.maximum.accumulate(np.where(used, _row_medians(which, counts, values), -np.inf), axis=1)
    rank = np.argsort(np.where(used, 0, 1), axis=1, kind="stable")  # each row's used bins first, in order
    points, levels = np.take_along_axis(centres, rank, axis=1), np.take_along_axis(levels, rank, axis=1)
    sizes = used.sum(axis=1)
    if (np.where(np.arange(bins)[None, 1:] < sizes[:, None], np.diff(points, axis=1), 1.0) <= 0).any():
        return _left_out_one_by_one(load, value, bins=bins, min_points=min_points)  # np.interp's ties
    predicted = _row_predict(points, levels, sizes, load[order])
    predicted[(sizes == 0) | (n - 1 < min_points)] = np.nan
    out = np.empty(n)
    out[order] = predicted
    return out


def _left_out_one_by_one(load: FloatArray, value: FloatArray, *, bins: int, min_points: int) -> FloatArray:
    predicted = np.full(len(load), np.nan)
    keep = np.ones(len(load), dtype=bool)
    for i in range(len(load)):
        keep[i] = False
        model = fit(load[keep], value[keep], bins=bins, min_points=min_points)
        keep[i] = True
        if model is not None:
            predicted[i] = float(model.predict(load[i:i + 1])[0])
    return predicted


def _row_bins(loads: FloatArray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``fit``'s bins for each row: edges at the row's quantiles (duplicates merged, as np.unique
    does), each point's bin and each bin's count (``bins`` columns, the unused ones empty)."""
    edges = np.sort(np.quantile(loads, np.linspace(0.0, 1.0, bins + 1), axis=1).T, axis=1)
    distinct = np.ones(edges.shape, dtype=bool)
    distinct[:, 1:] = edges[:, 1:] != edges[:, :-1]
    below = ((edges[:, None, :] <= loads[:, :, None]) & distinct[:, None, :]).sum(axis=2)
    top = np.maximum(distinct.sum(axis=1) - 2, 0)
    which = np.clip(below - 1, 0, top[:, None])
    counts = np.zeros((len(loads), bins), dtype=np.intp)
    np.add.at(counts, (np.repeat(np.arange(len(loads)), loads.shape[1]), which.ravel()), 1)
    return which, counts


def _row_medians(which: np.ndarray, counts: np.ndarray, values: FloatArray) -> FloatArray:
    """``_group_medians`` of every row at once (rows × bins)."""
    rows = np.repeat(np.arange(len(values)), values.shape[1])
    ordered = values.ravel()[np.lexsort((values.ravel(), which.ravel(), rows))]
    flat = counts.ravel()
    return _group_medians_sorted(ordered, flat).reshape(counts.shape)


def _row_predict(points: FloatArray, levels: FloatArray, sizes: np.ndarray, load: FloatArray) -> FloatArray:
    """``LoadModel.predict`` of one load per row, each row's model its first ``sizes`` points: np.interp
    spelled out (the same operations: a point's own value, else slope × distance + value), then the
    proportional growth beyond the busiest point."""
    rows = np.arange(len(load))
    last = np.maximum(sizes - 1, 0)
    top_load, top_value = points[rows, last], levels[rows, last]
    seen = (points <= load[:, None]) & (np.arange(points.shape[1]) < sizes[:, None])
    j = np.clip(seen.sum(axis=1) - 1, 0, np.maximum(sizes - 2, 0))  # xp[j] <= x < xp[j + 1]
    x0, x1 = points[rows, j], points[rows, np.minimum(j + 1, last)]
    y0, y1 = levels[rows, j], levels[rows, np.minimum(j + 1, last)]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        slope = (y1 - y0) / (x1 - x0)
        between = slope * (load - x0) + y0
        between = np.where(np.isnan(between), slope * (load - x1) + y1, between)
        between = np.where(np.isnan(between) & (y0 == y1), y0, between)
        inside = np.where(load < points[:, 0], levels[:, 0], np.where(load >= top_load, top_value,
                          np.where(x0 == load, y0, between)))
        above = np.where(top_load > 0, np.maximum(top_value * load / top_load, top_value), inside)
    predicted: FloatArray = np.where(load > top_load, above, inside)
    return predicted
