"""Unit prices: what a revision pays per unit under a price table (``analyzer/prices.py``), after
per-project overrides and committed-use discounts, and the monthly free tier allowance.

The table is data, read once at the edge; everything here is a pure function of it and of
``PricingConfig``.
"""

from __future__ import annotations

from dataclasses import dataclass

from analyzer.config import PricingConfig
from analyzer.model import RevisionInfo
from analyzer.prices import FREE_FIELDS, SECONDS_PER_MONTH, PriceTable

# The rates a committed-use discount applies to (never the request fee).
COMPUTE_FIELDS = ("cpu_vcpu_second", "memory_gib_second", "idle_cpu_vcpu_second", "idle_memory_gib_second")


def mode_name(request_based: bool) -> str:
    return "request_based" if request_based else "instance_based"


@dataclass(frozen=True, slots=True)
class UnitPrices:
    """What one revision pays per unit, after overrides and the committed-use discount."""

    cpu_vcpu_second: float
    memory_gib_second: float
    requests_per_million: float
    idle_cpu_vcpu_second: float
    idle_memory_gib_second: float
    tier: str
    request_based: bool
    discount: float = 0.0  # the committed-use discount already applied to the compute prices

    def instance_second(self, cpu: float, memory_gib: float) -> float:
        """USD for one instance-second at these limits (CPU and memory allocated all the time)."""
        return cpu * self.cpu_vcpu_second + memory_gib * self.memory_gib_second

    def idle_instance_second(self, cpu: float, memory_gib: float) -> float:
        """USD for one idle min-instance second at these limits."""
        return cpu * self.idle_cpu_vcpu_second + memory_gib * self.idle_memory_gib_second


# --- prices of one revision -------------------------------------------------------------------------

def prices_for(table: PriceTable, config: PricingConfig, *, project: str, region: str,
               request_based: bool) -> UnitPrices:
    """Unit prices in one project and region under one billing mode: the table's rates, then the
    project's flat overrides, then its per-mode overrides, then the committed-use discount on compute
    (never on the request fee)."""
    tier = table.tier_of(region)
    mode = mode_name(request_based)
    rates = dict(table.rates[(tier, mode)])
    override = config.overrides.get(project)
    if override is not None:
        rates.update(override.rates())
        rates.update(getattr(override, mode).rates())
    discount = config.discount(project, request_based=request_based)
    for name in COMPUTE_FIELDS:
        rates[name] *= 1.0 - discount
    return UnitPrices(**rates, tier=tier, request_based=request_based, discount=discount)


def unit_prices(table: PriceTable, info: RevisionInfo, config: PricingConfig) -> UnitPrices:
    """The revision's prices: its region's tier and its billing mode (``cpu_idle``; the configured
    default when the Admin API did not say)."""
    request_based = info.request_based_billing
    if request_based is None:
        request_based = config.default_request_based
    return prices_for(table, config, project=info.project, region=info.region, request_based=request_based)


def free_allowance(table: PriceTable, *, request_based: bool, seconds: float) -> dict[str, float]:
    """The free tier for ``seconds`` of a month, pro rata (cpu_vcpu_seconds, memory_gib_seconds, requests).

    Google grants it per billing account per calendar month; spread evenly over the month it is the
    fair share of any window.
    """
    monthly = table.free_tier.get(mode_name(request_based), {})
    share = max(seconds, 0.0) / SECONDS_PER_MONTH
    return {name: float(monthly.get(name, 0.0)) * share for name in FREE_FIELDS}


def settings_summary(config: PricingConfig) -> list[str]:
    """How the table is applied, one line per setting, for people reading a printed table."""
    request = config.committed_use_discount_request_based
    instance = config.committed_use_discount_instance_based
    lines = [
        f"table: {config.table}",
        f"committed-use discount: {config.committed_use_discount:.0%}"
        + (f" (request-based {request:.0%})" if request is not None else "")
        + (f" (instance-based {instance:.0%})" if instance is not None else ""),
        f"free tier subtracted: {'yes, pro rata to the window' if config.apply_free_tier else 'no'}",
        f"idle min-instances: {'billed' if config.bill_idle_min_instances else 'estimated, shown apart'}",
    ]
    for project, override in sorted(config.overrides.items()):
        lines.append(f"override for project {project}: "
                     f"{override.model_dump(exclude_none=True, exclude_defaults=True)}")
    return lines
