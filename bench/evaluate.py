"""Detection-quality harness (issue 4): a labelled suite, the analyzer and two baselines, scored side by side.

    python bench/evaluate.py --count 200 --seed 7 --workers 2
    python bench/evaluate.py --count 200 --holdout-seed 2027 --workers 2   # a fresh draw nobody tuned on

For each scenario of ``bench/scenarios.py`` it simulates the services, writes the snapshot directory
and its ``labels.json`` under ``bench/out/<suite>/<scenario>/``, and runs

* the product: ``analyzer.pipeline.analyze`` on the scenario's RawData (by default built from the
  very documents written to disk with ``analyzer.sources.snapshot.ingest``, the function
  ``read_snapshot`` uses; ``--from-disk`` reads them back with ``read_snapshot`` instead);
* a Coroot-like baseline: a 1 h linear regression over the service's memory; it fires when the fit
  projects the limit within 24 h, or when the slope is positive and significant (t >= 3);
* a mean + 2σ baseline: hourly means of memory, instances, p95 latency and CPU against the first
  24 h of the window; it fires when three consecutive hours exceed the reference mean + 2σ.

Both baselines read ``analyzer.frames.build`` output, the product's own table.

Scoring is strict: a finding matches a label of the same service and kind only when it names the
labelled revision (or says that revision carried it, ``evidence.carried_by``) and its onset is within
2 h of the labelled one (a leak begun before the window: at most 2 h after the window starts). Each
label and finding is used at most once, nearest onset first. TP, FP and FN per kind give precision,
recall and F1; onset error = |finding onset - label onset| over matches whose labelled onset lies
inside the window. The lenient figure (same service and kind, any revision, any onset: issue 4's
matching) is printed beside it. "Strong leaks" (slope >= 5 % of the limit per day, sustained >= 12 h)
are scored separately, and so are those that ran only 12-48 h in the window (short-lived: rolled
back, fixed, or deployed near its end), and the pass rate (no finding at all) of each negative class.
Detection delay: for every strong in-window leak of the draw (``--delay-scenarios`` caps the
scenarios), the analysis is re-run on data cut at onset + 3, 6, 9, 12, 18, 24 and 48 h; the delay is
the first cut at which a strictly matching finding appears. The analyzer's later cuts are run too, and a
leak it found and then lost at a later one (not reported, or dated more than 2 h off) is counted.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere: the analyzer package lives in the repo root
    sys.path.insert(0, str(ROOT))

import scenarios  # noqa: E402  (bench/ is sys.path[0] when run as a script)

from analyzer.analysis import calibration  # noqa: E402
from analyzer.frames import build as build_frames  # noqa: E402
from analyzer.model import RawData, RawSeries  # noqa: E402
from analyzer.pipeline import analyze  # noqa: E402
from analyzer.sources.snapshot import ingest, read_snapshot, write_snapshot  # noqa: E402

KINDS = scenarios.KINDS
DELAY_HOURS = (3, 6, 9, 12, 18, 24, 48)
ONSET_TOLERANCE_S = 2 * 3600  # strict matching: the finding's onset within 2 h of the labelled one
SHORT_LIVED_HOURS = (12.0, 48.0)  # a strong leak that ran this long in the window is "short-lived"
DELAY_CLASSES = ("leak_at_deploy", "leak_fixed", "leak_delayed", "incident_like")
METHODS = ("analyzer", "coroot_1h_regression", "mean_plus_2sigma")
BASELINE_STEP_S = 300


# ----------------------------------------------------------------------------------------------
# Findings in a common, plain form
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """A finding of any method, reduced to what is scored."""

    kind: str
    service: str
    revision: str
    onset: float  # epoch seconds
    carried_by: str = ""  # the later revision the finding says carried it on
    strength: str = ""  # the evidence strength class confidence is calibrated per (analysis.calibration)
    # The finding's excess as a share of the revision's cost over its last day (evidence: cost now
    # against the counterfactual cost), compared with the label's ``excess_fraction_last_day``.
    excess_fraction: float | None = None
    excess_usd_per_month: float = 0.0
    cost_reference: str = ""  # what the excess was priced against (the finding's ``cost_reference``)

    def plain(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "service": self.service,
            "revision": self.revision,
            "onset": _iso(self.onset),
            "carried_by": self.carried_by,
            "strength": self.strength,
            "excess_fraction": self.excess_fraction,
            "excess_usd_per_month": self.excess_usd_per_month,
            "cost_reference": self.cost_reference,
        }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _excess_fraction(evidence: dict[str, Any]) -> float | None:
    now, expected = evidence.get("cost_now_usd_per_hour"), evidence.get("cost_counterfactual_usd_per_hour")
    if not isinstance(now, int | float) or not isinstance(expected, int | float) or now <= 0:
        return None
    return (float(now) - float(expected)) / float(now)


def _product_hits(raw: RawData) -> list[Hit]:
    result = analyze(raw)
    return [
        Hit(str(f.kind), f.service, f.revision, f.onset.timestamp(), str(f.evidence.get("carried_by", "")),
            calibration.strength(f), _excess_fraction(f.evidence), f.excess_cost_usd_per_month,
            str(f.evidence.get("cost_reference", "")))
        for f in result.findings
    ]


# ----------------------------------------------------------------------------------------------
# Baselines over the product's frames
# ----------------------------------------------------------------------------------------------


def _service_view(metrics: pd.DataFrame, service: str) -> pd.DataFrame:
    """One row per step for a service: the serving revision's row (the one with the most active instances)."""
    rows = metrics.loc[metrics["service"] == service].copy()
    if rows.empty:
        return rows
    rows["_serving"] = rows["inst_active"].fillna(0.0) + 1e-3 * rows["requests"].fillna(0.0)
    rows = rows.sort_values(["ts", "_serving"]).drop_duplicates("ts", keep="last")
    return rows.set_index("ts").sort_index()


