"""The terminal summary: what a person reads first after running the CLI."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from analyzer.analysis import Analysis
from analyzer.model import Finding, Problem
from analyzer.render.html import usd
from analyzer.render.parts import ReportPart


@dataclass(frozen=True, slots=True)
class Totals:
    """What the summary says, from one Analysis or from the parts of a batched run."""

    window_start: datetime
    window_end: datetime
    services: int
    origin: str
    total_cost_usd: float
    monthly_projection_usd: float
    at_risk_usd_per_month: float
    findings: list[Finding]
    problems: list[Problem]


def summary_text(analysis: Analysis) -> str:
    return totals_text(Totals(analysis.window_start, analysis.window_end, len(analysis.services), analysis.origin,
                              analysis.total_cost_usd, analysis.monthly_projection_usd,
                              analysis.at_risk_usd_per_month, analysis.findings, analysis.problems))


def parts_text(parts: Sequence[ReportPart], problems: Sequence[Problem]) -> str:
    """The summary of a run analyzed in batches (``problems``: every part's and the run's own, once)."""
    rows = [r for p in parts for r in p.rows]
    return totals_text(Totals(
        min(p.window_start for p in parts), max(p.window_end for p in parts), len(rows),
        "; ".join(dict.fromkeys(p.origin for p in parts if p.origin)),
        sum(r.cost_usd or 0.0 for r in rows), sum(r.monthly_projection_usd or 0.0 for r in rows),
        sum(p.at_risk_usd_per_month for p in parts), [f for p in parts for f in p.findings], list(problems),
    ))


def totals_text(analysis: Totals) -> str:
    lines = [
        f"Cloud Run analysis {analysis.window_start:%Y-%m-%d %H:%M} → {analysis.window_end:%Y-%m-%d %H:%M} UTC, "
        f"{analysis.services} services, source: {analysis.origin}",
        f"  spent {usd(analysis.total_cost_usd)} in the window · {usd(analysis.monthly_projection_usd)}/month "
        f"projected · {usd(analysis.at_risk_usd_per_month)}/month at risk from ongoing findings",
    ]
    if not analysis.findings:
        lines.append("  no findings")
    for f in analysis.findings:
        dollars = (f"ongoing, {usd(f.excess_cost_usd_per_month)}/month extra" if f.ongoing
                   else f"resolved by {f.resolved_by}, saves {usd(f.savings_usd_per_month)}/month")
        lines.append(
            f"  [{f.severity.value:8}] {f.service}: {f.kind.value} since {f.onset:%Y-%m-%d %H:%M} UTC in {f.revision} "
            f"({dollars})"
        )
        lines.append(f"             {f.summary}")
    for p in analysis.problems:
        lines.append(f"  problem: {p.subject}: {p.message}" + (f" (fix: {p.hint})" if p.hint else ""))
    return "\n".join(lines)
