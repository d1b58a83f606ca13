"""One service's timeline: its revisions in deploy order, which one served when, and its rows.

Every detector starts from a ServiceView, so "the revision serving at time t" and "the previous
revision" mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from analyzer.analysis import hourly, load_model
from analyzer.frames import Frames, rows_at
from analyzer.model import FloatArray, RevisionInfo, ServiceKey

SUMMED = ["req_rate", "err_rate", "requests", "inst_active", "inst_idle", "billable_s", "cpu_alloc_s",
          "mem_alloc_gibs"]


@dataclass(slots=True)
class RevisionSpan:
    info: RevisionInfo
    deploy_time: pd.Timestamp  # create_time when known, else the first step with data
    first_seen: pd.Timestamp
    last_seen: pd.Timestamp
    deploy_time_known: bool

    @property
    def name(self) -> str:
        return self.info.revision


@dataclass(slots=True)
class ServiceView:
    key: ServiceKey
    rows: pd.DataFrame  # the service's rows of the frames table, all revisions
    totals: pd.DataFrame  # per step: summed load/instances/cost columns + "serving" revision
    spans: list[RevisionSpan]  # revisions with data, in deploy order
    step_seconds: int
    # Tables derived from this view during one analysis (a revision's rows, its per-step cost), kept
    # so each detector and the cost model do not recompute them. Callers must not modify them.
    derived: dict[tuple[object, ...], Any] = field(default_factory=dict, repr=False)
    # The service's rows from before the window (``Frames.history``): a revision's first hours after a
    # deploy that predates the window, for the memory envelope only.
    history: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["revision", "ts"]), repr=False)

    def revision_rows(self, revision: str) -> pd.DataFrame:
        key = ("rows", revision)
        if key not in self.derived:
            self.derived[key] = rows_at(self.rows, _positions(self.rows, self.derived).get(revision, _NONE))
        return cast(pd.DataFrame, self.derived[key])

    def busiest_load(self) -> pd.Series:
        """Per step of ``totals``, the busiest request rate of the step and the quarter hour before it
        (``load_model.busiest_recent``): the load a step's instances, idle ones too, answer to."""
        key = ("busiest load",)
        if key not in self.derived:
            self.derived[key] = load_model.busiest_recent(self.totals["req_rate"], self.step_seconds)
        return cast(pd.Series, self.derived[key])

    def history_rows(self, revision: str) -> pd.DataFrame:
        """``revision``'s rows from before the window (empty unless a source read its first hours)."""
        history = self.history
        if history.empty:
            return history
        return history.loc[(history["revision"] == revision).to_numpy()]

    def rows_from_deploy(self, span: RevisionSpan) -> tuple[pd.DataFrame, pd.Timestamp, bool]:
        """``span``'s rows, where they begin, and whether that is its deploy (``seen_from_deploy``): a
        revision deployed before the window is seen from its deploy when a source read its first hours
        (``history_rows``; Cloud Monitoring keeps six weeks), which are then put before its rows."""
        rows = self.revision_rows(span.name)
        if seen_from_deploy(span):
            return rows, span.first_seen, True
        early = self.history_rows(span.name)
        if early.empty or not span.deploy_time_known:
            return rows, span.first_seen, False
        first = pd.Timestamp(early["ts"].iloc[0])
        if first - span.deploy_time > DEPLOY_SEEN_WITHIN:
            return rows, span.first_seen, False
        key = ("rows from deploy", span.name)
        if key not in self.derived:
            self.derived[key] = pd.concat([early, rows], ignore_index=True)
        return cast(pd.DataFrame, self.derived[key]), first, True

    def serves(self, revision: str) -> np.ndarray:
        """Which steps of ``totals`` ``revision`` served (``totals["serving"] == revision``): the
        column is factorized once per view, so each revision's mask is an integer comparison."""
        key = ("serving codes",)
        if key not in self.derived:
            codes, names = pd.factorize(self.totals["serving"])
            self.derived[key] = (codes, {name: code for code, name in enumerate(names)})
        codes, lookup = cast(tuple[np.ndarray, dict[object, int]], self.derived[key])
        mask: np.ndarray = codes == lookup.get(revision, -2)  # -1 is a missing value: never a revision
        return mask

    def span(self, revision: str) -> RevisionSpan:
        return next(s for s in self.spans if s.name == revision)

    def previous(self, revision: str) -> RevisionSpan | None:
        names = [s.name for s in self.spans]
        index = names.index(revision)
        return self.spans[index - 1] if index > 0 else None

    def serving_at(self, when: pd.Timestamp) -> RevisionSpan | None:
        """The revision taking most traffic at ``when`` (or the latest deployed before it)."""
        totals = self.totals
        if len(totals):
            position = totals.index.searchsorted(when, side="right") - 1
            if 0 <= position < len(totals):
                serving = totals["serving"].iloc[position]
                if isinstance(serving, str) and serving:
                    return self.span(serving)
        deployed = [s for s in self.spans if s.deploy_time <= when]
        return deployed[-1] if deployed else (self.spans[0] if self.spans else None)


