"""A fleet-size report made quickly: one small analysis (the demo's) copied under new service names.

Each copy is a real ServiceResult (the same frames and findings, another service key), so a batch of
copies goes through ``render_part`` like any batch of a real run; only the analysis is not redone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime

from analyzer.analysis import Analysis, ServiceResult
from analyzer.model import ServiceKey
from analyzer.render.parts import ReportLayout, ReportPart, render_part, report_layout


def renamed(result: ServiceResult, name: str) -> ServiceResult:
    """``result`` as if it were the service ``name`` (its findings too); the frames are shared."""
    key = ServiceKey(result.key.project, result.key.region, name)
    evidence = [
        replace(item, findings=[replace(f, service=name) for f in item.findings]) for item in result.evidence
    ]
    cost = replace(result.cost, key=key) if result.cost else None
    return replace(result, key=key, view=replace(result.view, key=key), cost=cost, evidence=evidence)


def fleet_analysis(analysis: Analysis, *, services: int, with_findings: int, start: int = 0) -> Analysis:
    """``services`` copies numbered from ``start`` (``svc-0000``…): those numbered below ``with_findings``
    copy the service with findings, the others a healthy one; the problems are left out."""
    sick = next(r for r in analysis.services if r.findings)
    healthy = [r for r in analysis.services if r.status == "analyzed" and not r.findings]
    results = [
        renamed(sick if i < with_findings else healthy[i % len(healthy)], f"svc-{i:04d}")
        for i in range(start, start + services)
    ]
    findings = sorted(
        (f for r in results for f in r.findings),
        key=lambda f: (-f.excess_cost_usd_per_month, f.service, f.onset),
    )
    return replace(analysis, services=results, findings=findings, problems=[])


def fleet_layout(analysis: Analysis, *, services: int) -> ReportLayout:
    key = analysis.services[0].key
    return report_layout(ServiceKey(key.project, key.region, f"svc-{i:04d}") for i in range(services))


def fleet_parts(
    analysis: Analysis, *, services: int, with_findings: int, batch: int, generated_at: datetime
) -> Iterator[ReportPart]:
    """The parts of a fleet of ``services``, ``batch`` services at a time, as a batched run makes them."""
    layout = fleet_layout(analysis, services=services)
    for start in range(0, services, batch):
        size = min(batch, services - start)
        share = fleet_analysis(analysis, services=size, with_findings=with_findings, start=start)
        yield render_part(share, generated_at=generated_at, layout=layout)
