"""Fast detector iteration: simulate scenarios once into pickled frames, then score the detectors on
them in seconds (evaluate.py re-simulates, writes and parses every scenario, which takes minutes).

    python bench/quick.py make --seed 101 --count 120               # a draw in the suites' class mix
    python bench/quick.py make --seed 999 --classes warmup:25 big_sawtooth:25
    python bench/quick.py score 'bench/out/quick/*.pkl' [-v]        # P/R/onset/attribution, excess, negatives
    python bench/quick.py delay 'bench/out/quick/*.pkl' [--every]   # strong leaks on data cut at onset + h
    python bench/quick.py cuts 'bench/out/quick/*.pkl'              # negatives cut at each deploy + 5 ... 48 h
    python bench/quick.py why 'bench/out/quick/*.pkl' [--hours 12]  # why a strong leak is not found (strictly)
    python bench/quick.py score 'bench/out/quick/s101-*.pkl' --dump bench/out/s101.json   # for calibrate.py

Scoring is simpler than evaluate.py's, so use evaluate.py for the figures in the docs: a label matches
the first unused finding that evaluate.py's strict rule accepts (same kind and revision, or the one
that carried it; onset within 2 h), not the nearest onset, and ambiguous labels count as misses when
not found. ``delay`` uses the same strict rule. Frames are built at 300 s steps, as the live query
plan aligns them. Scenarios drawn with ``--count`` get the class mix of a suite of that size, so
``--seed 7 --count 100`` is not the first half of the dev suite.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import pickle
import sys
from collections import defaultdict
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import scenarios
from evaluate import EXCESS_MIN_FRACTION, FAST_LEAK_SLOPE, LOST_HOW, _excess_fraction, how_lost, strict_pair

from analyzer.analysis import analyze_frames, calibration, envelope, memory
from analyzer.analysis.timeline import between, build_view
from analyzer.config import AnalysisConfig
from analyzer.frames import Frames, build
from analyzer.model import RawData
from analyzer.sources.restjson import parse_time
from analyzer.sources.snapshot import ingest

OUT = Path(__file__).resolve().parent / "out" / "quick"
KINDS = ("memory_baseline_rise", "instance_creep", "latency_regression", "cpu_regression")
DELAY_HOURS = (3, 6, 9, 12, 18, 24, 48)


def _make_one(job: tuple[int, int, str, str]) -> None:
    seed, index, klass, path = job
    if os.path.exists(path):
        return
    scenario = scenarios.generate_one(seed, index, klass)
    _, documents, manifest, labels = scenarios.build(scenario)
    raw = RawData()
    for sub, stem, body in documents:
        ingest(raw, sub, stem, body)
    raw.window_start = parse_time(manifest["window"]["start"])
    raw.window_end = parse_time(manifest["window"]["end"])
    with open(path, "wb") as f:
        pickle.dump((build(raw, step_seconds=300), labels), f)


def make(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = []
    if args.classes:
        for spec in args.classes:
            klass, _, n = spec.partition(":")
            jobs += [(args.seed, i, klass, str(out / f"s{args.seed}-{klass}-{i:04d}.pkl")) for i in range(int(n))]
    else:
        classes = scenarios.suite_classes(args.count, args.seed)
        jobs = [(args.seed, i, k, str(out / f"s{args.seed}-{i:04d}-{k}.pkl")) for i, k in enumerate(classes)]
    with Pool(args.workers) as pool:
        pool.map(_make_one, jobs, chunksize=1)
    print(f"{len(jobs)} scenarios in {out}")


Found = tuple[str, str, str, pd.Timestamp, str, str, str, float | None, str]  # kind, service, revision, onset,
# summary, carried_by, strength, excess share of the last day's cost (as evaluate.py scores it), what that excess was
# priced against


def _found(analysis: Any) -> list[Found]:
    return [(f.kind.value, f.service, f.revision, pd.Timestamp(f.onset), f.summary,
             str(f.evidence.get("carried_by", "")), calibration.strength(f), _excess_fraction(f.evidence),
             str(f.evidence.get("cost_reference", "")))
            for f in analysis.findings]


def _hit(found: Found) -> dict[str, str | float | None]:
    """A finding as evaluate.py's per_scenario.json has it (what bench/calibrate.py reads)."""
    return {"kind": found[0], "service": found[1], "revision": found[2],
            "onset": found[3].strftime("%Y-%m-%dT%H:%M:%SZ"), "carried_by": found[5], "strength": found[6],
            "excess_fraction": found[7], "cost_reference": found[8]}


