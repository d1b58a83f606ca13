"""The price table and unit prices: the dated built-in table, validation of tables and overrides,
tiers, billing modes, committed-use discounts and the free tier allowance."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from analyzer.analysis.pricing import free_allowance, prices_for, settings_summary, unit_prices
from analyzer.config import PricingConfig, parse_config
from analyzer.errors import ConfigError
from analyzer.model import RevisionInfo
from analyzer.prices import MODES, SECONDS_PER_MONTH, TIERS, dump_table, load_table, parse_table

TABLE = load_table("builtin")


def pricing(**values: Any) -> PricingConfig:
    return parse_config(PricingConfig, values, source="test")


def test_the_builtin_table_is_dated_and_holds_the_published_list_prices() -> None:
    assert TABLE.as_of == "2026-11-01"
    assert TABLE.currency == "USD"
    assert TABLE.rates[("tier1", "request_based")] == {
        "cpu_vcpu_second": 0.000024, "memory_gib_second": 0.0000025, "requests_per_million": 0.40,
        "idle_cpu_vcpu_second": 0.0000025, "idle_memory_gib_second": 0.0000025}
    assert TABLE.rates[("tier2", "request_based")]["cpu_vcpu_second"] == 0.0000336
    assert TABLE.rates[("tier2", "instance_based")]["cpu_vcpu_second"] == 0.0000216
    for tier in TIERS:
        instance = TABLE.rates[(tier, "instance_based")]
        assert instance["requests_per_million"] == 0.0
        assert instance["idle_cpu_vcpu_second"] == instance["cpu_vcpu_second"]
    assert TABLE.free_tier["request_based"] == {"cpu_vcpu_seconds": 180000, "memory_gib_seconds": 360000,
                                                "requests": 2000000}


@pytest.mark.parametrize(("region", "tier"), [
    ("us-central1", "tier1"), ("europe-west1", "tier1"), ("asia-northeast1", "tier1"), ("me-west1", "tier1"),
    ("europe-west2", "tier2"), ("asia-southeast1", "tier2"), ("southamerica-east1", "tier2"),
    ("us-west2", "tier2"),
])
def test_regions_fall_in_their_tier(region: str, tier: str) -> None:
    assert TABLE.tier_of(region) == tier


def test_a_table_survives_a_round_trip_through_its_yaml(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(dump_table(TABLE), encoding="utf-8")
    assert load_table(str(path)) == TABLE


def test_a_table_is_read_once_while_its_file_is_unchanged_and_again_once_edited(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text(dump_table(TABLE), encoding="utf-8")
    first = load_table(str(path))
    assert load_table(str(path)) is first  # a worker's later batches reuse the parsed table
    edited = dump_table(TABLE).replace(f"as_of: '{TABLE.as_of}'", "as_of: '2031-01-01'")
    assert edited != dump_table(TABLE)
    path.write_text(edited, encoding="utf-8")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000_000))
    assert load_table(str(path)).as_of == "2031-01-01"


def _document(**changes: Any) -> dict[str, Any]:
    doc = TABLE.document()
    doc.update(changes)
    return doc


def test_a_table_missing_a_tier_names_it() -> None:
    doc = _document(tiers={"tier1": TABLE.document()["tiers"]["tier1"]})
    with pytest.raises(ConfigError, match=r"tiers\.tier2 is missing"):
        parse_table(doc, origin="x.yaml")


@pytest.mark.parametrize(("change", "named"), [
    ({"cpu_vcpu_second": -1.0}, "tiers.tier1.request_based.cpu_vcpu_second"),
    ({"cpu_vcpu_secnd": 1e-5}, "tiers.tier1.request_based.cpu_vcpu_secnd"),
])
def test_a_bad_price_is_named_with_its_key(change: dict[str, float], named: str) -> None:
    doc = _document()
    doc["tiers"]["tier1"]["request_based"].update(change)
    with pytest.raises(ConfigError) as error:
        parse_table(doc, origin="x.yaml")
    assert named in error.value.message
    assert "x.yaml" in error.value.message


def test_an_unreadable_table_path_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_table(str(tmp_path / "missing.yaml"))


def test_an_unquoted_date_is_read_as_the_as_of_text() -> None:
    doc = yaml.safe_load(dump_table(TABLE).replace("as_of: '2026-11-01'", "as_of: 2026-11-01"))
    assert parse_table(doc, origin="x").as_of == "2026-11-01"


def test_billing_mode_comes_from_cpu_idle_else_the_configured_default() -> None:
    known = RevisionInfo("p", "us-central1", "s", "r", request_based_billing=False)
    unknown = RevisionInfo("p", "europe-west2", "s", "r")
    assert not unit_prices(TABLE, known, pricing()).request_based
    assert unit_prices(TABLE, unknown, pricing()).request_based
    assumed = unit_prices(TABLE, unknown, pricing(default_request_based=False))
    assert not assumed.request_based
    assert assumed.tier == "tier2"
    assert assumed.cpu_vcpu_second == 0.0000216


def test_discounts_apply_to_compute_and_idle_rates_never_the_request_fee() -> None:
    config = pricing(committed_use_discount=0.1, committed_use_discount_request_based=0.17)
    request = prices_for(TABLE, config, project="p", region="us-central1", request_based=True)
    instance = prices_for(TABLE, config, project="p", region="us-central1", request_based=False)
    assert request.discount == 0.17
    assert instance.discount == 0.1
    assert request.cpu_vcpu_second == pytest.approx(0.000024 * 0.83)
    assert request.idle_memory_gib_second == pytest.approx(0.0000025 * 0.83)
    assert request.requests_per_million == 0.40
    assert instance.memory_gib_second == pytest.approx(0.000002 * 0.9)


def test_overrides_are_validated_when_the_config_is_read() -> None:
    with pytest.raises(ConfigError, match=r"overrides\.p\.cpu_vcpu_secnd"):
        pricing(overrides={"p": {"cpu_vcpu_secnd": 0.00002}})
    with pytest.raises(ConfigError, match=r"overrides\.p\.instance_based\.memory_gib_second"):
        pricing(overrides={"p": {"instance_based": {"memory_gib_second": -1}}})


def test_per_mode_overrides_win_over_flat_ones_for_their_project_only() -> None:
    config = pricing(overrides={"p": {"requests_per_million": 0.3,
                                      "request_based": {"requests_per_million": 0.2}}})

    def fee(project: str, request_based: bool) -> float:
        return prices_for(TABLE, config, project=project, region="us-central1",
                          request_based=request_based).requests_per_million

    assert fee("p", True) == 0.2
    assert fee("p", False) == 0.3
    assert fee("q", True) == 0.4


@pytest.mark.parametrize("mode", MODES)
def test_the_free_allowance_is_the_monthly_one_pro_rata(mode: str) -> None:
    request_based = mode == "request_based"
    month = free_allowance(TABLE, request_based=request_based, seconds=SECONDS_PER_MONTH)
    assert month["cpu_vcpu_seconds"] == (180000 if request_based else 240000)
    week = free_allowance(TABLE, request_based=request_based, seconds=7 * 86400)
    share = 7 * 86400 / SECONDS_PER_MONTH
    assert week["memory_gib_seconds"] == pytest.approx(month["memory_gib_seconds"] * share)


def test_the_settings_summary_says_how_the_table_is_applied() -> None:
    lines = settings_summary(pricing(committed_use_discount_instance_based=0.28, apply_free_tier=True,
                                     overrides={"p": {"cpu_vcpu_second": 0.00002}}))
    text = "\n".join(lines)
    assert "instance-based 28%" in text
    assert "pro rata" in text
    assert "project p" in text
