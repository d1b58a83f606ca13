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
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.analysis import analyze_frames
from analyzer.config import AnalysisConfig
from analyzer.frames import build
from analyzer.model import RawData
from analyzer.simulate import DEMO_END, demo_specs, simulate_fleet, snapshot_documents
from analyzer.sources.snapshot import ingest


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
    analysis = analyze_frames(frames, AnalysisConfig())
    t3 = time.perf_counter()

    points = sum(len(s.end_times) for s in raw.series)
    values = frames.metrics.shape[0] * (frames.metrics.shape[1] - 5)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"services: {len(frames.services)}  days: {args.days}  raw points: {points:,}  "
          f"frame rows: {len(frames.metrics):,}")
    print(f"parse REST JSON : {t1 - t0:6.2f} s  {points / (t1 - t0):>12,.0f} points/s")
    print(f"build frames    : {t2 - t1:6.2f} s  {points / (t2 - t1):>12,.0f} points/s")
    print(f"detect + cost   : {t3 - t2:6.2f} s  {points / (t3 - t2):>12,.0f} points/s  "
          f"({values / (t3 - t2):,.0f} frame values/s)")
    print(f"frames + detect : {t3 - t1:6.2f} s  {points / (t3 - t1):>12,.0f} points/s")
    print(f"findings: {len(analysis.findings)}  peak RSS: {peak_mib:,.0f} MiB")


if __name__ == "__main__":
    main()
