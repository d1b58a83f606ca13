"""The report built from per-batch parts: the same page and JSON as in one go, parts that hold no
frames, anchors agreed across batches, chart series thinned so that spikes and troughs survive, and
the HTML report and the digests within their sizes at 1,000 services."""

from __future__ import annotations

import pickle
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from analyzer.analysis import Analysis, ServiceResult
from analyzer.config import DigestConfig
from analyzer.model import ServiceKey
from analyzer.render.charts import ChartSpec, SeriesSpec, extremes, points, svg_chart
from analyzer.render.digest import MAX_HTML_BYTES
from analyzer.render.fleet import merge_reports
from analyzer.render.fleet_digest import fleet_digest
from analyzer.render.html import render_report
from analyzer.render.json_report import report_json
from analyzer.render.parts import assemble_json, assemble_report, render_part, report_layout
from tests.digests import digest_of
from tests.fleet_report import fleet_analysis, fleet_parts, renamed

NOW = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
GMAIL_CLIP = 102 * 1024


def _share(analysis: Analysis, results: list[ServiceResult]) -> Analysis:
    """The analysis of a batch of these services (what a batched run analyzes at a time)."""
    keys = {r.key for r in results}
    findings = [f for f in analysis.findings if f.key in keys]
    return replace(analysis, services=results, findings=findings)


