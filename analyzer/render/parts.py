"""The HTML and JSON reports built from per-batch parts, so that a fleet is rendered batch by batch.

A batch of services is analyzed, then ``render_part`` turns its Analysis into a ``ReportPart``: plain,
picklable data holding everything the final page needs about those services (a row of the overview
with a memory sparkline, the service's section already rendered by the templates, its incidents, its
findings and problems, and the batch's JSON report). The Analysis and its frames can then be dropped.
``assemble_report`` and ``assemble_json`` join the parts into one page and one JSON report, and
``summarize`` into the totals the terminal summary prints.

Every part of one report must agree on the services' anchors and on how healthy services are shown:
``report_layout`` decides both from the whole fleet's service keys, and each ``render_part`` call of a
batched run is given the same layout. On a small report every service gets its charts; on a fleet,
services with findings get their full evidence and charts and healthy ones a compact entry.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import pandas as pd
from markupsafe import Markup

from analyzer.analysis import Analysis, ServiceResult
from analyzer.analysis.impact import finding_order
from analyzer.model import Finding, Problem, ServiceKey
from analyzer.render.charts import SPARK_HEIGHT, SPARK_WIDTH, Chart, Sparkline, service_charts, sparkline
from analyzer.render.fleet import merge_json
from analyzer.render.html import SEVERITY_ORDER, Incident, environment, headline, incidents_of
from analyzer.render.json_report import report_json
from analyzer.resources import templates_dir
from analyzer.sources.restjson import parse_time

if TYPE_CHECKING:
    from analyzer.render.digest import ServiceChart  # matplotlib: imported only when a digest is drawn

FULL_SECTIONS_UP_TO = 20  # services in a report small enough to chart every one, healthy or not
SCRIPT = "report.js"  # the overview's sorting, inlined and allowed by its hash in the page's CSP


@dataclass(frozen=True, slots=True)
class ReportLayout:
    """What every part of one report agrees on: each service's anchor (``service-NAME``, qualified
    only when a name repeats in the fleet) and whether healthy services are shown compact."""

    anchors: Mapping[ServiceKey, str]
    compact_healthy: bool


def report_layout(keys: Iterable[ServiceKey]) -> ReportLayout:
    """The layout of a report on these services (the whole fleet's, when it is rendered in batches)."""
    keys = list(dict.fromkeys(keys))
    counts: dict[str, int] = {}
    for key in keys:
        counts[key.service] = counts.get(key.service, 0) + 1
    anchors = {
        key: f"service-{key.service}"
        if counts[key.service] == 1
        else f"service-{key.project}-{key.region}-{key.service}"
        for key in keys
    }
    return ReportLayout(anchors, compact_healthy=len(keys) > FULL_SECTIONS_UP_TO)


@dataclass(slots=True)
class ServiceSection:
    """One service as its section reads it (while its Analysis is still alive)."""

    result: ServiceResult
    anchor: str
    incidents: list[Incident]
    charts: list[Chart]

    @property
    def findings(self) -> list[Finding]:
        return [f for i in self.incidents for f in i.findings]

    @property
    def per_month_usd(self) -> float:
        return sum(i.per_month_usd for i in self.incidents if i.ongoing)


@dataclass(slots=True)
class ServiceRow:
    """One service in the overview, and its section of the page already rendered (plain data)."""

    key: ServiceKey
    anchor: str
    status: str  # "analyzed", "no data", "failed"
    findings: int
    ongoing_findings: int
    incidents: int  # revisions with findings
    severity: str  # the worst severity of its findings, "" without any
    cost_usd: float | None
    monthly_projection_usd: float | None
    per_month_usd: float  # ongoing extra dollars per month (each revision counted once)
    urgency: tuple[int, int, float, float]  # its most urgent finding's place in the urgency order
    spark: Sparkline
    section: str  # HTML rendered by the templates (autoescaped): the full section or a compact entry
    compact: bool


NO_FINDING = (9, 0, 0.0, 0.0)  # after every finding in the urgency order


def row_order(row: ServiceRow) -> tuple[object, ...]:
    """Sections and overview rows: the service of the most urgent finding first (docs/reports.md), then
    by dollars, by findings, by name."""
    return (row.urgency, -row.per_month_usd, -row.incidents, row.status != "analyzed", row.key.service)


@dataclass(slots=True)
class ReportPart:
    """Everything the page and the JSON report need about one batch of services: no frames."""

    window_start: datetime
    window_end: datetime
    step_seconds: int
    origin: str
    prices_as_of: str
    committed_use_discount: float
    rows: list[ServiceRow]
    incidents: list[Incident]
    findings: list[Finding]
    problems: list[Problem]
    at_risk_usd_per_month: float
    report: dict[str, Any] = field(repr=False)  # the batch's ``report_json``
    # The digest's PNG of each analyzed service with findings (``digest_charts=True``), for
    # ``fleet_digest(assemble_json(parts), images=...)`` as the job does with its shards.
    charts: dict[ServiceKey, ServiceChart] = field(default_factory=dict, repr=False)


def _section(result: ServiceResult, analysis: Analysis, layout: ReportLayout) -> tuple[ServiceSection, bool]:
    incidents = incidents_of(result, analysis.window_end)
    compact = layout.compact_healthy and result.status == "analyzed" and not incidents
    charts = service_charts(result, analysis.step_seconds) if result.status == "analyzed" and not compact else []
    # A service the layout does not know (listed after it was made) gets the plain anchor;
    # assemble_report refuses the page if that repeats another.
    anchor = layout.anchors.get(result.key) or f"service-{result.key.service}"
    return ServiceSection(result, anchor, incidents, charts), compact


def _row(section: ServiceSection, analysis: Analysis, compact: bool) -> ServiceRow:
    result = section.result
    findings = section.findings
    template = "partials/service_compact.html.j2" if compact else "partials/service.html.j2"
    html = environment().get_template(template).render(section=section, analysis=analysis)
    start, end = pd.Timestamp(analysis.window_start), pd.Timestamp(analysis.window_end)
    return ServiceRow(
        result.key,
        section.anchor,
        result.status,
        len(findings),
        sum(1 for f in findings if f.ongoing),
        len(section.incidents),
        min((f.severity for f in findings), key=SEVERITY_ORDER.__getitem__).value if findings else "",
        result.cost.cost_usd if result.cost else None,
        result.cost.monthly_projection_usd if result.cost else None,
        section.per_month_usd,
        min((i.urgency[0] for i in section.incidents), default=NO_FINDING),
        sparkline(result, start, end, analysis.step_seconds),
        html,
        compact,
    )


def render_part(
    analysis: Analysis,
    *,
    generated_at: datetime,
    layout: ReportLayout | None = None,
    digest_charts: bool = False,
) -> ReportPart:
    """One batch's share of the report. ``layout``: the whole fleet's (``report_layout``); by default
    this analysis's own services. ``digest_charts``: also draw the digest's PNGs (when one is sent)."""
    layout = layout or report_layout(r.key for r in analysis.services)
    rows: list[ServiceRow] = []
    incidents: list[Incident] = []
    for result in analysis.services:
        section, compact = _section(result, analysis, layout)
        rows.append(_row(section, analysis, compact))
        incidents.extend(section.incidents)
    return ReportPart(
        analysis.window_start,
        analysis.window_end,
        analysis.step_seconds,
        analysis.origin,
        analysis.price_table.as_of,
        analysis.config.pricing.committed_use_discount,
        rows,
        incidents,
        list(analysis.findings),
        list(analysis.problems),
        analysis.at_risk_usd_per_month,
        report_json(analysis, generated_at=generated_at),
        _digest_charts(analysis) if digest_charts else {},
    )


def _digest_charts(analysis: Analysis) -> dict[ServiceKey, ServiceChart]:
    from analyzer.render.digest import service_chart  # matplotlib: only when a digest is sent

    return {r.key: service_chart(r) for r in analysis.services if r.status == "analyzed" and r.findings}


@dataclass(slots=True)
class ReportSummary:
    """The whole report's facts and totals, from its parts: what the page's header and cards, and the
    terminal summary (``text.summary_text``), read where they would read an Analysis."""

    window_start: datetime
    window_end: datetime
    services: list[ServiceRow]  # in report order
    origin: str
    prices_as_of: str
    committed_use_discount: float
    findings: list[Finding]  # in an Analysis's order: the costliest first
    problems: list[Problem]
    total_cost_usd: float
    monthly_projection_usd: float
    at_risk_usd_per_month: float


def summarize(
    parts: Sequence[ReportPart],
    *,
    window: tuple[datetime, datetime] | None = None,
    problems: Iterable[Problem] = (),
) -> ReportSummary:
    """The summary of all parts. ``window`` defaults to the parts' own; ``problems`` met outside any
    batch (listing the fleet, say) join the parts' own, each problem once."""
    if window is None:
        if not parts:
            raise ValueError("a report of no part needs its window")
        window = (min(p.window_start for p in parts), max(p.window_end for p in parts))
    rows = sorted((r for p in parts for r in p.rows), key=row_order)
    findings = sorted(
        (f for p in parts for f in p.findings), key=finding_order
    )
    origins = dict.fromkeys(p.origin for p in parts if p.origin)
    return ReportSummary(
        window[0],
        window[1],
        rows,
        "; ".join(origins),
        parts[0].prices_as_of if parts else "unknown",
        parts[0].committed_use_discount if parts else 0.0,
        findings,
        list(dict.fromkeys([*(p for part in parts for p in part.problems), *problems])),
        sum(r.cost_usd for r in rows if r.cost_usd is not None),
        sum(r.monthly_projection_usd for r in rows if r.monthly_projection_usd is not None),
        sum(p.at_risk_usd_per_month for p in parts),
    )


def _csp_source(text: str) -> str:
    """The CSP source that allows exactly this inline script or style."""
    return f"'sha256-{base64.b64encode(hashlib.sha256(text.encode('utf-8')).digest()).decode()}'"


@cache
def _inline() -> tuple[Markup, str, Markup, str]:
    """The page's style and script, each with its CSP source: the page applies these and nothing else
    (an injected ``<style>`` or ``<script>`` would be refused even if it slipped past the escaping)."""
    style = environment().get_template("report.css").render()
    script = (templates_dir() / SCRIPT).read_text(encoding="utf-8")
    for name, text in (("report.css", style), (SCRIPT, script)):
        if "</" in text:
            raise ValueError(f"{name} must not contain '</' (it is inlined in the page)")
    return Markup(style), _csp_source(style), Markup(script), _csp_source(script)


def assemble_report(
    parts: Sequence[ReportPart],
    *,
    generated_at: datetime,
    window: tuple[datetime, datetime] | None = None,
    problems: Iterable[Problem] = (),
) -> str:
    """The HTML page of all parts: headline, totals, revisions with findings, a sortable overview of
    every service, then the sections. ``window`` defaults to the parts' own; ``problems`` met outside
    any batch (listing the fleet, say) are shown with the parts' own."""
    context = report_context(parts, generated_at=generated_at, window=window, problems=problems)
    return environment().get_template("report.html.j2").render(context)


def report_context(
    parts: Sequence[ReportPart],
    *,
    generated_at: datetime,
    window: tuple[datetime, datetime] | None = None,
    problems: Iterable[Problem] = (),
) -> dict[str, Any]:
    """What the page shows, in the order it shows it (urgency first: docs/reports.md)."""
    summary = summarize(parts, window=window, problems=problems)
    rows = summary.services
    anchors = [r.anchor for r in rows]
    if len(set(anchors)) != len(anchors):
        raise ValueError("two services share an anchor: render every part with the fleet's report_layout")
    incidents = sorted(
        (i for p in parts for i in p.incidents),
        key=lambda i: i.urgency,
    )
    style, style_source, script, script_source = _inline()
    # The sections were rendered by our autoescaping templates in render_part: markup, not text.
    return {
        "analysis": summary,
        "rows": rows,
        "sections": [Markup(r.section) for r in rows if not r.compact],
        "compact": [Markup(r.section) for r in rows if r.compact],
        "incidents": incidents,
        "anchor_of": {r.key: r.anchor for r in rows},
        "headline": headline(incidents, at_risk=summary.at_risk_usd_per_month),
        "saved_usd_per_month": sum(i.savings_usd_per_month for i in incidents if not i.ongoing),
        "ongoing_findings": sum(1 for f in summary.findings if f.ongoing),
        "generated_at": generated_at,
        "spark_width": SPARK_WIDTH,
        "spark_height": SPARK_HEIGHT,
        "style": style,
        "style_source": style_source,
        "script": script,
        "script_source": script_source,
    }


def assemble_json(parts: Sequence[ReportPart], *, generated_at: datetime,
                  problems: Iterable[Problem] = ()) -> dict[str, Any]:
    """The JSON report of all parts (``cloudrun-analyzer/report``, as ``report_json`` of one analysis);
    ``problems`` met outside any batch are listed after the parts' own."""
    report = merge_json([p.report for p in parts], generated_at=generated_at)
    extra = [{"subject": p.subject, "message": p.message, "hint": p.hint or None} for p in problems]
    if extra:
        report["problems"] = [*report.get("problems", []), *extra]
    return report


@dataclass(slots=True)
class FinishedReport:
    """A whole report as it is delivered: the JSON, the page, and the digest's chart of each service
    with findings (when the parts were rendered with ``digest_charts``)."""

    report: dict[str, Any]
    html: str
    charts: dict[ServiceKey, ServiceChart]

    @property
    def window_end(self) -> datetime:
        return parse_time(self.report["window"]["end"])


def finish(parts: Sequence[ReportPart], *, generated_at: datetime, problems: Sequence[Problem] = ()) -> FinishedReport:
    """The JSON, the page and the charts of all parts (the weekly digest sends them)."""
    return FinishedReport(
        assemble_json(parts, generated_at=generated_at, problems=problems),
        assemble_report(parts, generated_at=generated_at, problems=problems),
        {key: chart for part in parts for key, chart in part.charts.items()},
    )
