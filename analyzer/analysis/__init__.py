"""Analysis: pure functions of frames and config (no clock, no network, no globals).

``analyze_frames`` runs every detector and the cost model over every service and returns an
``Analysis``: findings, costs, the before/after check of fixing revisions, and the problems met. A
service's sidecars are checked for leaks of their own after it (``analysis.sidecars``).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from analyzer.analysis.cost import ServiceCost, apply_free_tier, service_cost
from analyzer.analysis.findings import RevisionEvidence, detect_service
from analyzer.analysis.fixcheck import FixCheck, fix_checks
from analyzer.analysis.impact import assess, finding_order
from analyzer.analysis.sidecars import SidecarResult, analyze_sidecars
from analyzer.analysis.timeline import ServiceView, build_view
from analyzer.analysis.whatif import WhatIf, service_what_ifs
from analyzer.config import AnalysisConfig
from analyzer.frames import Frames
from analyzer.model import Finding, Problem, ServiceKey
from analyzer.prices import PriceTable, load_table


@dataclass(slots=True)
class ServiceResult:
    key: ServiceKey
    view: ServiceView
    cost: ServiceCost | None
    evidence: list[RevisionEvidence] = field(default_factory=list)
    fixes: list[FixCheck] = field(default_factory=list)
    status: str = "analyzed"  # or "no data", "failed"
    what_ifs: list[WhatIf] = field(default_factory=list)  # other settings of the current revision, priced
    sidecars: list[SidecarResult] = field(default_factory=list)  # sidecar containers with a finding

    @property
    def findings(self) -> list[Finding]:
        return [f for e in self.evidence for f in e.findings] + [f for s in self.sidecars for f in s.findings]


@dataclass(slots=True)
class Analysis:
    findings: list[Finding]
    services: list[ServiceResult]
    problems: list[Problem]
    window_start: datetime
    window_end: datetime
    step_seconds: int
    price_table: PriceTable
    config: AnalysisConfig
    origin: str = ""

    @property
    def total_cost_usd(self) -> float:
        return sum(s.cost.cost_usd for s in self.services if s.cost)

    @property
    def monthly_projection_usd(self) -> float:
        return sum(s.cost.monthly_projection_usd for s in self.services if s.cost)

    @property
    def at_risk_usd_per_month(self) -> float:
        """Ongoing excess per month, counting each revision once (its findings share the dollars)."""
        per_revision: dict[tuple[ServiceKey, str], float] = {}
        for f in self.findings:
            if f.ongoing:
                key = (f.key, f.revision)
                per_revision[key] = max(per_revision.get(key, 0.0), f.excess_cost_usd_per_month)
        return sum(per_revision.values())


def analyze_frames(frames: Frames, config: AnalysisConfig, *, table: PriceTable | None = None,
                   origin: str = "") -> Analysis:
    table = table or load_table(config.pricing.table)
    problems = list(frames.problems)
    window = (pd.Timestamp(frames.window_start), pd.Timestamp(frames.window_end))
    results: list[ServiceResult] = []
    for key in frames.services:
        view = build_view(frames, key)
        if not view.spans:
            results.append(ServiceResult(key, view, None, status="no data"))
            problems.append(Problem(str(key), "no metrics in the window: not analyzed",
                                    "check that the service received traffic or ran instances in the window"))
            continue
        try:
            evidence = detect_service(view, config, table)
            assess(view, [f for e in evidence for f in e.findings])
            result = ServiceResult(key, view, service_cost(view, table, config, window), evidence)
            result.fixes = fix_checks(view, evidence, table, config)
            result.what_ifs = service_what_ifs(view, table, config, findings=result.findings)
            result.sidecars = analyze_sidecars(frames, view, config, table)
            # A sidecar's fix is checked where the service's own fix check by that revision does not
            # already show it (one check per fixing revision: the report links to it by that name).
            fixers = {fix.fixed for fix in result.fixes}
            result.fixes += [fix for s in result.sidecars for fix in s.fixes if fix.fixed not in fixers]
        except Exception as exc:  # one service's bad data must not sink the fleet report
            problems.append(Problem(str(key), f"analysis failed: {type(exc).__name__}: {exc}",
                                    "please report this with the snapshot (cloudrun-analyzer fetch) attached: "
                                    + traceback.format_exc(limit=1).strip().splitlines()[-1]))
            result = ServiceResult(key, view, None, status="failed")
        results.append(result)
    if config.pricing.apply_free_tier:  # per billing account: shared by every service analyzed
        seconds = (window[1] - window[0]).total_seconds()
        costs = apply_free_tier([r.cost for r in results], table, window_seconds=seconds)
        for result, cost in zip(results, costs, strict=True):
            result.cost = cost
    findings = sorted((f for r in results for f in r.findings),
                      key=finding_order)
    return Analysis(findings, results, problems, frames.window_start, frames.window_end, frames.step_seconds,
                    table, config, origin)