def test_extremes_keep_a_one_step_spike_and_trough_that_share_a_column() -> None:
    ns = np.arange(10_000, dtype=np.float64) * 300e9
    values = np.full(10_000, 50.0) + np.sin(np.arange(10_000) / 40.0)
    values[4_321], values[4_322] = 99.0, 1.0  # one step up, the next one down: the same column
    keep = extremes(ns, values, start=0.0, end=float(ns[-1]), columns=100)
    assert len(keep) <= 200
    assert list(keep) == sorted(set(keep.tolist()))  # time order, each point once
    assert {4_321, 4_322} <= set(keep.tolist())
    assert values[keep].max() == 99.0 and values[keep].min() == 1.0
    # What a mean per column draws instead: neither the spike nor the trough.
    means = values[: 10_000 // 100 * 100].reshape(100, -1).mean(axis=1)
    assert means.min() > 45 and means.max() < 55
    short = np.arange(150, dtype=np.float64)
    assert extremes(short, short, start=0.0, end=149.0, columns=100).tolist() == list(range(150))


def test_a_latency_spike_of_one_step_reaches_the_chart() -> None:
    index = pd.date_range("2026-11-01", periods=30 * 288, freq="300s", tz="UTC")  # a month at 5 min
    latency = pd.Series(100.0, index=index)
    latency.iloc[5_000] = 900.0  # five minutes at 9x
    spec = ChartSpec("lat", "Request latency", "ms", "test", index[0], index[-1],
                     [SeriesSpec("p99", "s3", latency)])
    chart = svg_chart(spec, step_seconds=300)
    (line,) = chart.lines
    ys = [float(p.split(",")[1]) for segment in line.segments for p in segment.split()]
    (v0, y0), (v1, y1) = [(float(t.label), t.pos) for t in (chart.y_ticks[0], chart.y_ticks[-1])]
    assert min(ys) == pytest.approx(y0 + (900.0 - v0) * (y1 - y0) / (v1 - v0), abs=1.0)
    assert sum(len(segment.split()) for segment in line.segments) <= 240


def test_points_leave_out_what_draws_nothing() -> None:
    xs = np.array([0.2, 1.1, 1.4, 2.0, 3.0, 4.0, 5.0, 6.0])
    ys = np.array([10.0, 10.4, 9.6, 10.0, 10.0, 10.0, 12.0, 11.6])
    # (1,10) twice collapses to one; the flat run 1..4 at y=10 keeps its ends only.
    assert points(xs, ys) == "0,10 4,10 5,12 6,12"
    assert points(np.array([3.0]), np.array([4.0])) == "3,4"


def test_a_report_in_batches_is_the_report_in_one_go(demo_analysis: Analysis) -> None:
    layout = report_layout(r.key for r in demo_analysis.services)
    first, second = demo_analysis.services[:2], demo_analysis.services[2:]
    parts = [
        render_part(_share(demo_analysis, first), generated_at=NOW, layout=layout),
        render_part(_share(demo_analysis, second), generated_at=NOW, layout=layout),
    ]
    assert assemble_report(parts, generated_at=NOW) == render_report(demo_analysis, generated_at=NOW)
    merged, whole = assemble_json(parts, generated_at=NOW), report_json(demo_analysis, generated_at=NOW)
    for key in ("total_cost_usd", "monthly_projection_usd"):
        assert merged["summary"].pop(key) == pytest.approx(whole["summary"].pop(key), abs=0.011)
    assert merged == whole


def test_a_part_holds_no_frames(demo_analysis: Analysis) -> None:
    part = render_part(demo_analysis, generated_at=NOW)
    data = pickle.dumps(part)
    assert b"pandas" not in data and b"numpy" not in data
    assert len(data) < 250_000  # the demo's three sections, charts included
    again = pickle.loads(data)
    assert assemble_report([again], generated_at=NOW) == render_report(demo_analysis, generated_at=NOW)


def _moved(result: ServiceResult, project: str) -> ServiceResult:
    key = ServiceKey(project, result.key.region, result.key.service)
    evidence = [replace(e, findings=[replace(f, project=project) for f in e.findings]) for e in result.evidence]
    cost = replace(result.cost, key=key) if result.cost else None
    return replace(result, key=key, view=replace(result.view, key=key), cost=cost, evidence=evidence)


def test_one_name_in_two_batches_gets_two_anchors_from_the_fleet_layout(demo_analysis: Analysis) -> None:
    router = next(r for r in demo_analysis.services if r.findings)
    here, there = router, _moved(router, "other-project")
    layout = report_layout([here.key, there.key])
    parts = [
        render_part(_share(demo_analysis, [here]), generated_at=NOW, layout=layout),
        render_part(_share(demo_analysis, [there]), generated_at=NOW, layout=layout),
    ]
    assert {r.anchor for p in parts for r in p.rows} == {
        "service-demo-project-europe-west1-llm-router",
        "service-other-project-europe-west1-llm-router",
    }
    assemble_report(parts, generated_at=NOW)
    alone = [render_part(_share(demo_analysis, [r]), generated_at=NOW) for r in (here, there)]
    with pytest.raises(ValueError, match="report_layout"):
        assemble_report(alone, generated_at=NOW)


def test_healthy_services_are_compact_only_on_a_fleet(demo_analysis: Analysis) -> None:
    small = render_part(demo_analysis, generated_at=NOW)
    assert not any(r.compact for r in small.rows)
    fleet = fleet_analysis(demo_analysis, services=30, with_findings=2)
    rows = render_part(fleet, generated_at=NOW).rows
    assert [r.compact for r in rows] == [False] * 2 + [True] * 28
    assert all('class="chart"' in r.section for r in rows[:2])
    assert not any("<svg" in r.section for r in rows[2:])


def test_the_report_stays_within_5_mb_at_1000_services(demo_analysis: Analysis) -> None:
    """50 services with the demo's incident (four findings, a fix check), 950 healthy."""
    parts = list(fleet_parts(demo_analysis, services=1000, with_findings=50, batch=250, generated_at=NOW))
    html = assemble_report(parts, generated_at=NOW)
    assert len(html.encode()) <= 5_000_000
    assert html.count('<tr><th scope="row"><a href="#service-svc-') == 1000
    report = assemble_json(parts, generated_at=NOW)
    assert report["summary"]["services"] == 1000
    assert report["summary"]["findings"] == 50 * 4


def test_the_digests_stay_under_the_gmail_clip_at_1000_services(demo_analysis: Analysis) -> None:
    fleet = fleet_analysis(demo_analysis, services=1000, with_findings=50)
    ongoing = replace(fleet, findings=[replace(f, ongoing=True) for f in fleet.findings])
    config = DigestConfig(report_url_base="https://r.example.com/cr")
    digest = digest_of(fleet, previous=None, config=config, generated_at=NOW, charts=False)
    assert digest.html_bytes <= MAX_HTML_BYTES <= GMAIL_CLIP
    assert digest.services_total == 1000 and 0 < digest.services_shown < 1000
    shards = {
        f"{i}-of-4": report_json(
            replace(ongoing, services=ongoing.services[i::4],
                    findings=[f for r in ongoing.services[i::4] for f in r.findings]),
            generated_at=NOW,
        )
        for i in range(4)
    }
    merged = merge_reports(shards, generated_at=NOW)
    sent = fleet_digest(merged, previous=None, config=config, generated_at=NOW, images={})
    assert sent.html_bytes <= MAX_HTML_BYTES
    assert sent.services_total == 1000 and 0 < sent.services_shown < 1000


def test_renamed_copies_are_other_services(demo_analysis: Analysis) -> None:
    router = next(r for r in demo_analysis.services if r.findings)
    copy = renamed(router, "svc-0001")
    assert copy.key.service == "svc-0001" and copy.view.key == copy.key
    assert {f.service for f in copy.findings} == {"svc-0001"}
    assert {f.service for f in router.findings} == {"llm-router"}


def test_a_report_of_no_part_says_what_is_missing() -> None:
    from analyzer.model import Problem

    window = (datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 23, tzinfo=UTC))
    problem = Problem("project p", "permission denied", "grant roles/monitoring.viewer")
    html = assemble_report([], generated_at=NOW, window=window, problems=[problem])
    assert "0 services" in html
    assert "<code>project p</code>: permission denied" in html
    with pytest.raises(ValueError, match="its window"):
        assemble_report([], generated_at=NOW)


