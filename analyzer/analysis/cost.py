"""What each service and revision costs, and what an anomaly adds.

Window cost comes from allocation time (vCPU-seconds and GiB-seconds, what Cloud Run bills) times
the revision's unit prices, plus the request fee under request-based billing. Where allocation time
is missing, billable instance time × the revision's limits stands in; where both exist they are
cross-checked and a difference over 5 % is reported. An anomaly's excess is the cost above what the
reference period (the revision before the onset) would have cost for the same load.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analyzer.analysis import load_model
from analyzer.analysis.pricing import PriceTable, UnitPrices, unit_prices
from analyzer.analysis.timeline import RevisionSpan, ServiceView, reference_totals
from analyzer.config import AnalysisConfig
from analyzer.model import RevisionInfo, ServiceKey

SECONDS_PER_MONTH = 365.25 / 12 * 86400
CROSSCHECK_TOLERANCE = 0.05


@dataclass(frozen=True, slots=True)
class RevisionCost:
    revision: str
    cost_usd: float
    cpu_usd: float
    memory_usd: float
    requests_usd: float
    vcpu_seconds: float
    gib_seconds: float
    requests: float
    billable_seconds: float
    basis: str  # "allocation time" or "billable instance time × limits"
    crosscheck_difference: float | None  # relative, allocation vs billable × limits
    prices: UnitPrices
    limits_assumed: bool

    @property
    def crosscheck_flagged(self) -> bool:
        return self.crosscheck_difference is not None and abs(self.crosscheck_difference) > CROSSCHECK_TOLERANCE


@dataclass(frozen=True, slots=True)
class ServiceCost:
    key: ServiceKey
    cost_usd: float
    window_hours: float
    monthly_projection_usd: float  # at the run-rate of the last 7 days of the window (or all of it)
    revisions: list[RevisionCost] = field(default_factory=list)


def _limits(info: RevisionInfo, config: AnalysisConfig) -> tuple[float, float, bool]:
    cpu = info.cpu_limit or config.pricing.default_cpu
    mem = info.memory_limit_gib or config.pricing.default_memory_gib
    return cpu, mem, info.cpu_limit is None or info.memory_limit_gib is None


def step_costs(rows: pd.DataFrame, prices: UnitPrices, cpu: float, mem: float) -> pd.Series:
    """USD per row: allocation time where reported, billable time × limits otherwise, plus requests."""
    allocated = rows["cpu_alloc_s"].fillna(0.0) * prices.cpu_vcpu_second + rows["mem_alloc_gibs"].fillna(0.0) * prices.memory_gib_second
    billable = rows["billable_s"].fillna(0.0) * (cpu * prices.cpu_vcpu_second + mem * prices.memory_gib_second)
    has_allocation = (rows["cpu_alloc_s"].fillna(0.0) > 0) | (rows["mem_alloc_gibs"].fillna(0.0) > 0)
    compute = allocated.where(has_allocation, billable)
    return compute + rows["requests"].fillna(0.0) * prices.requests_per_million / 1e6


def revision_cost(rows: pd.DataFrame, info: RevisionInfo, table: PriceTable, config: AnalysisConfig) -> RevisionCost:
    prices = unit_prices(table, info, config.pricing)
    cpu, mem, assumed = _limits(info, config)
    vcpu_s = float(rows["cpu_alloc_s"].sum())
    gib_s = float(rows["mem_alloc_gibs"].sum())
    billable = float(rows["billable_s"].sum())
    requests = float(rows["requests"].sum())
    if vcpu_s > 0 or gib_s > 0:
        basis = "allocation time"
        cross = None
        if billable > 0:
            from_billable = billable * (cpu * prices.cpu_vcpu_second + mem * prices.memory_gib_second)
            from_allocation = vcpu_s * prices.cpu_vcpu_second + gib_s * prices.memory_gib_second
            cross = from_allocation / from_billable - 1.0 if from_billable > 0 else None
    else:
        basis = "billable instance time × limits"
        vcpu_s, gib_s, cross = billable * cpu, billable * mem, None
    cpu_usd = vcpu_s * prices.cpu_vcpu_second
    memory_usd = gib_s * prices.memory_gib_second
    requests_usd = requests * prices.requests_per_million / 1e6
    return RevisionCost(info.revision, cpu_usd + memory_usd + requests_usd, cpu_usd, memory_usd, requests_usd,
                        vcpu_s, gib_s, requests, billable, basis, cross, prices, assumed)


def service_cost(view: ServiceView, table: PriceTable, config: AnalysisConfig,
                 window: tuple[pd.Timestamp, pd.Timestamp]) -> ServiceCost:
    revisions = [revision_cost(view.revision_rows(s.name), s.info, table, config) for s in view.spans]
    total = sum(r.cost_usd for r in revisions)
    start, end = window
    hours = max((end - start) / pd.Timedelta(hours=1), view.step_seconds / 3600)
    recent_start = max(start, end - pd.Timedelta(days=7))
    recent = service_step_costs(view, table, config)
    recent = recent.loc[recent.index >= recent_start]
    recent_seconds = max((end - recent_start).total_seconds(), view.step_seconds)
    monthly = float(recent.sum()) / recent_seconds * SECONDS_PER_MONTH
    return ServiceCost(view.key, total, hours, monthly, revisions)


def service_step_costs(view: ServiceView, table: PriceTable, config: AnalysisConfig) -> pd.Series:
    """USD per step for the whole service (all revisions), indexed by step start."""
    parts = []
    for span in view.spans:
        rows = view.revision_rows(span.name)
        cpu, mem, _ = _limits(span.info, config)
        prices = unit_prices(table, span.info, config.pricing)
        parts.append(pd.Series(step_costs(rows, prices, cpu, mem).to_numpy(), index=rows["ts"].to_numpy()))
    if not parts:
        return pd.Series(dtype=np.float64)
    costs = pd.concat(parts).groupby(level=0).sum()
    costs.index = pd.DatetimeIndex(costs.index)
    return costs


@dataclass(frozen=True, slots=True)
class Excess:
    window_usd: float  # extra dollars from the onset to the end of the anomaly (or window)
    per_month_usd: float  # the extra run-rate at the end of the anomaly, per month
    reference: str
    actual_usd_per_hour: float
    expected_usd_per_hour: float


def excess_cost(view: ServiceView, span: RevisionSpan, onset: pd.Timestamp, table: PriceTable,
                config: AnalysisConfig) -> Excess | None:
    """Cost beyond what the reference period needed for the same load, while ``span`` served."""
    costs = service_step_costs(view, table, config)
    totals = view.totals.assign(cost=costs.reindex(view.totals.index).fillna(0.0))
    reference, described = reference_totals(view, span, config.detection.warmup_minutes,
                                            config.detection.creep.reference_hours)
    ref = totals.loc[reference.index]
    model = load_model.fit(ref["req_rate"].to_numpy(), ref["cost"].to_numpy())
    if model is None:
        return None
    mine = totals.loc[(totals["serving"] == span.name) & (totals.index >= onset)]
    if mine.empty:
        return None
    expected = model.predict(mine["req_rate"].to_numpy())
    extra = mine["cost"].to_numpy() - expected
    # The run-rate now: the last day of the anomaly, so a growing leak is priced as it stands.
    last_day = mine.index >= mine.index[-1] - pd.Timedelta(hours=24)
    seconds = last_day.sum() * view.step_seconds
    rate = float(extra[last_day].sum()) / seconds if seconds else 0.0
    hours_per_step = view.step_seconds / 3600
    return Excess(
        window_usd=max(float(extra.sum()), 0.0),
        per_month_usd=max(rate * SECONDS_PER_MONTH, 0.0),
        reference=described,
        actual_usd_per_hour=float(mine["cost"].to_numpy()[last_day].mean()) / hours_per_step,
        expected_usd_per_hour=float(expected[last_day].mean()) / hours_per_step,
    )
