"""The same series read twice is counted once, and said.

A metrics-scoping project returns the series of every project it monitors, so reading a scope beside
one of its members (``--project scope --project member``) returns the member's series twice; a
snapshot may hold the same body under two file names. Added up, either doubles instances, requests,
billable and allocation time, and so cost and creep. Every source that assembles a RawData (snapshot
reading, the live fetch, the inventory's join of batches, the demo) ends with ``drop_duplicate_series``.

A series' identity is its metric type, its resource labels (project, location, service, revision) and
its metric labels. Two series of one identity are the same data where their points end at the same
instant: those points are kept from the first source read and dropped from later ones. Points at other
instants are kept, so a series split over response pages, or over bucket layouts, is not a duplicate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from analyzer.model import Histograms, Problem, RawData, RawSeries

SHOWN_PAIRS = 4  # source pairs named in the Problem; the rest are counted
Identity = tuple[str, str, str, str, str, tuple[tuple[str, str], ...]]


def series_identity(s: RawSeries) -> Identity:
    """Metric type + resource labels + metric labels: what makes two series the same series."""
    return (s.metric, s.project, s.region, s.service, s.revision, tuple(sorted(s.metric_labels.items())))


def _take(s: RawSeries, keep: np.ndarray) -> RawSeries:
    hist = s.histograms
    if hist is not None:
        hist = Histograms(hist.bounds, hist.counts[keep], hist.count[keep], hist.mean[keep],
                          hist.range_min[keep], hist.range_max[keep])
    return replace(s, start_times=s.start_times[keep], end_times=s.end_times[keep],
                   values=None if s.values is None else s.values[keep], histograms=hist)


def drop_duplicate_series(data: RawData) -> None:
    """Count every (series, instant) of ``data`` once, in place, and add one Problem saying how many
    series came twice and from which sources (nothing when there were none)."""
    seen: dict[Identity, tuple[str, np.ndarray]] = {}  # identity -> (first source, instants read)
    kept: list[RawSeries] = []
    pairs: dict[tuple[str, str], list[int]] = {}  # (again in, first in) -> [series, points]
    for s in data.series:
        identity = series_identity(s)
        known = seen.get(identity)
        if known is None:
            seen[identity] = (s.source, s.end_times)
            kept.append(s)
            continue
        first, instants = known
        repeated = np.isin(s.end_times, instants)
        seen[identity] = (first, np.concatenate([instants, s.end_times]))
        if not repeated.any():
            kept.append(s)  # more points of the same series (another page or bucket layout)
            continue
        tally = pairs.setdefault((s.source, first), [0, 0])
        tally[0] += 1
        tally[1] += int(repeated.sum())
        if not repeated.all():
            kept.append(_take(s, ~repeated))
    if not pairs:
        return
    data.series = kept
    data.problems.append(_problem(pairs))


def _problem(pairs: dict[tuple[str, str], list[int]]) -> Problem:
    series = sum(t[0] for t in pairs.values())
    points = sum(t[1] for t in pairs.values())
    ordered = sorted(pairs.items(), key=lambda item: (-item[1][0], item[0]))
    shown = "; ".join(f"{n} in {again} (already in {first})" for (again, first), (n, _) in ordered[:SHOWN_PAIRS])
    more = f"; and {len(ordered) - SHOWN_PAIRS} more pairs of sources" if len(ordered) > SHOWN_PAIRS else ""
    return Problem(
        "duplicate series",
        f"{series} series ({points} points) were read twice and are counted once: {shown}{more}",
        "a metrics-scoping project returns its member projects' series too: read either the scope or its "
        "members, not both; in a snapshot, remove the file saved twice",
    )
