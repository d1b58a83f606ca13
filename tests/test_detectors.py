"""The detectors on simulated services: each scenario goes through the simulator's REST JSON, the
snapshot reader, the frames and the whole analysis, and is checked against what the simulation did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from analyzer import simulate as sim
from analyzer.analysis import Analysis
from analyzer.model import FindingKind, RawData
from analyzer.pipeline import analyze
from analyzer.sources.snapshot import ingest

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
WARMUP_MINUTES, CUT_HOURS = 1200.0, 12  # caches ~95 % full after 20 h; judged 12 h after a deploy


def _rev(name: str, at: datetime, **kw: Any) -> sim.RevisionSpec:
    return sim.RevisionSpec(name=name, deployed_at=at, image=f"img/{name}", commit_sha=name[-3:], **kw)


def _run(spec: sim.ServiceSpec, *, end: datetime, seed: int) -> Analysis:
    """Simulate from START to ``end`` (the data as it stands then) and analyze it."""
    result = sim.simulate_service(spec, start=START, end=end, seed=seed, counterfactual=False)
    raw = RawData(origin="test")
    for sub, stem, body in result.documents():
        ingest(raw, sub, f"{sub}/{stem}.json", body)
    raw.window_start, raw.window_end = START, end
    return analyze(raw)


def _kinds(analysis: Analysis, revision: str) -> dict[FindingKind, Any]:
    return {f.kind: f for f in analysis.findings if f.revision == revision}


def test_a_fast_leak_is_reported_within_hours_of_its_deploy() -> None:
    deploy = START + timedelta(days=1, hours=9)
    spec = sim.ServiceSpec(
        service="api",
        revisions=(_rev("api-00001-aaa", START - timedelta(days=1)),
                   # 5 MiB an hour on 512 MiB: about 23 % of the limit a day
                   _rev("api-00002-bbb", deploy, leak_mib_per_hour=5.0, anomalous=True)),
        traffic=sim.TrafficSpec(peak_rps=40.0, noise=0.05),
    )
    analysis = _run(spec, end=deploy + timedelta(hours=10), seed=11)
    leak = _kinds(analysis, "api-00002-bbb").get(FindingKind.MEMORY_BASELINE_RISE)
    assert leak is not None, [f.summary for f in analysis.findings]
    assert abs((pd.Timestamp(leak.onset) - pd.Timestamp(deploy)) / pd.Timedelta(hours=1)) < 1.0
    assert 0.1 < leak.evidence["trough_slope_pct_of_limit_per_day"] / 100 < 0.5
    assert _kinds(analysis, "api-00001-aaa") == {}


CACHE_DEPLOY = START + timedelta(days=1, hours=9)  # the cache service's deploy inside the window


def cache_service(warmup_minutes: float) -> sim.ServiceSpec:
    """A service whose cache of 90 MiB fills over ``warmup_minutes`` after each deploy; its only earlier
    revision was deployed a day before the window, so the data never show how it warms up (also
    ``bench/warmup_cuts.py``'s service)."""
    return sim.ServiceSpec(
        service="api",
        revisions=(_rev("api-00001-aaa", START - timedelta(days=1)), _rev("api-00002-bbb", CACHE_DEPLOY)),
        traffic=sim.TrafficSpec(peak_rps=40.0, noise=0.05),
        runtime=sim.RuntimeSpec(cache_memory_mib=90.0, warmup_minutes=warmup_minutes),
    )


def test_a_cache_that_fills_for_hours_after_a_deploy_is_not_a_leak() -> None:
    # The predecessor was deployed before the window, so the data never show how this service warms
    # up: the sequential test must not read the fill as a leak at any age (seed 13 at +5 h, and about
    # a third of such cuts, did before it learned that).
    spec = cache_service(240.0)
    for seed in (12, 13):
        for hours in (5, 7, 10, 24):
            analysis = _run(spec, end=CACHE_DEPLOY + timedelta(hours=hours), seed=seed)
            assert analysis.findings == [], (seed, hours, [f.summary for f in analysis.findings])


@pytest.mark.parametrize(("warmup_minutes", "seed", "hours"), [(240.0, 6, 10), (360.0, 1, 10), (360.0, 3, 10),
                                                               (360.0, 6, 12)])
def test_a_cache_that_fills_for_up_to_six_hours_is_not_judged_against_its_predecessors_day(
        warmup_minutes: float, seed: int, hours: int) -> None:
    # The same service, its cache filling for 4-6 h. Its predecessor, seen only mid-life, says nothing
    # about a deploy's course: the course is flat. Taken from the predecessor's first hours in the
    # window (held at their highest), the course was a stretch of its day, and the noise about it too
    # small: each of these cuts was a false leak (as were 18 of 168 such cuts, 12 now).
    analysis = _run(cache_service(warmup_minutes), end=CACHE_DEPLOY + timedelta(hours=hours), seed=seed)
    assert analysis.findings == [], [f.summary for f in analysis.findings]


def test_a_leak_whose_instances_are_replaced_before_the_limit_is_still_a_leak() -> None:
    # One instance, recycled by the platform every day or two: its memory climbs for a day or more and
    # falls back long before the limit, again and again. No OOM kill explains the resets.
    deploy = START + timedelta(days=1)
    spec = sim.ServiceSpec(
        service="cart",
        revisions=(_rev("cart-00001-aaa", START - timedelta(days=1), memory_limit_mib=2048),
                   _rev("cart-00002-bbb", deploy, memory_limit_mib=2048, leak_mib_per_hour=6.0, anomalous=True)),
        traffic=sim.TrafficSpec(peak_rps=3.0, noise=0.05),
        runtime=sim.RuntimeSpec(base_memory_mib=700.0, gc_amplitude_mib=120.0, recycle_per_day=0.8),
    )
    analysis = _run(spec, end=START + timedelta(days=10), seed=5)
    leak = _kinds(analysis, "cart-00002-bbb").get(FindingKind.MEMORY_BASELINE_RISE)
    assert leak is not None, [f.summary for f in analysis.findings]
    assert leak.evidence["segments_between_resets"] >= 2


def test_gc_thrash_near_the_limit_is_a_cpu_regression_dated_when_it_starts() -> None:
    # The leak takes about two days to fill the limit; CPU per request is normal until the heap is
    # nearly full, then GC burns CPU for hours until an OOM kill resets the instance.
    deploy = START + timedelta(days=1, hours=3)
    spec = sim.ServiceSpec(
        service="profile",
        revisions=(_rev("profile-00001-aaa", START - timedelta(days=1)),
                   _rev("profile-00002-bbb", deploy, leak_mib_per_hour=7.0, anomalous=True)),
        traffic=sim.TrafficSpec(peak_rps=4.0, noise=0.05),
        runtime=sim.RuntimeSpec(thrash_cpu_vcpu=2.0),
    )
    analysis = _run(spec, end=START + timedelta(days=5), seed=8)
    found = _kinds(analysis, "profile-00002-bbb")
    assert FindingKind.MEMORY_BASELINE_RISE in found
    cpu = found.get(FindingKind.CPU_REGRESSION)
    assert cpu is not None, [f.summary for f in analysis.findings]
    assert cpu.evidence["increase_pct"] >= 15
    assert pd.Timestamp(cpu.onset) > pd.Timestamp(deploy) + pd.Timedelta(hours=12)


@pytest.mark.parametrize("days", [(1,), (1, 2)])
def test_batch_days_are_not_a_cpu_regression(days: tuple[int, ...]) -> None:
    spec = sim.ServiceSpec(
        service="reports",
        revisions=(_rev("reports-00001-aaa", START - timedelta(days=1)),
                   _rev("reports-00002-bbb", START + timedelta(hours=20))),
        traffic=sim.TrafficSpec(peak_rps=8.0, batch_days=days, batch_hours=3.0, batch_extra_rps=30.0),
    )
    analysis = _run(spec, end=START + timedelta(days=4), seed=21)
    assert analysis.findings == [], [f.summary for f in analysis.findings]


@pytest.mark.parametrize("leak_mib_per_hour", [0.0, 8.0])
def test_a_young_revision_is_judged_against_the_services_own_warm_up(leak_mib_per_hour: float) -> None:
    # Caches that take most of a day to fill: after each deploy memory climbs for many hours. The
    # previous revision climbed the same way and then levelled off; the new one is judged against that:
    # the same climb is its warm-up, a leak on top of it (8 MiB/h, 37 % of the limit a day) is not.
    second, third = START + timedelta(hours=6), START + timedelta(days=2, hours=12)
    spec = sim.ServiceSpec(
        service="search",
        revisions=(_rev("search-00001-aaa", START - timedelta(days=1)), _rev("search-00002-bbb", second),
                   _rev("search-00003-ccc", third, leak_mib_per_hour=leak_mib_per_hour,
                        anomalous=leak_mib_per_hour > 0)),
        traffic=sim.TrafficSpec(peak_rps=40.0, noise=0.05),
        runtime=sim.RuntimeSpec(cache_memory_mib=150.0, warmup_minutes=WARMUP_MINUTES),
    )
    analysis = _run(spec, end=third + timedelta(hours=CUT_HOURS), seed=4)
    found = [(f.kind, f.revision) for f in analysis.findings]
    if leak_mib_per_hour:
        assert (FindingKind.MEMORY_BASELINE_RISE, "search-00003-ccc") in found, found
    else:
        assert found == [], [f.summary for f in analysis.findings]


def test_a_leak_under_a_runtime_memory_cap_is_still_the_worst_instances_climb() -> None:
    # Go's GOMEMLIMIT (or a JVM's maximum heap) at 90 % of the container's limit: the collector runs
    # whenever an instance would pass it, so the worst instance's peaks stay at the cap while the leak
    # lifts its troughs towards it (2.5 MiB an hour on 512 MiB, about 12 % of the limit a day). Level
    # peaks under climbing troughs are a tall GC sawtooth's signature only below such a cap.
    deploy = START + timedelta(days=1)
    spec = sim.ServiceSpec(
        service="orders",
        revisions=(_rev("orders-00001-aaa", START - timedelta(days=1)),
                   _rev("orders-00002-bbb", deploy, leak_mib_per_hour=2.5, anomalous=True)),
        traffic=sim.TrafficSpec(peak_rps=20.0, noise=0.05),
        runtime=sim.RuntimeSpec(gc_amplitude_mib=600.0, gc_memory_cap_fraction=0.9),
    )
    analysis = _run(spec, end=deploy + timedelta(days=3), seed=3)
    leak = _kinds(analysis, "orders-00002-bbb").get(FindingKind.MEMORY_BASELINE_RISE)
    assert leak is not None, [f.summary for f in analysis.findings]
    assert leak.evidence["signal"] == "worst instance"
    assert leak.evidence["worst_instance_highest_pct_of_limit"] >= 85
    assert 8 < leak.evidence["trough_slope_pct_of_limit_per_day"] < 16
