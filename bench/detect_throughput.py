"""Detection throughput on one core: raw Cloud Monitoring points analyzed per second.

Simulates a fleet (the demo's three services, repeated under new names), ingests it through the
snapshot parser, builds frames and runs every detector and the cost model, timing each stage.
Pinned to one CPU so the figure is per core.

    python bench/detect_throughput.py --copies 10 --days 7
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.analysis import analyze_frames
from analyzer.analysis.creep import detect_creep
from analyzer.analysis.memory import detect_leak
from analyzer.analysis.regression import detect_cpu, detect_latency
from analyzer.analysis.timeline import build_view
from analyzer.config import AnalysisConfig
from analyzer.frames import Frames, build
from analyzer.model import RawData
from analyzer.simulate import DEMO_END, demo_specs, simulate_fleet, snapshot_documents
from analyzer.sources.snapshot import ingest


def detect_only(frames: Frames, config: AnalysisConfig) -> int:
    """The four detectors over every revision (no cost model, what-ifs or fix checks)."""
    count = 0
    for key in frames.services:
        view = build_view(frames, key)
        for span in view.spans:
            detect_leak(view, span, config.detection)
            previous = view.previous(span.name)
            detect_creep(view, span, config.detection, reference=previous)
            detect_latency(view, span, config.detection, reference=previous)
            detect_cpu(view, span, config.detection, reference=previous, default_cpu=config.pricing.default_cpu)
            count += 1
    return count


def _timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=10, help="copies of the demo's 3 services")
    parser.add_argument("--days", type=int, default=7)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    from datetime import timedelta

    end = DEMO_END
    start = end - timedelta(days=args.days)
    specs = [replace(s, service=f"{s.service}-{i:03d}") for i in range(args.copies) for s in demo_specs()]
    sims = simulate_fleet(specs, start=start, end=end, seed=11, counterfactual=False)
    documents = snapshot_documents(sims)

    t0 = time.perf_counter()
    raw = RawData()
    for sub, stem, body in documents:
        ingest(raw, sub, stem, body)
    t1 = time.perf_counter()
    frames = build(raw, step_seconds=300)
    t2 = time.perf_counter()
    config = AnalysisConfig()
    # Each stage runs twice and the faster run counts, so one-off import and cache warm-up costs
    # (pandas, numpy dispatch) do not land on whichever stage happens to run first.
    t_detect = min(_timed(lambda: detect_only(frames, config)) for _ in range(2))
    t_full = min(_timed(lambda: analyze_frames(frames, config)) for _ in range(2))
    analysis = analyze_frames(frames, config)
    detected = detect_only(frames, config)
    t3 = t2 + t_full
    points = sum(len(s.end_times) for s in raw.series)
    values = frames.metrics.shape[0] * (frames.metrics.shape[1] - 5)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"services: {len(frames.services)}  days: {args.days}  raw points: {points:,}  "
          f"frame rows: {len(frames.metrics):,}")
    print(f"parse REST JSON : {t1 - t0:6.2f} s  {points / (t1 - t0):>12,.0f} points/s")
    print(f"build frames    : {t2 - t1:6.2f} s  {points / (t2 - t1):>12,.0f} points/s")
    print(f"detectors only  : {t_detect:6.2f} s  {points / t_detect:>12,.0f} points/s  ({detected} revisions)")
    print(f"full analysis   : {t3 - t2:6.2f} s  {points / (t3 - t2):>12,.0f} points/s  "
          f"({values / (t3 - t2):,.0f} frame values/s)")
    print(f"frames + full   : {t3 - t1:6.2f} s  {points / (t3 - t1):>12,.0f} points/s")
    print(f"findings: {len(analysis.findings)}  peak RSS: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
