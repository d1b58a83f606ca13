"""Urgency first: what hurts users now leads the report, the digests, the terminal, the JSON and the
exit code. The severity rule and the urgency order are unit-tested on plain values; the whole path on
a simulated fleet where a cheap leak already OOM-kills instances while an expensive latency
regression costs far more (tests/urgent_fleet.py). The browser half is in test_report_browser.py."""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from analyzer import simulate as sim
from analyzer.analysis import Analysis
from analyzer.analysis.impact import measure, oom_kill_episodes, severity, urgency_key
from analyzer.analysis.timeline import RevisionSpan, ServiceView
from analyzer.cli import cli
from analyzer.config import DigestConfig
from analyzer.model import Finding, FindingKind, Impact, RevisionInfo, ServiceKey, Severity
from analyzer.render.fleet import merge_reports, render_fleet
from analyzer.render.fleet_digest import fleet_digest
from analyzer.render.html import HeadlineItem, harm, headline_of, per_month, render_report
from analyzer.render.json_report import impact_from_json, impact_json, report_json
from analyzer.render.parts import render_part, report_context
from analyzer.render.text import summary_text
from analyzer.sources.snapshot import write_snapshot
from tests.digests import digest_of
from tests.urgent_fleet import LEAK_REVISION, SLOW_REVISION, analyze_services

NOW = datetime(2026, 3, 8, 6, 0, tzinfo=UTC)

# ---------------------------------------------------------------------------------------------
# The rules, on plain values


@pytest.mark.parametrize(
    ("ongoing", "impact", "expected"),
    [
        (True, Impact(oom_kills=2, harming=True), Severity.CRITICAL),  # OOM kills now
        (True, Impact(errors_rising=True, harming=True), Severity.CRITICAL),  # 5xx above the old rate
        (True, Impact(hours_to_limit=20.0), Severity.CRITICAL),  # users hurt within 24 h
        (True, Impact(hours_to_limit=30.0), Severity.WARNING),
        (True, Impact(latency_added_ms_p95=500.0, baseline_latency_ms_p95=1000.0), Severity.WARNING),
        (False, Impact(oom_kills=2, harming=True, hours_to_limit=1.0), Severity.WARNING),  # fixed: not now
    ],
)
def test_severity_is_critical_only_when_users_are_hurt_now_or_within_a_day(
        ongoing: bool, impact: Impact, expected: Severity) -> None:
    assert severity(ongoing=ongoing, impact=impact) is expected


def test_the_urgency_order_is_ongoing_then_harm_now_then_harm_soon_then_dollars() -> None:
    items = {
        "resolved, harming, costly": urgency_key(ongoing=False, harming=True, hours_to_limit=None, per_month_usd=900),
        "dollars only": urgency_key(ongoing=True, harming=False, hours_to_limit=None, per_month_usd=500),
        "limit in 3 days": urgency_key(ongoing=True, harming=False, hours_to_limit=72, per_month_usd=1),
        "limit in 10 h": urgency_key(ongoing=True, harming=False, hours_to_limit=10, per_month_usd=0),
        "OOM kills, free": urgency_key(ongoing=True, harming=True, hours_to_limit=None, per_month_usd=0),
        "limit in a year": urgency_key(ongoing=True, harming=False, hours_to_limit=9000, per_month_usd=2),
    }
    assert sorted(items, key=items.__getitem__) == [
        "OOM kills, free", "limit in 10 h", "limit in 3 days", "dollars only", "limit in a year",
        "resolved, harming, costly",
    ]


def _worst(values: list[float], step_seconds: int = 300) -> pd.Series:
    index = pd.date_range("2026-03-02", periods=len(values), freq=f"{step_seconds}s", tz="UTC")
    return pd.Series(values, index=index)


def test_an_oom_kill_is_a_reset_from_the_limit_not_a_gc_peak_touching_it() -> None:
    sawtooth = [0.83, 0.87, 0.91, 0.95, 1.0] * 12  # the top bucket reached, then straight back
    assert oom_kill_episodes(_worst(sawtooth), 300) == 0
    climb = list(np.linspace(0.6, 1.0, 30))
    reset = [*climb, 0.55, 0.57, 0.6, 0.58, 0.61, 0.6, 0.62, 0.6, 0.63, 0.6, 0.64, 0.62, 0.63]
    assert oom_kill_episodes(_worst(reset + reset), 300) == 2
    assert oom_kill_episodes(_worst(climb), 300) == 0  # at the limit at the end: no reset seen (yet)


