"""Small robust statistics used by the detectors: Theil–Sen slope, an autocorrelation-aware
Mann–Kendall trend test, and a least-squares hinge (flat, then a slope) for change points.

All functions take plain float arrays without NaN (callers drop them) and are pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import numpy as np
import pandas as pd

from analyzer.model import FloatArray, IntArray


@lru_cache(maxsize=4)
def pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pair (i < j) of n points (``np.triu_indices(n, k=1)``), read-only and kept for the few last
    sizes: the trend tests of one revision ask for the same sizes again and again."""
    i, j = np.triu_indices(n, k=1)
    i.flags.writeable = j.flags.writeable = False
    return i, j


@dataclass(frozen=True, slots=True)
class Pairwise:
    """Every pair (i < j) of a series' points: the differences and the slopes between them. Built once
    and shared by the tests that read them (the slopes' median, the signs' sum)."""

    dx: FloatArray
    dy: FloatArray
    slopes: FloatArray  # dy / dx (not finite where dx is 0)

    @classmethod
    def of(cls, x: FloatArray, y: FloatArray) -> Pairwise:
        i, j = pairs(len(x))
        dx, dy = x[j] - x[i], y[j] - y[i]
        with np.errstate(divide="ignore", invalid="ignore"):
            return cls(dx, dy, dy / dx)


def theil_sen(x: FloatArray, y: FloatArray, pairwise: Pairwise | None = None) -> tuple[float, float]:
    """Median of pairwise slopes, and the matching intercept. Robust to ~29 % outliers."""
    n = len(x)
    if n < 2:
        return 0.0, float(y[0]) if n else 0.0
    pairwise = pairwise or Pairwise.of(x, y)
    keep = pairwise.dx != 0
    if not keep.any():
        return 0.0, float(np.median(y))
    slope = float(np.median(pairwise.slopes if keep.all() else pairwise.slopes[keep]))
    intercept = float(np.median(y - slope * x))
    return slope, intercept


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


@dataclass(frozen=True, slots=True)
class Trend:
    slope: float  # per unit of x
    intercept: float
    p_value: float  # one-sided, for an increasing trend
    n_effective: float


def mann_kendall(x: FloatArray, y: FloatArray, pairwise: Pairwise | None = None) -> Trend:
    """Theil–Sen slope with a one-sided Mann–Kendall test for an upward trend (``pairwise``: the
    series' pairs, when the caller has them already).

    The variance of S is inflated for the lag-1 autocorrelation of the detrended series
    (Yue & Wang's effective sample size), so a smooth wandering series is not mistaken for a trend.
    """
    n = len(y)
    if n >= 2:
        pairwise = pairwise or Pairwise.of(x, y)
    slope, intercept = theil_sen(x, y, pairwise)
    if n < 4:
        return Trend(slope, intercept, 1.0, float(n))
    assert pairwise is not None
    s = float(np.sign(pairwise.dy).sum())
    variance = n * (n - 1) * (2 * n + 5) / 18.0
    residual = y - (intercept + slope * x)
    r1 = _lag1(residual)
    factor = 1.0 + 2.0 * r1 / (1.0 - r1) if r1 > 0 else 1.0
    factor = min(factor, float(n))
    variance *= factor
    z = (s - 1.0) / math.sqrt(variance) if s > 0 else 0.0
    return Trend(slope, intercept, _normal_sf(z), n / factor)


def _lag1(values: FloatArray) -> float:
    centered = values - values.mean()
    denominator = float((centered**2).sum())
    if denominator <= 0:
        return 0.0
    return float(np.clip((centered[1:] * centered[:-1]).sum() / denominator, -0.99, 0.95))


@dataclass(frozen=True, slots=True)
class Hinge:
    index: int  # where the slope starts
    level: float  # flat level before the hinge
    slope: float  # slope after the hinge, per unit of x
    sse: float


HINGE_BLOCK = 256  # candidate hinges fitted together (a block holds 256 × len(x) floats)


def hinge(x: FloatArray, y: FloatArray, *, min_after: int = 3) -> Hinge:
    """Fit y = level (before x[k]) then level + slope·(x − x[k]); the k with least squared error
    (``ramp_fits`` at every candidate k); the earliest k wins unless a later one is better by more
    than 1e-12."""
    candidates = max(1, len(y) - min_after + 1)
    sse, level, slope = ramp_fits(x, y, x[:candidates])
    k = first_best(sse)
    return Hinge(0, float(y.mean()), 0.0, math.inf) if k is None else Hinge(k, float(level[k]), float(slope[k]),
                                                                             float(sse[k]))