def load_scenario(path: str) -> tuple[Frames, dict[str, Any]]:
    """A pickled scenario; one made before ``Frames.history`` existed gets none."""
    with open(path, "rb") as f:
        frames, labels = pickle.load(f)
    if not hasattr(frames, "history"):
        frames.history = frames.metrics.iloc[:0]
    return frames, labels


def _strict(label: dict[str, Any], found: Found, window_start: float) -> bool:
    hit = {"revision": found[2], "carried_by": found[5], "onset": found[3].strftime("%Y-%m-%dT%H:%M:%SZ")}
    return found[:2] == (label["kind"], label["service"]) and strict_pair(label, hit, window_start)


FLIP_BUCKETS = (8.0, 14.0, 24.0)  # hours from a deploy to its flag flip that ``score`` reports flips by


def _flip_bucket(hours: float) -> str:
    """The bucket of ``FLIP_BUCKETS`` a flip that many hours after its deploy falls in ("08-14 h", sorting
    as the hours do)."""
    low = max((edge for edge in FLIP_BUCKETS if edge <= hours), default=0.0)
    high = min((edge for edge in FLIP_BUCKETS if edge > hours), default=None)
    return f"{low:02.0f}-{high:.0f} h" if high is not None else f"{low:.0f} h or more"


def _window_start(labels: dict[str, Any]) -> float:
    return parse_time(labels["window"]["start"]).timestamp()


def _analyze(path: str) -> tuple[str, dict[str, Any], list[Found], dict[str, pd.Timestamp]]:
    """The scenario's labels, the analyzer's findings and each revision's deploy time."""
    frames, labels = load_scenario(path)
    deploys = {name: pd.Timestamp(info.create_time) for (_, name), info in frames.revisions.items()
               if info.create_time is not None}
    return path, labels, _found(analyze_frames(frames, AnalysisConfig())), deploys


def _why_missed(label: dict[str, Any], found: list[Found], deploys: dict[str, pd.Timestamp]) -> str:
    """Why a strong leak's label matched no finding: what the analyzer said about that leak instead."""
    leaks = [f for f in found if f[0] == label["kind"] and f[1] == label["service"]]
    mine = [f for f in leaks if label["revision"] in (f[2], f[5])]
    if not mine:
        return "on another revision of its service" if leaks else "not found"
    onset = pd.Timestamp(parse_time(label["onset"]))
    nearest = min(mine, key=lambda f: abs(f[3] - onset))
    deploy = deploys.get(label["revision"])
    at_deploy = deploy is not None and abs(nearest[3] - deploy) <= pd.Timedelta(minutes=5)
    if at_deploy and onset - deploy > pd.Timedelta(hours=2):
        return "on its revision, dated at the deploy (a leak that began later)"
    return "on its revision, dated early" if nearest[3] < onset else "on its revision, dated late"