def _view(error_share_after: float) -> ServiceView:
    """Two revisions, 100 five-minute steps each at 1,000 requests a step; 0.1 % of the old one's
    requests ended in 5xx."""
    key = ServiceKey("p", "r", "s")
    start = pd.Timestamp("2026-03-02", tz="UTC")
    frames, spans = [], []
    for index, (name, share) in enumerate((("s-1", 0.001), ("s-2", error_share_after))):
        ts = pd.date_range(start + pd.Timedelta(hours=10 * index), periods=100, freq="300s")
        frames.append(pd.DataFrame({"ts": ts, "revision": name, "mem_max": 0.4, "requests": 1000.0,
                                    "err_rate": 1000.0 * share / 300, "lat_p95": 200.0 + 50 * index}))
        spans.append(RevisionSpan(RevisionInfo("p", "r", "s", name), ts[0], ts[0], ts[-1], True))
    return ServiceView(key, pd.concat(frames, ignore_index=True), pd.DataFrame(), spans, 300)


def test_more_5xx_than_the_previous_revision_counts_only_beyond_chance() -> None:
    same = measure(_view(0.001), "s-2", [])
    assert same.error_rate == pytest.approx(0.001) and same.baseline_error_rate == pytest.approx(0.001)
    assert not same.errors_rising and not same.harming
    assert same.latency_added_ms_p95 == pytest.approx(50.0)
    slightly = measure(_view(0.0012), "s-2", [])  # 20 more of 100,000: within chance and the ratio
    assert not slightly.errors_rising
    rising = measure(_view(0.005), "s-2", [])
    assert rising.errors_rising and rising.harming
    assert rising.excess_errors == pytest.approx(400)  # 0.4 % of 100,000 requests
    assert severity(ongoing=True, impact=rising) is Severity.CRITICAL
    assert "400 more requests failed (5xx)" in harm(rising)


def test_a_finding_that_costs_nothing_says_so_and_shows_its_harm_never_a_bare_zero() -> None:
    assert per_month(0.0) == "no added cost yet"
    assert per_month(0.004) == "no added cost yet"
    assert per_month(12.5) == "≈$13/month"  # a model estimate (issue 16): ≈ and two significant figures
    assert harm(Impact()) == "no harm to users measured"
    impact = Impact(oom_kills=3, hours_to_limit=5.0, harming=True, worst_memory_end=0.99)
    assert harm(impact) == "instances OOM-killed 3 times"
    assert impact_from_json(json.loads(json.dumps(impact_json(impact)))) == impact


def test_the_headline_names_the_most_urgent_revision_with_its_harm_before_its_dollars() -> None:
    items = [
        HeadlineItem("slow", "slow-2", ("latency_regression",), True, 150.0,
                     impact=Impact(latency_added_ms_p95=300.0, baseline_latency_ms_p95=1000.0)),
        HeadlineItem("leaky", "leaky-2", ("memory_baseline_rise",), True, 0.0,
                     impact=Impact(oom_kills=3, harming=True)),
        HeadlineItem("old", "old-2", ("memory_baseline_rise",), False, 900.0, impact=Impact(oom_kills=9, harming=True)),
    ]
    assert headline_of(items, at_risk=150.0) == (
        "leaky: memory leak (rising baseline) since leaky-2, instances OOM-killed 3 times, no added cost yet "
        "(+1 more revision, $150.00/month at risk in all)")


# ---------------------------------------------------------------------------------------------
# The whole path on the simulated fleet


def _finding(analysis: Analysis, revision: str, kind: FindingKind) -> Finding:
    return next(f for f in analysis.findings if f.revision == revision and f.kind is kind)


def test_the_cheap_leak_oom_kills_and_the_costly_regression_does_not(
        urgent_analysis: Analysis, urgent_services: list[sim.SimulatedService]) -> None:
    leak = _finding(urgent_analysis, LEAK_REVISION, FindingKind.MEMORY_BASELINE_RISE)
    slow = _finding(urgent_analysis, SLOW_REVISION, FindingKind.LATENCY_REGRESSION)
    truth = urgent_services[0].revisions[LEAK_REVISION].oom_kills
    assert truth >= 1
    assert leak.impact.oom_kills == truth  # inferred from the worst instance's resets alone
    assert leak.ongoing and slow.ongoing
    assert leak.excess_cost_usd_per_month < 5 < 50 < slow.excess_cost_usd_per_month
    assert leak.severity is Severity.CRITICAL and leak.impact.harming
    assert slow.impact.latency_added_ms_p95 is not None and slow.impact.latency_added_ms_p95 > 100
    assert not slow.impact.harming
    assert {f.severity for f in urgent_analysis.findings if f.service == "slow"} == {Severity.WARNING}


def test_json_and_terminal_lead_with_the_leak(urgent_analysis: Analysis) -> None:
    doc = report_json(urgent_analysis, generated_at=NOW)
    first = doc["findings"][0]
    assert (first["revision"], first["kind"], first["severity"]) == (LEAK_REVISION, "memory_baseline_rise", "critical")
    assert first["impact"]["harming"] and first["impact"]["oom_kills"] >= 1
    assert {f["service"] for f in doc["findings"][1:]} == {"slow"}
    text = summary_text(urgent_analysis)
    listed = re.findall(r"^  \[\w+ *\] (\w+):", text, flags=re.MULTILINE)
    assert listed[0] == "leaky" and set(listed[1:]) == {"slow"}
    assert "users: instances OOM-killed" in text


