"""Live price refresh: Google's real CloudCatalogClient against a fake CloudCatalog gRPC server on
loopback, the loose SKU matching on the catalog's real (renamed, misspelt) descriptions, the errors,
and ``cloudrun-analyzer prices``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.rpc import error_details_pb2

from analyzer.cli import cli
from analyzer.errors import ApiDisabledError, ConfigError, PermissionDeniedError, SourceError
from analyzer.prices import load_table
from analyzer.sources.billing import (
    CatalogSku,
    build_table,
    classify,
    fetch_skus,
    refresh_prices,
    sku_rate,
    words,
)
from analyzer.sources.google_clients import build_catalog_client
from tests.fakes.billing import CLOUD_RUN_ID, FakeCloudCatalog, cloud_run_skus, sku
from tests.fakes.server import Fault, RunningServer, serving, unavailable

BASE = load_table("builtin")


@pytest.fixture
def catalog() -> Iterator[tuple[FakeCloudCatalog, RunningServer]]:
    fake = FakeCloudCatalog(default_page_size=7)
    fake.load_skus(CLOUD_RUN_ID, cloud_run_skus())
    with serving(fake) as server:
        yield fake, server


def client_for(server: RunningServer) -> Any:
    return build_catalog_client({"BILLING_EMULATOR_HOST": server.address})


def refresh(server: RunningServer, **kwargs: Any) -> Any:
    client = client_for(server)
    try:
        return refresh_prices(client, base=BASE, as_of="2026-11-27", **kwargs)
    finally:
        client.transport.close()


# --- matching -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("description", "expected"), [
    ("Services CPU (Request-based billing)", ("tier1", "request_based", "cpu_vcpu_second", "")),
    ("Services CPU Tier 2  (Request-based billing)", ("tier2", "request_based", "cpu_vcpu_second", "")),
    ("Services Memory Tier 2 (Request-based billing)", ("tier2", "request_based", "memory_gib_second", "")),
    ("Services Min Instance CPU (Request-based billing)",
     ("tier1", "request_based", "idle_cpu_vcpu_second", "")),
    ("Services Min Instance Memory Tier 2 (Request-based billing)",
     ("tier2", "request_based", "idle_memory_gib_second", "")),
    ("Services CPU (Instance-based billing) in in asia-northeast1",
     ("tier1", "instance_based", "cpu_vcpu_second", "asia-northeast1")),
    ("Services Memory (Instance-based billing) in europe-west2",
     ("tier2", "instance_based", "memory_gib_second", "europe-west2")),
    ("Services Requests (Request-based billing)", (None, "request_based", "requests_per_million", "")),
    # older names, and typos
    ("CPU Allocation Time", ("tier1", "request_based", "cpu_vcpu_second", "")),
    ("Memory Allocation Time (tier 2)", ("tier2", "request_based", "memory_gib_second", "")),
    ("Idle Min-Instance CPU Allocation Time", ("tier1", "request_based", "idle_cpu_vcpu_second", "")),
    ("Memory Allocation Time (CPU always allocated)", ("tier1", "instance_based", "memory_gib_second", "")),
    ("Services Memmory (Requst-based billing)", ("tier1", "request_based", "memory_gib_second", "")),
    ("Services  CPU (Instance based  billing) in us-central1",
     ("tier1", "instance_based", "cpu_vcpu_second", "us-central1")),
])
def test_descriptions_match_loosely(description: str, expected: tuple[str | None, str, str, str]) -> None:
    assert classify(description, [], BASE.tier_of) == expected


@pytest.mark.parametrize(("description", "reason"), [
    ("Jobs CPU in us-central1", "jobs"),
    ("Worker Pools Memory in us-west8", "worker pools"),
    ("Services NVIDIA L4 GPU in us-central1", "GPU"),
    ("Network Internet Egress from Americas to Americas", "networking"),
    ("Cloud Run functions CPU (Request-based billing) in us-east1", "functions"),
    ("Services Build Minutes", "no CPU, memory or request price"),
])
def test_other_skus_are_left_unmatched_with_a_reason(description: str, reason: str) -> None:
    result = classify(description, [], BASE.tier_of)
    assert isinstance(result, str)
    assert reason in result


def test_words_merge_repeats_and_keep_region_names() -> None:
    assert words("Services CPU (Instance-based billing) in in asia-northeast1") == [
        "services", "cpu", "instance", "based", "billing", "in", "asia-northeast1"]


def test_a_skus_regions_decide_its_tier_when_the_description_does_not() -> None:
    assert classify("CPU Allocation Time", ["europe-west2", "asia-southeast1"], BASE.tier_of) == (
        "tier2", "request_based", "cpu_vcpu_second", "")
    assert "both tiers" in str(classify("CPU Allocation Time", ["europe-west2", "us-central1"], BASE.tier_of))


@pytest.mark.parametrize(("unit", "field", "rates", "expected"), [
    ("s", "cpu_vcpu_second", ((0, 0.0), (180000, 0.000024)), (0.000024, 180000)),
    ("h", "cpu_vcpu_second", ((0, 0.0648),), (0.000018, 0)),
    ("GiBy.s", "memory_gib_second", ((0, 0.0000025),), (0.0000025, 0)),
    ("GBy.h", "memory_gib_second", ((0, 0.009),), (0.009 / 3600 * 2**30 / 1e9, 0)),
    ("count", "requests_per_million", ((0, 0.0), (2_000_000, 0.0000004)), (0.40, 2_000_000)),
    ("1000000 count", "requests_per_million", ((0, 0.40),), (0.40, 0)),
])
def test_prices_convert_to_the_tables_units(unit: str, field: str, rates: tuple[tuple[float, float], ...],
                                            expected: tuple[float, float]) -> None:
    rate = sku_rate(CatalogSku("X", "x", (), unit, rates), field)
    assert not isinstance(rate, str), rate
    price, free = rate
    assert price == pytest.approx(expected[0])
    assert free == pytest.approx(expected[1])


def test_unknown_units_and_free_only_skus_are_reported() -> None:
    assert "usage unit" in str(sku_rate(CatalogSku("X", "x", (), "By", ((0, 1.0),)), "cpu_vcpu_second"))
    assert "no non-zero price" in str(sku_rate(CatalogSku("X", "x", (), "s", ((0, 0.0),)), "cpu_vcpu_second"))


def test_disagreeing_regional_prices_take_the_most_common_and_say_so() -> None:
    skus = [CatalogSku(f"S{i}", f"Services CPU (Instance-based billing) in {region}", (region,), "s",
                       ((0, price),))
            for i, (region, price) in enumerate([("europe-west2", 0.0000216), ("asia-southeast1", 0.0000216),
                                                 ("southamerica-east1", 0.0000250)])]
    refreshed = build_table(skus, base=BASE, as_of="2026-11-27")
    assert refreshed.table.rates[("tier2", "instance_based")]["cpu_vcpu_second"] == 0.0000216
    assert any("disagree" in note for note in refreshed.notes)
    assert "tier1.request_based.cpu_vcpu_second" in refreshed.not_refreshed
    assert refreshed.table.rates[("tier1", "request_based")] == BASE.rates[("tier1", "request_based")]


# --- the real client against the fake server ----------------------------------------------------------

def test_refresh_reads_every_page_and_rebuilds_the_list_prices(catalog: tuple[FakeCloudCatalog, RunningServer]
                                                               ) -> None:
    fake, server = catalog
    refreshed = refresh(server)
    assert fake.behaviour.count("ListSkus") == 5  # 34 SKUs, 7 per page
    assert refreshed.skus_seen == 34
    table = refreshed.table
    assert table.as_of == "2026-11-27"
    assert "152E-C115-5142" in table.source
    for key, rates in BASE.rates.items():
        assert table.rates[key] == pytest.approx(rates), key
    assert table.free_tier["request_based"] == {"cpu_vcpu_seconds": 180000, "memory_gib_seconds": 360000,
                                                "requests": 2000000}
    assert table.free_tier["instance_based"]["cpu_vcpu_seconds"] == pytest.approx(240000)
    assert refreshed.not_refreshed == []
    unmatched = {u["description"]: u["reason"] for u in table.unmatched_skus}
    assert len(unmatched) == 13
    assert "jobs" in unmatched["Jobs CPU in us-central1"]
    assert "GPU" in unmatched["Services NVIDIA L4 GPU in us-central1"]
    typo = next(m for m in table.matched_skus if "in in" in m["description"])
    assert typo["used_for"] == "tier1.instance_based.cpu_vcpu_second"


def test_prices_in_hours_are_converted(catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake = FakeCloudCatalog()
    fake.load_skus(CLOUD_RUN_ID, cloud_run_skus(instance_cpu_unit="h"))
    with serving(fake) as server:
        table = refresh(server).table
    assert table.rates[("tier1", "instance_based")]["cpu_vcpu_second"] == pytest.approx(0.000018)
    assert table.free_tier["instance_based"]["cpu_vcpu_seconds"] == pytest.approx(240000)


def test_a_refreshed_table_is_a_table_the_analyzer_reads(catalog: tuple[FakeCloudCatalog, RunningServer],
                                                         tmp_path: Path) -> None:
    _, server = catalog
    out = tmp_path / "prices.yaml"
    result = CliRunner().invoke(cli, ["prices", "--refresh", "--out", str(out)],
                                env={"BILLING_EMULATOR_HOST": server.address})
    assert result.exit_code == 0, result.output
    assert "21 of 34 Cloud Run SKUs matched; 13 not matched" in result.output
    table = load_table(str(out))
    for key, rates in BASE.rates.items():
        assert table.rates[key] == pytest.approx(rates), key
    assert len(table.unmatched_skus) == 13
    assert table.as_of != BASE.as_of
    config = tmp_path / "config.yaml"
    config.write_text(f"analysis:\n  pricing:\n    table: {out}\n", encoding="utf-8")
    shown = CliRunner().invoke(cli, ["prices", "--config", str(config)])
    assert shown.exit_code == 0
    assert f"# table: {out}" in shown.output
    assert "unmatched_skus:" in shown.output


def test_prices_without_refresh_prints_the_builtin_table() -> None:
    result = CliRunner().invoke(cli, ["prices"])
    assert result.exit_code == 0
    assert "as_of: '2026-11-01'" in result.output
    assert "# committed-use discount: 0%" in result.output


def test_a_transient_failure_is_retried(catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake, server = catalog
    fake.behaviour.inject(unavailable(times=1, method="ListSkus"))
    assert refresh(server).skus_seen == 34
    assert fake.behaviour.count("ListSkus", status="UNAVAILABLE") == 1


def test_unavailable_past_the_deadline_is_a_source_error(
        catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake, server = catalog
    fake.behaviour.inject(unavailable(times=None, method="ListSkus"))
    client = client_for(server)
    quick = Retry(predicate=if_exception_type(api_exceptions.ServiceUnavailable), initial=0.01, maximum=0.02,
                  timeout=0.2)
    try:
        with pytest.raises(SourceError, match="until the deadline"):
            fetch_skus(client, retry=quick)
    finally:
        client.transport.close()


def _denied(reason: str, message: str) -> Fault:
    info = error_details_pb2.ErrorInfo(reason=reason, domain="googleapis.com",
                                       metadata={"service": "cloudbilling.googleapis.com"})
    return Fault(grpc.StatusCode.PERMISSION_DENIED, message, ("ListSkus",), None, None, (info,))


def test_a_disabled_billing_api_says_how_to_enable_it(
        catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake, server = catalog
    message = "Cloud Billing API has not been used in project 123 before or it is disabled."
    fake.behaviour.inject(_denied("SERVICE_DISABLED", message))
    with pytest.raises(ApiDisabledError) as error:
        refresh(server)
    assert "gcloud services enable cloudbilling.googleapis.com" in error.value.hint


def test_permission_denied_names_the_quota_project(catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake, server = catalog
    fake.behaviour.inject(_denied("IAM_PERMISSION_DENIED", "The caller does not have permission"))
    with pytest.raises(PermissionDeniedError) as error:
        refresh(server)
    assert "quota project" in error.value.hint


def test_cli_errors_go_through_the_edge(catalog: tuple[FakeCloudCatalog, RunningServer]) -> None:
    fake, server = catalog
    fake.behaviour.inject(_denied("SERVICE_DISABLED", "it is disabled"))
    result = CliRunner().invoke(cli, ["prices", "--refresh"], env={"BILLING_EMULATOR_HOST": server.address})
    assert result.exit_code == 4
    assert "fix: gcloud services enable" in result.output
    bad = CliRunner().invoke(cli, ["prices", "--refresh"], env={"BILLING_EMULATOR_HOST": "no-port"})
    assert bad.exit_code == ConfigError.exit_code
    assert "BILLING_EMULATOR_HOST" in bad.output


def test_the_fake_refuses_an_unknown_service_like_the_api() -> None:
    fake = FakeCloudCatalog()
    fake.load_skus("OTHER-ID", [sku("X", "Services CPU (Request-based billing)", price=0.000024)])
    with serving(fake) as server, pytest.raises(SourceError, match="not found"):
        refresh(server)
