"""What a quantity 'should' be for a given load, learned from a reference period.

Used to ask "how many instances (or dollars) would the previous revision have needed for this
traffic?": binned medians of the quantity against request rate, interpolated between bins and
extrapolated in proportion to load beyond the busiest bin, so traffic growth alone is not an anomaly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from analyzer.model import FloatArray


@dataclass(frozen=True, slots=True)
class LoadModel:
    load_points: FloatArray  # bin centres (request rate), increasing
    values: FloatArray  # median of the quantity in each bin
    floor: float  # the quantity at zero load (e.g. min instances)

    def predict(self, load: FloatArray) -> FloatArray:
        load = np.asarray(load, dtype=np.float64)
        inside = np.interp(load, self.load_points, self.values)
        top_load, top_value = self.load_points[-1], self.values[-1]
        # Beyond the busiest load seen, assume the quantity grows in proportion to load: a reference
        # that sat on its min-instance floor says nothing about what more traffic needs, and
        # assuming too much is safer than calling traffic growth an anomaly.
        beyond = top_value * load / top_load if top_load > 0 else np.full_like(load, top_value)
        return np.where(load > top_load, np.maximum(beyond, top_value), inside)


def fit(load: FloatArray, value: FloatArray, *, bins: int = 12, min_points: int = 12) -> LoadModel | None:
    """Fit on paired samples (NaNs dropped); None if there is too little reference data."""
    keep = np.isfinite(load) & np.isfinite(value)
    load, value = load[keep], value[keep]
    if len(load) < min_points:
        return None
    edges = np.unique(np.quantile(load, np.linspace(0.0, 1.0, bins + 1)))
    if len(edges) < 2:
        level = float(np.median(value))
        return LoadModel(np.asarray([float(load.max()) or 1.0]), np.asarray([level]), level)
    which = np.clip(np.searchsorted(edges, load, side="right") - 1, 0, len(edges) - 2)
    centres, medians = [], []
    for b in range(len(edges) - 1):
        members = which == b
        if members.sum() >= 2:
            centres.append(float(np.median(load[members])))
            medians.append(float(np.median(value[members])))
    if not centres:
        return None
    centres_arr = np.asarray(centres)
    # The quantity should not fall as load rises; enforce it so noise in one bin does not mislead.
    medians_arr = np.maximum.accumulate(np.asarray(medians))
    low = load <= np.quantile(load, 0.1)
    floor = float(np.median(value[low])) if low.any() else float(medians_arr[0])
    return LoadModel(centres_arr, medians_arr, min(floor, float(medians_arr[0])))
