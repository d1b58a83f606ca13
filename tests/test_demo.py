"""The bundled demo end to end: the incident is found, dated, attributed and priced; the healthy
and level-shift services stay quiet."""

from __future__ import annotations

from datetime import timedelta

from analyzer.analysis import Analysis
from analyzer.model import FindingKind


def _deploy(analysis: Analysis, service: str, revision: str):  # type: ignore[no-untyped-def]
    result = next(s for s in analysis.services if s.key.service == service)
    return result.view.span(revision).deploy_time.to_pydatetime()


def test_incident_leak_and_creep_are_attributed_to_the_leaking_revision(demo_analysis: Analysis) -> None:
    deploy = _deploy(demo_analysis, "llm-router", "llm-router-00042-xyz")
    for kind in (FindingKind.MEMORY_BASELINE_RISE, FindingKind.INSTANCE_CREEP):
        found = [f for f in demo_analysis.findings if f.service == "llm-router" and f.kind is kind]
        assert len(found) == 1, kind
        finding = found[0]
        assert finding.revision == "llm-router-00042-xyz"
        assert abs(finding.onset - deploy) <= timedelta(hours=1)
        assert finding.excess_cost_usd_per_month > 0
        assert finding.resolved_by == "llm-router-00043-fix"


def test_healthy_and_level_shift_services_have_no_findings(demo_analysis: Analysis) -> None:
    noisy = [f"{f.service}: {f.summary}" for f in demo_analysis.findings if f.service in ("checkout", "catalog")]
    assert noisy == []


def test_every_service_is_priced_and_nothing_is_missing(demo_analysis: Analysis) -> None:
    assert demo_analysis.problems == []
    for result in demo_analysis.services:
        assert result.cost is not None and result.cost.cost_usd > 0
        assert {r.revision for r in result.cost.revisions} == {s.name for s in result.view.spans}


def test_the_fix_check_shows_the_incident_symptoms_going_back(demo_analysis: Analysis) -> None:
    router = next(s for s in demo_analysis.services if s.key.service == "llm-router")
    (check,) = router.fixes
    measures = {m.name: m for m in check.measures}
    assert measures["memory baseline (trough)"].change < -0.2
    assert measures["latency p50"].change < -0.05
    assert measures["memory baseline (trough)"].back_to_baseline is True
