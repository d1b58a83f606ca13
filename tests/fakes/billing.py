"""A fake Cloud Billing Catalog API: ``google.cloud.billing.v1.CloudCatalog`` ListServices and ListSkus.

SKUs are stored as REST JSON (what ``GET https://cloudbilling.googleapis.com/v1/services/S/skus``
returns) and served as protos to Google's real ``CloudCatalogClient`` over loopback gRPC. Paging uses
``page_size`` (default ``default_page_size``) and an opaque offset token; an unknown service answers
NOT_FOUND; a ``currency_code`` other than USD is converted with ``rates_per_usd`` or refused.

``cloud_run_skus()`` builds a catalog shaped like the real Cloud Run one (late 2026): request-based
SKUs per tier ("Services CPU Tier 2  (Request-based billing)", with its double space), instance-based
SKUs per region (one "in in asia-northeast1"), min-instance SKUs, the request fee, and the Jobs,
Worker Pools and GPU SKUs the analyzer must leave unmatched; first tiers at 0 are the free tier.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
from google.cloud import billing_v1
from google.protobuf import json_format

from tests.fakes.server import Behaviour, abort, list_page, unary

SkuPb: Any = billing_v1.Sku.pb()
ServicePb: Any = billing_v1.Service.pb()
CLOUD_RUN_ID = "152E-C115-5142"

TIER1 = ("asia-northeast1", "europe-west1", "us-central1")
TIER2 = ("europe-west2", "asia-southeast1", "southamerica-east1")


def money(usd: float) -> dict[str, Any]:
    units = int(usd)
    return {"currencyCode": "USD", "units": str(units), "nanos": round((usd - units) * 1e9)}


def sku(sku_id: str, description: str, *, price: float, unit: str = "s", free: float = 0.0,
        regions: Iterable[str] = ("global",), family: str = "ApplicationServices") -> dict[str, Any]:
    """One SKU body: a zero-priced first tier up to ``free`` usage units when given, then ``price``."""
    rates = [{"startUsageAmount": 0, "unitPrice": money(0.0)}] if free else []
    rates.append({"startUsageAmount": free, "unitPrice": money(price)})
    return {
        "name": f"services/{CLOUD_RUN_ID}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {"serviceDisplayName": "Cloud Run", "resourceFamily": family, "resourceGroup": "Compute",
                     "usageType": "OnDemand"},
        "serviceRegions": list(regions),
        "pricingInfo": [{
            "effectiveTime": "2026-11-01T00:00:00Z",
            "pricingExpression": {"usageUnit": unit, "displayQuantity": 1, "tieredRates": rates,
                                  "baseUnit": unit, "baseUnitConversionFactor": 1},
            "currencyConversionRate": 1,
        }],
        "serviceProviderName": "Google",
    }


def cloud_run_skus(*, instance_cpu_unit: str = "s") -> list[dict[str, Any]]:
    """A small Cloud Run catalog with the real catalog's names, typos and list prices."""
    hours = instance_cpu_unit == "h"
    skus = [
        sku("C001-0001-0001", "Services CPU (Request-based billing)", price=0.000024, free=180000,
            regions=TIER1),
        sku("C001-0001-0002", "Services CPU Tier 2  (Request-based billing)", price=0.0000336, regions=TIER2),
        sku("C001-0002-0001", "Services Memory (Request-based billing)", price=0.0000025, unit="GiBy.s",
            free=360000, regions=TIER1),
        sku("C001-0002-0002", "Services Memory Tier 2 (Request-based billing)", price=0.0000035,
            unit="GiBy.s", regions=TIER2),
        sku("C001-0003-0001", "Services Min Instance CPU (Request-based billing)", price=0.0000025,
            regions=TIER1),
        sku("C001-0003-0002", "Services Min Instance CPU Tier 2 (Request-based billing)", price=0.0000035,
            regions=TIER2),
        sku("C001-0004-0001", "Services Min Instance Memory (Request-based billing)", price=0.0000025,
            unit="GiBy.s", regions=TIER1),
        sku("C001-0004-0002", "Services Min Instance Memory Tier 2 (Request-based billing)", price=0.0000035,
            unit="GiBy.s", regions=TIER2),
        sku("C001-0005-0001", "Services Requests (Request-based billing)", price=0.0000004, unit="count",
            free=2_000_000),
    ]
    for index, region in enumerate((*TIER1, *TIER2)):
        tier1 = region in TIER1
        cpu = 0.000018 if tier1 else 0.0000216
        memory = 0.000002 if tier1 else 0.0000024
        where = "in in" if region == "asia-northeast1" else "in"  # the catalog's own typo
        skus.append(sku(f"C002-{index:04d}-0001", f"Services CPU (Instance-based billing) {where} {region}",
                        price=cpu * 3600 if hours else cpu, unit=instance_cpu_unit,
                        free=(240000 / 3600 if hours else 240000) if region == "us-central1" else 0.0,
                        regions=(region,)))
        skus.append(sku(f"C002-{index:04d}-0002", f"Services Memory (Instance-based billing) in {region}",
                        price=memory, unit="GiBy.s", free=450000 if region == "us-central1" else 0.0,
                        regions=(region,)))
        skus.append(sku(f"C003-{index:04d}-0001", f"Jobs CPU in {region}", price=cpu, regions=(region,)))
        skus.append(sku(f"C003-{index:04d}-0002", f"Worker Pools Memory in {region}", price=memory,
                        unit="GiBy.s", regions=(region,)))
    skus.append(sku("C004-0000-0001", "Services NVIDIA L4 GPU in us-central1", price=0.0001867,
                    regions=("us-central1",)))
    return skus