DEPLOY_SEEN_WITHIN = pd.Timedelta(hours=1)  # data this close to the deploy show the revision's first hours


def seen_from_deploy(span: RevisionSpan) -> bool:
    """``span``'s data in the window start at its deploy, so its first hours are its after-deploy course;
    a revision deployed before the window is seen mid-life, past any warm-up (unless a source read its
    first hours: ``ServiceView.rows_from_deploy``)."""
    return span.deploy_time_known and span.first_seen - span.deploy_time <= DEPLOY_SEEN_WITHIN


def build_view(frames: Frames, key: ServiceKey) -> ServiceView:
    rows = frames.service_metrics(key)
    derived: dict[tuple[object, ...], Any] = {}
    spans = _spans(frames, key, rows, derived)
    totals = _totals(rows)
    return ServiceView(key, rows, totals, spans, frames.step_seconds, derived, frames.history_of(key))


_NONE = np.empty(0, dtype=np.intp)
NAT = np.iinfo(np.int64).min  # NaT's integer


def _positions(rows: pd.DataFrame, derived: dict[tuple[object, ...], Any]) -> dict[str, np.ndarray]:
    """Each revision's row positions in ``rows`` (one factorization of the column, kept in ``derived``)."""
    key = ("revision positions",)
    if key not in derived:
        codes, names = pd.factorize(rows["revision"])
        order = np.argsort(codes, kind="stable")
        bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
        derived[key] = {name: order[bounds[i]:bounds[i + 1]] for i, name in enumerate(names)}
    return cast(dict[str, np.ndarray], derived[key])


def _spans(frames: Frames, key: ServiceKey, rows: pd.DataFrame,
           derived: dict[tuple[object, ...], Any]) -> list[RevisionSpan]:
    spans: list[RevisionSpan] = []
    positions = _positions(rows, derived)
    ts = rows["ts"]
    stamps = cast(Any, ts.array).asi8 if isinstance(ts.array, pd.arrays.DatetimeArray) else None
    for info in frames.revisions_of(key):
        at = positions.get(info.revision, _NONE)
        if not len(at):
            continue
        mine = stamps[at] if stamps is not None else None
        if mine is not None and mine[0] != NAT and bool((mine[1:] >= mine[:-1]).all()):
            first, last = ts.iloc[int(at[0])], ts.iloc[int(at[-1])]  # a revision's rows in time order
        else:
            times = ts.take(at)
            first, last = times.min(), times.max()
        deploy = pd.Timestamp(info.create_time) if info.create_time else first
        # A create_time after the first data point is not a deploy time we can trust.
        known = info.create_time is not None and deploy <= first + pd.Timedelta(minutes=30)
        spans.append(RevisionSpan(info, deploy if known else first, first, last, known))
    spans.sort(key=lambda s: (s.deploy_time, s.first_seen, s.name))
    return spans


