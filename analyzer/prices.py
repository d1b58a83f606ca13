"""The price table: a dated list-price table of Cloud Run (region tier × billing mode, the Tier 1
regions, the monthly free tier), its YAML file format and how it is read and written.

Data, not analysis: the sources layer builds one from the Cloud Billing Catalog API
(``sources/billing.py``) and the analysis prices with one (``analysis/pricing.py``); neither imports
the other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from analyzer.config import load_yaml, parse_config
from analyzer.errors import ConfigError
from analyzer.resources import config_file

FREE_FIELDS = ("cpu_vcpu_seconds", "memory_gib_seconds", "requests")
TIERS = ("tier1", "tier2")
MODES = ("request_based", "instance_based")
SECONDS_PER_MONTH = 365.25 / 12 * 86400  # the average month, used for every per-month figure



@dataclass(frozen=True, slots=True)
class PriceTable:
    """A dated list-price table: rates per (tier, mode), the Tier 1 regions, the monthly free tier."""

    as_of: str
    currency: str
    tier1_regions: frozenset[str]
    rates: dict[tuple[str, str], dict[str, float]]  # (tier, mode) -> field -> price
    free_tier: dict[str, dict[str, float]]  # mode -> FREE_FIELDS -> amount per month
    source: str = ""
    unmatched_skus: tuple[dict[str, str], ...] = ()
    not_refreshed: tuple[str, ...] = ()
    matched_skus: tuple[dict[str, Any], ...] = field(default=())

    def tier_of(self, region: str) -> str:
        return "tier1" if region in self.tier1_regions else "tier2"

    def document(self) -> dict[str, Any]:
        """The table in the format of configs/prices.yaml (what ``load_table`` reads back)."""
        doc: dict[str, Any] = {
            "as_of": self.as_of,
            "currency": self.currency,
            "source": self.source,
            "tier1_regions": sorted(self.tier1_regions),
            "tiers": {tier: {mode: dict(self.rates[(tier, mode)]) for mode in MODES} for tier in TIERS},
            "free_tier": {mode: dict(values) for mode, values in self.free_tier.items()},
        }
        if self.matched_skus:
            doc["matched_skus"] = [dict(m) for m in self.matched_skus]
        if self.unmatched_skus or self.matched_skus:
            doc["unmatched_skus"] = [dict(u) for u in self.unmatched_skus]
        if self.not_refreshed:
            doc["not_refreshed"] = list(self.not_refreshed)
        return doc


# --- the file format, validated with the config machinery so errors name the key -------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Rates(_Strict):
    cpu_vcpu_second: float = Field(ge=0, le=1)
    memory_gib_second: float = Field(ge=0, le=1)
    requests_per_million: float = Field(ge=0, le=100)
    idle_cpu_vcpu_second: float = Field(ge=0, le=1)
    idle_memory_gib_second: float = Field(ge=0, le=1)


class _Modes(_Strict):
    request_based: _Rates
    instance_based: _Rates


class _Free(_Strict):
    cpu_vcpu_seconds: float = Field(default=0.0, ge=0)
    memory_gib_seconds: float = Field(default=0.0, ge=0)
    requests: float = Field(default=0.0, ge=0)


class _TableFile(_Strict):
    as_of: str | date
    currency: str = "USD"
    source: str = ""
    tier1_regions: list[str]
    tiers: dict[Literal["tier1", "tier2"], _Modes]
    free_tier: dict[Literal["request_based", "instance_based"], _Free] = Field(default_factory=dict)
    matched_skus: list[dict[str, Any]] = Field(default_factory=list)
    unmatched_skus: list[dict[str, str]] = Field(default_factory=list)
    not_refreshed: list[str] = Field(default_factory=list)


def parse_table(data: Any, *, origin: str) -> PriceTable:
    """A PriceTable from the YAML document of a price table; a ConfigError names what is wrong."""
    parsed = parse_config(_TableFile, data, source=f"price table {origin}")
    missing = [tier for tier in TIERS if tier not in parsed.tiers]
    if missing:
        raise ConfigError(f"price table {origin}: tiers.{missing[0]} is missing",
                          hint="a table prices both tiers; compare it with configs/prices.yaml")
    rates: dict[tuple[str, str], dict[str, float]] = {
        (str(tier), mode): getattr(modes, mode).model_dump() for tier, modes in parsed.tiers.items()
        for mode in MODES}
    return PriceTable(
        as_of=str(parsed.as_of),
        currency=parsed.currency,
        tier1_regions=frozenset(parsed.tier1_regions),
        rates=rates,
        free_tier={mode: values.model_dump() for mode, values in parsed.free_tier.items()},
        source=parsed.source,
        unmatched_skus=tuple(parsed.unmatched_skus),
        not_refreshed=tuple(parsed.not_refreshed),
        matched_skus=tuple(parsed.matched_skus),
    )


def load_table(spec: str) -> PriceTable:
    """``builtin`` (configs/prices.yaml) or the path of a price table YAML. Read once per process while
    the file is unchanged (a report's worker analyzes batch after batch with the same table; parsing
    it took as long as analyzing a service): a file edited since is read again."""
    path = config_file("prices.yaml") if spec == "builtin" else Path(spec)
    try:
        seen = path.stat()
    except OSError:
        return parse_table(load_yaml(path), origin=str(path))  # load_yaml names the unreadable path
    return _table_as_of(str(path), seen.st_mtime_ns, seen.st_size)


@lru_cache(maxsize=8)
def _table_as_of(path: str, mtime_ns: int, size: int) -> PriceTable:
    """The table at ``path`` as it was when it had this modification time and size (the cache key)."""
    return parse_table(load_yaml(Path(path)), origin=path)


def dump_table(table: PriceTable) -> str:
    return yaml.safe_dump(table.document(), sort_keys=False, allow_unicode=True, width=110)
