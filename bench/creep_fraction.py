"""How creep's measured size compares with its labels: for each labelled creep (ambiguous ones too), the
fraction the creep detector's revision-taken-whole gate reads (``creep.hourly_excess(...).fraction``:
mean excess of instances over the mean count the load needed, after warm-up) against the labelled one
(the run's mean extra instances over the counterfactual run's mean count). A ratio under 1 reads creep
smaller than it was: a creep labelled just over ``min_excess_fraction`` goes unreported. Beside it, the
same fraction on the hourly medians of the excess (what the gate read before it read the steps' means).

    python bench/quick.py make --seed 693567 --count 200 --out bench/out/quickr    # pickled scenarios first
    python bench/creep_fraction.py "bench/out/quickr/s*.pkl"                        # median ratio per band
    python bench/creep_fraction.py "bench/out/quickr/s693567-*.pkl" -v              # and every label

The reference each revision is judged against is the pipeline's (``timeline.reference_span``), with the
other labelled revisions of the scenario as the ones that have a finding.
"""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from quick import load_scenario

from analyzer.analysis import creep
from analyzer.analysis.timeline import build_view, reference_span
from analyzer.config import AnalysisConfig

BANDS = ((0.0, 0.125), (0.125, 0.25), (0.25, 0.35), (0.35, 1.0), (1.0, float("inf")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pattern", help="glob of pickled scenarios (bench/quick.py make)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every label")
    args = parser.parse_args()
    detection = AnalysisConfig().detection
    rows: list[tuple[float, float, float]] = []
    for path in sorted(glob.glob(args.pattern)):
        frames, labels = load_scenario(path)
        creeps = [label for label in labels["labels"] if label["kind"] == "instance_creep"]
        flagged = {label["revision"] for label in labels["labels"]}
        for key in frames.services:
            view = build_view(frames, key)
            for label in creeps:
                span = next((s for s in view.spans if s.name == label["revision"]), None)
                if label["service"] != key.service or span is None:
                    continue
                reference = reference_span(view, span, flagged - {span.name}, detection.creep.reference_hours)
                measured = creep.hourly_excess(view, span, detection, reference=reference)
                labelled = label["mean_excess_instances"] / max(label["counterfactual_instances"], 1.0)
                if measured is None or labelled <= 0:
                    continue
                on_medians = float(np.mean(measured.medians)) / max(float(np.mean(measured.needed)), 1.0)
                rows.append((labelled, measured.fraction, on_medians))
                if args.verbose:
                    print(f"{Path(path).name:45s} {span.name:24s} labelled {labelled:6.3f} measured "
                          f"{measured.fraction:6.3f} (on medians {on_medians:6.3f}) ambiguous {label['ambiguous']}")
    if not rows:
        sys.exit("no creep labels in those scenarios")
    table = np.asarray(rows)
    ratio, medians = table[:, 1] / table[:, 0], table[:, 2] / table[:, 0]
    print(f"{len(rows)} creep labels, measured / labelled: median {np.median(ratio):.3f} (quartiles "
          f"{np.quantile(ratio, 0.25):.3f}-{np.quantile(ratio, 0.75):.3f}); on hourly medians {np.median(medians):.3f}")
    for low, high in BANDS:
        inside = (table[:, 0] >= low) & (table[:, 0] < high)
        if inside.any():
            print(f"  labelled {low:.3f}-{high:.3f}: {int(inside.sum()):4d} labels, "
                  f"median {np.median(ratio[inside]):.3f} (on hourly medians {np.median(medians[inside]):.3f})")


if __name__ == "__main__":
    main()
