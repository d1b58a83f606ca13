"""Hourly sums and means of a revision's steps in numpy, equal to the last bit to pandas'
``resample("1h").sum()`` / ``.mean()``; and the same sums per exact step (``by_step``), equal to
``groupby(ts).sum()``.

The detectors compare hours, and a resample of a small table is mostly pandas overhead. pandas sums
each hour's values in row order with Kahan compensation (its cython ``group_sum``: NaN skipped, the
compensation reset when an infinity makes it NaN); ``sums`` does the same, every hour side by side,
one pass per position within the hour (12 at 300 s steps), so the results are identical, not close.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import tzinfo

import numpy as np
import pandas as pd
from pandas.core.groupby import ops as _pandas_groupby

from analyzer.model import FloatArray

HOUR = np.timedelta64(1, "h")
# pandas 3 sums a block of sorted groups with ``np.add.reduceat`` when it holds no NaN (pairwise within
# an hour: not Kahan); pandas 2 always takes the Kahan kernel. Which one runs decides the last bit.
_REDUCEAT = hasattr(getattr(_pandas_groupby, "BaseGrouper", None), "_reduceat_aggregate")


@dataclass(frozen=True, slots=True)
class Hours:
    """Steps grouped by the hour they fall in, every hour from the first step's to the last's (as
    resample labels them). ``order`` puts the steps in time order (identity when they already are)."""

    labels: np.ndarray  # datetime64 start of each hour (the steps' unit, no time zone)
    starts: np.ndarray  # each hour's first position in time order
    counts: np.ndarray  # steps in each hour
    order: np.ndarray
    steps: np.ndarray  # the steps in time order (datetime64, UTC)
    tz: tzinfo | None  # the steps' time zone, for ``index``
    # pandas adds sorted groups up with ``np.add.reduceat`` (see ``sums``): a resample always sorts
    # them; a groupby of rows not in time order leaves them as they come, and takes Kahan.
    sorted_groups: bool = True

    def index(self, hours: np.ndarray | slice = slice(None)) -> pd.DatetimeIndex:
        """The labels (or those selected) as resample's index: the steps' unit and time zone."""
        index = pd.DatetimeIndex(self.labels[hours])
        return index.tz_localize(self.tz) if self.tz is not None else index

    def resampled(self, name: Hashable) -> pd.DatetimeIndex:
        """Every hour, exactly as ``resample("1h")`` labels them (its frequency and name too)."""
        return pd.DatetimeIndex(self.index(), freq="h", name=name)


def of(ts: pd.Series | pd.DatetimeIndex) -> Hours:
    """Group the steps ``ts`` (a datetime column, UTC as frames make it) by hour."""
    index = pd.DatetimeIndex(ts)
    naive = index.asi8.view(f"M8[{index.unit}]")  # UTC instants in the steps' unit
    order = np.arange(len(naive)) if _increasing(naive) else np.argsort(naive, kind="stable")
    hour = naive[order].astype("datetime64[h]")
    if len(hour) == 0:
        empty = np.empty(0, dtype=np.intp)
        return Hours(np.empty(0, dtype=naive.dtype), empty, empty, order, naive, index.tz)
    first = hour[0]
    position = ((hour - first) // HOUR).astype(np.intp)
    counts = np.bincount(position)
    starts = np.cumsum(counts) - counts
    labels = (first + np.arange(len(counts)) * HOUR).astype(naive.dtype)
    return Hours(labels, starts, counts, order, naive[order], index.tz)


def by_step(ts: pd.Series | pd.DatetimeIndex) -> Hours:
    """The rows grouped by their exact step, as ``groupby(ts)`` groups them: ``labels`` are the
    distinct steps in time order, with ``index`` and ``sums`` as for hours."""
    index = pd.DatetimeIndex(ts)
    naive = index.asi8.view(f"M8[{index.unit}]")
    in_order = bool(len(naive) < 2 or (naive[1:] >= naive[:-1]).all())
    order = np.arange(len(naive)) if in_order else np.argsort(naive, kind="stable")
    steps = naive[order]
    starts = np.flatnonzero(np.r_[True, steps[1:] != steps[:-1]]) if len(steps) else np.empty(0, dtype=np.intp)
    counts = np.diff(starts, append=len(steps))
    return Hours(steps[starts], starts, counts, order, steps, index.tz, sorted_groups=in_order)


def _increasing(values: np.ndarray) -> bool:
    return bool(len(values) < 2 or (values[1:] > values[:-1]).all())


def sums(hours: Hours, block: list[FloatArray]) -> tuple[list[FloatArray], list[np.ndarray]]:
    """Each hour's sum of each column's non-NaN values, and how many it summed, as pandas sums one
    block of a frame (the columns resampled together): ``np.add.reduceat`` over each hour's steps
    when the block has no NaN and pandas takes that path (3.x), else Kahan-compensated in time order."""
    ordered = np.vstack([np.asarray(c, dtype=np.float64) for c in block])[:, hours.order]
    if _REDUCEAT and hours.sorted_groups and not np.isnan(ordered).any():
        present = hours.counts > 0
        totals = np.zeros((len(block), len(hours.counts)))
        if present.any():
            totals[:, present] = np.add.reduceat(ordered, hours.starts[present], axis=1)
        return list(totals), [hours.counts] * len(block)
    return [_kahan(hours, row) for row in ordered], [_present(hours, row) for row in ordered]


def _kahan(hours: Hours, ordered: FloatArray) -> FloatArray:
    """pandas' cython ``group_sum``: NaN skipped, the compensation reset when an infinity makes it NaN;
    every hour side by side, one pass per position within the hour (12 at 300 s steps)."""
    total = np.zeros(len(hours.counts))
    compensation = np.zeros(len(hours.counts))
    for k in range(int(hours.counts.max(initial=0))):
        group = np.flatnonzero(hours.counts > k)
        value = ordered[hours.starts[group] + k]
        present = ~np.isnan(value)
        group, value = group[present], value[present]
        y = value - compensation[group]
        t = total[group] + y
        with np.errstate(invalid="ignore"):
            c = t - total[group] - y
        compensation[group] = np.where(np.isnan(c), 0.0, c)
        total[group] = t
    return total


def _present(hours: Hours, ordered: FloatArray) -> np.ndarray:
    """Each hour's count of non-NaN values."""
    return np.bincount(np.repeat(np.arange(len(hours.counts)), hours.counts), weights=~np.isnan(ordered),
                       minlength=len(hours.counts)).astype(np.intp)


