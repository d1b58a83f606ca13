"""The weekly digest of a sharded run, built from the merged fleet report (JSON) instead of an Analysis.

The tasks of a sharded job each hold the Analysis of their share only; the task that assembles the
fleet report has the merged JSON. This module turns that JSON (and the chart PNGs the tasks stored
for their services with findings) into the same ``Digest`` the single-process digest builds, through
the same templates (``digest.html.j2``/``digest.txt.j2``), history comparison and size limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from analyzer.config import DigestConfig
from analyzer.model import Problem, ServiceKey
from analyzer.render.digest import (
    MAX_HTML_BYTES,
    Digest,
    InlineImage,
    ServiceChart,
    ServiceLine,
    render_within,
    report_link,
    safe_name,
    sort_lines,
    subject,
)
from analyzer.render.html import HeadlineItem, headline_of
from analyzer.render.links import revision_url, service_url
from analyzer.render.week import FindingRecord, ServiceRecord, WindowRecord, compare
from analyzer.sources.restjson import parse_time


@dataclass(frozen=True, slots=True)
class FleetTotals:
    """What the digest templates read from ``analysis``, taken from the merged report."""

    window_start: datetime
    window_end: datetime
    total_cost_usd: float
    monthly_projection_usd: float
    at_risk_usd_per_month: float
    services: list[ServiceKey]
    problems: list[Problem]
    origin: str


def record_from_report(
    report: Mapping[str, Any], *, generated_at: datetime, location: str = ""
) -> WindowRecord:
    """The history record of a merged report (same content as ``history.record_from_analysis``)."""
    raw = [dict(f) for f in report["findings"]]
    services = [
        ServiceRecord(
            s["project"], s["region"], s["service"], s.get("cost_usd"), s.get("monthly_projection_usd")
        )
        for s in report["services"]
    ]
    return WindowRecord(
        parse_time(report["window"]["start"]),
        parse_time(report["window"]["end"]),
        generated_at,
        [FindingRecord.from_json(f) for f in raw],
        services,
        location,
        raw,
    )


def _state(service: Mapping[str, Any], findings: Sequence[FindingRecord]) -> str:
    if service.get("status") != "analyzed":
        return str(service.get("status") or "no data")
    if any(f.ongoing for f in findings):
        return "ongoing"
    return "fixed" if findings else "healthy"


def fleet_headline(findings: Sequence[FindingRecord], *, at_risk: float) -> str:
    """The report's headline (``html.headline_of``) from the stored findings, one item per revision."""
    return headline_of(revision_items(findings), at_risk=at_risk)


def revision_items(findings: Sequence[FindingRecord]) -> list[HeadlineItem]:
    """The stored findings grouped by revision, as the report's incidents are (one saving per fix)."""
    revisions: dict[tuple[str, str, str, str], list[FindingRecord]] = {}
    for f in findings:
        revisions.setdefault((f.project, f.region, f.service, f.revision), []).append(f)
    items = []
    for (_, _, service, revision), group in revisions.items():
        group.sort(key=lambda f: f.urgency)
        items.append(HeadlineItem(
            service, revision, tuple(f.kind for f in group), any(f.ongoing for f in group),
            max(f.per_month_usd for f in group), max(f.savings_usd_per_month for f in group), group[0].impact,
            tuple(f.container for f in group),
        ))
    return items


def fleet_digest(
    report: Mapping[str, Any],
    *,
    previous: WindowRecord | None,
    config: DigestConfig,
    generated_at: datetime,
    images: Mapping[ServiceKey, ServiceChart],
    report_location: str = "",
    max_html_bytes: int = MAX_HTML_BYTES,
) -> Digest:
    """The digest of a merged fleet report against last week's record (None: no history yet)."""
    current = record_from_report(report, generated_at=generated_at)
    changes = compare(current.findings, previous)
    summary = report["summary"]
    totals = FleetTotals(
        current.window_start,
        current.window_end,
        float(summary.get("total_cost_usd") or 0.0),
        float(summary.get("monthly_projection_usd") or 0.0),
        float(summary.get("at_risk_usd_per_month") or 0.0),
        [ServiceKey(s["project"], s["region"], s["service"]) for s in report["services"]],
        [Problem(p["subject"], p["message"], p.get("hint") or "") for p in report["problems"]],
        str(report.get("source") or ""),
    )
    link = report_link(config, current.window_end)
    last_costs = {s.key: s.cost_usd for s in previous.services} if previous else {}
    by_service: dict[tuple[str, str, str], list[FindingRecord]] = {}
    for f in current.findings:
        by_service.setdefault((f.project, f.region, f.service), []).append(f)
    lines = []
    for s in report["services"]:
        key = (s["project"], s["region"], s["service"])
        lines.append(
            ServiceLine(
                ServiceKey(*key),
                s.get("cost_usd"),
                last_costs.get(key),
                _state(s, by_service.get(key, [])),
                f"{link}#service-{s['service']}" if link else None,
                min((f.urgency_key for f in by_service.get(key, [])), default=None),
            )
        )
    sort_lines(lines)
    charted = [line.key for line in lines if line.key in images][: config.max_charts]
    inline = [
        InlineImage(
            f"chart-{i}.{current.window_end:%Y%m%d}@cloudrun-analyzer",
            f"{safe_name(key.service)}.png",
            images[key].png,
            images[key].alt,
            images[key].legend,
        )
        for i, key in enumerate(charted)
    ]
    items = revision_items(current.findings)
    head = headline_of(items, at_risk=totals.at_risk_usd_per_month)
    context: dict[str, Any] = {
        "analysis": totals,
        "changes": changes,
        "headline": head,
        "report_url": link,
        "report_location": report_location,
        "generated_at": generated_at,
        "previous": previous,
        "last_week_total": previous.total_cost_usd if previous else None,
        "images": inline,
        "image_of": dict(zip(charted, inline, strict=True)),
        # One saving per fixed revision, as the report counts it (its findings all carry the fix's saving).
        "saved_usd_per_month": sum(i.savings_usd_per_month for i in items if not i.ongoing),
        "link_of": lambda f: revision_url(f.project, f.region, f.service, f.revision),
        "service_url": service_url,
    }
    html, text, shown = render_within(context, lines, max_html_bytes)
    return Digest(subject(config, current.window_end, changes, head), head, html, text, inline, changes, shown,
                  len(lines))