def coroot_like(metrics: pd.DataFrame, *, end: float | None = None) -> list[Hit]:
    """Coroot's memory-leak check, applied as an alert rule over the whole window."""
    hits: list[Hit] = []
    for service in sorted(metrics["service"].unique()):
        view = _service_view(metrics, service)
        mem = view["mem_mean"].dropna()
        if end is not None:
            mem = mem[mem.index.map(pd.Timestamp.timestamp) < end]
        if len(mem) < 8:
            continue
        t = np.asarray([ts.timestamp() for ts in mem.index]) / 3600.0
        y = mem.to_numpy(dtype=np.float64)
        for i in range(len(t)):
            if i % 3:  # evaluate every 15 minutes
                continue
            sel = (t > t[i] - 1.0) & (t <= t[i])
            if sel.sum() < 8:
                continue
            x, v = t[sel] - t[i], y[sel]
            slope, intercept = np.polyfit(x, v, 1)
            resid = v - (slope * x + intercept)
            dof = max(len(x) - 2, 1)
            se = math.sqrt(float(resid @ resid) / dof / max(float(((x - x.mean()) ** 2).sum()), 1e-12))
            projected = intercept + 24.0 * slope
            if projected >= 1.0 or (slope > 0 and se > 0 and slope / se >= 3.0):
                at = float(t[sel][0] * 3600.0)
                hits.append(Hit("memory_baseline_rise", service, _serving_at(view, at), at))
                break
    return hits


_SIGMA_COLUMNS = {
    "memory_baseline_rise": "mem_mean",
    "instance_creep": "instances",
    "latency_regression": "lat_p95",
    "cpu_regression": "cpu_mean",
}


def mean_plus_two_sigma(metrics: pd.DataFrame, *, end: float | None = None) -> list[Hit]:
    """Three consecutive hourly means above mean + 2σ of the window's first 24 h."""
    hits: list[Hit] = []
    for service in sorted(metrics["service"].unique()):
        view = _service_view(metrics, service)
        if view.empty:
            continue
        view = view.assign(instances=view["inst_active"].fillna(0.0) + view["inst_idle"].fillna(0.0))
        if end is not None:
            view = view[view.index.map(pd.Timestamp.timestamp) < end]
        start = view.index.min()
        for kind, column in _SIGMA_COLUMNS.items():
            hourly = view[column].resample("1h").mean()
            reference = hourly[hourly.index < start + pd.Timedelta(hours=24)].dropna()
            later = hourly[hourly.index >= start + pd.Timedelta(hours=24)]
            if len(reference) < 12 or later.empty:
                continue
            limit = reference.mean() + 2.0 * reference.std()
            above = (later > limit).to_numpy()
            run = np.convolve(above.astype(int), np.ones(3, dtype=int), mode="valid")
            first = np.flatnonzero(run == 3)
            if first.size:
                at = later.index[int(first[0])].timestamp()
                hits.append(Hit(kind, service, _serving_at(view, at), at))
    return hits


def _serving_at(view: pd.DataFrame, epoch: float) -> str:
    stamp = pd.Timestamp(epoch, unit="s", tz="UTC")
    before = view.loc[view.index <= stamp]
    row = before.iloc[-1] if len(before) else view.iloc[0]
    return str(row["revision"])


# ----------------------------------------------------------------------------------------------
# Running one scenario (in a worker)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    seed: int
    index: int
    klass: str
    suite_dir: str
    from_disk: bool
    delays: bool
    snapshots: bool = True  # write the scenario's snapshot directory and labels.json