def sum_min_count(hours: Hours, block: list[FloatArray], min_count: int = 0) -> list[FloatArray]:
    """``resample("1h").sum(min_count=...)`` of a block: NaN for an hour with fewer than ``min_count`` values."""
    totals, summed = sums(hours, block)
    if min_count <= 0:
        return totals
    return [np.where(n >= min_count, total, np.nan) for total, n in zip(totals, summed, strict=True)]


def means(hours: Hours, block: list[FloatArray]) -> list[FloatArray]:
    """``resample("1h").mean()`` of a block: the sum over the count; NaN for an hour with no value."""
    totals, summed = sums(hours, block)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [np.where(n > 0, total / n.astype(np.float64), np.nan) for total, n in zip(totals, summed, strict=True)]


def step_hours(hours: Hours) -> np.ndarray:
    """Each step's hour (position in ``labels``), in the steps' own order."""
    position = np.repeat(np.arange(len(hours.counts)), hours.counts)
    out = np.empty(len(position), dtype=np.intp)
    out[hours.order] = position
    return out


def medians(hours: Hours, values: FloatArray) -> FloatArray:
    """``resample("1h").median()``: each hour's middle non-NaN value, or the mean of the two middle
    ones (pandas' ``median_linear``); NaN for an hour without a value. With a -0.0 among the values,
    pandas itself: its selection decides which of two equal zeros is the middle one."""
    ordered = np.asarray(values, dtype=np.float64)[hours.order]
    if (np.signbit(ordered) & (ordered == 0.0)).any():  # which zero pandas' selection picks: ask it
        resampled = pd.Series(ordered, index=pd.DatetimeIndex(hours.steps)).resample("1h").median()
        return np.asarray(resampled.to_numpy(), dtype=np.float64)
    group = np.repeat(np.arange(len(hours.counts)), hours.counts)
    ordered = ordered[np.lexsort((ordered, group))]  # NaN last within each hour
    present = np.bincount(group, weights=~np.isnan(ordered), minlength=len(hours.counts)).astype(np.intp)
    last = max(len(ordered) - 1, 0)
    upper = np.minimum(hours.starts + present // 2, last)
    lower = np.minimum(np.maximum(hours.starts + present // 2 - 1, 0), last)
    if len(ordered) == 0:
        return np.full(len(hours.counts), np.nan)
    middle = np.where(present % 2 == 1, ordered[upper], (ordered[upper] + ordered[lower]) / 2)
    return np.where(present > 0, middle, np.nan)