def _totals(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return pd.DataFrame(columns=[*SUMMED, "serving"])
    present = [c for c in SUMMED if c in rows]
    # ``rows.groupby("ts")[present].sum(min_count=1)`` to the last bit, without pandas' grouping.
    steps = hourly.by_step(rows["ts"])
    sums = hourly.sum_min_count(steps, [rows[c].to_numpy() for c in present], min_count=1)
    totals = pd.DataFrame(dict(zip(present, sums, strict=True)), index=steps.index().rename("ts"))
    totals["serving"] = _serving(rows, steps)
    return totals


def _serving(rows: pd.DataFrame, steps: hourly.Hours | None = None) -> pd.Series:
    """Per step, the revision with the most requests (active instances break ties; then the later
    row in a quicksort by that weight, as the sort this replaces left them), by step in time order.
    ``steps``: ``hourly.by_step(rows["ts"])``, when already made."""
    def filled(column: str) -> FloatArray:
        values = rows[column].to_numpy()
        return np.where(np.isnan(values), 0.0, values)

    revisions = rows["revision"]
    if revisions.isna().any():  # ``last`` would skip them: keep pandas' own reading
        weight = rows["requests"].fillna(0.0) + 1e-6 * rows["inst_active"].fillna(0.0)
        serving: pd.Series = rows.assign(_w=weight).sort_values("_w").groupby("ts")["revision"].last()
        return serving
    order = np.argsort(filled("requests") + 1e-6 * filled("inst_active"), kind="quicksort")
    rank = np.empty(len(order), dtype=np.intp)
    rank[order] = np.arange(len(order))
    steps = steps if steps is not None else hourly.by_step(rows["ts"])
    last = np.maximum.reduceat(rank[steps.order], steps.starts) if len(rank) else rank  # highest rank per step
    return pd.Series(revisions.array.take(order[last]), index=steps.index().rename("ts"), name="revision")


def served_hours(view: ServiceView, span: RevisionSpan) -> float:
    """How long ``span`` was the revision taking most of the traffic."""
    key = ("served steps",)
    if key not in view.derived:  # every revision's count at once: this is asked per revision, often
        counted: dict[object, int] = {}
        if len(view.totals):
            view.serves("")  # factorizes the column once per view
            codes, lookup = cast(tuple[np.ndarray, dict[object, int]], view.derived[("serving codes",)])
            counts = np.bincount(codes[codes >= 0], minlength=len(lookup))
            counted = {name: int(counts[code]) for name, code in lookup.items()}
        view.derived[key] = counted
    steps = cast(dict[str, int], view.derived[key]).get(span.name, 0)
    return float(steps) * view.step_seconds / 3600.0


def earlier_without(view: ServiceView, span: RevisionSpan, flagged: Collection[str]) -> list[RevisionSpan]:
    """The revisions deployed before ``span``, in order, leaving out those ``flagged`` names (a finding
    or a leak candidate of their own): the ones that may show what this service does."""
    return [old for old in view.spans[: view.spans.index(span)] if old.name not in flagged]


def reference_span(view: ServiceView, span: RevisionSpan, flagged: set[str],
                   min_served_hours: float) -> RevisionSpan | None:
    """The revision ``span`` is compared with: the last earlier one that served at least
    ``min_served_hours`` and has no finding (``flagged`` names those that have one), so a predecessor
    that served only hours, or that itself leaked or regressed, is not the yardstick; without such a
    revision, the previous one when it has no finding, else the last earlier one without a finding."""
    clean = earlier_without(view, span, flagged)
    for old in reversed(clean):
        if served_hours(view, old) >= min_served_hours:
            return old
    return clean[-1] if clean else None


NS_PER_UNIT = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}


