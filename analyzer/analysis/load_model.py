"""What a quantity 'should' be for a given load, learned from a reference period.

Used to ask "how many instances (or dollars) would the previous revision have needed for this
traffic?": the quantity binned against request rate, interpolated between bins and extrapolated in
proportion to load beyond the busiest bin, so traffic growth alone is not an anomaly.

Two readings of a bin: its median (``statistic="median"``), right for "how many instances", and its
mean (``"mean"``), right for a cost, which is an expectation over skewed per-step use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from analyzer.model import FloatArray


@dataclass(frozen=True, slots=True)
class LoadModel:
    load_points: FloatArray  # bin centres (request rate), increasing
    values: FloatArray  # the quantity in each bin, made non-decreasing with load
    slope_below: bool = False  # below the quietest bin: follow the two quietest bins' slope (else flat)

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
            slope = (values[1] - values[0]) / (points[1] - points[0])
            below = np.clip(values[0] - slope * (points[0] - load), 0.0, values[0])
            predicted = np.where(load < points[0], below, predicted)
        return np.asarray(predicted, dtype=np.float64)


def fit(load: FloatArray, value: FloatArray, *, bins: int = 12, min_points: int = 12,
        statistic: Literal["median", "mean"] = "median", slope_below: bool = False) -> LoadModel | None:
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
    return LoadModel(centres, np.maximum.accumulate(levels), slope_below)


def _group_medians(which: np.ndarray, counts: np.ndarray, values: FloatArray) -> FloatArray:
    """np.median of ``values`` within each group (``which``), all groups at once: sorted by group, then
    value; the middle member, or the mean of the two middle members (as np.median takes it)."""
    ordered = values[np.lexsort((values, which))]
    starts = np.cumsum(counts) - counts
    upper = starts + counts // 2
    lower = np.where(counts % 2 == 1, upper, upper - 1)
    last = max(len(ordered) - 1, 0)  # empty groups point anywhere: the caller drops them
    lower, upper = np.clip(lower, 0, last), np.clip(upper, 0, last)
    medians: FloatArray = np.where(counts % 2 == 1, ordered[upper], (ordered[lower] + ordered[upper]) / 2)
    return medians
