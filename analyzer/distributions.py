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
    # Edges of each bucket for each row: (rows, nbuckets).
    first = bounds[0] if len(bounds) else 0.0
    last = bounds[-1] if len(bounds) else 0.0
    lo_edge = np.concatenate([[min(first, 0.0)], bounds]) * np.ones((rows, 1))
    hi_edge = np.concatenate([bounds, [last]]) * np.ones((rows, 1))
    if lower is not None:
        lo_edge[:, 0] = np.where(np.isfinite(lower), np.minimum(lower, first), lo_edge[:, 0])
    if upper is not None:
        hi_edge[:, -1] = np.where(np.isfinite(upper), np.maximum(upper, last), hi_edge[:, -1])
    total = counts.sum(axis=1)
    cumulative = np.cumsum(counts, axis=1)
    out = np.full((rows, len(quantiles)), np.nan)
    has = total > 0
    row_index = np.arange(rows)
    for column, q in enumerate(quantiles):
        target = q * total
        # first bucket whose cumulative count reaches the target (and holds samples)
        idx = np.argmax((cumulative >= target[:, None]) & (counts > 0), axis=1)
        below = cumulative[row_index, idx] - counts[row_index, idx]
        inside = counts[row_index, idx]
        frac = np.clip(np.divide(target - below, inside, out=np.zeros(rows), where=inside > 0), 0.0, 1.0)
        lo = lo_edge[row_index, idx]
        hi = hi_edge[row_index, idx]
        out[:, column] = np.where(has, lo + frac * (hi - lo), np.nan)
    if lower is not None or upper is not None:
        lo_clip = lower if lower is not None else np.full(rows, -np.inf)
        hi_clip = upper if upper is not None else np.full(rows, np.inf)
        lo_clip = np.where(np.isfinite(lo_clip), lo_clip, -np.inf)
        hi_clip = np.where(np.isfinite(hi_clip), hi_clip, np.inf)
        out = np.clip(out, lo_clip[:, None], hi_clip[:, None])
    return out
