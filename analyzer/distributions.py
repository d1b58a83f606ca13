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
    located = _located_sparse(counts, total, quantiles)
    if located is None:
        located = _located_dense(counts, total, quantiles)
    out = np.full((rows, len(quantiles)), np.nan)
    has = total > 0
    for column, (q, (idx, below, inside)) in enumerate(zip(quantiles, located, strict=True)):
        target = q * total
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


Located = list[tuple[np.ndarray, FloatArray, FloatArray]]  # per quantile: bucket, count below it, count in it


def _located_dense(counts: np.ndarray, total: FloatArray, quantiles: tuple[float, ...]) -> Located:
    """Each row's bucket of each quantile, searched over every bucket that holds samples in some row."""
    held, cumulative = _held_buckets(counts, total, quantiles)
    counts = counts[:, held] if len(held) < counts.shape[1] else counts
    row_index = np.arange(len(counts))
    located: Located = []
    for q in quantiles:
        target = q * total
        # first bucket whose cumulative count reaches the target (and holds samples): for a target
        # above zero the first bucket to reach it holds samples (the one before it fell short), so the
        # second test is needed only for q = 0
        reached = cumulative >= target[:, None]
        at = np.argmax(reached & (counts > 0) if q <= 0 else reached, axis=1)
        inside = counts[row_index, at]
        located.append((held[at], cumulative[row_index, at] - inside, inside))
    return located


EXACT_COUNTS = 2.0**53  # whole numbers below this add up exactly in float64, in any order


def _located_sparse(counts: np.ndarray, total: FloatArray, quantiles: tuple[float, ...]) -> Located | None:
    """``_located_dense``'s answer read from the buckets that hold samples only, row by row: a
    distribution of one step holds a few of its buckets (one to four in Cloud Run's), so the running
    sums over them all, a row of buckets each, are mostly repeats. The nonzero counts of every row
    are summed in one running sum (row after row); whole counts add up exactly, so a row's running
    count is that sum less the rows before it, and a quantile's bucket is the first whose running
    count reaches ``ceil(q × total)`` (the same as reaching ``q × total``: counts are whole). None
    where that does not hold (a count that is not a whole number ≥ 0, sums past 2**53, a quantile
    outside (0, 1]): the dense search then."""
    if not quantiles or min(quantiles) <= 0 or max(quantiles) > 1:
        return None
    flat = np.flatnonzero(counts)  # row after row (C order, as reshape reads them too)
    values = counts.reshape(-1)[flat]
    buckets_at = flat % counts.shape[1]
    if len(values) == 0 or not ((values > 0) & (values == np.floor(values))).all():
        return None
    running = np.cumsum(values)
    if not running[-1] < EXACT_COUNTS:
        return None
    before = np.cumsum(total) - total  # every earlier row's samples (whole numbers: exact)
    located: Located = []
    for q in quantiles:
        target = q * total
        # Rows without samples land anywhere: their percentiles are NaN whatever is found.
        at = np.minimum(np.searchsorted(running, before + np.ceil(target), side="left"), len(running) - 1)
        inside = values[at]
        located.append((buckets_at[at], running[at] - before - inside, inside))
    return located


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