class FakeCloudCatalog:
    """Holds services and SKUs; serves google.cloud.billing.v1.CloudCatalog."""

    def __init__(self, behaviour: Behaviour | None = None, *, default_page_size: int = 50,
                 rates_per_usd: Mapping[str, float] | None = None) -> None:
        self.behaviour = behaviour or Behaviour()
        self.default_page_size = default_page_size
        self.rates_per_usd = {"USD": 1.0, **(rates_per_usd or {})}
        self._skus: dict[str, list[Any]] = {}
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()

    def add_service(self, service_id: str, display_name: str) -> None:
        message = json_format.ParseDict({"name": f"services/{service_id}", "serviceId": service_id,
                                         "displayName": display_name,
                                         "businessEntityName": "businessEntities/GCP"}, ServicePb())
        with self._lock:
            self._services[service_id] = message
            self._skus.setdefault(service_id, [])

    def load_skus(self, service_id: str, bodies: Iterable[Mapping[str, Any]]) -> None:
        messages = [json_format.ParseDict(dict(body), SkuPb(), ignore_unknown_fields=True) for body in bodies]
        with self._lock:
            if service_id not in self._services:
                self._services[service_id] = json_format.ParseDict(
                    {"name": f"services/{service_id}", "serviceId": service_id}, ServicePb())
            self._skus.setdefault(service_id, []).extend(messages)

    # answering ---------------------------------------------------------------------------

    def _list_services(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.behaviour.enter("ListServices", "", "services", context)
        with self._lock:
            found = sorted(self._services.values(), key=lambda s: s.name)
        return list_page(found, request, billing_v1.ListServicesResponse.pb()(), "services", context,
                    default_size=self.default_page_size)

    def _converted(self, message: Any, rate: float, currency: str) -> Any:
        if rate == 1.0 and currency == "USD":
            return message
        converted = copy.deepcopy(message)
        for info in converted.pricing_info:
            info.currency_conversion_rate = rate
            for tier in info.pricing_expression.tiered_rates:
                value = (tier.unit_price.units + tier.unit_price.nanos / 1e9) * rate
                tier.unit_price.units = int(value)
                tier.unit_price.nanos = round((value - int(value)) * 1e9)
                tier.unit_price.currency_code = currency
        return converted

    def _list_skus(self, request: Any, context: grpc.ServicerContext) -> Any:
        parent = request.parent
        self.behaviour.enter("ListSkus", "", parent, context)
        service_id = parent.removeprefix("services/")
        if not parent.startswith("services/") or "/" in service_id:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"parent {parent!r} is not services/SERVICE_ID")
        currency = request.currency_code or "USD"
        if currency not in self.rates_per_usd:
            abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Currency code {currency} is not supported.")
        with self._lock:
            if service_id not in self._services:
                abort(context, grpc.StatusCode.NOT_FOUND, f"Service {service_id} not found.")
            rate = self.rates_per_usd[currency]
            found = [self._converted(m, rate, currency) for m in self._skus[service_id]]
        return list_page(found, request, billing_v1.ListSkusResponse.pb()(), "skus", context,
                    default_size=self.default_page_size)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                "google.cloud.billing.v1.CloudCatalog",
                {
                    "ListServices": unary(self._list_services, billing_v1.ListServicesRequest.pb()),
                    "ListSkus": unary(self._list_skus, billing_v1.ListSkusRequest.pb()),
                },
            ),
        ]
