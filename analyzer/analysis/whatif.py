"""What-ifs per service: what the current revision would cost per month with another billing mode,
another min-instances setting, or a memory limit right-sized from its observed p99 plus headroom.

Each is judged on the current revision's own data (its last ``what_if.basis_days`` days after
warm-up) and priced with the same table, overrides and discounts as the window cost. Every figure is
an estimate: the instance counts, and so the bill, would react to the change itself.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from analyzer.analysis.cost import idle_min_instance_seconds, limits, revision_steps
from analyzer.analysis.pricing import UnitPrices, prices_for, unit_prices
from analyzer.analysis.timeline import RevisionSpan, ServiceView
from analyzer.config import AnalysisConfig
from analyzer.model import Finding, FindingKind
from analyzer.prices import SECONDS_PER_MONTH, PriceTable

MIB_PER_GIB = 1024
BILLING_ROUNDING_S = 0.1  # request-based billable time is rounded up to 100 ms per busy period
Z_95 = 1.6449  # the 95th percentile of a standard normal: p95/p50 of a log-normal latency gives sigma
# Cloud Run memory bounds per vCPU limit (MiB): at least / at most.
MEMORY_FLOOR_MIB = {4.0: 2048, 6.0: 4096, 8.0: 4096}
MEMORY_CEILING_MIB = {1.0: 4096, 2.0: 8192, 4.0: 16384, 6.0: 24576, 8.0: 32768}


class WhatIfKind(enum.StrEnum):
    BILLING_MODE = "billing_mode"
    MIN_INSTANCES = "min_instances"
    MEMORY_LIMIT = "memory_limit"


@dataclass(frozen=True, slots=True)
class WhatIf:
    """One alternative setting of a service's current revision and what it would cost per month."""

    kind: WhatIfKind
    revision: str
    change: str  # what to do, for a person
    current: str  # the setting now
    proposed: str  # the setting tried
    current_usd_per_month: float
    proposed_usd_per_month: float
    basis: str  # the data it was judged on
    caveat: str = ""

    @property
    def savings_usd_per_month(self) -> float:
        return self.current_usd_per_month - self.proposed_usd_per_month


@dataclass(frozen=True, slots=True)
class _Basis:
    """The current revision's steps a what-if is judged on, and how to scale them to a month."""

    span: RevisionSpan
    steps: pd.DataFrame  # cost.step_quantities of the basis rows
    rows: pd.DataFrame  # the matching rows of the frames table
    per_month: float  # multiply a sum over the basis by this for a monthly figure
    cpu: float
    memory_gib: float
    prices: UnitPrices
    step_seconds: int
    description: str

    current_usd_per_month: float  # metered cost plus the idle min-instance estimate, per month

    def instance_seconds(self, state: str | None = None) -> np.ndarray | None:
        """Instance-seconds per step (``active``, ``idle`` or both), None without instance counts."""
        names = ["inst_active", "inst_idle"] if state is None else [f"inst_{state}"]
        counts = [self.rows[name].to_numpy(dtype=np.float64) for name in names]
        if all(np.isnan(c).all() for c in counts):
            return None
        # Added column by column (pandas' row sum of the same frame, NaN as 0, gives the same floats).
        total: np.ndarray = np.nan_to_num(counts[0], nan=0.0)
        for more in counts[1:]:
            total = total + np.nan_to_num(more, nan=0.0)
        return np.asarray(total * float(self.step_seconds), dtype=np.float64)


def _current_span(view: ServiceView) -> RevisionSpan | None:
    """The revision serving at the last step that names one, else the last revision seen."""
    if "serving" in view.totals:
        # From the end: the last step nearly always names it (no pass over the whole window).
        for name in view.totals["serving"].to_numpy(dtype=object)[::-1]:
            if not pd.isna(name) and str(name) != "":
                return view.span(str(name))
    return view.spans[-1] if view.spans else None


