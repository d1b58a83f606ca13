"""Live Cloud Run prices from the Cloud Billing Catalog API.

Lists the SKUs of the Cloud Run service (``services/152E-C115-5142``), matches their descriptions
loosely to the price table's fields (Google renames SKUs and their descriptions carry typos: double
spaces, "in in <region>", misspelt words), and builds a dated table in the format of
configs/prices.yaml: the prices found, the base table's values where no SKU matched (listed as
``not_refreshed``), and every SKU that could not be matched with the reason (``unmatched_skus``).

Only this module (and google_clients) talks to Google: the matching is a pure function of plain
``CatalogSku`` records, so it is tested on its own and against a fake CloudCatalog gRPC server.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_exceptions

from analyzer.errors import (
    AnalyzerError,
    ApiDisabledError,
    CredentialsError,
    PermissionDeniedError,
    SourceError,
)
from analyzer.prices import MODES, SECONDS_PER_MONTH, TIERS, PriceTable
from analyzer.sources.google_clients import LOGIN_HINT

CLOUD_RUN_SERVICE = "services/152E-C115-5142"
CATALOG_API = "cloudbilling.googleapis.com"
RETRY = Retry(predicate=if_exception_type(api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded),
              initial=0.2, maximum=5.0, multiplier=2.0, timeout=60.0)

# What a description is about, as (canonical word, its accepted spellings). Matching is fuzzy per word.
_EXCLUDED = {
    "jobs": "a Cloud Run jobs price (the analyzer prices services)",
    "job": "a Cloud Run jobs price (the analyzer prices services)",
    "worker": "a worker pools price (the analyzer prices services)",
    "gpu": "a GPU price (not in the price table)",
    "network": "a networking price (not in the price table)",
    "egress": "a networking price (not in the price table)",
    "functions": "a Cloud Run functions price",
}
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_TIME_SECONDS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hr": 3600.0, "d": 86400.0,
                 "mo": SECONDS_PER_MONTH}
_GIB_PER_UNIT = {"gibyte": 1.0, "giby": 1.0, "gib": 1.0, "gby": 1e9 / 2**30, "gb": 1e9 / 2**30,
                 "miby": 1 / 1024, "mib": 1 / 1024, "mby": 1e6 / 2**30, "tiby": 1024.0, "by": 1 / 2**30}
_COUNT_UNITS = {"count", "1", "request", "requests", "req", "invocation", "invocations"}


@dataclass(frozen=True, slots=True)
class CatalogSku:
    """One SKU as plain data: what the matching needs from ``google.cloud.billing_v1.Sku``."""

    sku_id: str
    description: str
    service_regions: tuple[str, ...]
    usage_unit: str
    tiered_rates: tuple[tuple[float, float], ...]  # (start usage amount, unit price), in usage units
    currency: str = "USD"


@dataclass(frozen=True, slots=True)
class SkuMatch:
    sku_id: str
    description: str
    tier: str
    mode: str
    field: str
    price: float  # in the table's unit (per vCPU-second, GiB-second, million requests)
    free_amount: float  # the free tier in the table's unit (vCPU-seconds, GiB-seconds, requests), 0 if none
    region: str = ""


@dataclass(frozen=True, slots=True)
class Unmatched:
    sku_id: str
    description: str
    reason: str


@dataclass(slots=True)
class CatalogRefresh:
    """The refreshed table and how it was made."""

    table: PriceTable
    skus_seen: int
    matched: list[SkuMatch] = field(default_factory=list)
    unmatched: list[Unmatched] = field(default_factory=list)
    not_refreshed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # e.g. prices that differ between regions of a tier


# --- loose matching ------------------------------------------------------------------------------------

def words(description: str) -> list[str]:
    """Lower-case words of a description, punctuation dropped and immediate repeats ("in in") merged."""
    tokens = re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", description.lower())
    merged: list[str] = []
    for token in tokens:
        if not merged or merged[-1] != token:
            merged.append(token)
    # "Request-based" and "request based" read the same; region names keep their hyphens.
    out: list[str] = []
    for token in merged:
        out.extend([token] if _REGION.match(token) else token.split("-"))
    return out


def _like(token: str, word: str) -> bool:
    """``token`` is ``word``, or a typo of it (for words long enough to tell)."""
    if token == word:
        return True
    return len(word) >= 5 and difflib.SequenceMatcher(None, token, word).ratio() >= 0.8


def _has(tokens: Sequence[str], *candidates: str) -> bool:
    return any(_like(t, w) for t in tokens for w in candidates)


def _followed_by(tokens: Sequence[str], first: str, second: str) -> bool:
    return any(_like(a, first) and _like(b, second) for a, b in itertools.pairwise(tokens))


def _mode(tokens: Sequence[str]) -> str | None:
    if _followed_by(tokens, "instance", "based") or _followed_by(tokens, "always", "allocated"):
        return "instance_based"
    if _followed_by(tokens, "request", "based") or _followed_by(tokens, "during", "request"):
        return "request_based"
    return None


def _field(tokens: Sequence[str]) -> str | None:
    # "CPU always allocated" / "CPU allocated during requests" name a billing mode, not a CPU price.
    tokens = [t for i, t in enumerate(tokens)
              if not (t == "cpu" and tuple(tokens[i + 1:i + 2]) in (("always",), ("only",), ("allocated",)))]
    idle = _has(tokens, "idle") or (_has(tokens, "min", "minimum") and _followed_by_any(tokens, "instance"))
    if _has(tokens, "cpu", "vcpu", "core"):
        return "idle_cpu_vcpu_second" if idle else "cpu_vcpu_second"
    if _has(tokens, "memory", "ram"):
        return "idle_memory_gib_second" if idle else "memory_gib_second"
    plain = [t for i, t in enumerate(tokens) if not (i + 1 < len(tokens) and _like(tokens[i + 1], "based"))]
    if _has(plain, "requests", "request", "invocations"):
        return "requests_per_million"
    return None


def _followed_by_any(tokens: Sequence[str], word: str) -> bool:
    return any(_like(t, word) or _like(t, word + "s") for t in tokens)


def _region(tokens: Sequence[str]) -> str:
    return next((t for t in tokens if _REGION.match(t)), "")


def _tier(tokens: Sequence[str], region: str, regions: Sequence[str],
          tier_of: Callable[[str], str]) -> str | None:
    """tier1/tier2 from the description ("Tier 2"), else its region, else the SKU's regions; None when
    they disagree. Google's base names (no tier, no region) are the Tier 1 prices."""
    for a, b in itertools.pairwise(tokens):
        if _like(a, "tier") and b in ("1", "2"):
            return f"tier{b}"
    if any(t in ("tier1", "tier2") for t in tokens):
        return next(t for t in tokens if t in ("tier1", "tier2"))
    if region:
        return tier_of(region)
    tiers = {tier_of(r) for r in regions if _REGION.match(r)}
    if len(tiers) > 1:
        return None
    return tiers.pop() if tiers else "tier1"


