"""Did the fix work? For each revision that resolved findings, compare the broken revision's last day
with the fixing revision's first day (after warm-up), and both with the baseline before the break.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.analysis.cost import service_step_costs
from analyzer.analysis.findings import RevisionEvidence
from analyzer.analysis.timeline import RevisionSpan, ServiceView, between
from analyzer.config import AnalysisConfig
from analyzer.prices import PriceTable

COMPARE_HOURS = 24.0


@dataclass(frozen=True, slots=True)
class Measure:
    name: str
    unit: str
    baseline: float  # the revision before the broken one (NaN when there is none)
    broken: float
    fixed: float

    @property
    def change(self) -> float:
        return self.fixed / self.broken - 1.0 if self.broken else float("nan")

    @property
    def back_to_baseline(self) -> bool | None:
        """Within 10 % of the baseline (or below it); None when there is no baseline."""
        if not np.isfinite(self.baseline) or not np.isfinite(self.fixed) or self.baseline <= 0:
            return None
        return bool(self.fixed <= self.baseline * 1.10)


@dataclass(frozen=True, slots=True)
class FixCheck:
    broken: str
    fixed: str
    kinds: tuple[str, ...]
    baseline_revision: str
    measures: tuple[Measure, ...]
    container: str = ""  # the sidecar whose leak was fixed (its memory is the memory measure)


def _stats(view: ServiceView, span: RevisionSpan | None, costs: pd.Series, *, last: bool,
           warmup_minutes: int) -> dict[str, float]:
    if span is None:
        return {}
    totals = view.totals.loc[view.serves(span.name)]
    rows = view.revision_rows(span.name)
    if last:
        start = span.last_seen - pd.Timedelta(hours=COMPARE_HOURS)
        totals, rows = totals.loc[totals.index >= start], between(rows, start)
    else:
        start = span.first_seen + pd.Timedelta(minutes=warmup_minutes)
        end = start + pd.Timedelta(hours=COMPARE_HOURS)
        totals = totals.loc[(totals.index >= start) & (totals.index < end)]
        rows = between(rows, start, end)
    instances = totals["inst_active"].fillna(0) + totals["inst_idle"].fillna(0)
    hourly_cost = costs.reindex(totals.index).fillna(0.0)
    return {
        "memory": float(rows["mem_mean"].quantile(0.1)) * 100 if rows["mem_mean"].notna().any() else float("nan"),
        "lat_p50": float(rows["lat_p50"].median()),
        "lat_p95": float(rows["lat_p95"].median()),
        "instances": float(instances.median()) if len(instances) else float("nan"),
        "cpu": float(rows["cpu_mean"].median()) * 100,
        "cost": float(hourly_cost.mean()) * 3600 / view.step_seconds if len(hourly_cost) else float("nan"),
    }


MEASURES = (
    ("memory", "memory baseline (trough)", "% of limit"),
    ("lat_p50", "latency p50", "ms"),
    ("lat_p95", "latency p95", "ms"),
    ("instances", "instances (median)", ""),
    ("cpu", "CPU utilization (median)", "%"),
    ("cost", "cost", "USD/hour"),
)


def fix_checks(view: ServiceView, evidence: list[RevisionEvidence], table: PriceTable,
               config: AnalysisConfig) -> list[FixCheck]:
    costs = service_step_costs(view, table, config)
    warm = config.detection.warmup_minutes
    checks: list[FixCheck] = []
    for item in evidence:
        fixers = sorted({f.resolved_by for f in item.findings if f.resolved_by})
        for fixer in fixers:
            kinds = tuple(sorted({f.kind.value for f in item.findings if f.resolved_by == fixer}))
            baseline_span = view.previous(item.span.name)
            base = _stats(view, baseline_span, costs, last=True, warmup_minutes=warm)
            broken = _stats(view, item.span, costs, last=True, warmup_minutes=warm)
            fixed = _stats(view, view.span(fixer), costs, last=False, warmup_minutes=warm)
            measures = tuple(
                Measure(label, unit, base.get(key, float("nan")), broken[key], fixed[key])
                for key, label, unit in MEASURES
            )
            checks.append(FixCheck(item.span.name, fixer, kinds, baseline_span.name if baseline_span else "",
                                   measures))
    return checks
