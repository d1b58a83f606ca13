"""The terminal summary: what a person reads first after running the CLI (findings most urgent
first, as ``analysis.findings`` holds them)."""

from __future__ import annotations

from analyzer.analysis import Analysis
from analyzer.logs import printable
from analyzer.render.html import estimate_usd, harm, per_month, usd


def summary_text(analysis: Analysis) -> str:
    lines = [
        f"Cloud Run analysis {analysis.window_start:%Y-%m-%d %H:%M} → {analysis.window_end:%Y-%m-%d %H:%M} UTC, "
        f"{len(analysis.services)} services, source: {analysis.origin}",
        f"  spent {usd(analysis.total_cost_usd)} in the window · {usd(analysis.monthly_projection_usd)}/month "
        f"projected · {usd(analysis.at_risk_usd_per_month)}/month at risk from ongoing findings",
    ]
    if not analysis.findings:
        lines.append("  no findings")
    for f in analysis.findings:
        dollars = (f"ongoing, {per_month(f.excess_cost_usd_per_month)}" if f.ongoing
                   else f"resolved by {f.resolved_by}, saves {estimate_usd(f.savings_usd_per_month)}/month")
        lines.append(
            f"  [{f.severity.value:8}] {f.service}: {f.kind.value} since {f.onset:%Y-%m-%d %H:%M} UTC in {f.revision} "
            f"({dollars})"
        )
        lines.append(f"             users: {harm(f.impact)}")
        lines.append(f"             {f.summary}")
    for p in analysis.problems:
        lines.append(f"  problem: {p.subject}: {p.message}" + (f" (fix: {p.hint})" if p.hint else ""))
    return printable("\n".join(lines))  # names and problems come from the user's project or files
