"""What each service and revision costs, what an anomaly adds, and what a fix saves.

Window cost is what Cloud Run meters: allocation time (vCPU-seconds and GiB-seconds) × the revision's
unit prices, plus the request fee under request-based billing. Where a step has no allocation time,
billable instance time × the revision's limits stands in; where both exist they are cross-checked and
a difference over 5 % is flagged. Idle min-instances of request-based revisions are billed at the idle
rates; how they show in the metrics is unverified, so their cost is an *estimate* from
``instance_count{state=idle}`` kept apart from the metered cost unless ``bill_idle_min_instances``.

An anomaly's excess is the billable instance-, vCPU- and GiB-seconds beyond the counterfactual (what
the revision before the onset needed for the same load: the mean per load bin, the load being the request
rate, or under instance-based billing the busiest of the last quarter hour's) × unit prices. A
fix's savings are what the broken revision would have cost for the fixing revision's load, minus what
the fix costs. Formulas and what is exact versus estimated: docs/cost-model.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import numpy as np
import pandas as pd

from analyzer.analysis import hourly, load_model
from analyzer.analysis.pricing import UnitPrices, free_allowance, mode_name, unit_prices
from analyzer.analysis.timeline import COVERED_SHARE, RevisionSpan, ServiceView, reference_totals
from analyzer.config import AnalysisConfig, PricingConfig
from analyzer.model import FloatArray, RevisionInfo, ServiceKey
from analyzer.prices import SECONDS_PER_MONTH, PriceTable

CROSSCHECK_TOLERANCE = 0.05
RECENT_DAYS = 7.0  # the monthly projection is the run-rate of the window's last week
MIN_REFERENCE_HOURS = 3.0  # the shortest reference an excess is priced against before a revision's own
RUN_RATE_HOURS = 24.0  # an anomaly's per-month figure is its run-rate over its last day
FIX_COMPARE_HOURS = 24.0  # the broken revision's last day is the "before" of a fix
# The counterfactual's load model (``expected_for_load``). Cost per step climbs in instance steps (1 → 2
# → 3 instances) within a few requests per second, so twelve bins drew straight lines across the steps
# and missed the labelled excess by 1-4 points of the cost; 24 bins follow them (3 days of 5-minute
# steps leave 36 per bin). Below the reference's quietest load, the power of load is fitted on the
# quietest third of the bins: the quietest half often reached the first step up (flat on one
# instance, then +40 %) and priced a quieter night at 60 % of the one instance it still kept busy.
COST_BINS = 24
COST_QUIET_SHARE = 1 / 3
STEP_COLUMNS = ("vcpu_s", "gib_s", "billable_s", "requests", "idle_s", "metered_usd", "idle_usd", "usd")


@dataclass(frozen=True, slots=True)
class Usage:
    """Billed quantities and their dollars in one billing mode."""

    vcpu_seconds: float = 0.0
    gib_seconds: float = 0.0
    requests: float = 0.0
    cpu_usd: float = 0.0
    memory_usd: float = 0.0
    requests_usd: float = 0.0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(_fields(self), _fields(other), strict=True)))

    def scaled(self, factor: float) -> Usage:
        return Usage(*(a * factor for a in _fields(self)))

    @property
    def usd(self) -> float:
        return self.cpu_usd + self.memory_usd + self.requests_usd


def _fields(usage: Usage) -> tuple[float, ...]:
    return (usage.vcpu_seconds, usage.gib_seconds, usage.requests, usage.cpu_usd, usage.memory_usd,
            usage.requests_usd)


@dataclass(frozen=True, slots=True)
class RevisionCost:
    revision: str
    cost_usd: float  # metered (+ idle estimate when billed) − free-tier credit
    cpu_usd: float
    memory_usd: float
    requests_usd: float
    vcpu_seconds: float
    gib_seconds: float
    requests: float
    billable_seconds: float
    basis: str  # "allocation time", "billable instance time × limits", or both
    crosscheck_difference: float | None  # relative, allocation vs billable × limits (same steps)
    prices: UnitPrices
    limits_assumed: bool
    idle_min_instance_seconds: float = 0.0  # estimated idle min-instance time (request-based only)
    idle_min_instance_usd: float = 0.0  # its cost at the idle rates: an estimate
    free_tier_credit_usd: float = 0.0

    @property
    def crosscheck_flagged(self) -> bool:
        difference = self.crosscheck_difference
        return difference is not None and abs(difference) > CROSSCHECK_TOLERANCE

    @property
    def metered_usd(self) -> float:
        return self.cpu_usd + self.memory_usd + self.requests_usd

    @property
    def usage(self) -> Usage:
        return Usage(self.vcpu_seconds, self.gib_seconds, self.requests, self.cpu_usd, self.memory_usd,
                     self.requests_usd)


@dataclass(frozen=True, slots=True)
class ServiceCost:
    key: ServiceKey
    cost_usd: float  # the window's cost: metered (+ idle estimate when billed) − free-tier credit
    window_hours: float
    monthly_projection_usd: float  # at the run-rate of the last 7 days of the window (or all of it)
    revisions: list[RevisionCost] = field(default_factory=list)
    idle_min_instance_usd: float = 0.0  # estimate over the window (in cost_usd only when billed)
    idle_min_instance_usd_per_month: float = 0.0
    free_tier_credit_usd: float = 0.0
    free_tier_credit_usd_per_month: float = 0.0
    usage: dict[str, Usage] = field(default_factory=dict)  # by billing mode, over the window
    monthly_usage: dict[str, Usage] = field(default_factory=dict)  # by billing mode, per month at run-rate

    @property
    def crosscheck_flagged(self) -> bool:
        return any(r.crosscheck_flagged for r in self.revisions)


# --- per step -----------------------------------------------------------------------------------------

def limits(info: RevisionInfo, config: PricingConfig) -> tuple[float, float, bool]:
    """(vCPU, GiB, assumed): one instance's limits (sidecars included), or the configured defaults when
    unknown."""
    cpu_limit, memory_limit = info.instance_limits()
    cpu = cpu_limit or config.default_cpu
    mem = memory_limit or config.default_memory_gib
    return cpu, mem, cpu_limit is None or memory_limit is None


def _column(rows: pd.DataFrame, name: str, *, fill: bool = True) -> np.ndarray:
    """A column as float64 (NaN as 0 when ``fill``). The step arithmetic below runs on arrays: each
    pandas operation on a Series costs far more than the numbers it computes on a revision's rows."""
    column = rows[name]
    values = column.to_numpy() if column.dtype == np.float64 else column.astype(np.float64).to_numpy()
    return np.where(np.isnan(values), 0.0, values) if fill else values


