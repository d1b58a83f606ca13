"""False leaks on a service with a long warm-up whose only earlier revision was deployed before the window
(so the data never show how it warms up): the cache service of ``tests/test_detectors.py``
(``cache_service``), its cache of 90 MiB filling over 2, 4 or 6 h after a deploy, simulated on several seeds
and analyzed on the data as they stand 5 ... 24 h after the deploy, as a report run then would see them.

    python bench/warmup_cuts.py                 # 3 warm-ups x 8 seeds x 7 cuts = 168 analyses, about 80 s
    python bench/warmup_cuts.py --seeds 16 -v   # more seeds; list each false finding

Prints how many cuts had a finding (none is expected: nothing leaks).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.test_detectors import CACHE_DEPLOY, _run, cache_service

WARMUPS = (120.0, 240.0, 360.0)  # minutes until the cache is ~95 % full
CUTS = (5, 6, 7, 8, 10, 12, 24)  # hours after the deploy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    false = total = 0
    for warmup in WARMUPS:
        spec = cache_service(warmup)
        for seed in range(args.seeds):
            for hours in CUTS:
                findings = _run(spec, end=CACHE_DEPLOY + timedelta(hours=hours), seed=seed).findings
                total += 1
                false += bool(findings)
                if findings and args.verbose:
                    print(f"warm-up {warmup:g} min, seed {seed}, +{hours} h: {findings[0].summary[:120]}")
    print(f"cuts with a false finding: {false} / {total}")


if __name__ == "__main__":
    main()
