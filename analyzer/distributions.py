"""Percentiles of Cloud Monitoring distributions, vectorised over many rows of bucket counts.

A row is one merged distribution (e.g. all instances of a revision over one time step). Within a
bucket, values are assumed uniformly spread (linear interpolation, as Prometheus' histogram_quantile);
the open-ended underflow and overflow buckets are closed with the distribution's range when known,
otherwise with the nearest finite bound, so a percentile never lands outside what was observed.
"""

from __future__ import annotations

import numpy as np

from analyzer.model import FloatArray


def percentiles(
    counts: np.ndarray,
    bounds: FloatArray,
    quantiles: tuple[float, ...],
    *,
    lower: FloatArray | None = None,
    upper: FloatArray | None = None,
) -> FloatArray:
    """Return a (rows, len(quantiles)) array of percentiles; NaN for rows with no samples.

    ``counts`` is (rows, len(bounds) + 1): underflow bucket first, overflow last. ``lower`` and
    ``upper`` optionally give each row's observed minimum and maximum (the distribution's range).
    """
    counts = np.asarray(counts, dtype=np.float64)
    rows, nbuckets = counts.shape
    if nbuckets != len(bounds) + 1:
        raise ValueError(f"{nbuckets} buckets for {len(bounds)} bounds")
    # Edges of each bucket; the open-ended first and last are closed per row with its range.
    first = bounds[0] if len(bounds) else 0.0
    last = bounds[-1] if len(bounds) else 0.0
    lo_edge = np.concatenate([[min(first, 0.0)], bounds])
    hi_edge = np.concatenate([bounds, [last]])
    lo_first = np.full(rows, lo_edge[0])
    hi_last = np.full(rows, hi_edge[-1])
    if lower is not None:
        lo_first = np.where(np.isfinite(lower), np.minimum(lower, first), lo_first)
    if upper is not None:
        hi_last = np.where(np.isfinite(upper), np.maximum(upper, last), hi_last)
    total = counts.sum(axis=1)
    held, cumulative = _held_buckets(counts, total, quantiles)
    counts = counts[:, held] if len(held) < nbuckets else counts
    out = np.full((rows, len(quantiles)), np.nan)
    has = total > 0
    row_index = np.arange(rows)
    for column, q in enumerate(quantiles):
        target = q * total
        # first bucket whose cumulative count reaches the target (and holds samples): for a target
        # above zero the first bucket to reach it holds samples (the one before it fell short), so the
        # second test is needed only for q = 0
        reached = cumulative >= target[:, None]
        at = np.argmax(reached & (counts > 0) if q <= 0 else reached, axis=1)
        below = cumulative[row_index, at] - counts[row_index, at]
        inside = counts[row_index, at]
        idx = held[at]
        frac = np.clip(np.divide(target - below, inside, out=np.zeros(rows), where=inside > 0), 0.0, 1.0)
        lo = np.where(idx == 0, lo_first, lo_edge[idx])
        hi = np.where(idx == nbuckets - 1, hi_last, hi_edge[idx])
        out[:, column] = np.where(has, lo + frac * (hi - lo), np.nan)
    if lower is not None or upper is not None:
        lo_clip = lower if lower is not None else np.full(rows, -np.inf)
        hi_clip = upper if upper is not None else np.full(rows, np.inf)
        lo_clip = np.where(np.isfinite(lo_clip), lo_clip, -np.inf)
        hi_clip = np.where(np.isfinite(hi_clip), hi_clip, np.inf)
        out = np.clip(out, lo_clip[:, None], hi_clip[:, None])
    return out


def _held_buckets(counts: np.ndarray, total: FloatArray, quantiles: tuple[float, ...]) -> tuple[np.ndarray, FloatArray]:
    """The buckets that hold samples in some row, and the running sums over them. Only such a bucket
    can be where a percentile in (0, 1] falls (the first to reach a target above zero is one that
    added to the sum), and leaving out empty ones adds no zero to a running sum: the same floats over
    fewer columns. All buckets when that reasoning does not hold (negative counts, a quantile above
    1 or at 0, a running sum that does not end at the row's total)."""
    every = np.arange(counts.shape[1])
    held = np.flatnonzero((counts != 0).any(axis=0))
    usable = 0 < len(held) < len(every) and min(quantiles) > 0 and max(quantiles) <= 1 and (counts >= 0).all()
    if usable:
        # Along the buckets, computed across rows (each row's running sum as np.cumsum(axis=1) takes
        # it, several times faster on many rows of few buckets).
        cumulative = np.ascontiguousarray(np.cumsum(counts[:, held].T, axis=0).T)
        if np.array_equal(cumulative[:, -1], total):
            return held, cumulative
    return every, np.ascontiguousarray(np.cumsum(counts.T, axis=0).T)
