"""When an excess began, dated from the data rather than from the deploy.

Used for the anomalies whose size is measured against an expectation hour by hour (CPU against the
reference's load model, instances against the instances-per-load model): a revision that is worse
from its first hours (``from_start``) is dated at its deploy; one whose excess grows later (a leak's GC work, creep
that follows a leak) is dated where the excess reached the margin the finding reports.

1. The change point: where the cumulative excess over half the margin starts to climb (a CUSUM).
2. From there, the first hour whose next ``RUN_HOURS`` hold the full margin, so an excess that grows
   slowly from nothing is dated where it became an anomaly, not where it began to creep up. Held in their
   median (two of three hours) by default: an hourly excess of instances against a load model has
   single-hour spikes (a quiet hour's expectation is small), and one of them lifted a three-hour mean
   over the margin hours or days before the excess held. Or in their mean (``mean``), where the caller
   measured that its hours are steadier and that the median dates an excess late (CPU, ``regression._dated``).

Each caller also says whether "from the start" reads the first hours' median or their mean (creep reads
what the revision paid for over them, their mean: ``creep.detect_creep``).
"""

from __future__ import annotations

import numpy as np

from analyzer.model import FloatArray

RUN_HOURS = 3  # hours whose median (or mean) must hold above the margin for the excess to have begun


def from_start(excess: FloatArray, level: float, hours: int, *, mean: bool = False) -> bool:
    """The excess was there from the start: the median (or with ``mean``, the mean) of its first ``hours``
    (hourly, an hour without one as none) is at or above ``level``. Each caller sets how many hours, how
    high and which of the two, as measured on its own labels (docs/detection-quality.md): the change
    point of a later, larger excess must not move an excess that was there all along."""
    first = np.nan_to_num(np.asarray(excess[:hours], dtype=np.float64))
    return bool(first.size) and float(np.mean(first) if mean else np.median(first)) >= level


def rise_start(excess: FloatArray, level: float) -> int:
    """Where the excess begins: the low point of the cumulative excess over ``level`` before its
    highest point (a CUSUM)."""
    cumulative = np.concatenate([[0.0], np.cumsum(excess - level)])
    top = int(np.argmax(cumulative))
    return int(np.argmin(cumulative[:top + 1])) if top > 0 else 0


def _runs(values: FloatArray, *, mean: bool = False) -> FloatArray:
    """The median (or mean) of every ``RUN_HOURS`` in a row (of all of them, when fewer)."""
    windows = np.lib.stride_tricks.sliding_window_view(values, min(RUN_HOURS, len(values)))
    held: FloatArray = np.mean(windows, axis=1) if mean else np.median(windows, axis=1)
    return held


def ever_held(excess: FloatArray, margin: float, *, mean: bool = False) -> bool:
    """Some ``RUN_HOURS`` in a row held the excess at ``margin`` or above (their median, or mean)."""
    values = np.nan_to_num(np.asarray(excess, dtype=np.float64))
    return len(values) >= RUN_HOURS and bool((_runs(values, mean=mean) >= margin).any())


def held_start(excess: FloatArray, margin: float, *, mean: bool = False) -> int:
    """The hour (index into ``excess``, hourly) from which the excess is held above ``margin``: the
    first ``RUN_HOURS`` whose median (or with ``mean``, mean) is at or above it after the CUSUM change
    point over ``margin / 2``; the change point itself when no run reaches the margin."""
    values = np.nan_to_num(np.asarray(excess, dtype=np.float64))
    if len(values) == 0:
        return 0
    start = rise_start(values, margin / 2)
    held = np.flatnonzero(_runs(values[start:], mean=mean) >= margin)
    return start + (int(held[0]) if held.size else 0)
