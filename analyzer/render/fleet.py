"""The fleet report: the JSON reports of a sharded run's tasks merged into one, and its HTML page.

A shard is the ``cloudrun-analyzer/report`` JSON of one task's share of the services (schema in
docs/json-schema.md), so merging needs no re-analysis: findings, services and fixes are concatenated
(the shares are disjoint), problems met by several tasks are kept once, and the summary is recomputed.
The merged report has the same schema plus ``shards``. The HTML fleet page is rendered from that JSON;
each shard's own HTML report (charts and evidence of its services) sits beside it and is linked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from analyzer.analysis.impact import KIND_ORDER, urgency_key
from analyzer.errors import InputError
from analyzer.render.html import environment, harm
from analyzer.render.json_report import SCHEMA, SCHEMA_VERSION, impact_from_json
from analyzer.render.links import revision_url, service_url
from analyzer.sources.restjson import format_time, parse_time


def _check(name: str, report: Mapping[str, Any]) -> None:
    if report.get("schema") != SCHEMA or report.get("schema_version") != SCHEMA_VERSION:
        raise InputError(
            f"shard {name} is not a {SCHEMA} v{SCHEMA_VERSION} report "
            f"(schema {report.get('schema')!r} v{report.get('schema_version')!r})",
            hint="all tasks of one execution must run the same cloudrun-analyzer version; "
            "re-run the job so every shard is rewritten",
        )


def _total(items: Sequence[Mapping[str, Any]], key: str) -> float | None:
    values = [float(item[key]) for item in items if item.get(key) is not None]
    return round(sum(values), 2) if values else None


def _finding_order(f: Mapping[str, Any]) -> tuple[object, ...]:
    """The urgency order (``analysis.impact``), read from the findings' JSON as the shards wrote it."""
    impact = impact_from_json(f.get("impact"))
    return (urgency_key(ongoing=bool(f.get("ongoing")), harming=impact.harming, hours_to_limit=impact.hours_to_limit,
                        per_month_usd=float(f.get("excess_cost_usd_per_month") or 0.0)),
            str(f.get("service")), str(f.get("revision")), KIND_ORDER.get(str(f.get("kind")), 9), str(f.get("onset")))


def merge_reports(
    shards: Mapping[str, Mapping[str, Any]], *, generated_at: datetime, links: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """One report from the shard reports ``{shard name: report}``; ``links`` names each shard's HTML page."""
    if not shards:
        raise InputError("no shard to merge", hint="run the job's tasks first; each writes one shard")
    for name, report in shards.items():
        _check(name, report)
    reports = [shards[name] for name in sorted(shards)]
    findings = sorted((f for r in reports for f in r["findings"]), key=_finding_order)
    services = sorted(
        (dict(s, shard=name) for name in sorted(shards) for s in shards[name]["services"]),
        key=lambda s: (s["project"], s["region"], s["service"]),
    )
    problems: dict[tuple[str, str], dict[str, Any]] = {}
    for r in reports:
        for p in r["problems"]:
            problems.setdefault((p["subject"], p["message"]), p)
    sources = sorted({str(r.get("source") or "") for r in reports} - {""})
    windows = [r["window"] for r in reports]
    at_risk = [float(r["summary"].get("at_risk_usd_per_month") or 0.0) for r in reports]
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": format_time(generated_at),
        "source": "; ".join(sources),
        "window": {
            "start": min(w["start"] for w in windows),
            "end": max(w["end"] for w in windows),
            "step_seconds": max(int(w["step_seconds"]) for w in windows),
        },
        "prices": reports[0]["prices"],
        "summary": {
            "services": len(services),
            "findings": len(findings),
            "problems": len(problems),
            "total_cost_usd": _total(services, "cost_usd"),
            "monthly_projection_usd": _total(services, "monthly_projection_usd"),
            "at_risk_usd_per_month": round(sum(at_risk), 2),
        },
        "findings": findings,
        "services": services,
        "fixes": [fix for r in reports for fix in r["fixes"]],
        "problems": list(problems.values()),
        "shards": [
            {
                "name": name,
                "services": len(shards[name]["services"]),
                "findings": len(shards[name]["findings"]),
                "html": (links or {}).get(name),
            }
            for name in sorted(shards)
        ],
    }


def _when(text: str | None) -> datetime | None:
    return parse_time(text) if text else None


def render_fleet(report: Mapping[str, Any]) -> str:
    """The fleet page (HTML) of a merged report."""
    pages = {shard["name"]: shard.get("html") for shard in report.get("shards", [])}
    page_of = {
        (s["project"], s["region"], s["service"]): pages.get(s.get("shard", "")) for s in report["services"]
    }
    context = {
        "report": report,
        "window_start": _when(report["window"]["start"]),
        "window_end": _when(report["window"]["end"]),
        "generated_at": _when(report["generated_at"]),
        "findings": [
            dict(
                f,
                onset_time=_when(f.get("onset")),
                page=page_of.get((f["project"], f["region"], f["service"])),
                # Links are made here from the names, never taken from a shard (a tampered one could
                # hold a javascript: URL).
                console_url=revision_url(f["project"], f["region"], f["service"], f["revision"]),
                harm=harm(impact_from_json(f.get("impact"))),
            )
            for f in report["findings"]
        ],
        "services": [
            dict(
                s,
                page=pages.get(s.get("shard", "")),
                console_url=service_url(s["project"], s["region"], s["service"]),
            )
            for s in report["services"]
        ],
        "ongoing": sum(1 for f in report["findings"] if f.get("ongoing")),
    }
    return environment().get_template("fleet.html.j2").render(context)


def empty_report(
    *,
    window: tuple[datetime, datetime],
    step_seconds: int,
    prices: Mapping[str, Any],
    source: str,
    problems: Sequence[Mapping[str, Any]],
    generated_at: datetime,
) -> dict[str, Any]:
    """The report of a share with nothing to analyze (no services, or no metrics).

    Same schema as a full report, with empty lists.
    """
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "generated_at": format_time(generated_at),
        "source": source,
        "window": {
            "start": format_time(window[0]),
            "end": format_time(window[1]),
            "step_seconds": step_seconds,
        },
        "prices": dict(prices),
        "summary": {
            "services": 0,
            "findings": 0,
            "problems": len(problems),
            "total_cost_usd": None,
            "monthly_projection_usd": None,
            "at_risk_usd_per_month": 0.0,
        },
        "findings": [],
        "services": [],
        "fixes": [],
        "problems": [dict(p) for p in problems],
    }