def _ramp_blocks(x: FloatArray, starts: FloatArray) -> Iterator[tuple[slice, FloatArray, FloatArray, FloatArray]]:
    """The ramps max(x − start, 0) of ``HINGE_BLOCK`` starts at a time (so memory stays bounded): each
    block's positions in ``starts``, its ramps (one row per start), their means and the ramps less
    their means."""
    for first in range(0, len(starts), HINGE_BLOCK):
        block = slice(first, min(first + HINGE_BLOCK, len(starts)))
        ramp = np.maximum(x[None, :] - starts[block, None], 0.0)
        ramp_mean = ramp.mean(axis=1)
        yield block, ramp, ramp_mean, ramp - ramp_mean[:, None]


def ramp_fits(x: FloatArray, y: FloatArray, starts: FloatArray, *,
              rising: bool = False) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per start: the squared error, level and slope of the least-squares fit y = level + slope ·
    max(x − start, 0), all at once in closed form (slope = covariance ÷ variance of the ramp), in blocks
    of ``HINGE_BLOCK`` starts so memory stays bounded. With ``rising``, a falling slope is held at zero
    (the flat fit)."""
    sse, level, slope = np.empty(len(starts)), np.empty(len(starts)), np.empty(len(starts))
    y_mean = y.mean()
    y_centred = y - y_mean
    for block, ramp, ramp_mean, centred in _ramp_blocks(x, starts):
        spread = (centred**2).sum(axis=1)
        # A ramp that is zero everywhere is the flat fit (what lstsq's minimum-norm answer gives).
        b = np.divide(centred @ y_centred, spread, out=np.zeros(len(ramp)), where=spread > 0)
        if rising:
            b = np.maximum(b, 0.0)
        a = y_mean - b * ramp_mean
        sse[block] = (((a[:, None] + b[:, None] * ramp) - y[None, :]) ** 2).sum(axis=1)
        level[block], slope[block] = a, b
    return sse, level, slope


def rising_ramp_errors(x: FloatArray, y: FloatArray, starts: FloatArray, covariate: FloatArray,
                       groups: IntArray | None = None) -> FloatArray:
    """Per start: the squared error of the least-squares fit y = level + slope · max(x − start, 0) +
    effect · covariate with slope ≥ 0 and effect ≥ 0, in closed form over blocks of ``HINGE_BLOCK``
    starts (``ramp_fits`` with ``rising``, plus a covariate fitted jointly). Exact: of the four fits
    that hold none, one or both of the two at zero, the least error among those whose free
    coefficients keep their signs (the constrained optimum is one of them). A covariate without spread
    adds nothing (``ramp_fits``'s errors).

    ``groups``: the first index of each run of consecutive points that has a level of its own (sorted,
    0 first), sharing the slope, the start and the effect: a climb reset at each group's start (an OOM
    kill, an instance replaced) is one climb. Every column is then centred within its group."""
    if groups is None:
        def centre(values: FloatArray) -> FloatArray:
            return cast(FloatArray, values - values.mean(axis=-1, keepdims=True))
    else:
        edges = np.asarray(groups, dtype=np.int64)
        counts = np.diff(np.append(edges, len(y)))

        def centre(values: FloatArray) -> FloatArray:
            return values - np.repeat(np.add.reduceat(values, edges, axis=-1) / counts, counts, axis=-1)
    z = centre(covariate)
    zz = float(z @ z)
    if zz <= 0 and groups is None:
        return ramp_fits(x, y, starts, rising=True)[0]
    y_c = centre(y)
    yy, zy = float(y_c @ y_c), float(z @ y_c)
    # The covariate alone (slope 0), or nothing at all when its effect would be negative.
    alone = yy - max(zy, 0.0) ** 2 / zz if zz > 0 else yy
    errors = np.empty(len(starts))
    for block, ramp, _, centred in _ramp_blocks(x, starts):
        r = centred if groups is None else centre(ramp)
        rr, ry, rz = (r**2).sum(axis=1), r @ y_c, r @ z
        # The ramp alone (effect 0), its slope held at zero when falling.
        ramp_only = yy - np.divide(np.maximum(ry, 0.0) ** 2, rr, out=np.zeros(len(rr)), where=rr > 0)
        det = rr * zz - rz**2
        solvable = (det > 1e-12 * rr * zz) & (zz > 0)
        slope = np.divide(ry * zz - rz * zy, det, out=np.zeros(len(rr)), where=solvable)
        effect = np.divide(rr * zy - rz * ry, det, out=np.zeros(len(rr)), where=solvable)
        both = yy - slope * ry - effect * zy  # the joint fit's error (normal equations)
        feasible = solvable & (slope >= 0) & (effect >= 0)
        errors[block] = np.minimum(np.minimum(ramp_only, alone), np.where(feasible, both, np.inf))
    return np.maximum(errors, 0.0)


def first_best(errors: FloatArray, tolerance: float = 1e-12) -> int | None:
    """The earliest index of the least error, a later one winning only when lower by more than
    ``tolerance`` than the one it replaces (scanning in order); None when every error is NaN or
    infinite. Only a new lowest error can win (the winner so far is within ``tolerance`` of every
    error before it), so the scan visits those alone: a handful of the candidates."""
    best, best_error = None, math.inf
    running = np.minimum.accumulate(np.where(np.isnan(errors), math.inf, errors))
    lowest_before = np.concatenate([[math.inf], running[:-1]])
    for k in np.flatnonzero(errors < lowest_before).tolist():
        if errors[k] < best_error - tolerance:
            best, best_error = k, float(errors[k])
    return best


def line_residuals(x: FloatArray, y: FloatArray) -> FloatArray:
    """y less its least-squares line on x (closed form; a constant x fits the mean)."""
    x_centred = x - x.mean()
    spread = float((x_centred**2).sum())
    slope = float(x_centred @ (y - y.mean())) / spread if spread > 0 else 0.0
    intercept = y.mean() - slope * x.mean()
    return cast(FloatArray, y - (intercept + slope * x))


def linear_sse(x: FloatArray, y: FloatArray) -> float:
    """Squared error of the least-squares line of y on x (``line_residuals``)."""
    if len(y) < 2:
        return 0.0
    return float((line_residuals(x, y) ** 2).sum())


def step_sse(y: FloatArray) -> float:
    """Residual sum of squares of the best single step: ``y`` as two flat levels, split where that fits
    best (at least one value on each side; inf for fewer than two values)."""
    n = len(y)
    if n < 2:
        return math.inf
    ahead = np.arange(1, n)
    left, left_sq = np.cumsum(y)[:-1], np.cumsum(y * y)[:-1]
    right, right_sq = float(y.sum()) - left, float((y * y).sum()) - left_sq
    sse = left_sq - left**2 / ahead + right_sq - right**2 / (n - ahead)
    return float(sse.min())


def pooled_slope(pairs: Iterable[tuple[FloatArray, FloatArray]]) -> float | None:
    """The least-squares slope through the origin of y on x over every pair pooled (each pair's x and y
    already taken about its own centre: a revision's means, or its line in time), a falling slope held
    at zero; None when the pooled x has no spread (or there are no pairs)."""
    pairs = list(pairs)
    if not pairs:
        return None
    x = np.concatenate([p[0] for p in pairs])
    y = np.concatenate([p[1] for p in pairs])
    if float(x @ x) <= 0:
        return None
    return max(float(x @ y / (x @ x)), 0.0)


def nondecreasing(values: FloatArray) -> FloatArray:
    """The least-squares non-decreasing fit of ``values`` (pool adjacent violators: a value below the
    one before it is pooled with it into their mean, again until none is). A loop over the values: for
    short series (the envelope's 73 hourly ages), not per-point data."""
    means: list[float] = []
    sizes: list[int] = []
    for value in values:
        means.append(float(value))
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            size = sizes[-2] + sizes[-1]
            means[-2] = (means[-2] * sizes[-2] + means[-1] * sizes[-1]) / size
            sizes[-2] = size
            means.pop()
            sizes.pop()
    return np.repeat(np.asarray(means, dtype=np.float64), sizes)


def running_median(values: FloatArray, width: int) -> FloatArray:
    """The centred running median of ``width`` values (fewer at either end): a course through a series
    that one outlying value does not move."""
    course: FloatArray = pd.Series(values).rolling(width, center=True, min_periods=1).median().to_numpy(
        dtype=np.float64)
    return course
