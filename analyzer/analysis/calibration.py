"""What a finding's confidence means: the precision measured on a labelled suite for findings of the
same kind and evidence strength, not a number set by hand.

``bench/calibrate.py`` derives ``MEASURED`` from a scored suite (``bench/evaluate.py``'s per_scenario.json,
or ``bench/quick.py score --dump``), with strict matching: the right kind, revision and onset within 2 h.
The suite it was measured on is named in ``SUITE`` and shown with the number; re-measure after a
detector change. A kind and strength the suite had fewer than ``MIN_FINDINGS`` findings of has no
measured precision: the confidence is then 0 and the evidence says "not measured", rather than a guess.
"""

from __future__ import annotations

from analyzer.model import Finding, FindingKind

# bench/quick.py score over the pickles of thirty development draws of 200 scenarios (seeds 113739, 114769, 133073,
# 141240, 255035, 255300, 260500, 304301, 314024, 349893, 369080, 401076, 410102, 432198, 444163, 469740, 503245,
# 507647, 581831, 628144, 714491, 715771, 750917, 792332, 798808, 830341, 900927, 944226, 978733 and 985119, each made
# with ``quick.py make --seed S --count 200 --out bench/out/quickr``; all of them former held-out draws, so development
# data now), then one score --dump over all of them (the commands are in docs/detection-quality.md): measured on
# 2026-12-06 at the detectors of 34755d5 (the twenty-seven draws before, at 4b8fc94: memory 0.949 / 0.883, creep
# 0.975 / 0.906, CPU 0.980 / 0.776, latency 1.0 / 1.0). These give 192 to 1,209 findings per row.
SUITE = "quick-30draws-n6000"
MIN_FINDINGS = 5

# (kind, strength) -> (strict precision, findings it was measured on, strict-match share of lenient matches)
MEASURED: dict[tuple[str, str], tuple[float, int, float]] = {
    ("cpu_regression", "moderate"): (0.803, 223, 0.829),
    ("cpu_regression", "strong"): (0.983, 821, 0.985),
    ("instance_creep", "moderate"): (0.922, 192, 0.922),
    ("instance_creep", "strong"): (0.983, 577, 0.986),
    ("latency_regression", "moderate"): (1.0, 536, 1.0),
    ("latency_regression", "strong"): (1.0, 493, 1.0),
    ("memory_baseline_rise", "moderate"): (0.883, 1088, 0.896),
    ("memory_baseline_rise", "strong"): (0.95, 1209, 0.958),
}


def strength(finding: Finding) -> str:
    """The evidence strength class a finding's precision is measured per: how far past its gate it is."""
    evidence = finding.evidence
    if finding.kind is FindingKind.MEMORY_BASELINE_RISE:
        value = float(evidence.get("trough_slope_pct_of_limit_per_day", 0.0))
        return "strong" if value >= 10.0 else "moderate"
    if finding.kind is FindingKind.INSTANCE_CREEP:
        value = float(evidence.get("excess_pct", 0.0))
        return "strong" if value >= 50.0 else "moderate"
    value = float(evidence.get("increase_pct", 0.0))
    return "strong" if value >= 30.0 else "moderate"


def measured(finding: Finding) -> tuple[float, int, float] | None:
    """The measured (precision, findings, attribution) for this finding's kind and strength, if any."""
    found = MEASURED.get((finding.kind.value, strength(finding)))
    return found if found is not None and found[1] >= MIN_FINDINGS else None


def apply(finding: Finding) -> None:
    """Set the finding's confidence (measured precision) and attribution confidence (the share of
    findings on the right service and kind that also named the right revision and onset), and say in
    its evidence what they were measured on; 0 and "not measured" when the suite had too few."""
    kind, level = finding.kind.value.replace("_", " "), strength(finding)
    found = measured(finding)
    if found is None:
        finding.confidence = finding.attribution_confidence = 0.0
        finding.evidence["confidence_basis"] = (f"not measured: fewer than {MIN_FINDINGS} {level} {kind} findings "
                                                f"on the labelled suite {SUITE}")
        return
    precision, count, attribution = found
    finding.confidence, finding.attribution_confidence = precision, attribution
    finding.evidence["confidence_basis"] = (f"{precision:.0%} of {count} {level} {kind} findings on the labelled "
                                            f"suite {SUITE} were right (kind, revision, onset within 2 h); "
                                            f"{attribution:.0%} of those on the right service named the right revision")