def _clip_lower_zero(values: np.ndarray) -> np.ndarray:
    """``Series.clip(lower=0.0)``, exactly: NaN and -0.0 stay as they are."""
    return np.where(np.isnan(values) | (values >= 0.0), values, 0.0)


def _clip_upper(values: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """``Series.clip(upper=Series)``, exactly: a NaN bound leaves the value alone."""
    return np.where((values <= np.where(np.isnan(upper), np.inf, upper)) | np.isnan(values), values, upper)


def _busy(active: np.ndarray, billable: np.ndarray, step_seconds: int, request_based: bool) -> np.ndarray:
    if not request_based or not bool((billable > 0).any()):
        return active
    busy = billable / float(step_seconds)
    return np.where(active <= 0, busy, _clip_upper(busy, active))


def busy_instances(rows: pd.DataFrame, step_seconds: int, *, request_based: bool) -> pd.Series:
    """Instances with a request in flight, per row. Request-based billable time is exactly that time, so
    it is billable time ÷ step (at most the active count: an instance counted active in a step may sit
    idle for most of it); without billable time, or under instance-based billing (which bills whole
    lives), the active count."""
    busy = _busy(_column(rows, "inst_active"), _column(rows, "billable_s"), step_seconds, request_based)
    return pd.Series(busy, index=rows.index)


def _idle_seconds(rows: pd.DataFrame, min_instances: int, step_seconds: int, *, request_based: bool,
                  added: bool) -> np.ndarray:
    if min_instances <= 0:
        return np.zeros(len(rows))
    active = _column(rows, "inst_active")
    busy = _busy(active, _column(rows, "billable_s"), step_seconds, request_based)
    gap = _clip_lower_zero(min_instances - busy)
    if added:
        return gap * float(step_seconds)
    not_busy = _clip_lower_zero(active + _column(rows, "inst_idle", fill=False) - busy)
    not_busy = np.where(np.isnan(not_busy), gap, not_busy)
    return _clip_upper(gap, not_busy) * float(step_seconds)


def idle_min_instance_seconds(rows: pd.DataFrame, min_instances: int, step_seconds: int, *,
                              request_based: bool = True, added: bool = False) -> pd.Series:
    """Estimated idle min-instance seconds per row: the instances a ``min_instances`` floor holds while
    they have no request in flight, max(min − busy, 0) × step, capped by the instances seen that were
    not busy (idle instances above the floor, waiting to be scaled in, are not billed under
    request-based billing). ``added``: the floor is above the current one, so its instances would be
    added and are not capped by those seen. Without instance counts the whole floor is assumed idle.
    The same estimate serves the window's idle cost and every min-instances what-if."""
    idle = _idle_seconds(rows, min_instances, step_seconds, request_based=request_based, added=added)
    return pd.Series(idle, index=rows.index)


def step_quantities(rows: pd.DataFrame, info: RevisionInfo, prices: UnitPrices, config: PricingConfig,
                    step_seconds: int) -> pd.DataFrame:
    """Per row of one revision: billed vCPU-s, GiB-s, billable instance-s, requests, estimated idle
    min-instance seconds and the dollars (``metered_usd``, ``idle_usd``, ``usd`` = what is counted)."""
    cpu, mem, _ = limits(info, config)
    billable = _column(rows, "billable_s")
    cpu_alloc = _column(rows, "cpu_alloc_s")
    mem_alloc = _column(rows, "mem_alloc_gibs")
    requests = _column(rows, "requests")
    vcpu_s = np.where(cpu_alloc > 0, cpu_alloc, billable * cpu)
    gib_s = np.where(mem_alloc > 0, mem_alloc, billable * mem)
    idle = (_idle_seconds(rows, info.min_instances, step_seconds, request_based=True, added=False)
            if prices.request_based else np.zeros(len(rows)))
    metered_usd = (vcpu_s * prices.cpu_vcpu_second + gib_s * prices.memory_gib_second
                   + requests * prices.requests_per_million / 1e6)
    idle_usd = idle * prices.idle_instance_second(cpu, mem)
    usd = metered_usd + (idle_usd if config.bill_idle_min_instances else 0.0)
    columns = {"vcpu_s": vcpu_s, "gib_s": gib_s, "billable_s": billable, "requests": requests, "idle_s": idle,
               "metered_usd": metered_usd, "idle_usd": idle_usd, "usd": usd,
               "measured": (cpu_alloc > 0) | (mem_alloc > 0)}
    return pd.DataFrame(columns, index=rows.index)


def revision_steps(view: ServiceView, span: RevisionSpan, table: PriceTable,
                   config: AnalysisConfig) -> pd.DataFrame:
    """``step_quantities`` of one revision, indexed by step start (computed once per view, table and
    config; the result is shared, so callers must not modify it)."""
    # Cached with the table and config themselves, compared by identity: keyed on id() alone, a freed
    # config's id was reused by the next one and its stale dollars came back.
    key = ("steps", span.name)
    cached = view.derived.get(key)
    if cached is not None and cached[0] is table and cached[1] is config:
        return cast(pd.DataFrame, cached[2])
    rows = view.revision_rows(span.name)
    prices = unit_prices(table, span.info, config.pricing)
    steps = step_quantities(rows, span.info, prices, config.pricing, view.step_seconds)
    steps.index = pd.DatetimeIndex(rows["ts"].array)  # not to_numpy(): an object array of Timestamps
    view.derived[key] = (table, config, steps)
    return steps


def service_steps(view: ServiceView, table: PriceTable, config: AnalysisConfig) -> pd.DataFrame:
    """``STEP_COLUMNS`` summed over the service's revisions, per step."""
    parts = [revision_steps(view, span, table, config)[list(STEP_COLUMNS)] for span in view.spans]
    if not parts:
        return pd.DataFrame(columns=list(STEP_COLUMNS), index=pd.DatetimeIndex([]), dtype=np.float64)
    return _summed(parts)


def _summed(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """``pd.concat(parts).groupby(level=0).sum()`` of ``STEP_COLUMNS`` to the last bit, without
    pandas' grouping."""
    by_step = hourly.by_step(pd.DatetimeIndex(parts[0].index.append([part.index for part in parts[1:]])))
    sums, _ = hourly.sums(by_step, [np.concatenate([part[c].to_numpy() for part in parts]) for c in STEP_COLUMNS])
    return pd.DataFrame(dict(zip(STEP_COLUMNS, sums, strict=True)), index=by_step.index())


def service_step_costs(view: ServiceView, table: PriceTable, config: AnalysisConfig) -> pd.Series:
    """USD per step for the whole service (all revisions), indexed by step start."""
    return service_steps(view, table, config)["usd"]


# --- window cost and projection ----------------------------------------------------------------------

def revision_cost(view: ServiceView, span: RevisionSpan, table: PriceTable, config: AnalysisConfig, *,
                  steps: pd.DataFrame | None = None) -> RevisionCost:
    """The revision's window cost (``steps``: its ``revision_steps`` when already computed)."""
    if steps is None:
        steps = revision_steps(view, span, table, config)
    prices = unit_prices(table, span.info, config.pricing)
    cpu, mem, assumed = limits(span.info, config.pricing)
    column = {name: steps[name].to_numpy() for name in ("billable_s", "vcpu_s", "gib_s", "requests", "idle_s",
                                                        "idle_usd", "measured")}
    billed = column["billable_s"] > 0
    measured = column["measured"]
    if not measured.any():
        basis = "billable instance time × limits"
    elif (billed & ~measured).any():
        basis = "allocation time (billable instance time × limits where it is missing)"
    else:
        basis = "allocation time"
    both = billed & measured
    cross = None
    if both.any():
        from_billable = _sum(column["billable_s"][both]) * prices.instance_second(cpu, mem)
        from_allocation = _sum(column["vcpu_s"][both] * prices.cpu_vcpu_second
                               + column["gib_s"][both] * prices.memory_gib_second)
        cross = from_allocation / from_billable - 1.0 if from_billable > 0 else None
    vcpu_s, gib_s = _sum(column["vcpu_s"]), _sum(column["gib_s"])
    requests = _sum(column["requests"])
    cpu_usd = vcpu_s * prices.cpu_vcpu_second
    memory_usd = gib_s * prices.memory_gib_second
    requests_usd = requests * prices.requests_per_million / 1e6
    idle_usd = _sum(column["idle_usd"])
    billed_idle = idle_usd if config.pricing.bill_idle_min_instances else 0.0
    total = cpu_usd + memory_usd + requests_usd + billed_idle
    return RevisionCost(span.name, total, cpu_usd, memory_usd, requests_usd, vcpu_s, gib_s, requests,
                        _sum(column["billable_s"]), basis, cross, prices, assumed, _sum(column["idle_s"]), idle_usd)


def _sum(values: np.ndarray) -> float:
    """``Series.sum()``: NaN as 0, then numpy's sum (pandas' nansum, without its per-call overhead)."""
    return float(np.where(np.isnan(values), 0.0, values).sum())


def _usage(steps: pd.DataFrame, rows: np.ndarray, prices: UnitPrices) -> Usage:
    """What the ``rows`` (a mask) of ``steps`` used, and its dollars."""
    vcpu, gib = _sum(steps["vcpu_s"].to_numpy()[rows]), _sum(steps["gib_s"].to_numpy()[rows])
    requests = _sum(steps["requests"].to_numpy()[rows])
    return Usage(vcpu, gib, requests, vcpu * prices.cpu_vcpu_second, gib * prices.memory_gib_second,
                 requests * prices.requests_per_million / 1e6)


def service_cost(view: ServiceView, table: PriceTable, config: AnalysisConfig,
                 window: tuple[pd.Timestamp, pd.Timestamp]) -> ServiceCost:
    start, end = window
    hours = max((end - start) / pd.Timedelta(hours=1), view.step_seconds / 3600)
    recent_start = max(start, end - pd.Timedelta(days=RECENT_DAYS))
    recent_seconds = max((end - recent_start).total_seconds(), view.step_seconds)
    per_month = SECONDS_PER_MONTH / recent_seconds
    revisions: list[RevisionCost] = []
    usage: dict[str, Usage] = {}
    monthly_usage: dict[str, Usage] = {}
    recent_usd = recent_idle_usd = 0.0
    for span in view.spans:
        steps = revision_steps(view, span, table, config)
        revision = revision_cost(view, span, table, config, steps=steps)
        revisions.append(revision)
        recent = np.asarray(steps.index >= recent_start)
        recent_usd += _sum(steps["usd"].to_numpy()[recent])
        recent_idle_usd += _sum(steps["idle_usd"].to_numpy()[recent])
        mode = mode_name(revision.prices.request_based)
        usage[mode] = usage.get(mode, Usage()) + revision.usage
        monthly = _usage(steps, recent, revision.prices).scaled(per_month)
        monthly_usage[mode] = monthly_usage.get(mode, Usage()) + monthly
    return ServiceCost(
        key=view.key,
        cost_usd=sum(r.cost_usd for r in revisions),
        window_hours=hours,
        monthly_projection_usd=recent_usd * per_month,
        revisions=revisions,
        idle_min_instance_usd=sum(r.idle_min_instance_usd for r in revisions),
        idle_min_instance_usd_per_month=recent_idle_usd * per_month,
        usage=usage,
        monthly_usage=monthly_usage,
    )


Fractions = tuple[float, float, float]  # of CPU, memory and requests


def _covered(usage: dict[str, Usage], table: PriceTable, seconds: float) -> dict[str, Fractions]:
    """Per billing mode, the fraction of CPU, memory and requests the free tier covers."""
    covered: dict[str, Fractions] = {}
    for mode, used in usage.items():
        free = free_allowance(table, request_based=mode == "request_based", seconds=seconds)

        def share(allowance: float, amount: float) -> float:
            return min(1.0, allowance / amount) if amount > 0 else 0.0

        covered[mode] = (share(free["cpu_vcpu_seconds"], used.vcpu_seconds),
                         share(free["memory_gib_seconds"], used.gib_seconds),
                         share(free["requests"], used.requests))
    return covered


def _credit(usage: Usage, fractions: Fractions) -> float:
    cpu, memory, requests = fractions
    return usage.cpu_usd * cpu + usage.memory_usd * memory + usage.requests_usd * requests


def apply_free_tier(costs: Sequence[ServiceCost | None], table: PriceTable, *,
                    window_seconds: float) -> list[ServiceCost | None]:
    """Subtract the free tier from every service, as one billing account.

    The monthly allowance is prorated to the window (and taken whole for the monthly projection), set
    against the usage of all services together per billing mode, and shared out in proportion to each
    revision's usage, valued at its own unit prices.
    """
    window_total: dict[str, Usage] = {}
    month_total: dict[str, Usage] = {}
    for cost in (c for c in costs if c is not None):
        for mode, used in cost.usage.items():
            window_total[mode] = window_total.get(mode, Usage()) + used
        for mode, used in cost.monthly_usage.items():
            month_total[mode] = month_total.get(mode, Usage()) + used
    in_window = _covered(window_total, table, window_seconds)
    in_month = _covered(month_total, table, SECONDS_PER_MONTH)
    out: list[ServiceCost | None] = []
    for item in costs:
        if item is None:
            out.append(None)
            continue
        cost = item
        revisions = []
        for rev in cost.revisions:
            credit = _credit(rev.usage, in_window.get(mode_name(rev.prices.request_based), (0.0, 0.0, 0.0)))
            revisions.append(replace(rev, cost_usd=rev.cost_usd - credit, free_tier_credit_usd=credit))
        window_credit = sum(r.free_tier_credit_usd for r in revisions)
        month_credit = sum(_credit(used, in_month.get(mode, (0.0, 0.0, 0.0)))
                           for mode, used in cost.monthly_usage.items())
        out.append(replace(cost, revisions=revisions, cost_usd=cost.cost_usd - window_credit,
                           free_tier_credit_usd=window_credit, free_tier_credit_usd_per_month=month_credit,
                           monthly_projection_usd=cost.monthly_projection_usd - month_credit))
    return out


# --- excess of an anomaly ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Excess:
    window_usd: float  # extra dollars from the onset to the end of the revision's serving (or window)
    per_month_usd: float  # the extra run-rate over the anomaly's last day, per month
    reference: str
    actual_usd_per_hour: float
    expected_usd_per_hour: float
    start: pd.Timestamp | None = None
    end: pd.Timestamp | None = None
    instance_seconds: float = 0.0  # billable instance-seconds beyond the counterfactual
    vcpu_seconds: float = 0.0
    gib_seconds: float = 0.0
    joined: tuple[str, ...] = ()  # revisions whose steps extended the reference above its busiest load


def expected_for_load(load: FloatArray, value: FloatArray) -> load_model.LoadModel | None:
    """The counterfactual of a per-step cost or resource for a load: bin *means* (a cost is an
    expectation; per-step use is skewed, so a median would understate it and overstate the excess) in
    ``COST_BINS`` bins, scaled below the reference's range as its quietest third of them scales with
    load (``load_model.quiet_elasticity``)."""
    return load_model.fit(load, value, bins=COST_BINS, statistic="mean", slope_below=True,
                          quiet_share=COST_QUIET_SHARE)


def _cost_load(totals: pd.DataFrame, info: RevisionInfo, view: ServiceView) -> pd.DataFrame:
    """``totals`` with the load its cost per step is modelled on (``load``; NaN where it has no request
    rate). Under request-based billing, the step's own request rate: an instance is billed while it
    serves. Under instance-based billing, the busiest request rate of the step and those of the
    ``load_model.SCALE_IN_MINUTES`` before it (``view.busiest_load``; ``totals`` is ``view.totals`` with
    columns joined): an instance started for a busy minute is billed until it has sat
    idle that long, so the instances of a step at a given request rate are more after a busier quarter
    hour than before one, and the reference's mean at that rate is not the last day's. On the step's
    own rate, instance-billed anomalies of 10-20 % of the cost were priced within ±10 % of their
    labelled excess for 0.76 of them on fourteen development draws (request-billed: 0.91); on this load,
    0.99 (docs/cost-model.md)."""
    rate = totals["req_rate"]
    if info.request_based_billing is not False:
        return totals.assign(load=rate)
    return totals.assign(load=view.busiest_load())


def _predict(reference: pd.DataFrame, target: pd.DataFrame, column: str) -> np.ndarray | None:
    """``column`` per step of ``target`` at its ``load``, as ``reference`` used it at the same load."""
    model = expected_for_load(reference["load"].to_numpy(dtype=np.float64),
                              reference[column].to_numpy(dtype=np.float64))
    if model is None:
        return None
    return model.predict(target["load"].to_numpy(dtype=np.float64))


def _served(totals: pd.DataFrame, span: RevisionSpan, warmup_minutes: int,
            before: pd.Timestamp | None = None) -> pd.DataFrame:
    """The steps ``span`` served after its warm-up (and before ``before``) with a request rate."""
    keep = ((totals["serving"] == span.name) & (totals.index >= span.first_seen + pd.Timedelta(minutes=warmup_minutes))
            & totals["req_rate"].notna())
    if before is not None:
        keep &= totals.index < before
    return totals.loc[keep]


def _reference(view: ServiceView, span: RevisionSpan, totals: pd.DataFrame, config: AnalysisConfig,
               reference: RevisionSpan | None, healthy_until: pd.Timestamp | None = None,
               priced_load: FloatArray | None = None) -> tuple[pd.DataFrame, str]:
    """The steps that show the old behaviour: the detectors' reference revision (by default the previous
    one; all it served in the data when the load priced, ``priced_load``, goes beyond its last days'
    range: ``timeline.reference_totals``), else the earlier revisions together when it served too
    briefly, else ``span``'s first hours.
    Those first hours show the old behaviour only before the anomaly (``healthy_until``): when it began
    sooner, at the deploy, the earlier revisions' shorter record (at least ``MIN_REFERENCE_HOURS``) is
    the reference, else the revision's own hours before the onset. When it began later (a flag flipped
    hours after the deploy), the revision's own hours before it are the reference where they are at least
    as many as the reference revision's steps: the old behaviour itself, at this revision's level. On
    twenty-four development draws 8 of the 11 priced findings this moved came closer to their labelled
    excess, beyond ±20 % 170 -> 167 (docs/cost-model.md)."""
    warmup, hours = config.detection.warmup_minutes, config.detection.creep.reference_hours
    steps, described = reference_totals(view, span, warmup, hours, reference, judged_load=priced_load)
    previous = reference if reference is not None else view.previous(span.name)
    warm = pd.Timedelta(minutes=warmup)
    if healthy_until is not None:
        # An anomaly that began hours after the deploy (a flag flipped): the revision's own hours before
        # it are the old behaviour itself, at this revision's level and nearer in time, where they are at
        # least as many as the reference's.
        own_before = _served(totals, span, warmup, before=healthy_until)
        if len(own_before) >= max(MIN_REFERENCE_HOURS * 3600 / view.step_seconds, len(steps)):
            return own_before, f"{span.name} before {healthy_until:%Y-%m-%d %H:%M} UTC"
    if previous is None or described == f"revision {previous.name}":
        return totals.loc[steps.index], described
    earlier = view.spans[:view.spans.index(span)]
    start = span.first_seen - pd.Timedelta(hours=3 * hours)
    mask = pd.Series(False, index=totals.index)
    for old in earlier:
        mask |= ((totals["serving"] == old.name) & (totals.index >= old.first_seen + warm)
                 & (totals.index >= start) & (totals.index < span.first_seen))
    if mask.sum() * view.step_seconds >= hours * 3600 / 2:
        names = [old.name for old in earlier if (mask & (totals["serving"] == old.name)).any()]
        return totals.loc[mask], "revisions " + ", ".join(names)
    if healthy_until is None or steps.index.max() < healthy_until:
        return totals.loc[steps.index], described
    # The revision's own first hours hold the anomaly: priced against them, it would cost nothing.
    own = steps.index[steps.index < healthy_until]
    minimum = MIN_REFERENCE_HOURS * 3600 / view.step_seconds
    if mask.sum() >= max(minimum, len(own)):
        names = [old.name for old in earlier if (mask & (totals["serving"] == old.name)).any()]
        return totals.loc[mask], "revisions " + ", ".join(names)
    if len(own) >= minimum:
        return totals.loc[own], f"{span.name} before {healthy_until:%Y-%m-%d %H:%M} UTC"
    return totals.loc[steps.index], described


LEVEL_MIN_HOURS = 6.0  # the least a short previous revision served (in the reference's load range) to set the level
EXTEND_MIN_HOURS = 3.0  # the least another revision served in the reference's load range to extend that range
EXCESS_COLUMNS = ("billable_q", "vcpu_s", "gib_s")
BOUND_MIN_HOURS = 6.0  # the least of the anomaly's steps inside the reference's load range that bound those beyond it


def _level(ref: pd.DataFrame, other: pd.DataFrame, column: str, seconds: int, hours: float) -> float | None:
    """How much more (or less) ``other`` used of ``column`` than the reference's load model predicts at
    its own load (``_cost_load``), over its steps inside the reference's load range: the factor between the two
    revisions' levels. None when it served fewer than ``hours`` of such steps."""
    load = ref["load"].to_numpy(dtype=np.float64)
    if not np.isfinite(load).any():
        return None
    theirs = other["load"].to_numpy(dtype=np.float64)
    inside = (theirs >= np.nanmin(load)) & (theirs <= np.nanmax(load))
    if inside.sum() * seconds < hours * 3600:
        return None
    predicted = _predict(ref, other.loc[inside], column)
    used = other[column].to_numpy(dtype=np.float64)[inside]
    if predicted is None:
        return None
    known = np.isfinite(predicted) & np.isfinite(used)
    expected = float(predicted[known].sum())
    return float(used[known].sum()) / expected if expected > 0 else None


def _extended(ref: pd.DataFrame, mine: pd.DataFrame, totals: pd.DataFrame, others: Sequence[RevisionSpan],
              warmup_minutes: int, seconds: int) -> tuple[pd.DataFrame, list[str]]:
    """The reference's steps, and where the priced load goes above its busiest step (for more than
    ``COVERED_SHARE`` of the steps), the steps of ``others`` outside its load range, each at the
    reference's level (divided by ``_level``, measured over at least ``EXTEND_MIN_HOURS`` inside it).
    Above its busiest step the load model grows in proportion to load, which misses instance steps and
    the overlap of requests on an instance; a revision without a finding that served that load says what
    it costs. The names of the revisions that joined."""
    load = ref["load"].to_numpy(dtype=np.float64)
    if not np.isfinite(load).any():
        return ref, []
    low, high = float(np.nanmin(load)), float(np.nanmax(load))
    if float(np.mean(mine["load"].to_numpy(dtype=np.float64) > high)) <= COVERED_SHARE:
        return ref, []
    parts, names = [ref], []
    for other in others:
        theirs = _served(totals, other, warmup_minutes)
        rates = theirs["load"].to_numpy(dtype=np.float64)
        if not (rates > high).any() or (ref["serving"] == other.name).any():
            continue
        levels = [_level(ref, theirs, column, seconds, EXTEND_MIN_HOURS) for column in EXCESS_COLUMNS]
        if any(level is None or level <= 0 for level in levels):
            continue
        outside = theirs.loc[(rates < low) | (rates > high)].copy()
        for column, level in zip(EXCESS_COLUMNS, levels, strict=True):
            outside[column] = outside[column] / cast(float, level)
        parts.append(outside)
        names.append(other.name)
    return (pd.concat(parts) if names else ref), names


@dataclass(frozen=True, slots=True)
class _AgainstRange:
    """Where each step of the anomaly (``mine``) lies against the reference's load range, and which
    steps are its last day (``RUN_RATE_HOURS``, what the run-rate reads): the same for every resource
    column, so worked out once per excess."""

    quieter: np.ndarray  # below the reference's quietest step
    busier: np.ndarray  # above its busiest
    inside: np.ndarray
    last_day: np.ndarray


def _against_range(ref: pd.DataFrame, mine: pd.DataFrame, last_day: np.ndarray) -> _AgainstRange | None:
    """``mine``'s steps against ``ref``'s load range (None when the reference has no load)."""
    load = ref["load"].to_numpy(dtype=np.float64)
    if not np.isfinite(load).any():
        return None
    low, high = float(np.nanmin(load)), float(np.nanmax(load))
    theirs = mine["load"].to_numpy(dtype=np.float64)
    return _AgainstRange(theirs < low, theirs > high, (theirs >= low) & (theirs <= high), last_day)


def _bounded_beyond_range(sides: _AgainstRange | None, expected: FloatArray, used: FloatArray,
                          seconds: int) -> FloatArray:
    """``expected`` (one resource's counterfactual per step of the anomaly, of which ``used`` is the
    use), with the steps quieter than the reference's quietest, and those busier than its busiest
    (``sides``), scaled as a group (the last day's apart from the days' before it) so that what the
    anomaly adds there, as a share of the counterfactual, lies between nothing and its share inside the
    range: ``used`` over ``expected`` on its latest steps inside it (those of its last day, or its latest
    ``BOUND_MIN_HOURS``). Unchanged with fewer steps inside, or when it adds nothing there.
    Beyond the range the expectation is an extrapolation (a power of load below it, in proportion to
    load above it). A weekend at half the reference's quietest load, on a floor of one instance, read
    there as a saving bigger than the anomaly's cost: a CPU regression that added 8 % of the cost was
    priced at -29 %. With the bound, on fourteen development draws, priced findings within ±10 % of
    their labelled excess went 1,325 -> 1,331 of 1,442, beyond ±20 % 50 -> 43, priced below zero
    13 -> 4 (docs/cost-model.md)."""
    if sides is None:
        return expected
    known = np.isfinite(expected) & np.isfinite(used)
    quieter, busier = known & sides.quieter, known & sides.busier
    inside = np.flatnonzero(known & sides.inside)
    need = int(np.ceil(BOUND_MIN_HOURS * 3600 / seconds))
    if not (quieter.any() or busier.any()) or len(inside) < need:
        return expected
    last_day = sides.last_day
    recent = inside[last_day[inside]] if last_day[inside].sum() >= need else inside[-need:]
    base = float(expected[recent].sum())
    ratio = float(used[recent].sum()) / base if base > 0 else 0.0
    if ratio <= 1.0:
        return expected
    bounded = expected.copy()
    # The last day apart from the days before it: it sets the run-rate (``excess_cost``).
    for part in (quieter & last_day, busier & last_day, quieter & ~last_day, busier & ~last_day):
        predicted = float(expected[part].sum())
        if not part.any() or predicted <= 0:
            continue
        share = float(used[part].sum()) / predicted
        bounded[part] *= share / min(max(share, 1.0), ratio)
    return bounded


def excess_cost(view: ServiceView, span: RevisionSpan, onset: pd.Timestamp, table: PriceTable,
                config: AnalysisConfig, *, reference: RevisionSpan | None = None,
                healthy_until: pd.Timestamp | None = None, level_of: RevisionSpan | None = None,
                beyond: Sequence[RevisionSpan] = (), ended_by: RevisionSpan | None = None) -> Excess | None:
    """Resources beyond what the reference period (see ``_reference``) needed on average for the same
    load (``_cost_load``: the request rate, or under instance-based billing the busiest of the quarter
    hour before each step), from ``onset`` while ``span`` served, priced at ``span``'s unit prices
    (``healthy_until``: the anomaly's earliest onset, when the excess counts from before it). None when
    there is too little reference data.

    ``level_of``: the previous revision, when it has no finding but served too briefly to be the
    reference. A routine deploy moves cost per request a few percent either way, so the older reference
    can sit a few points of the cost off the revision a rollback would return to; the counterfactual is
    the reference's load model scaled to that revision's level (``_level``), as far as it served inside
    the reference's load range. On twenty-four development draws 38 of the 41 priced findings it moved
    came closer to their labelled excess (docs/cost-model.md).

    ``beyond``: revisions without a finding whose steps may extend the reference above its busiest load
    (``_extended``).

    ``ended_by``: the revision without a finding that took over from ``span`` and ended the anomaly (a
    fix, or a rollback deployed as a new revision): its first days after warm-up (as many hours as the
    reference's) join the reference, when it served ``EXTEND_MIN_HOURS`` of them. It is the old
    behaviour observed after the anomaly as the reference is before it, so the two bracket it in time,
    and a level the service drifted to over the week (traffic's weekly shape, the hour of day each
    served) does not land in the excess. Leaks fixed within days were priced against their predecessor
    alone 0.6 point of the cost under their labelled excess in median (docs/cost-model.md)."""
    quantities = service_steps(view, table, config)[["billable_s", "vcpu_s", "gib_s"]]
    totals = _cost_load(view.totals.join(quantities.rename(columns={"billable_s": "billable_q"}), how="left"),
                         span.info, view)
    # Steps without a request rate cannot be compared with anything: they are left out.
    mine = totals.loc[(totals["serving"] == span.name) & (totals.index >= onset) & totals["req_rate"].notna()]
    if mine.empty:
        return None
    ref, described = _reference(view, span, totals, config, reference, healthy_until,
                                mine["req_rate"].to_numpy(dtype=np.float64))
    warmup = config.detection.warmup_minutes
    own = (ref["serving"] == span.name).any()  # the revision's own first hours: no other level applies
    previous = _served(totals, level_of, warmup, before=span.first_seen) if level_of is not None and not own else None
    joined: list[str] = []
    if ended_by is not None and not own:
        after = _served(totals, ended_by, warmup)
        hours = 3 * config.detection.creep.reference_hours
        after = after.loc[after.index < ended_by.first_seen + pd.Timedelta(hours=hours)]
        if len(after) * view.step_seconds >= EXTEND_MIN_HOURS * 3600:
            ref = pd.concat([ref, after])
            joined.append(ended_by.name)
            described += f" and {ended_by.name}, which ended it"
    if beyond and not own:
        ref, extended = _extended(ref, mine, totals, beyond, warmup, view.step_seconds)
        described += "".join(f" and {name}" for name in extended) + (" above its busiest load" if extended else "")
        joined += extended
    # The run-rate now: the last day of the anomaly, so a growing leak is priced as it stands.
    last_day = np.asarray(mine.index >= mine.index[-1] - pd.Timedelta(hours=RUN_RATE_HOURS))
    sides = _against_range(ref, mine, last_day)
    extra: dict[str, np.ndarray] = {}
    for column in EXCESS_COLUMNS:
        expected = _predict(ref, mine, column)
        if expected is None:
            return None
        level = (_level(ref, previous, column, view.step_seconds, LEVEL_MIN_HOURS)
                 if previous is not None and len(previous) else None)
        if level is not None:
            expected = expected * level
            if column == "billable_q" and level_of is not None:
                described += f", at the level of {level_of.name} ({level - 1:+.1%})"
        used = mine[column].to_numpy(dtype=np.float64)
        extra[column] = used - _bounded_beyond_range(sides, expected, used, view.step_seconds)
    prices = unit_prices(table, span.info, config.pricing)
    extra_usd = extra["vcpu_s"] * prices.cpu_vcpu_second + extra["gib_s"] * prices.memory_gib_second
    actual_usd = (mine["vcpu_s"].to_numpy(dtype=np.float64) * prices.cpu_vcpu_second
                  + mine["gib_s"].to_numpy(dtype=np.float64) * prices.memory_gib_second)
    seconds = float(last_day.sum()) * view.step_seconds
    rate = float(extra_usd[last_day].sum()) / seconds if seconds else 0.0
    per_hour = 3600.0 / view.step_seconds
    return Excess(
        window_usd=max(float(extra_usd.sum()), 0.0),
        per_month_usd=max(rate * SECONDS_PER_MONTH, 0.0),
        reference=described,
        actual_usd_per_hour=float(actual_usd[last_day].mean()) * per_hour,
        expected_usd_per_hour=float((actual_usd - extra_usd)[last_day].mean()) * per_hour,
        start=pd.Timestamp(mine.index[0]),
        end=pd.Timestamp(mine.index[-1]) + pd.Timedelta(seconds=view.step_seconds),
        instance_seconds=float(extra["billable_q"].sum()),
        vcpu_seconds=float(extra["vcpu_s"].sum()),
        gib_seconds=float(extra["gib_s"].sum()),
        joined=tuple(joined),
    )


EXCESS_EVIDENCE = ("excess_instance_seconds", "excess_vcpu_seconds", "excess_gib_seconds", "cost_now_usd_per_hour",
                   "cost_counterfactual_usd_per_hour", "cost_reference")  # what ``excess_evidence`` writes


def excess_evidence(excess: Excess) -> dict[str, float | str]:
    """The excess as a finding's evidence: resource-seconds beyond the counterfactual, and its basis."""
    values = (round(excess.instance_seconds), round(excess.vcpu_seconds), round(excess.gib_seconds),
              round(excess.actual_usd_per_hour, 4), round(excess.expected_usd_per_hour, 4), excess.reference)
    return dict(zip(EXCESS_EVIDENCE, values, strict=True))


# --- savings of a fix ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class FixSavings:
    broken: str
    fixed: str
    per_month_usd: float  # broken-revision cost for the fix's load − the fix's cost, per month
    broken_usd_per_hour: float  # what the broken revision would cost at the fix's load
    fixed_usd_per_hour: float
    hours: float  # of the fixing revision's data compared


def fix_savings(view: ServiceView, broken: RevisionSpan, fixed: RevisionSpan, table: PriceTable,
                config: AnalysisConfig) -> FixSavings | None:
    """What the fixing revision saves per month: the broken revision's cost-for-load over its last day,
    applied to the fixing revision's load after warm-up, minus the fix's actual cost. None when either
    side has too little data."""
    steps = service_steps(view, table, config)
    totals = _cost_load(view.totals.join(steps[["usd"]], how="left"), broken.info, view)
    warm = pd.Timedelta(minutes=config.detection.warmup_minutes)
    before = totals.loc[(totals["serving"] == broken.name)
                        & (totals.index >= broken.last_seen - pd.Timedelta(hours=FIX_COMPARE_HOURS))
                        & (totals.index >= broken.first_seen + warm)]
    after = totals.loc[(totals["serving"] == fixed.name) & (totals.index >= fixed.first_seen + warm)
                       & totals["req_rate"].notna()]
    if len(after) * view.step_seconds < 3 * 3600:
        return None
    expected = _predict(before, after, "usd")
    if expected is None:
        return None
    actual = after["usd"].to_numpy(dtype=np.float64)
    seconds = len(after) * view.step_seconds
    per_hour = 3600.0 / view.step_seconds
    return FixSavings(
        broken=broken.name,
        fixed=fixed.name,
        per_month_usd=float((expected - actual).sum()) / seconds * SECONDS_PER_MONTH,
        broken_usd_per_hour=float(expected.mean()) * per_hour,
        fixed_usd_per_hour=float(actual.mean()) * per_hour,
        hours=seconds / 3600,
    )