def test_parts_carry_the_digest_charts_when_asked(demo_analysis: Analysis) -> None:
    assert render_part(demo_analysis, generated_at=NOW).charts == {}
    part = render_part(demo_analysis, generated_at=NOW, digest_charts=True)
    (key,) = part.charts
    assert key.service == "llm-router"
    assert part.charts[key].png.startswith(b"\x89PNG")
    assert any(label == "memory limit" for label, _, _ in part.charts[key].legend)
    config = DigestConfig(report_url_base="https://r.example.com/cr")
    digest = fleet_digest(
        merge_reports({"0-of-1": assemble_json([part], generated_at=NOW)}, generated_at=NOW),
        previous=None, config=config, generated_at=NOW, images=part.charts,
    )
    assert len(digest.images) == 1 and digest.images[0].data == part.charts[key].png
    assert digest.images[0].legend == part.charts[key].legend  # the lines are named under the chart
    assert digest.images[0].alt == part.charts[key].alt and "llm-router" in digest.images[0].alt


def test_the_terminal_summary_of_parts_is_that_of_the_analysis(demo_analysis: Analysis) -> None:
    from analyzer.render.parts import summarize
    from analyzer.render.text import summary_text

    layout = report_layout(r.key for r in demo_analysis.services)
    parts = [
        render_part(_share(demo_analysis, [r]), generated_at=NOW, layout=layout)
        for r in reversed(demo_analysis.services)
    ]
    assert summary_text(summarize(parts)) == summary_text(demo_analysis)


def test_when_deploys_are_too_many_to_label_only_the_storys_are(
    demo_analysis: Analysis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from analyzer.render import charts

    monkeypatch.setattr(charts, "MAX_LABELS", 0)  # as if a deploy a day filled a month's chart
    by_name = {r.key.service: r for r in demo_analysis.services}
    router = charts.chart_specs(by_name["llm-router"])[0]
    assert [(d.short, d.labelled) for d in router.deploys] == [("00042-xyz", True), ("00043-fix", True)]
    catalog = charts.chart_specs(by_name["catalog"])[0]
    assert catalog.deploys and not any(d.labelled for d in catalog.deploys)
    html = render_part(_share(demo_analysis, [by_name["catalog"]]), generated_at=NOW).rows[0].section
    assert 'class="deploy-label"' not in html
    assert html.count('<line class="deploy"') == 4 * len(catalog.deploys)  # a bare line on each chart


def test_hostile_names_stay_text_in_the_overview_and_the_compact_entries(demo_analysis: Analysis) -> None:
    from tests.hostile import HOSTILE_SERVICE
    from tests.test_report_html import assert_only_the_sort_script_runs, parse

    fleet = fleet_analysis(demo_analysis, services=30, with_findings=1)
    hostile = [renamed(r, f"{HOSTILE_SERVICE}{i}") for i, r in enumerate(fleet.services)]
    html = render_report(_share(fleet, hostile), generated_at=NOW)
    tree = parse(html)
    assert_only_the_sort_script_runs(tree)
    assert not any(name.startswith("on") for e in tree.elements for name in e.attrs)
    compact = [e for e in tree.all("details") if "compact" in e.attrs.get("class", "")]
    assert len(compact) == 29
    assert all(HOSTILE_SERVICE in e.text for e in compact)
    assert html.count("&lt;script&gt;alert(&#34;svc&#34;)") >= 30 * 3  # overview, section or entry, links