def _in_memory(
    documents: Sequence[tuple[str, str, Any]], manifest: dict[str, Any], directory: Path
) -> RawData:
    """What read_snapshot(directory) returns, without decoding the JSON just written."""
    raw = RawData(origin=f"snapshot {directory}")
    for sub, stem, body in documents:
        ingest(raw, sub, str(directory / sub / f"{stem}.json"), body)
    raw.window_start = datetime.fromisoformat(manifest["window"]["start"].replace("Z", "+00:00"))
    raw.window_end = datetime.fromisoformat(manifest["window"]["end"].replace("Z", "+00:00"))
    return raw


def _head(value: Any, n: int) -> Any:
    """The first ``n`` points of a per-point field: an array, a list, or a dataclass of per-point arrays."""
    if value is None:
        return None
    if hasattr(value, "__dataclass_fields__"):  # columnar distributions: slice every per-point column
        cut = {}
        for name in value.__dataclass_fields__:
            column = getattr(value, name)
            is_per_point = isinstance(column, np.ndarray) and column.ndim >= 1 and name != "bounds"
            cut[name] = column[:n] if is_per_point else column
        return replace(value, **cut)
    return value[:n]


def truncate(raw: RawData, cut: datetime) -> RawData:
    """The data as it would have been at ``cut``: later points and revisions dropped."""
    limit = int(cut.timestamp())
    per_point = [f for f in RawSeries.__dataclass_fields__ if f not in ("start_times", "end_times")]
    series: list[RawSeries] = []
    for s in raw.series:
        n = int(np.searchsorted(s.end_times, limit, side="right"))  # points are oldest first
        if n == 0:
            continue
        changes: dict[str, Any] = {"start_times": s.start_times[:n], "end_times": s.end_times[:n]}
        for name in per_point:
            value = getattr(s, name)
            if isinstance(value, np.ndarray | list) or hasattr(value, "__dataclass_fields__"):
                changes[name] = _head(value, n)
        series.append(replace(s, **changes))
    revisions = [r for r in raw.revisions if r.create_time is None or r.create_time <= cut]
    return RawData(
        series=series,
        revisions=revisions,
        services=list(raw.services),
        problems=list(raw.problems),
        window_start=raw.window_start,
        window_end=cut,
        origin=raw.origin,
    )


def _write(
    directory: Path,
    documents: Sequence[tuple[str, str, Any]],
    manifest: dict[str, Any],
    labels: dict[str, Any],
) -> None:
    marker = directory / "labels.json"
    if marker.exists():
        try:
            old = json.loads(marker.read_text(encoding="utf-8"))
            if old.get("generator") == labels["generator"] and old.get("scenario") == labels["scenario"]:
                return  # the same deterministic scenario is already on disk
        except (OSError, ValueError):
            pass
    write_snapshot(directory, documents, manifest=manifest)
    marker.write_text(json.dumps(labels, indent=2), encoding="utf-8")