def between(rows: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """``rows.loc[(rows["ts"] >= start) & (rows["ts"] < end)]`` (a missing bound: no limit on that side).
    Rows in time order (a revision's are) give a stretch, found by binary search on the column's
    integers; the masks, a pass over the column per comparison, only otherwise."""
    ts = rows["ts"].array
    stamps = cast(Any, ts).asi8 if isinstance(ts, pd.arrays.DatetimeArray) else None
    bounds = [b for b in (start, end) if b is not None]
    if (stamps is None or any(b.tzinfo is None for b in bounds)
            or (len(stamps) and stamps[0] == NAT) or not (stamps[1:] >= stamps[:-1]).all()):
        keep = np.ones(len(rows), dtype=bool)
        if start is not None:
            keep &= (rows["ts"] >= start).to_numpy()
        if end is not None:
            keep &= (rows["ts"] < end).to_numpy()
        return rows.loc[keep]
    per = NS_PER_UNIT[ts.unit]
    # In the column's unit: ts >= start  <=>  ts >= ceil(start), and ts < end  <=>  ts < ceil(end).
    first = int(np.searchsorted(stamps, -(-start.value // per))) if start is not None else 0
    last = int(np.searchsorted(stamps, -(-end.value // per))) if end is not None else len(stamps)
    return rows.iloc[first:max(first, last)]


def serving_rows(view: ServiceView, reference: RevisionSpan, before: pd.Timestamp, warmup_minutes: int,
                 hours: float) -> pd.DataFrame:
    """The last ``hours`` of ``reference``'s rows while it served, after its warm-up and before ``before``."""
    rows = view.revision_rows(reference.name)
    served = view.totals.index[view.serves(reference.name)]
    end = min(before, served.max() + pd.Timedelta(seconds=view.step_seconds)) if len(served) else before
    start = max(reference.first_seen + pd.Timedelta(minutes=warmup_minutes), end - pd.Timedelta(hours=hours))
    return between(rows, start, end)


COVERED_SHARE = 0.02  # the judged load's share that may lie beyond the reference's range at each end


def reference_totals(view: ServiceView, span: RevisionSpan, warmup_minutes: int,
                     reference_hours: float, reference: RevisionSpan | None = None, *,
                     enough_hours: float | None = None,
                     judged_load: FloatArray | None = None) -> tuple[pd.DataFrame, str]:
    """Service-level steps that show how the service behaved before ``span``: the reference revision's
    (by default the previous one) last serving steps before the deploy (up to 3 × ``reference_hours``
    of them; all it served in the data when the request rates to be judged against it, ``judged_load``,
    go beyond those steps' range: ``_covers``), or, without enough of them (``enough_hours``, by default
    half of ``reference_hours``), the revision's own first ``reference_hours`` after warm-up. Returns
    the steps and a description for the report."""
    key = ("measured totals",)
    if key not in view.derived:  # asked for each revision of the service
        keep = view.totals["inst_active"].notna().to_numpy()
        view.derived[key] = (keep, view.totals.loc[keep])
    measured, totals = cast(tuple[np.ndarray, pd.DataFrame], view.derived[key])
    warm = pd.Timedelta(minutes=warmup_minutes)
    index = totals.index  # the steps, in time order (``_totals``)

    def serving(name: str, start: pd.Timestamp, end: pd.Timestamp) -> tuple[int, np.ndarray]:
        """``view.serves(name)[measured] & (index >= start) & (index < end)``, as the stretch's first
        position and the serving flags within it (binary search instead of two passes of comparisons)."""
        if not len(index):
            return 0, np.zeros(0, dtype=bool)
        first, last = int(index.searchsorted(start, side="left")), int(index.searchsorted(end, side="left"))
        return first, view.serves(name)[measured][first:max(first, last)]

    reference = reference if reference is not None else view.previous(span.name)
    if reference is not None:
        first, flags = serving(reference.name, reference.first_seen + warm, span.first_seen)
        served = first + np.flatnonzero(flags)
        picked = served
        if len(served):  # its last 3 × reference_hours of them
            since = index[served[-1]] - pd.Timedelta(hours=reference_hours * 3)
            picked = served[served >= int(index.searchsorted(since, side="left"))]
            if judged_load is not None and not _covers(totals["req_rate"].to_numpy(np.float64)[picked], judged_load):
                picked = served
        if len(picked) * view.step_seconds >= (enough_hours or reference_hours / 2) * 3600:
            return totals.iloc[picked], f"revision {reference.name}"
    start = span.first_seen + warm
    first, flags = serving(span.name, start, start + pd.Timedelta(hours=reference_hours))
    return totals.iloc[first + np.flatnonzero(flags)], f"the first {reference_hours:g} h of {span.name}"


def _covers(reference_load: FloatArray, judged_load: FloatArray) -> bool:
    """The reference's request rates span the judged ones, but for ``COVERED_SHARE`` of them at either
    end: what a revision is judged against is read inside the range it was learned on, not extrapolated
    from its edge (a Monday's traffic against a reference whose last three days were a quiet weekend)."""
    seen, judged = reference_load[np.isfinite(reference_load)], judged_load[np.isfinite(judged_load)]
    if not len(seen) or not len(judged):
        return True
    low, high = np.quantile(judged, [COVERED_SHARE, 1.0 - COVERED_SHARE])
    return bool(seen.min() <= low and high <= seen.max())


def hours_between(a: pd.Timestamp | datetime, b: pd.Timestamp | datetime) -> float:
    return float((pd.Timestamp(b) - pd.Timestamp(a)) / pd.Timedelta(hours=1))