def test_the_report_headline_and_first_rows_name_the_leak(urgent_analysis: Analysis) -> None:
    context = report_context([render_part(urgent_analysis, generated_at=NOW)], generated_at=NOW)
    assert context["headline"].startswith(f"leaky: memory leak (rising baseline) since {LEAK_REVISION}, "
                                          "instances OOM-killed")
    assert [i.revision for i in context["incidents"]] == [LEAK_REVISION, SLOW_REVISION]
    assert context["rows"][0].key.service == "leaky"


def test_the_service_digest_subject_names_the_leak(urgent_analysis: Analysis) -> None:
    digest = digest_of(urgent_analysis, previous=None, config=DigestConfig(), generated_at=NOW)
    assert "week to 08 Mar: leaky: memory leak" in digest.subject
    assert digest.text.index(LEAK_REVISION) < digest.text.index(SLOW_REVISION)
    assert _services_listed(digest.text) == ["leaky", "slow"]  # and its chart comes first


def _services_listed(text: str) -> list[str]:
    """The services table of a digest's text part, in order."""
    table = text[text.index("SERVICES (this week / last week)"):]
    return re.findall(r"^  (\w+): ongoing", table, flags=re.MULTILINE)


def test_the_fleet_report_and_digest_from_shards_lead_with_the_leak(
        urgent_services: list[sim.SimulatedService]) -> None:
    # One task per service, as a sharded job runs them; the slow service's shard comes first by name.
    shards = {name: report_json(analyze_services([service]), generated_at=NOW)
              for name, service in zip(("b", "a"), urgent_services, strict=True)}
    fleet = merge_reports(shards, generated_at=NOW)
    assert fleet["findings"][0]["revision"] == LEAK_REVISION
    html = render_fleet(fleet)
    rows = html[html.index('id="findings-h"'):html.index('id="services-h"')]
    assert rows.index(LEAK_REVISION) < rows.index(SLOW_REVISION)
    assert "instances OOM-killed" in rows
    digest = fleet_digest(fleet, previous=None, config=DigestConfig(), generated_at=NOW, images={})
    assert digest.headline.startswith(f"leaky: memory leak (rising baseline) since {LEAK_REVISION}")
    assert "leaky: memory leak" in digest.subject
    new = digest.text[digest.text.index("NEW THIS WEEK"):digest.text.index("STILL ONGOING")]
    assert new.index(LEAK_REVISION) < new.index(SLOW_REVISION)
    assert "users: instances OOM-killed" in new
    assert _services_listed(digest.text) == ["leaky", "slow"]


@pytest.fixture(scope="module")
def snapshots(urgent_services: list[sim.SimulatedService], tmp_path_factory: pytest.TempPathFactory
              ) -> dict[str, Path]:
    made = {}
    for name, services in (("both", urgent_services), ("slow only", urgent_services[1:])):
        directory = tmp_path_factory.mktemp(name.replace(" ", "-"))
        write_snapshot(directory, sim.snapshot_documents(services),
                       manifest=sim.manifest_for(services, origin=f"urgent fleet, {name}"))
        made[name] = directory
    return made


@pytest.mark.parametrize(
    ("snapshot", "flags", "code"),
    [
        ("both", ["--fail-on", "critical"], 1),  # the leak is OOM-killing instances
        ("slow only", ["--fail-on", "critical"], 0),  # costly, but nobody is hurt
        ("slow only", ["--fail-on-findings"], 1),
        ("slow only", [], 0),
    ],
)
def test_the_exit_code_can_be_limited_to_critical_findings(
        snapshots: dict[str, Path], snapshot: str, flags: list[str], code: int) -> None:
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(snapshots[snapshot]), "--format", "json", *flags])
    assert result.exit_code == code, result.output
    if snapshot == "both":
        doc = json.loads(result.stdout)
        assert doc["findings"][0]["revision"] == LEAK_REVISION



def test_a_leak_that_costs_nothing_yet_reads_so_beside_its_harm_never_zero_dollars(
        urgent_analysis: Analysis) -> None:
    analysis = copy.deepcopy(urgent_analysis)
    for finding in analysis.findings:
        if finding.service == "leaky":  # as under request-based billing before it adds instances
            finding.excess_cost_usd_per_month = finding.excess_cost_usd_window = 0.0
    html = render_report(analysis, generated_at=NOW)
    card = html[html.index(f'id="incident-leaky-{LEAK_REVISION}"'):]
    card = card[:card.index("</article>")]
    assert "no added cost yet" in card and "What users see:</strong> instances OOM-killed 2 times" in card
    assert "$0.00/month" not in html
    assert report_context([render_part(analysis, generated_at=NOW)], generated_at=NOW)["headline"].startswith(
        f"leaky: memory leak (rising baseline) since {LEAK_REVISION}, instances OOM-killed 2 times, "
        "no added cost yet (+1 more revision")
    assert "(ongoing, no added cost yet)" in summary_text(analysis)
