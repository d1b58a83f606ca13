"""The HTML report: one jinja Environment (autoescape on, StrictUndefined), formatting as filters,
all markup in ``templates/``.
"""

from __future__ import annotations

import math
from datetime import datetime
from functools import cache
from typing import Any

import jinja2

from analyzer.analysis import Analysis
from analyzer.render.charts import service_charts
from analyzer.render.links import revision_url, service_url
from analyzer.resources import templates_dir


def usd(value: float | None, digits: int | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if digits is None:
        digits = 2 if abs(value) < 1000 else 0
    return f"${value:,.{digits}f}"


def pct(value: float | None, digits: int = 0, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}%}" if signed else f"{value:.{digits}%}"


def num(value: float | None, digits: int = 1) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value else "unknown"


def duration(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "n/a"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.1f} days"


def humanize(key: str) -> str:
    return key.replace("_", " ").replace(" pct", " %").replace(" usd", " $")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=jinja2.select_autoescape(["html", "j2", "svg"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(usd=usd, pct=pct, num=num, when=when, duration=duration, humanize=humanize)
    env.globals.update(revision_url=revision_url, service_url=service_url)
    return env


def report_context(analysis: Analysis, *, generated_at: datetime) -> dict[str, Any]:
    services = []
    for result in analysis.services:
        services.append({
            "result": result,
            "charts": service_charts(result, analysis.step_seconds) if result.status == "analyzed" else [],
            "findings": sorted(result.findings, key=lambda f: -f.excess_cost_usd_per_month),
        })
    services.sort(key=lambda s: (-sum(f.excess_cost_usd_per_month for f in s["findings"]),
                                 -len(s["findings"]), s["result"].key.service))
    return {
        "analysis": analysis,
        "services": services,
        "top_findings": analysis.findings[:5],
        "generated_at": generated_at,
    }


def render_report(analysis: Analysis, *, generated_at: datetime) -> str:
    return environment().get_template("report.html.j2").render(report_context(analysis, generated_at=generated_at))