def score(args: argparse.Namespace) -> None:
    with Pool(args.workers) as pool:
        results = pool.map(_analyze, sorted(glob.glob(args.pattern)))
    if args.dump:
        dumped = [{"labels": labels, "analyzer": [_hit(f) for f in found]} for _, labels, found, _ in results]
        Path(args.dump).write_text(json.dumps(dumped, indent=1), encoding="utf-8")
    tp: dict[str, int] = defaultdict(int)
    fp: dict[str, int] = defaultdict(int)
    fn: dict[str, int] = defaultdict(int)
    onset: dict[str, list[float]] = defaultdict(list)
    attributed: dict[str, list[bool]] = defaultdict(list)
    negatives: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    strong = [0, 0]
    excess_errors: list[float] = []
    details = []
    missed: dict[str, int] = defaultdict(int)  # strong leaks not matched, by what was found instead
    flips: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # strong flag flips found, by hours after the deploy
    for path, labels, found, deploys in results:
        name = os.path.basename(path)
        if not labels["positive"]:
            negatives[labels["class"]][1] += 1
            negatives[labels["class"]][0] += not found
        used: set[int] = set()
        for label in labels["labels"]:
            kind = label["kind"]
            is_strong = kind == "memory_baseline_rise" and label.get("strong")
            match = next((i for i, f in enumerate(found)
                          if i not in used and _strict(label, f, _window_start(labels))), None)
            if is_strong and labels["class"] == "leak_delayed" and label["revision"] in deploys:
                after = (pd.Timestamp(parse_time(label["onset"])) - deploys[label["revision"]]) / pd.Timedelta(hours=1)
                flips[_flip_bucket(after)][0] += match is not None
                flips[_flip_bucket(after)][1] += 1
            if match is None:
                fn[kind] += 1
                strong[1] += bool(is_strong)
                if is_strong:
                    missed[_why_missed(label, found, deploys)] += 1
                details.append(f"FN {kind} {name} {label}")
                continue
            used.add(match)
            tp[kind] += 1
            strong[0] += bool(is_strong)
            strong[1] += bool(is_strong)
            error = abs((found[match][3] - pd.Timestamp(parse_time(label["onset"]))) / pd.Timedelta(hours=1))
            onset[kind].append(error)
            attributed[kind].append(found[match][2] == label["revision"])
            share, labelled = found[match][7], label.get("excess_fraction_last_day") or 0.0
            if share is not None and labelled >= EXCESS_MIN_FRACTION:
                excess_errors.append(share / labelled - 1.0)
                if abs(excess_errors[-1]) > 0.10:
                    details.append(f"EXCESS {excess_errors[-1]:+.1%} {kind} {name} {label['revision']}")
        for i, f in enumerate(found):
            if i not in used:
                fp[f[0]] += 1
                details.append(f"FP {f[0]} {name} {f[2]}: {f[4][:140]}")
    for kind in KINDS:
        p = tp[kind] / max(tp[kind] + fp[kind], 1)
        r = tp[kind] / max(tp[kind] + fn[kind], 1)
        errors = np.asarray(onset[kind] or [np.nan])
        print(f"{kind:22s} TP {tp[kind]:3d} FP {fp[kind]:3d} FN {fn[kind]:3d}  P {p:.2f} R {r:.2f}  "
              f"onset median {np.median(errors):.2f} h p90 {np.quantile(errors, 0.9):.2f} h  "
              f"attribution {np.mean(attributed[kind]) if attributed[kind] else float('nan'):.2f}")
    print(f"strong leaks found {strong[0]}/{strong[1]}")
    if missed:
        ranked = sorted(missed.items(), key=lambda kv: -kv[1])
        print("strong leaks missed:", ", ".join(f"{why} {n}" for why, n in ranked))
    if flips:
        print("strong flag flips found, by hours from the deploy to the flip:",
              ", ".join(f"{bucket} {n[0]}/{n[1]}" for bucket, n in sorted(flips.items())))
    off = np.abs(np.asarray(excess_errors))
    print(f"excess cost of found anomalies (labels >= {EXCESS_MIN_FRACTION:.0%}) within 10 % "
          f"{int((off <= 0.10).sum())}/{len(off)}, within 20 % {int((off <= 0.20).sum())}/{len(off)}")
    clean = sum(v[0] for v in negatives.values())
    total = sum(v[1] for v in negatives.values())
    print(f"negatives without a finding {clean}/{total}", {k: f"{v[0]}/{v[1]}" for k, v in sorted(negatives.items())})
    if args.verbose:
        print("\n".join(details))


def _cut(frames: Frames, at: pd.Timestamp) -> Frames:
    metrics = frames.metrics.loc[frames.metrics["ts"] < at]
    revisions = {k: v for k, v in frames.revisions.items() if v.create_time is None or v.create_time < at}
    return dataclasses.replace(frames, metrics=metrics, revisions=revisions, window_end=at.to_pydatetime())


def _delay_one(job: tuple[str, bool]) -> list[tuple[str, float, float | None, list[tuple[float, str]]]]:
    """Per strong leak of one pickled scenario: its slope, the first cut (onset + ``DELAY_HOURS``) whose
    analysis finds it strictly (None: none within 48 h), and with ``every`` the later cuts that lost it
    again, each with how ("dated off": a leak on its revision more than 2 h from its onset; "not
    reported"). Without ``every``, the cuts after the first are not analysed."""
    path, every = job
    frames, labels = load_scenario(path)
    out = []
    for label in labels["labels"]:
        if label["kind"] != "memory_baseline_rise" or not label.get("strong") or label["onset_before_window"]:
            continue
        start = pd.Timestamp(parse_time(label["onset"]))
        hours: float | None = None
        lost: list[tuple[float, str]] = []
        for h in DELAY_HOURS:
            at = start + pd.Timedelta(hours=h)
            if at > pd.Timestamp(frames.window_end):
                break
            findings = _found(analyze_frames(_cut(frames, at), AnalysisConfig()))
            found = any(_strict(label, f, _window_start(labels)) for f in findings)
            if found and hours is None:
                hours = h
                if not every:
                    break
            elif not found and hours is not None:
                lost.append((float(h), how_lost(label, ((f[2], f[5]) for f in findings if f[0] == label["kind"]))))
        out.append((os.path.basename(path), float(label["slope_pct_limit_per_day"]), hours, lost))
    return out