def _basis(view: ServiceView, table: PriceTable, config: AnalysisConfig) -> _Basis | None:
    span = _current_span(view)
    if span is None:
        return None
    rows = view.revision_rows(span.name)
    steps = revision_steps(view, span, table, config)
    times = pd.DatetimeIndex(rows["ts"].array)  # not to_numpy(): an object array of Timestamps
    start = span.last_seen - pd.Timedelta(days=config.pricing.what_if.basis_days)
    warm = span.first_seen + pd.Timedelta(minutes=config.detection.warmup_minutes)
    if span.last_seen - warm >= pd.Timedelta(hours=1):
        start = max(start, warm)
    keep = np.asarray(times >= start)
    if not keep.any():
        return None
    at = np.flatnonzero(keep)
    if at[-1] - at[0] + 1 == len(at):  # a revision's rows are in time order: the kept ones are a stretch
        rows, steps = rows.iloc[at[0]:at[-1] + 1], steps.iloc[at[0]:at[-1] + 1]
    else:
        rows, steps = rows.loc[keep], steps.loc[keep]
    kept = times[keep]
    seconds = (kept[-1] - kept[0]).total_seconds() + view.step_seconds
    cpu, mem, _ = limits(span.info, config.pricing)
    per_month = SECONDS_PER_MONTH / seconds
    current = float((steps["metered_usd"] + steps["idle_usd"]).sum()) * per_month
    return _Basis(span, steps, rows, per_month, cpu, mem, unit_prices(table, span.info, config.pricing),
                  view.step_seconds, f"{span.name}, {seconds / 3600:.0f} h from {kept[0]:%Y-%m-%d %H:%M} UTC",
                  current)


def _mode(request_based: bool) -> str:
    return "request-based" if request_based else "instance-based"


def _billing_mode(basis: _Basis, table: PriceTable, config: AnalysisConfig) -> WhatIf | None:
    """Switch the billing mode, as Google's cost recommender does (priced for the same instances)."""
    info = basis.span.info
    now = basis.prices
    other = prices_for(table, config.pricing, project=info.project, region=info.region,
                       request_based=not now.request_based)
    if now.request_based:
        instance_s = basis.instance_seconds()
        if instance_s is None:
            return None
        proposed = float(instance_s.sum()) * other.instance_second(basis.cpu, basis.memory_gib)
        caveat = ("assumes the same instances, now billed for their whole life (idle ones too) with no "
                  "request fee; CPU stays allocated between requests, so background work is not throttled")
    else:
        busy_s = _busy_seconds(basis)
        if busy_s is None:
            return None
        idle_s = _held_idle(basis, info.min_instances)
        requests = float(basis.steps["requests"].sum())
        proposed = (float(busy_s.sum()) * other.instance_second(basis.cpu, basis.memory_gib)
                    + requests * other.requests_per_million / 1e6
                    + float(idle_s.sum()) * other.idle_instance_second(basis.cpu, basis.memory_gib))
        caveat = ("billable time estimated as the time each active instance has a request in flight (request "
                  "rate × mean latency, 100 ms rounding); CPU is throttled outside requests, so background "
                  "work stalls and latency may change")
    target = _mode(not now.request_based)
    return WhatIf(WhatIfKind.BILLING_MODE, basis.span.name, f"switch to {target} billing",
                  _mode(now.request_based), target, basis.current_usd_per_month, proposed * basis.per_month,
                  basis.description, caveat)


def _busy_seconds(basis: _Basis) -> pd.Series | None:
    """Request-based billable seconds per step: each active instance is billed while it has a request in
    flight. With requests arriving at random (M/G/∞), an instance receiving λ requests/s of mean latency
    L is busy 1 − exp(−λL) of the time, in λ·exp(−λL) busy periods per second, each rounded up to 100 ms.
    Mean latency comes from p50 and p95 read as a log-normal; without latency, active time is the bound.
    """
    rows = basis.rows
    active = rows["inst_active"].astype(np.float64)
    if active.isna().all():
        return None
    active = active.fillna(0.0)
    step = float(basis.step_seconds)
    p50 = rows["lat_p50"].astype(np.float64) / 1000.0
    p95 = rows["lat_p95"].astype(np.float64) / 1000.0
    sigma = pd.Series(np.log(p95 / p50) / Z_95, index=rows.index).clip(lower=0.0, upper=2.5)
    mean_latency: pd.Series = p50 * np.exp(sigma**2 / 2.0)
    rate = rows["req_rate"].astype(np.float64).fillna(0.0) / active.where(active > 0)
    idle_share = pd.Series(np.exp(-rate * mean_latency), index=rows.index)
    periods = rate * step * idle_share
    per_instance = (step * (1.0 - idle_share) + BILLING_ROUNDING_S / 2.0 * periods).clip(upper=step)
    busy: pd.Series = (active * per_instance.fillna(step)).where(active > 0, 0.0)
    return busy


def _held_idle(basis: _Basis, floor: int, *, current_floor: int | None = None) -> pd.Series:
    """Idle instance-seconds per step that a min-instances ``floor`` holds (``cost``'s one estimate)."""
    added = current_floor is not None and floor > current_floor
    return idle_min_instance_seconds(basis.rows, floor, basis.step_seconds,
                                     request_based=basis.prices.request_based, added=added)


