"""False leaks on a service with a long warm-up whose only earlier revision was deployed before the window
(so the data never show how it warms up): the cache service of ``tests/test_detectors.py``, its cache of
90 MiB filling over 2, 4 or 6 h after a deploy, simulated on several seeds and analyzed on the data as
they stand 5 ... 24 h after the deploy, as a report run then would see them.

    python bench/warmup_cuts.py                 # 3 warm-ups x 8 seeds x 7 cuts = 168 analyses, about a minute
    python bench/warmup_cuts.py --seeds 16 -v   # more seeds; list each false leak

Prints how many cuts had a finding (none is expected: nothing leaks).
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer import simulate as sim
from analyzer.model import RawData
from analyzer.pipeline import analyze
from analyzer.sources.snapshot import ingest

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, as in tests/test_detectors.py
WARMUPS = (120.0, 240.0, 360.0)  # minutes until the cache is ~95 % full
CUTS = (5, 6, 7, 8, 10, 12, 24)  # hours after the deploy


def _rev(name: str, at: datetime) -> sim.RevisionSpec:
    return sim.RevisionSpec(name=name, deployed_at=at, image=f"img/{name}", commit_sha=name[-3:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    deploy = START + timedelta(days=1, hours=9)
    false = total = 0
    for warmup in WARMUPS:
        spec = sim.ServiceSpec(
            service="api",
            revisions=(_rev("api-00001-aaa", START - timedelta(days=1)), _rev("api-00002-bbb", deploy)),
            traffic=sim.TrafficSpec(peak_rps=40.0, noise=0.05),
            runtime=sim.RuntimeSpec(cache_memory_mib=90.0, warmup_minutes=warmup),
        )
        for seed in range(args.seeds):
            for hours in CUTS:
                end = deploy + timedelta(hours=hours)
                result = sim.simulate_service(spec, start=START, end=end, seed=seed, counterfactual=False)
                raw = RawData(origin="bench")
                for sub, stem, body in result.documents():
                    ingest(raw, sub, f"{sub}/{stem}.json", body)
                raw.window_start, raw.window_end = START, end
                findings = analyze(raw).findings
                total += 1
                false += bool(findings)
                if findings and args.verbose:
                    print(f"warm-up {warmup:g} min, seed {seed}, +{hours} h: {findings[0].summary[:120]}")
    print(f"cuts with a false finding: {false} / {total}")


if __name__ == "__main__":
    main()