def delay(args: argparse.Namespace) -> None:
    with Pool(args.workers) as pool:
        jobs = [(path, args.every) for path in sorted(glob.glob(args.pattern))]
        rows = [r for rs in pool.map(_delay_one, jobs) for r in rs]
    hours = [h if h is not None else np.inf for _, _, h, _ in rows]
    for name, slope, h, lost in rows:
        again = f"  lost again at {', '.join(f'+{x:g} h ({how})' for x, how in lost)}" if lost else ""
        print(f"{name} {slope:5.1f} %/day  {'not within 48 h' if h is None else f'+{h} h'}{again}")
    fast = [x for (_, slope, _, _), x in zip(rows, hours, strict=True) if slope >= FAST_LEAK_SLOPE]
    for title, chosen in (("strong leaks", hours), (f"of {FAST_LEAK_SLOPE:.0f} %/day or more", fast)):
        by = {h: sum(x <= h for x in chosen) for h in DELAY_HOURS}
        median, p90 = (np.quantile(chosen, q, method="higher") if chosen else float("nan") for q in (0.5, 0.9))
        print(f"{len(chosen)} {title}, median {median} h, p90 {p90} h, found by:", by)
    if args.every:
        for how in LOST_HOW:
            by = {h: sum((h, how) in lost for *_, lost in rows) for h in DELAY_HOURS}
            print(f"found, then {how} at a later cut: {sum(any(x[1] == how for x in lost) for *_, lost in rows)} of "
                  f"{sum(h is not None for _, _, h, _ in rows)} found; by cut:", by)


CUT_HOURS = (5, 8, 12, 24, 48)


def _cuts_one(path: str) -> list[tuple[str, str, float, bool]]:
    """A negative scenario cut at each deploy inside its window + ``CUT_HOURS``: whether the analysis of
    each cut has a memory finding (a false leak: a report run hours after a routine deploy)."""
    frames, labels = load_scenario(path)
    if labels["positive"]:
        return []
    out = []
    deploys = sorted(pd.Timestamp(v.create_time) for v in frames.revisions.values()
                     if v.create_time is not None and pd.Timestamp(v.create_time) > pd.Timestamp(frames.window_start))
    for deploy in deploys:
        for h in CUT_HOURS:
            at = deploy + pd.Timedelta(hours=h)
            if at > pd.Timestamp(frames.window_end):
                break
            found = _found(analyze_frames(_cut(frames, at), AnalysisConfig()))
            out.append((os.path.basename(path), str(deploy), float(h),
                        any(f[0] == "memory_baseline_rise" for f in found)))
    return out


def cuts(args: argparse.Namespace) -> None:
    with Pool(args.workers) as pool:
        rows = [r for rs in pool.map(_cuts_one, sorted(glob.glob(args.pattern))) for r in rs]
    for name, deploy, h, false in rows:
        if false or args.verbose:
            print(f"{name} deploy {deploy} +{h:g} h {'false leak' if false else 'clean'}")
    print(f"negative cuts with a false leak: {sum(r[3] for r in rows)} / {len(rows)}")


