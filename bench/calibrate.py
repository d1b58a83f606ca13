"""Measure what a finding's confidence should say: strict precision per kind and evidence strength on
a labelled suite already scored, printed as ``analysis/calibration.py``'s table.

    python bench/quick.py make --seed 101 --count 120
    python bench/quick.py score 'bench/out/quick/s101-*.pkl' --dump bench/out/quick-s101-n120.json
    python bench/calibrate.py bench/out/quick-s101-n120.json
    # or: python bench/calibrate.py bench/out/dev-seed7-n200/per_scenario.json  (after evaluate.py --seed 7)

Per (kind, strength): precision = strict matches / findings, counting as neither right nor wrong a
finding on an ambiguous label, or a memory finding in a scenario whose only leak is weak (as the strong-
leak score does not); attribution = the share of the findings matched leniently (same service and kind)
that also match strictly (right revision, onset within 2 h).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evaluate


def measure(results: list[dict]) -> dict[tuple[str, str], tuple[float, int, float]]:
    right: dict[tuple[str, str], int] = defaultdict(int)
    total: dict[tuple[str, str], int] = defaultdict(int)
    lenient: dict[tuple[str, str], int] = defaultdict(int)
    for result in results:
        labels = result["labels"]
        hits = result.get("analyzer", [])
        window_start = evaluate._epoch(labels["window"]["start"])
        strict = evaluate.match(labels["labels"], hits, window_start=window_start)
        loose = evaluate.match(labels["labels"], hits)
        for kind in evaluate.KINDS:
            matched = {id(m.hit): m for m in strict[kind].tp}
            loosely = {id(m.hit) for m in loose[kind].tp}
            for hit in (h for h in hits if h["kind"] == kind):
                key = (kind, hit.get("strength", ""))
                m = matched.get(id(hit))
                if m is not None and m.label.get("ambiguous"):
                    continue
                if m is None and id(hit) in loosely:
                    lenient[key] += 1
                    total[key] += 1
                    continue
                if m is None and kind == "memory_baseline_rise" and any(
                        lab["kind"] == kind and not lab["strong"] for lab in labels["labels"]):
                    continue  # a weak leak the finding could be right about
                total[key] += 1
                right[key] += m is not None
    return {k: (round(right[k] / total[k], 3), total[k], round(right[k] / max(right[k] + lenient[k], 1), 3))
            for k in sorted(total)}


def main() -> int:
    path = Path(sys.argv[1])
    table = measure(json.loads(path.read_text(encoding="utf-8")))
    print(f"# from {path}")
    print("MEASURED: dict[tuple[str, str], tuple[float, int, float]] = {")
    for key, value in table.items():
        print(f"    {key!r}: {value!r},")
    print("}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