def classify(description: str, regions: Sequence[str],
             tier_of: Callable[[str], str]) -> tuple[str | None, str, str, str] | str:
    """(tier or None for both, mode, field, region) of a SKU description, or why it does not match."""
    tokens = words(description)
    for token in tokens:
        for word, reason in _EXCLUDED.items():
            if _like(token, word):
                return reason
    if _followed_by(tokens, "worker", "pools"):
        return _EXCLUDED["worker"]
    price_field = _field(tokens)
    if price_field is None:
        return "no CPU, memory or request price recognised in the description"
    mode = _mode(tokens)
    if mode is None:
        mode = "request_based"  # the historical names ("CPU Allocation Time") are request-based prices
    if mode == "instance_based" and price_field.startswith("idle_"):
        return "an idle price under instance-based billing (instance-based has none)"
    region = _region(tokens)
    if price_field == "requests_per_million":
        return None, mode, price_field, region  # the request fee is the same in both tiers
    tier = _tier(tokens, region, regions, tier_of)
    if tier is None:
        return "its regions span both tiers"
    return tier, mode, price_field, region


# --- units and rates ------------------------------------------------------------------------------------

def _unit_factor(usage_unit: str, price_field: str) -> float | None:
    """How many of the usage unit make one table unit (vCPU-second, GiB-second, million requests)."""
    unit = usage_unit.strip().lower().replace("{", "").replace("}", "")
    parts = [p for p in re.split(r"[.\s*/-]+", unit) if p]
    multiplier = 1.0
    if parts and re.fullmatch(r"\d+(\^\d+)?", parts[0]) and len(parts) > 1:
        base, _, power = parts.pop(0).partition("^")
        multiplier = float(base) ** (float(power) if power else 1.0)
    if price_field == "requests_per_million":
        if len(parts) != 1:
            return None
        word, scale = parts[0], 1.0
        if word not in _COUNT_UNITS and word[:1] in ("k", "m") and word[1:] in _COUNT_UNITS:
            word, scale = word[1:], (1e3 if word[0] == "k" else 1e6)
        return 1e6 / (multiplier * scale) if word in _COUNT_UNITS else None
    time = next((p for p in parts if p in _TIME_SECONDS), None)
    if time is None:
        return None
    size = [p for p in parts if p in _GIB_PER_UNIT]
    known = {*_TIME_SECONDS, *_GIB_PER_UNIT, "vcpu", "cpu"}
    others = [p for p in parts if p not in known]
    if others:
        return None
    per_gib = 1.0
    if price_field.endswith("memory_gib_second"):
        if len(size) != 1:
            return None
        per_gib = 1.0 / _GIB_PER_UNIT[size[0]]
    elif size:
        return None
    return per_gib / (_TIME_SECONDS[time] * multiplier)