def run_task(task: Task) -> dict[str, Any]:
    started = time.perf_counter()
    cpu_started = time.process_time()
    scenario = scenarios.generate_one(task.seed, task.index, task.klass)
    services, documents, manifest, labels = scenarios.build(scenario)
    del services
    directory = Path(task.suite_dir) / scenario.id
    if task.snapshots:
        _write(directory, documents, manifest, labels)
    timing = {"simulate_and_write_s": time.perf_counter() - started}
    out: dict[str, Any] = {"labels": labels, "errors": [], "timing": timing}
    t0 = time.perf_counter()
    raw = read_snapshot(directory) if task.from_disk else _in_memory(documents, manifest, directory)
    del documents
    timing["read_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    try:
        out["analyzer"] = [h.plain() for h in _product_hits(raw)]
    except Exception as exc:  # the harness reports a crash of the product and carries on
        out["analyzer"] = []
        out["errors"].append(f"analyze: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}")
    timing["analyze_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics = build_frames(raw, step_seconds=BASELINE_STEP_S).metrics
    out["coroot_1h_regression"] = [h.plain() for h in coroot_like(metrics)]
    out["mean_plus_2sigma"] = [h.plain() for h in mean_plus_two_sigma(metrics)]
    timing["baselines_s"] = time.perf_counter() - t0
    if task.delays:
        t0 = time.perf_counter()
        out["delays"] = _delays(raw, metrics, labels)
        timing["delays_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - started
    timing["cpu_s"] = time.process_time() - cpu_started
    return out


LOST_HOW = ("not reported", "dated off")  # how a leak found at one cut was lost at a later one


def how_lost(label: dict[str, Any], places: Iterable[tuple[str, str]]) -> str:
    """How a later cut lost a leak it does not match strictly: "dated off" when a memory finding still sits on
    the label's revision (``places``: each memory finding's revision and the revision that carried it on),
    else "not reported"."""
    return LOST_HOW[1] if any(label["revision"] in place for place in places) else LOST_HOW[0]


def _delays(raw: RawData, metrics: pd.DataFrame, labels: dict[str, Any]) -> list[dict[str, Any]]:
    """Hours of data after the onset each method needed to report each strong leak (None: not within 48 h)."""
    found = []
    end = _epoch(labels["window"]["end"])
    start = _epoch(labels["window"]["start"])
    for label in labels["labels"]:
        if label["kind"] != "memory_baseline_rise" or not label["strong"] or label["onset_before_window"]:
            continue
        onset = _epoch(label["onset"])
        record: dict[str, Any] = {
            "service": label["service"], "onset": label["onset"], "revision": label["revision"],
            "slope_pct_limit_per_day": label["slope_pct_limit_per_day"],
        }  # fmt: skip
        methods: dict[str, Callable[[float], list[Hit]]] = {
            "analyzer": lambda cut: _product_hits(truncate(raw, datetime.fromtimestamp(cut, UTC))),
            "coroot_1h_regression": lambda cut: coroot_like(metrics, end=cut),
            "mean_plus_2sigma": lambda cut: mean_plus_two_sigma(metrics, end=cut),
        }
        for name, detect in methods.items():
            record[name] = None
            lost: list[dict[str, Any]] = []
            for hours in DELAY_HOURS:
                cut = onset + hours * 3600.0
                if cut > end:
                    record[name] = "beyond window" if record[name] is None else record[name]
                    break
                try:
                    hits = detect(cut)
                except Exception as exc:  # a crash on partial data counts as no detection, and is reported
                    problem = f"{name} at +{hours} h: {type(exc).__name__}: {exc}"
                    record.setdefault("errors", []).append(problem)
                    hits = []
                leaks = [h for h in hits if h.kind == "memory_baseline_rise"]
                if any(strict_pair(label, h.plain(), start) for h in leaks):
                    if record[name] is None:
                        record[name] = hours
                        if name != "analyzer":
                            break
                elif isinstance(record[name], int):  # found at an earlier cut, lost at this one
                    lost.append({"hours": hours, "how": how_lost(label, ((h.revision, h.carried_by) for h in leaks))})
            if name == "analyzer":
                record["analyzer_lost_again"] = lost
        found.append(record)
    return found


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Match:
    label: dict[str, Any]
    hit: dict[str, Any]

    @property
    def onset_error_h(self) -> float:
        return abs(_epoch(self.hit["onset"]) - _epoch(self.label["onset"])) / 3600.0


@dataclass(slots=True)
class Tally:
    tp: list[Match]
    fp: list[dict[str, Any]]
    fn: list[dict[str, Any]]


def strict_pair(label: dict[str, Any], hit: dict[str, Any], window_start: float) -> bool:
    """The finding names the labelled revision (or the revision that carried it on) and its onset is
    within 2 h of the labelled one; a leak begun before the window has its onset no more than 2 h
    after the window starts (its true onset is not in the data)."""
    if label["revision"] not in (hit["revision"], hit.get("carried_by", "")):
        return False
    found, labelled = _epoch(hit["onset"]), _epoch(label["onset"])
    if label.get("onset_before_window"):
        return found <= max(labelled, window_start) + ONSET_TOLERANCE_S
    return abs(found - labelled) <= ONSET_TOLERANCE_S


def match(
    labels: list[dict[str, Any]], hits: list[dict[str, Any]], *, window_start: float | None = None
) -> dict[str, Tally]:
    """Per kind: pair labels and findings of the same service, nearest onsets first, each used once.
    With ``window_start``, only strict pairs (``strict_pair``) count; without, any pair of the same
    service and kind does (the lenient figure)."""
    tallies = {kind: Tally([], [], []) for kind in KINDS}
    groups: dict[tuple[str, str], tuple[list[dict[str, Any]], list[dict[str, Any]]]] = defaultdict(
        lambda: ([], [])
    )
    for label in labels:
        groups[(label["service"], label["kind"])][0].append(label)
    for hit in hits:
        if hit["kind"] in tallies:
            groups[(hit["service"], hit["kind"])][1].append(hit)
    for (_, kind), (ls, hs) in groups.items():
        pairs = sorted(
            (
                (abs(_epoch(h["onset"]) - _epoch(lab["onset"])), i, j)
                for i, lab in enumerate(ls)
                for j, h in enumerate(hs)
                if window_start is None or strict_pair(lab, h, window_start)
            )
        )
        used_l: set[int] = set()
        used_h: set[int] = set()
        for _, i, j in pairs:
            if i not in used_l and j not in used_h:
                used_l.add(i)
                used_h.add(j)
                tallies[kind].tp.append(Match(ls[i], hs[j]))
        tallies[kind].fn.extend(lab for i, lab in enumerate(ls) if i not in used_l)
        tallies[kind].fp.extend(h for j, h in enumerate(hs) if j not in used_h)
    return tallies


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _summary(tp: int, fp: int, fn: int, matches: Iterable[Match]) -> dict[str, Any]:
    matches = list(matches)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    f1 = (
        (2 * precision * recall / (precision + recall))
        if precision and recall
        else (0.0 if tp + fp + fn else None)
    )
    errors = [m.onset_error_h for m in matches if not m.label.get("onset_before_window")]
    return {
        "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1,
        "onset_error_median_h": float(np.median(errors)) if errors else None,
        "onset_error_p90_h": float(np.percentile(errors, 90)) if errors else None,
        "attribution": _ratio(sum(m.hit["revision"] == m.label["revision"] for m in matches), len(matches)),
    }  # fmt: skip


EXCESS_MIN_FRACTION = 0.02  # labels whose excess is under 2 % of the cost are not priced against
EXCESS_POINT = 0.01  # one point of the revision's last-day cost: the absolute error reported beside the relative


def excess_accuracy(matches: Iterable[Match]) -> dict[str, Any]:
    """How far a found anomaly's excess cost is from the labelled one: the finding's excess share of
    the revision's last-day cost over the label's (the same dollars of metered cost, so the ratio of the
    shares is the ratio of the dollars). Over matched labels with an excess of 2 % or more."""
    pairs = [
        (float(m.hit["excess_fraction"]), float(m.label["excess_fraction_last_day"]))
        for m in matches
        if (m.label.get("excess_fraction_last_day") or 0.0) >= EXCESS_MIN_FRACTION
        and m.hit.get("excess_fraction") is not None
    ]
    errors = [found / labelled - 1.0 for found, labelled in pairs]
    priced = np.abs(np.asarray(errors, dtype=np.float64))
    # Beside the relative error, the absolute one in points of the last day's cost: ±10 % of an excess of a
    # few percent is a fraction of a point, finer than a load model's error over a day can be.
    points = np.abs(np.asarray([found - labelled for found, labelled in pairs], dtype=np.float64))
    return {
        "priced": len(errors),
        "within_10pct": int((priced <= 0.10).sum()),
        "within_20pct": int((priced <= 0.20).sum()),
        "within_10pct_or_1pt": int(((priced <= 0.10) | (points <= EXCESS_POINT)).sum()),
        "median_abs_error": float(np.median(priced)) if errors else None,
        "worst_error": float(max(errors, key=abs)) if errors else None,
    }


def _short_lived(label: dict[str, Any]) -> bool:
    low, high = SHORT_LIVED_HOURS
    return (
        label["kind"] == "memory_baseline_rise" and bool(label["strong"])
        and not label["onset_before_window"] and low <= label["sustained_hours"] <= high
    )  # fmt: skip


def score(results: list[dict[str, Any]], method: str, *, strict: bool = True) -> dict[str, Any]:
    per_kind = {kind: Tally([], [], []) for kind in KINDS}
    strong_tp: list[Match] = []
    strong_fn = strong_fp = 0
    short_found = short_of = 0
    negatives: dict[str, list[bool]] = defaultdict(list)
    positives: dict[str, list[bool]] = defaultdict(list)
    pre_window: list[Match] = []
    ambiguous_hits: dict[str, int] = dict.fromkeys(KINDS, 0)
    for result in results:
        body = result["labels"]
        hits = result.get(method, [])
        window_start = _epoch(body["window"]["start"]) if strict else None
        tallies = match(body["labels"], hits, window_start=window_start)
        for kind, tally in tallies.items():
            # A finding matching an ambiguous label (strictly) is neither rewarded nor penalised; missing one is
            # not an FN. One on its revision with the onset more than 2 h off matched nothing: an FP.
            ambiguous_hits[kind] += sum(1 for m in tally.tp if m.label.get("ambiguous"))
            tally.tp = [m for m in tally.tp if not m.label.get("ambiguous")]
            tally.fn = [lab for lab in tally.fn if not lab.get("ambiguous")]
            per_kind[kind].tp.extend(tally.tp)
            per_kind[kind].fp.extend(tally.fp)
            per_kind[kind].fn.extend(tally.fn)
        if not body["positive"]:
            negatives[body["class"]].append(not hits)
        else:
            found = {
                (m.label["service"], m.label["kind"], m.label["onset"])
                for t in tallies.values()
                for m in t.tp
            }
            positives[body["class"]].append(
                all(
                    (lab["service"], lab["kind"], lab["onset"]) in found
                    for lab in body["labels"]
                    if not lab.get("ambiguous")
                )
            )
        memory = tallies["memory_baseline_rise"]
        pre_window.extend(m for m in memory.tp if m.label.get("onset_before_window"))
        weak = [lab for lab in body["labels"] if lab["kind"] == "memory_baseline_rise" and not lab["strong"]]
        strong_tp.extend(m for m in memory.tp if m.label["strong"])
        short_found += sum(1 for m in memory.tp if _short_lived(m.label))
        short_of += sum(1 for m in memory.tp if _short_lived(m.label))
        short_of += sum(1 for lab in memory.fn if _short_lived(lab))
        strong_fn += sum(1 for lab in memory.fn if lab["strong"])
        if not weak:  # a memory finding in a scenario with only a weak leak could be right: not counted
            strong_fp += len(memory.fp)
    all_negatives = [ok for oks in negatives.values() for ok in oks]
    return {
        "per_kind": {k: _summary(len(t.tp), len(t.fp), len(t.fn), t.tp) for k, t in per_kind.items()},
        "excess_cost": {k: excess_accuracy(t.tp) for k, t in per_kind.items()},
        "strong_leaks": _summary(len(strong_tp), strong_fp, strong_fn, strong_tp),
        "short_lived_strong_leaks": {"found": short_found, "of": short_of, "recall": _ratio(short_found, short_of)},
        "leaks_begun_before_window": {
            "matched": len(pre_window),
            "attribution": _ratio(
                sum(m.hit["revision"] == m.label["revision"] for m in pre_window), len(pre_window)
            ),
        },
        "ambiguous_labels_found": ambiguous_hits,
        "negative_pass_rate": {k: {"passed": sum(v), "of": len(v)} for k, v in sorted(negatives.items())},
        "negative_pass_rate_overall": _ratio(sum(all_negatives), len(all_negatives)),
        "positive_scenarios_fully_found": {
            k: {"found": sum(v), "of": len(v)} for k, v in sorted(positives.items())
        },
    }


def _lost_again(records: list[dict[str, Any]]) -> dict[str, int]:
    """Leaks the analyzer found at one cut and lost at a later one: in all, and by how it lost them."""
    losses = [{x["how"] for x in d.get("analyzer_lost_again") or ()} for d in records]
    by_how = {how: sum(how in x for x in losses) for how in LOST_HOW}
    return {"any": sum(map(bool, losses)), **by_how}


FAST_LEAK_SLOPE = 10.0  # % of the limit a day: the leaks issue 14's delay target (6 h median, 12 h p90) is about


def delay_summary(results: list[dict[str, Any]], method: str, *, min_slope: float = 0.0) -> dict[str, Any]:
    """Median and p90 over the leaks whose window lasted until they were found or 48 h: a leak never
    found counts as infinitely late (not left out), one whose window ended first is left out.
    ``min_slope``: only leaks of at least this slope (% of the limit a day)."""
    records = [d for r in results for d in (r.get("delays") or [])
               if float(d.get("slope_pct_limit_per_day") or 0.0) >= min_slope]
    values = [d[method] for d in records if isinstance(d.get(method), int)]
    undetected = sum(1 for d in records if d.get(method) is None)
    censored = sum(1 for d in records if d.get(method) == "beyond window")
    judged = np.asarray([*values, *([np.inf] * undetected)], dtype=np.float64)

    def quantile(q: float) -> float | None:
        if not judged.size:
            return None
        value = float(np.quantile(judged, q, method="higher"))
        return value if math.isfinite(value) else None  # None: more than 1 - q of the leaks not found

    return {
        "leaks": len(records),
        "detected": len(values),
        "not_detected_within_48h": undetected,
        "window_ended_first": censored,
        "median_h": quantile(0.5),
        "p90_h": quantile(0.9),
        "within_h": {h: sum(1 for v in values if v <= h) for h in DELAY_HOURS},
        # The analyzer's cuts go on after the first that finds a leak: found, then lost again at a later one
        # (not reported, or dated more than 2 h off its onset). None for methods whose later cuts are not run.
        "lost_again": _lost_again(records) if method == "analyzer" else None,
    }


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def render(report: dict[str, Any]) -> str:
    lines = [
        f"suite {report['suite']}: {report['scenarios']} scenarios ({report['positives']} positive, "
        f"{report['negatives']} negative), {report['labels']} labels "
        f"(+{sum(report['ambiguous_labels'].values())} ambiguous, not scored); "
        f"{report['runtime_s']:.0f} s wall on {report['workers']} workers, "
        f"{report['timing_s']['cpu_s']:.0f} s CPU in workers",
        "",
    ]
    lines.append("strict matching (same kind and revision, onset within 2 h); lenient = same service and kind:")
    header = (
        f"{'method':22s} {'kind':22s} {'TP':>4s} {'FP':>4s} {'FN':>4s} {'prec':>5s} {'rec':>5s} {'F1':>5s} "
        f"{'onset med h':>11s} {'p90 h':>6s} {'attrib':>6s} {'lenient P':>9s} {'lenient R':>9s}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for method in METHODS:
        s, lenient = report["methods"][method], report["lenient"][method]
        rows = [
            *((k, s["per_kind"][k], lenient["per_kind"][k]) for k in KINDS),
            ("strong leaks", s["strong_leaks"], lenient["strong_leaks"]),
        ]
        for kind, v, w in rows:
            lines.append(
                f"{method:22s} {kind:22s} {v['tp']:4d} {v['fp']:4d} {v['fn']:4d} {_fmt(v['precision']):>5s} "
                f"{_fmt(v['recall']):>5s} {_fmt(v['f1']):>5s} {_fmt(v['onset_error_median_h']):>11s} "
                f"{_fmt(v['onset_error_p90_h']):>6s} {_fmt(v['attribution']):>6s} {_fmt(w['precision']):>9s} "
                f"{_fmt(w['recall']):>9s}"
            )
        short = s["short_lived_strong_leaks"]
        lines.append(
            f"{method:22s} strong leaks that ran 12-48 h in the window: {short['found']}/{short['of']} found "
            f"(recall {_fmt(short['recall'])})"
        )
        lines.append("")
    lines.append("excess cost of found anomalies against the labelled excess (matched labels with >= 2 % "
                 "excess; finding's share of the last day's cost / label's):")
    for kind in KINDS:
        e = report["methods"]["analyzer"]["excess_cost"][kind]
        lines.append(
            f"  {kind:22s} {e['priced']:3d} priced: within ±10 %: {e['within_10pct']}, within ±20 %: "
            f"{e['within_20pct']}, median |error| {_fmt(e['median_abs_error'])}, worst {_fmt(e['worst_error'])}; "
            f"within ±10 % or ±{EXCESS_POINT:.0%} of the cost: {e['within_10pct_or_1pt']}"
        )
    lines.append("")
    lines.append("negative pass rate (no finding at all), per class:")
    classes = sorted(report["methods"]["analyzer"]["negative_pass_rate"])
    lines.append(f"  {'class':20s} " + " ".join(f"{m:>22s}" for m in METHODS))
    for klass in classes:
        cells = []
        for method in METHODS:
            v = report["methods"][method]["negative_pass_rate"][klass]
            cells.append(f"{v['passed']:>3d}/{v['of']:<3d} ({v['passed'] / v['of']:.2f})")
        lines.append(f"  {klass:20s} " + " ".join(f"{c:>22s}" for c in cells))
    lines.append(
        f"  {'overall':20s} "
        + " ".join(f"{_fmt(report['methods'][m]['negative_pass_rate_overall']):>22s}" for m in METHODS)
    )
    lines.append("")
    lines.append("positive scenarios with every label found, per class:")
    for klass in sorted(report["methods"]["analyzer"]["positive_scenarios_fully_found"]):
        cells = []
        for method in METHODS:
            v = report["methods"][method]["positive_scenarios_fully_found"][klass]
            cells.append(f"{v['found']:>3d}/{v['of']:<3d}")
        lines.append(f"  {klass:20s} " + " ".join(f"{c:>22s}" for c in cells))
    lines.append("")
    lines.append(
        "leak detection delay (hours of data after the onset; strong leaks, data cut at "
        + ", ".join(f"+{h} h" for h in DELAY_HOURS)
        + "):"
    )
    for key, title in (("delays", None), ("delays_fast_leaks", f"of which leaks of {FAST_LEAK_SLOPE:.0f} %/day "
                                                           "or more (the issue's delay target):")):
        if title:
            lines.append(f"  {title}")
        for method in METHODS:
            d = report[key][method]
            within = ", ".join(f"≤{h} h: {n}" for h, n in d["within_h"].items())
            lines.append(
                f"  {method:22s} {d['detected']}/{d['leaks']} detected, median {_fmt(d['median_h'], 0)} h, "
                f"p90 {_fmt(d['p90_h'], 0)} h ({within}); not within 48 h: {d['not_detected_within_48h']}, "
                f"window ended first: {d['window_ended_first']}"
            )
            if d.get("lost_again"):
                lost = d["lost_again"]
                lines.append(
                    f"  {'':22s} found, then lost again at a later cut: {lost['any']} of {d['detected']} "
                    f"(not reported at one: {lost['not reported']}, dated off at one: {lost['dated off']})"
                )
    lines.append("")
    lines.append("ambiguous labels (near-threshold, not scored) and how many each method reported:")
    for kind in KINDS:
        found_by = " ".join(f"{m}={report['methods'][m]['ambiguous_labels_found'][kind]}" for m in METHODS)
        lines.append(f"  {kind:22s} {report['ambiguous_labels'][kind]:3d} labels; found: {found_by}")
    pre = report["methods"]["analyzer"]["leaks_begun_before_window"]
    lines.append("")
    lines.append(
        f"leaks begun before the window: {pre['matched']} matched by the analyzer, attribution "
        f"{_fmt(pre['attribution'])}"
    )
    if report["errors"]:
        lines.append("")
        lines.append(f"analyzer errors in {len(report['errors'])} scenarios, e.g. {report['errors'][0]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=200, help="scenarios in the suite")
    parser.add_argument("--seed", type=int, default=7, help="seed of the development suite")
    parser.add_argument(
        "--holdout-seed",
        type=int,
        default=None,
        help="score a fresh draw with this seed instead (never tune on it)",
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    parser.add_argument(
        "--delay-scenarios",
        type=int,
        default=None,
        help="at most this many leak scenarios re-analyzed on truncated data for the detection delay "
        "(default: every one, so the delay covers every strong in-window leak of the draw)",
    )
    parser.add_argument(
        "--from-disk",
        action="store_true",
        help="analyze read_snapshot(dir) instead of the in-memory documents written to dir",
    )
    parser.add_argument(
        "--no-snapshots",
        action="store_true",
        help="do not write each scenario's snapshot directory (about 8 GB for 200 scenarios); the "
        "figures, results.json and per_scenario.json are the same",
    )
    args = parser.parse_args(argv)
    if args.from_disk and args.no_snapshots:
        parser.error("--from-disk reads the snapshots that --no-snapshots does not write: use one of them")

    seed = args.holdout_seed if args.holdout_seed is not None else args.seed
    suite = f"{'holdout' if args.holdout_seed is not None else 'dev'}-seed{seed}-n{args.count}"
    suite_dir = args.out / suite
    suite_dir.mkdir(parents=True, exist_ok=True)
    classes = scenarios.suite_classes(args.count, seed)
    delay_budget = len(classes) if args.delay_scenarios is None else args.delay_scenarios
    tasks = []
    for index, klass in enumerate(classes):
        wants_delay = klass in DELAY_CLASSES and delay_budget > 0
        delay_budget -= int(wants_delay)
        tasks.append(Task(seed, index, klass, str(suite_dir), args.from_disk, wants_delay, not args.no_snapshots))
    # Longest first (delay runs re-analyze several times) keeps both workers busy to the end.
    tasks.sort(key=lambda t: not t.delays)
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    with multiprocessing.get_context("fork").Pool(args.workers, maxtasksperchild=20) as pool:
        for i, result in enumerate(pool.imap_unordered(run_task, tasks), 1):
            results.append(result)
            if i % 10 == 0 or i == len(tasks):
                print(f"  {i}/{len(tasks)} scenarios, {time.perf_counter() - started:.0f} s", file=sys.stderr)
    results.sort(key=lambda r: r["labels"]["scenario"])
    report = {
        "suite": suite,
        "command": "python bench/evaluate.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "generator": scenarios.GENERATOR_VERSION,
        "scenarios": len(results),
        "positives": sum(r["labels"]["positive"] for r in results),
        "negatives": sum(not r["labels"]["positive"] for r in results),
        "labels": sum(not lab.get("ambiguous") for r in results for lab in r["labels"]["labels"]),
        "ambiguous_labels": {
            k: sum(
                lab["kind"] == k and bool(lab.get("ambiguous"))
                for r in results
                for lab in r["labels"]["labels"]
            )
            for k in KINDS
        },
        "workers": args.workers,
        "runtime_s": time.perf_counter() - started,
        "methods": {m: score(results, m) for m in METHODS},
        "lenient": {m: score(results, m, strict=False) for m in METHODS},
        "delays": {m: delay_summary(results, m) for m in METHODS},
        "delays_fast_leaks": {m: delay_summary(results, m, min_slope=FAST_LEAK_SLOPE) for m in METHODS},
        "errors": [f"{r['labels']['scenario']}: {e.splitlines()[0]}" for r in results for e in r["errors"]],
        "timing_s": {
            k: float(np.sum([r["timing"].get(k, 0.0) for r in results]))
            for k in (
                "simulate_and_write_s",
                "read_s",
                "analyze_s",
                "baselines_s",
                "delays_s",
                "total_s",
                "cpu_s",
            )
        },
    }
    (suite_dir / "results.json").write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    (suite_dir / "per_scenario.json").write_text(
        json.dumps(
            [{k: r.get(k) for k in ("labels", *METHODS, "delays", "errors", "timing")} for r in results],
            indent=1,
            default=str,
        ),
        encoding="utf-8",
    )
    print(render(report))
    print(f"\nwritten: {suite_dir / 'results.json'} and per_scenario.json", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
