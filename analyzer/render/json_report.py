"""The machine-readable report: findings, services with costs, fix checks and problems.

Schema ``cloudrun-analyzer/report`` version 2, documented in docs/json-schema.md. Additive changes
keep the version; removing or renaming a key bumps it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from analyzer.analysis import Analysis, ServiceResult
from analyzer.analysis.fixcheck import FixCheck
from analyzer.analysis.whatif import WhatIf
from analyzer.model import Finding, Impact
from analyzer.render.links import revision_url, service_url
from analyzer.sources.restjson import format_time

SCHEMA = "cloudrun-analyzer/report"
SCHEMA_VERSION = 2  # 2: findings in urgency order, severity follows harm, ``impact`` per finding


def _number(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _time(value: datetime | None) -> str | None:
    return format_time(value) if value else None


def finding_json(f: Finding) -> dict[str, Any]:
    return {
        "kind": f.kind.value,
        "project": f.project,
        "region": f.region,
        "service": f.service,
        "revision": f.revision,
        "container": f.container or None,
        "onset": format_time(f.onset),
        "severity": f.severity.value,
        "confidence": f.confidence,
        "attribution_confidence": f.attribution_confidence,
        "summary": f.summary,
        "likely_cause": f.likely_cause or None,
        "deploy_time": _time(f.deploy_time),
        "ongoing": f.ongoing,
        "resolved_by": f.resolved_by or None,
        "time_to_limit_hours": _number(f.time_to_limit_hours, 1),
        "excess_cost_usd_window": _number(f.excess_cost_usd_window, 2),
        "excess_cost_usd_per_month": _number(f.excess_cost_usd_per_month, 2) or 0.0,
        "savings_usd_per_month": _number(f.savings_usd_per_month, 2) or 0.0,
        "impact": impact_json(f.impact),
        "evidence": {k: (_number(v, 6) if isinstance(v, float) else v) for k, v in f.evidence.items()},
        "console_url": revision_url(f.project, f.region, f.service, f.revision),
    }


def impact_json(impact: Impact) -> dict[str, Any]:
    return {
        "harming": impact.harming,
        "oom_kills": impact.oom_kills,
        "worst_memory_end_pct_of_limit": _number(impact.worst_memory_end * 100 if impact.worst_memory_end is not None
                                                 else None, 1),
        "requests": _number(impact.requests, 0),
        "error_rate_pct": _number(impact.error_rate * 100 if impact.error_rate is not None else None, 4),
        "baseline_error_rate_pct": _number(impact.baseline_error_rate * 100
                                           if impact.baseline_error_rate is not None else None, 4),
        "excess_5xx_requests": _number(impact.excess_errors, 0),
        "errors_rising": impact.errors_rising,
        "latency_added_ms_p95": _number(impact.latency_added_ms_p95, 1),
        "baseline_latency_ms_p95": _number(impact.baseline_latency_ms_p95, 1),
        "time_to_limit_hours": _number(impact.hours_to_limit, 1),
    }


def impact_from_json(doc: Any) -> Impact:
    """The ``impact`` of a finding read back from JSON (a report of schema version 1 has none)."""
    if not isinstance(doc, dict):
        return Impact()

    def share(key: str) -> float | None:
        value = doc.get(key)
        return float(value) / 100 if value is not None else None

    def number(key: str) -> float | None:
        value = doc.get(key)
        return float(value) if value is not None else None

    return Impact(
        oom_kills=int(doc.get("oom_kills") or 0), worst_memory_end=share("worst_memory_end_pct_of_limit"),
        requests=float(doc.get("requests") or 0.0), error_rate=share("error_rate_pct"),
        baseline_error_rate=share("baseline_error_rate_pct"),
        excess_errors=float(doc.get("excess_5xx_requests") or 0.0),
        errors_rising=bool(doc.get("errors_rising")),
        latency_added_ms_p95=number("latency_added_ms_p95"), baseline_latency_ms_p95=number("baseline_latency_ms_p95"),
        hours_to_limit=number("time_to_limit_hours"), harming=bool(doc.get("harming")),
    )


def _service_json(result: ServiceResult) -> dict[str, Any]:
    key = result.key
    revisions = []
    costs = {c.revision: c for c in result.cost.revisions} if result.cost else {}
    for span in result.view.spans:
        c = costs.get(span.name)
        info = span.info
        revisions.append({
            "revision": span.name,
            "cost_usd": _number(c.cost_usd, 4) if c else None,
            "deploy_time": _time(span.deploy_time.to_pydatetime()) if span.deploy_time_known else None,
            "first_seen": _time(span.first_seen.to_pydatetime()),
            "last_seen": _time(span.last_seen.to_pydatetime()),
            "billing": None if c is None else ("request-based" if c.prices.request_based else "instance-based"),
            "cost_basis": c.basis if c else None,
            "crosscheck_difference_pct": (_number(c.crosscheck_difference * 100, 2)
                                          if c and c.crosscheck_difference is not None else None),
            "crosscheck_flagged": bool(c and c.crosscheck_flagged),
            "vcpu_seconds": _number(c.vcpu_seconds, 1) if c else None,
            "gib_seconds": _number(c.gib_seconds, 1) if c else None,
            "requests": _number(c.requests, 0) if c else None,
            "cpu_limit": info.cpu_limit,
            "memory_limit_gib": info.memory_limit_gib,
            "min_instances": info.min_instances,
            "image": info.image or None,
            "commit": info.commit or None,
            "idle_min_instance_usd_estimate": _number(c.idle_min_instance_usd, 4) if c else None,
            "free_tier_credit_usd": _number(c.free_tier_credit_usd, 4) if c else None,
        })
    return {
        "project": key.project,
        "region": key.region,
        "service": key.service,
        "status": result.status,
        "cost_usd": _number(result.cost.cost_usd, 4) if result.cost else None,
        "monthly_projection_usd": _number(result.cost.monthly_projection_usd, 2) if result.cost else None,
        "findings": len(result.findings),
        "console_url": service_url(key.project, key.region, key.service),
        "revisions": revisions,
        **_cost_extras(result),
        "what_ifs": [_what_if_json(w) for w in result.what_ifs],
    }


def _cost_extras(result: ServiceResult) -> dict[str, Any]:
    cost = result.cost
    if cost is None:
        return {"crosscheck_flagged": False, "idle_min_instance_usd_estimate": None,
                "idle_min_instance_usd_per_month_estimate": None, "free_tier_credit_usd": None}
    return {
        "crosscheck_flagged": cost.crosscheck_flagged,
        "idle_min_instance_usd_estimate": _number(cost.idle_min_instance_usd, 4),
        "idle_min_instance_usd_per_month_estimate": _number(cost.idle_min_instance_usd_per_month, 2),
        "free_tier_credit_usd": _number(cost.free_tier_credit_usd, 4),
    }


def _what_if_json(w: WhatIf) -> dict[str, Any]:
    return {
        "kind": w.kind.value, "revision": w.revision, "change": w.change, "current": w.current,
        "proposed": w.proposed, "current_usd_per_month": _number(w.current_usd_per_month, 2),
        "proposed_usd_per_month": _number(w.proposed_usd_per_month, 2),
        "savings_usd_per_month": _number(w.savings_usd_per_month, 2), "basis": w.basis,
        "caveat": w.caveat or None,
    }


def _fix_json(service: ServiceResult, fix: FixCheck) -> dict[str, Any]:
    return {
        "service": service.key.service,
        "project": service.key.project,
        "region": service.key.region,
        "broken_revision": fix.broken,
        "fixing_revision": fix.fixed,
        "baseline_revision": fix.baseline_revision or None,
        "container": fix.container or None,
        "kinds": list(fix.kinds),
        "measures": [
            {"name": m.name, "unit": m.unit, "baseline": _number(m.baseline), "broken": _number(m.broken),
             "fixed": _number(m.fixed), "change_pct": _number(m.change * 100, 1),
             "back_to_baseline": m.back_to_baseline}
            for m in fix.measures
        ],
    }


def report_json(analysis: Analysis, *, generated_at: datetime) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": format_time(generated_at),
        "source": analysis.origin,
        "window": {
            "start": format_time(analysis.window_start),
            "end": format_time(analysis.window_end),
            "step_seconds": analysis.step_seconds,
        },
        "prices": {"as_of": analysis.price_table.as_of, "currency": analysis.price_table.currency,
                   "committed_use_discount": analysis.config.pricing.committed_use_discount,
                   "source": analysis.price_table.source or None,
                   "free_tier_applied": analysis.config.pricing.apply_free_tier,
                   "idle_min_instances_billed": analysis.config.pricing.bill_idle_min_instances},
        "summary": {
            "services": len(analysis.services),
            "findings": len(analysis.findings),
            "problems": len(analysis.problems),
            "total_cost_usd": _number(analysis.total_cost_usd, 2),
            "monthly_projection_usd": _number(analysis.monthly_projection_usd, 2),
            "at_risk_usd_per_month": _number(analysis.at_risk_usd_per_month, 2),
        },
        "findings": [finding_json(f) for f in analysis.findings],
        "services": [_service_json(s) for s in analysis.services],
        "fixes": [_fix_json(s, fix) for s in analysis.services for fix in s.fixes],
        "problems": [{"subject": p.subject, "message": p.message, "hint": p.hint or None} for p in analysis.problems],
    }
