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

# bench/quick.py score over the pickles of fourteen development draws of 200 scenarios (seeds 141240, 314857,
# 401254, 410102, 448570, 629312, 631697, 697606, 714491, 731917, 747759, 798808, 830341 and 942002, each made
# with ``quick.py make --seed S --count 200``; all of them former held-out draws, so development data now), then
# score --dump: measured on 2026-12-05 at the detectors of 20bdd2e (twelve of those draws at d2abaee gave memory
# 0.935 / 0.854 on 464 / 445). These give 95 to 536 findings per row.
SUITE = "quick-14draws-n2800"
MIN_FINDINGS = 5

# (kind, strength) -> (strict precision, findings it was measured on, strict-match share of lenient matches)
MEASURED: dict[tuple[str, str], tuple[float, int, float]] = {
    ("cpu_regression", "moderate"): (0.758, 95, 0.783),
    ("cpu_regression", "strong"): (0.969, 388, 0.969),
    ("instance_creep", "moderate"): (0.708, 96, 0.81),
    ("instance_creep", "strong"): (0.938, 290, 0.954),
    ("latency_regression", "moderate"): (0.992, 266, 1.0),
    ("latency_regression", "strong"): (1.0, 224, 1.0),
    ("memory_baseline_rise", "moderate"): (0.86, 529, 0.873),
    ("memory_baseline_rise", "strong"): (0.944, 536, 0.951),
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
