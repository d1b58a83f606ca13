"""What users see, checked against the simulator's truth: the OOM-kill episodes inferred from the worst
instance alone (``analysis.impact.oom_kill_episodes``) against the kills that really happened, per
service; and which findings are critical, and why, on services where no instance was killed.

    python bench/quick.py make --seed 101 --count 40          # pickled frames and labels
    python bench/impact_check.py 'bench/out/quick/s101-*.pkl' [-v]

A kill episode can hold several kills (two instances reaching the limit in the same hour), so the
inferred count may be lower than the true one; it must not be higher, nor find kills where none were.
"""

from __future__ import annotations

import argparse
import glob
import os
import pickle
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analyzer.analysis import analyze_frames
from analyzer.analysis.impact import CRITICAL_HOURS, NEAR_LIMIT, oom_kill_episodes
from analyzer.config import AnalysisConfig
from analyzer.model import Severity


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args()
    outcome: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    for path in sorted(glob.glob(args.pattern)):
        with open(path, "rb") as f:
            frames, labels = pickle.load(f)
        analysis = analyze_frames(frames, AnalysisConfig())
        truth = {s["service"]: s["oom_kills"] for s in labels["services"]}
        for result in analysis.services:
            inferred = sum(oom_kill_episodes(result.view.revision_rows(span.name).set_index("ts")["mem_max"],
                                             result.view.step_seconds) for span in result.view.spans)
            real = truth.get(result.key.service, 0)
            outcome["services"] += 1
            outcome["exact" if inferred == real else "fewer" if 0 < inferred < real
                    else "missed" if inferred == 0 < real else "extra"] += 1
            if args.verbose and inferred != real:
                print(f"{os.path.basename(path)} {result.key.service}: inferred {inferred}, true {real}")
            if real:
                continue
            for finding in result.findings:
                if finding.severity is not Severity.CRITICAL:
                    continue
                impact = finding.impact
                why = ("oom kills (none true)" if impact.oom_kills else "5xx rising" if impact.errors_rising
                       else "memory near the limit" if (impact.worst_memory_end or 0) >= NEAR_LIMIT
                       else f"limit within {CRITICAL_HOURS:g} h")
                reasons[why] += 1
    print(f"services {outcome['services']}: OOM-kill episodes equal to the true kills {outcome['exact']}, "
          f"fewer (several kills in one episode) {outcome['fewer']}, missed {outcome['missed']}, "
          f"more than true {outcome['extra']}")
    print("critical findings on services without a kill, by reason:", dict(reasons) or "none")


if __name__ == "__main__":
    main()