def sku_rate(sku: CatalogSku, price_field: str) -> tuple[float, float] | str:
    """(price per table unit, free amount in table units) of a SKU, or why it cannot be read.

    The list price is the first non-zero tier; a zero-priced first tier is the monthly free tier.
    """
    factor = _unit_factor(sku.usage_unit, price_field)
    if factor is None:
        return f"unknown usage unit {sku.usage_unit!r}"
    rates = sorted(sku.tiered_rates)
    paid = [(start, price) for start, price in rates if price > 0]
    if not paid:
        return "no non-zero price"
    start, price = paid[0]
    # Free usage in table units: seconds and GiB-seconds, but single requests (not millions).
    per_unit = 1e6 if price_field == "requests_per_million" else 1.0
    free = start * per_unit / factor if rates[0][1] == 0 else 0.0
    return float(f"{price * factor:.10g}"), float(f"{free:.10g}")


# --- the table ------------------------------------------------------------------------------------------

def _choose(prices: list[float]) -> float:
    """The most common price (per-region SKUs of a tier usually agree); ties go to the lower."""
    counts = Counter(round(p, 12) for p in prices)
    best = max(counts.values())
    return min(p for p, n in counts.items() if n == best)


FREE_FIELDS = {"cpu_vcpu_second": "cpu_vcpu_seconds", "memory_gib_second": "memory_gib_seconds",
               "requests_per_million": "requests"}


def build_table(skus: Iterable[CatalogSku], *, base: PriceTable, as_of: str) -> CatalogRefresh:
    """A price table from catalog SKUs, falling back to ``base`` for every price no SKU gave."""
    seen = 0
    matched: list[SkuMatch] = []
    unmatched: list[Unmatched] = []
    for sku in skus:
        seen += 1
        what = classify(sku.description, sku.service_regions, base.tier_of)
        if isinstance(what, str):
            unmatched.append(Unmatched(sku.sku_id, sku.description, what))
            continue
        tier, mode, price_field, region = what
        if sku.currency.upper() != base.currency.upper():
            reason = f"priced in {sku.currency}, not {base.currency}"
            unmatched.append(Unmatched(sku.sku_id, sku.description, reason))
            continue
        rate = sku_rate(sku, price_field)
        if isinstance(rate, str):
            unmatched.append(Unmatched(sku.sku_id, sku.description, rate))
            continue
        price, free = rate
        for one_tier in (tier,) if tier else TIERS:
            matched.append(SkuMatch(sku.sku_id, sku.description, one_tier, mode, price_field, price, free,
                                    region))
    refresh = CatalogRefresh(base, seen, matched, unmatched)
    refresh.table = _table(refresh, base, as_of)
    return refresh


