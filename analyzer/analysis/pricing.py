"""Unit prices for a revision: region tier × billing mode, from a dated price table, with
per-project overrides and a committed-use discount applied.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from analyzer.config import PricingConfig, load_yaml
from analyzer.errors import ConfigError
from analyzer.model import RevisionInfo
from analyzer.resources import config_file

RATE_FIELDS = ("cpu_vcpu_second", "memory_gib_second", "requests_per_million", "idle_cpu_vcpu_second",
               "idle_memory_gib_second")


@dataclass(frozen=True, slots=True)
class UnitPrices:
    cpu_vcpu_second: float
    memory_gib_second: float
    requests_per_million: float
    idle_cpu_vcpu_second: float
    idle_memory_gib_second: float
    tier: str
    request_based: bool


@dataclass(frozen=True, slots=True)
class PriceTable:
    as_of: str
    currency: str
    tier1_regions: frozenset[str]
    rates: dict[tuple[str, str], dict[str, float]]  # (tier, mode) -> field -> price
    free_tier: dict[str, dict[str, float]]

    def tier_of(self, region: str) -> str:
        return "tier1" if region in self.tier1_regions else "tier2"


def load_table(spec: str) -> PriceTable:
    path = config_file("prices.yaml") if spec == "builtin" else Path(spec)
    data = load_yaml(path)
    try:
        rates = {
            (tier, mode): {name: float(values[name]) for name in RATE_FIELDS}
            for tier, modes in data["tiers"].items()
            for mode, values in modes.items()
        }
        return PriceTable(
            as_of=str(data["as_of"]),
            currency=str(data.get("currency", "USD")),
            tier1_regions=frozenset(data["tier1_regions"]),
            rates=rates,
            free_tier={k: {n: float(v) for n, v in d.items()} for k, d in (data.get("free_tier") or {}).items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"price table {path} is malformed: missing or invalid {exc}",
                          hint="compare it with configs/prices.yaml, which documents every key") from exc


def unit_prices(table: PriceTable, info: RevisionInfo, config: PricingConfig) -> UnitPrices:
    request_based = info.request_based_billing
    if request_based is None:
        request_based = config.default_request_based
    tier = table.tier_of(info.region)
    mode = "request_based" if request_based else "instance_based"
    rates: dict[str, Any] = dict(table.rates[(tier, mode)])
    rates.update(config.overrides.get(info.project, {}))
    unknown = set(rates) - set(RATE_FIELDS)
    if unknown:
        raise ConfigError(f"pricing.overrides.{info.project}: unknown price {sorted(unknown)[0]!r}",
                          hint=f"use one of {', '.join(RATE_FIELDS)}")
    keep = 1.0 - config.committed_use_discount
    prices = UnitPrices(**{k: float(v) for k, v in rates.items()}, tier=tier, request_based=request_based)
    return replace(
        prices,
        cpu_vcpu_second=prices.cpu_vcpu_second * keep,
        memory_gib_second=prices.memory_gib_second * keep,
        idle_cpu_vcpu_second=prices.idle_cpu_vcpu_second * keep,
        idle_memory_gib_second=prices.idle_memory_gib_second * keep,
    )