def _min_instances(basis: _Basis) -> list[WhatIf]:
    """Other min-instances settings: 0 (and 1) when some are set, 1 when none are."""
    current = basis.span.info.min_instances
    choices = [1] if current == 0 else sorted({0, 1} - {current})
    held_now = _held_idle(basis, current)
    # Request-based: held idle instances cost the idle rates; instance-based: the full rates.
    rate = (basis.prices.idle_instance_second(basis.cpu, basis.memory_gib) if basis.prices.request_based
            else basis.prices.instance_second(basis.cpu, basis.memory_gib))
    found = []
    for floor in choices:
        held = _held_idle(basis, floor, current_floor=current)
        delta = float((held - held_now).sum()) * rate * basis.per_month
        caveat = ("requests that arrive when no instance is warm wait for a cold start"
                  if floor < current else "fewer cold starts after quiet periods")
        found.append(WhatIf(WhatIfKind.MIN_INSTANCES, basis.span.name, f"set min instances to {floor}",
                            str(current), str(floor), basis.current_usd_per_month,
                            basis.current_usd_per_month + delta, basis.description, caveat))
    return found


def _memory_bounds(cpu: float) -> tuple[int, int]:
    floor = max((mib for vcpu, mib in MEMORY_FLOOR_MIB.items() if cpu >= vcpu), default=0)
    ceiling = min((mib for vcpu, mib in MEMORY_CEILING_MIB.items() if cpu <= vcpu), default=32768)
    return floor, ceiling


def _memory_limit(basis: _Basis, config: AnalysisConfig, leaking: bool) -> WhatIf | None:
    """A memory limit from the observed p99 (of the per-step p99 across instances) plus headroom."""
    info = basis.span.info
    if not info.memory_limit_gib or "mem_p99" not in basis.rows:
        return None
    p99 = basis.rows["mem_p99"].astype(np.float64).dropna()
    if p99.empty:
        return None
    knobs = config.pricing.what_if
    current_mib = info.memory_limit_gib * MIB_PER_GIB
    peak_mib = float(np.quantile(p99.to_numpy(), 0.99)) * current_mib
    floor, ceiling = _memory_bounds(basis.cpu)
    step = knobs.memory_step_mib
    wanted = math.ceil(peak_mib * (1.0 + knobs.memory_headroom) / step) * step
    proposed_mib = min(max(wanted, knobs.min_memory_mib, floor), ceiling)
    if abs(proposed_mib - current_mib) < step:
        return None
    ratio = proposed_mib / current_mib
    steps = basis.steps
    memory_usd = float((steps["gib_s"] * basis.prices.memory_gib_second
                        + steps["idle_s"] * basis.memory_gib * basis.prices.idle_memory_gib_second).sum())
    proposed = basis.current_usd_per_month - memory_usd * (1.0 - ratio) * basis.per_month
    notes = [f"observed p99 {peak_mib:.0f} MiB + {knobs.memory_headroom:.0%} headroom"]
    if leaking:
        notes.append("memory is still climbing (see the memory finding): fix the leak first, or the smaller "
                     "limit is reached sooner")
    if proposed_mib > current_mib:
        notes.append("the p99 is within the headroom of the limit: raising it avoids OOM kills")
    if wanted > ceiling:
        notes.append(f"{basis.cpu:g} vCPU allows at most {ceiling} MiB: raise the CPU limit too")
    return WhatIf(WhatIfKind.MEMORY_LIMIT, basis.span.name, f"set the memory limit to {proposed_mib} MiB",
                  f"{current_mib:.0f} MiB", f"{proposed_mib} MiB", basis.current_usd_per_month, proposed,
                  basis.description, "; ".join(notes))


def service_what_ifs(view: ServiceView, table: PriceTable, config: AnalysisConfig, *,
                     findings: Sequence[Finding] = ()) -> list[WhatIf]:
    """The what-ifs of one service's current revision (empty when it has no usable data)."""
    basis = _basis(view, table, config)
    if basis is None or basis.steps.empty:
        return []
    leaking = any(f.kind is FindingKind.MEMORY_BASELINE_RISE and f.ongoing and f.revision == basis.span.name
                  for f in findings)
    found: list[WhatIf] = []
    mode = _billing_mode(basis, table, config)
    if mode is not None:
        found.append(mode)
    found.extend(_min_instances(basis))
    memory = _memory_limit(basis, config, leaking)
    if memory is not None:
        found.append(memory)
    return found