def _table(refresh: CatalogRefresh, base: PriceTable, as_of: str) -> PriceTable:
    rates = {key: dict(values) for key, values in base.rates.items()}
    found: dict[tuple[str, str, str], list[float]] = {}
    for m in refresh.matched:
        found.setdefault((m.tier, m.mode, m.field), []).append(m.price)
    for (tier, mode, price_field), prices in sorted(found.items()):
        chosen = _choose(prices)
        rates[(tier, mode)][price_field] = chosen
        if len({round(p, 12) for p in prices}) > 1:
            refresh.notes.append(f"{tier}.{mode}.{price_field}: SKUs disagree ({min(prices):g} to "
                                 f"{max(prices):g}); used the most common, {chosen:g}")
    derived: set[tuple[str, str, str]] = set()
    for tier in TIERS:  # instance-based billing has no idle discount and no request fee
        instance = rates[(tier, "instance_based")]
        instance["idle_cpu_vcpu_second"] = instance["cpu_vcpu_second"]
        instance["idle_memory_gib_second"] = instance["memory_gib_second"]
        derived |= {(tier, "instance_based", f) for f in ("idle_cpu_vcpu_second", "idle_memory_gib_second",
                                                         "requests_per_million")}
    refresh.not_refreshed = [f"{tier}.{mode}.{name}" for tier in TIERS for mode in MODES
                             for name in rates[(tier, mode)]
                             if (tier, mode, name) not in found and (tier, mode, name) not in derived]
    free = {mode: dict(values) for mode, values in base.free_tier.items()}
    for m in refresh.matched:
        if m.tier == "tier1" and m.free_amount > 0 and m.field in FREE_FIELDS:
            free.setdefault(m.mode, {})[FREE_FIELDS[m.field]] = m.free_amount
    return replace(
        base,
        as_of=as_of,
        source=f"Cloud Billing Catalog API, {CLOUD_RUN_SERVICE}: "
               f"{len({m.sku_id for m in refresh.matched})} of {refresh.skus_seen} SKUs matched",
        rates=rates,
        free_tier=free,
        matched_skus=tuple({"sku_id": m.sku_id, "description": m.description,
                            "used_for": f"{m.tier}.{m.mode}.{m.field}", "price": m.price}
                           for m in refresh.matched),
        unmatched_skus=tuple({"sku_id": u.sku_id, "description": u.description, "reason": u.reason}
                             for u in refresh.unmatched),
        not_refreshed=tuple(refresh.not_refreshed),
    )


# --- talking to the API --------------------------------------------------------------------------------

def _money(value: Any) -> float:
    return float(value.units) + float(value.nanos) / 1e9


def catalog_sku(sku: Any) -> CatalogSku:
    """A ``billing_v1.Sku`` as plain data (its first pricing info: the current price)."""
    rates: tuple[tuple[float, float], ...] = ()
    unit, currency = "", "USD"
    if sku.pricing_info:
        expression = sku.pricing_info[0].pricing_expression
        unit = expression.usage_unit
        rates = tuple((float(r.start_usage_amount), _money(r.unit_price)) for r in expression.tiered_rates)
        currency = next((r.unit_price.currency_code for r in expression.tiered_rates
                         if r.unit_price.currency_code), "USD")
    return CatalogSku(sku.sku_id, sku.description, tuple(sku.service_regions), unit, rates, currency)


def fetch_skus(client: Any, *, retry: Retry = RETRY, timeout: float = 60.0) -> list[CatalogSku]:
    """Every Cloud Run SKU, all pages (``client`` is a ``billing_v1.CloudCatalogClient``)."""
    try:
        pager = client.list_skus(parent=CLOUD_RUN_SERVICE, retry=retry, timeout=timeout)
        return [catalog_sku(s) for s in pager]
    except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError,
            auth_exceptions.GoogleAuthError) as exc:
        raise map_error(exc) from exc


def refresh_prices(client: Any, *, base: PriceTable, as_of: str) -> CatalogRefresh:
    """Fetch the Cloud Run SKUs and build a price table dated ``as_of`` from them."""
    return build_table(fetch_skus(client), base=base, as_of=as_of)


def map_error(exc: Exception) -> AnalyzerError:
    """A Catalog API failure as the analyzer's error, with what to do about it."""
    what = "Cloud Billing Catalog API: listing the Cloud Run SKUs"
    if isinstance(exc, api_exceptions.RetryError):
        cause = exc.cause
        return SourceError(f"{what} kept failing until the deadline: {cause or exc}",
                           hint="re-run later; the table in use (configs/prices.yaml) stays meanwhile")
    if isinstance(exc, auth_exceptions.GoogleAuthError | api_exceptions.Unauthenticated):
        return CredentialsError(f"{what}: the credentials were refused: {exc}", hint=LOGIN_HINT)
    if isinstance(exc, api_exceptions.PermissionDenied):
        if exc.reason == "SERVICE_DISABLED" or "disabled" in (exc.message or ""):
            return ApiDisabledError(f"{what}: the Cloud Billing API is not enabled on the quota project",
                                    hint=f"gcloud services enable {CATALOG_API} --project QUOTA_PROJECT")
        return PermissionDeniedError(f"{what}: permission denied: {exc.message}",
                                     hint="any authenticated account may list SKUs; check the quota project "
                                          "(gcloud auth application-default set-quota-project PROJECT)")
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return SourceError(f"{what} failed: {exc.message}", hint="re-run later, or keep the built-in table")
    return SourceError(f"{what} failed: {exc}")