def _why_one(job: tuple[str, float | None]) -> list[str]:
    """Per strong leak of one pickled scenario not found strictly (on the whole window, or on data cut at its
    onset + ``hours``): the trend test's path on its revision (the 2 h reading's choice, each signal of the
    shorter bins significant and holding to its end, the warm-up yardstick) and the sequential test's figures
    (its highest ratio against the alarm, the envelope's noise and revisions). An approximation of the
    pipeline's own path, for reading: the warm-up yardstick and the envelope take every other revision, not
    only those without a finding."""
    path, hours = job
    frames0, labels = load_scenario(path)
    config = AnalysisConfig()
    detection, cfg = config.detection, config.detection.memory
    out = []
    for label in labels["labels"]:
        if label["kind"] != "memory_baseline_rise" or not label.get("strong"):
            continue
        if hours is not None and label["onset_before_window"]:
            continue  # no data from its onset on
        at = pd.Timestamp(parse_time(label["onset"])) + pd.Timedelta(hours=hours or 0)
        if hours is not None and at > pd.Timestamp(frames0.window_end):  # the window ended first
            continue
        frames = frames0 if hours is None else _cut(frames0, at)
        found = _found(analyze_frames(frames, config))
        if any(_strict(label, f, _window_start(labels)) for f in found):
            continue
        view = build_view(frames, next(k for k in frames.services if k.service == label["service"]))
        span = next((s for s in view.spans if s.name == label["revision"]), None)
        onset = pd.Timestamp(parse_time(label["onset"]))
        pace = f"{label['slope_pct_limit_per_day']:.1f} %/day from {onset:%m-%d %H:%M}"
        words = [labels["scenario"], label["revision"], pace]
        if span is None:
            out.append("; ".join([*words, "revision not in the data yet"]))
            continue
        rows = between(view.revision_rows(span.name), span.first_seen + pd.Timedelta(minutes=detection.warmup_minutes))
        long_bins = memory.long_troughs(view, span, detection)
        served = (rows["ts"].iloc[-1] - rows["ts"].iloc[0]) / pd.Timedelta(hours=1) if len(rows) else 0.0
        young = len(rows) > 0 and served < memory.LOAD_FIT_HOURS
        learned = memory.service_load_slopes(view, span, detection, set()) if young else None
        coarse = memory._Reading.of(long_bins, cfg.trough_window_minutes, cfg, learned)
        chosen = coarse.choose(cfg) if coarse is not None else None
        words.append(f"2 h: {'too few bins' if coarse is None else chosen.name if chosen else 'no climb'}")
        minutes = memory.trough_minutes(rows, long_bins, cfg.trough_window_minutes)
        fine = (memory._Reading.of(memory.troughs(rows, minutes), minutes, cfg, learned)
                if minutes < cfg.trough_window_minutes else None)
        for trend in (fine.worst, fine.typical) if fine is not None else ():
            if trend is not None:
                significant = "significant" if trend.passes(cfg) else "not significant"
                holds = "holds" if memory._holds_to_end(trend, fine, cfg) else "levels off"
                words.append(f"{minutes} min {trend.name}: {significant}, {holds}")
        if chosen is not None:
            like = memory._rises_like_before(view, span, long_bins, chosen.name, detection, set())
            words.append("rises like an earlier warm-up" if like else "above earlier warm-ups")
        evidence = memory.detect_leak(view, span, detection)
        if evidence is None:
            words.append("no candidate")
        else:
            state = "confirmed" if evidence.confirmed else "candidate"
            words.append(f"{state} on the {evidence.signal}, onset {evidence.onset:%m-%d %H:%M}")
        others = [s for s in view.spans if s.name != span.name]
        healthy = envelope.build_envelope(view, others, detection)
        series = envelope._series(view, span, detection, healthy.minutes) if healthy is not None else None
        if healthy is not None and series is not None:
            ratio = envelope.drift_llr(healthy.residual(series), series.age, healthy.noise)
            reported = envelope.sequential_leak(view, span, healthy, detection) is not None
            words.append(f"sequential: ratio {ratio.max():.1f} of {healthy.alarm:.1f}, noise {healthy.noise:.4f}, "
                         f"{len(healthy.revisions)} revisions, {'a leak' if reported else 'none'}")
        found_here = ", ".join(f"{f[0]} {f[2]} {pd.Timestamp(f[3]):%m-%d %H:%M}" for f in found) or "nothing"
        out.append("; ".join(words) + f" | found: {found_here}")
    return out


def why(args: argparse.Namespace) -> None:
    with Pool(args.workers) as pool:
        jobs = [(path, args.hours) for path in sorted(glob.glob(args.pattern))]
        for lines in pool.map(_why_one, jobs):
            for line in lines:
                print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("make", help="simulate scenarios into pickled frames")
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--count", type=int, default=100, help="scenarios, in a suite's class mix")
    p.add_argument("--classes", nargs="*", help="CLASS:N instead: N scenarios of each class")
    p.add_argument("--out", default=str(OUT), help="directory of the pickles (one that exists is not made again)")
    p.set_defaults(run=make)
    for name, run in (("score", score), ("delay", delay), ("cuts", cuts)):
        p = sub.add_parser(name)
        p.add_argument("pattern", help="glob of pickled scenarios")
        p.add_argument("-v", "--verbose", action="store_true", help="list every miss and false positive")
        p.add_argument("--dump", help="score: also write labels and findings as JSON, for bench/calibrate.py")
        p.add_argument("--every", action="store_true",
                       help="delay: analyse every cut, and list the leaks a later cut lost again after one found them")
        p.set_defaults(run=run)
    p = sub.add_parser("why", help="why each strong leak was not found strictly: the detectors' path on its revision")
    p.add_argument("pattern", help="glob of pickled scenarios")
    p.add_argument("--hours", type=float, help="on data cut at the leak's onset + HOURS (default: the whole window)")
    p.set_defaults(run=why)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
