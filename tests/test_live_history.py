"""The live source's history: the first hours after the deploy of each revision serving at the window's
start, read with Google's real Monitoring client from the fake server (which aligns raw series over the
requested interval and evaluates ``revision_name`` and ``one_of`` filters).

The fake service ``shop`` ran ``shop-00001`` (deployed 30 h before the window) until ``shop-00002``
was deployed 20 h before the window (off the period grid); only ``shop-00002`` has points in the
window. ``legacy`` runs one revision deployed 50 days ago, past Cloud Monitoring's six weeks.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest

from analyzer import batches
from analyzer import simulate as sim
from analyzer.analysis import envelope
from analyzer.analysis.timeline import build_view
from analyzer.config import DetectionConfig
from analyzer.errors import ConfigError
from analyzer.frames import build
from analyzer.model import RawData, RawSeries, RevisionInfo, ServiceKey
from analyzer.sources import snapshot
from analyzer.sources.inventory import fetch_share, list_revisions
from analyzer.sources.live import (
    HISTORY_METRICS,
    fetch_live,
    fetch_to_snapshot,
    history_interval,
    history_reads,
)
from tests.fakes.fleet import UTILIZATION_BUCKETS, FleetSpec, _histograms, revision_body
from tests.fakes.server import Fault
from tests.test_live import (  # noqa: F401  (google: the fixture)
    END,
    LATER,
    START,
    Google,
    assert_same_series,
    fetch,
    google,
    query,
)

W = int(START.timestamp())  # the window's start (on the 300 s grid)
HOUR = 3600
SPEC = FleetSpec(project="p1", region="us-central1")
OLD_DEPLOY = W - 30 * HOUR
DEPLOY = W - 20 * HOUR + 130  # shop-00002, off the grid: its history starts at W - 20 h
LEGACY_DEPLOY = int((LATER - timedelta(days=50)).timestamp())
MEMORY, REQUESTS, INSTANCES = "container/memory/utilizations", "request_count", "container/instance_count"
PRE_WINDOW_PERIODS = 20 * 12  # (W - 20 h, W] in 300 s periods: the history's aligned points


def _minutes(first: int, last: int) -> np.ndarray:
    """Ends of the raw 60 s points of the whole minutes after ``first`` up to ``last``."""
    begin = -(-first // 60) * 60
    return np.arange(begin + 60, last + 1, 60, dtype=np.int64)


def _revision(fake: Google, service: str, index: int, deployed: int, ends: np.ndarray, memory: float) -> None:
    """A revision in the Admin API, and its raw memory, request and instance series at ``ends``."""
    fake.run.add_revision(revision_body(SPEC, service, index, deployed))
    resource = {"project_id": SPEC.project, "location": SPEC.region, "service_name": service,
                "revision_name": f"{service}-{index:05d}", "configuration_name": service}
    samples = np.full((len(ends), 2), memory)
    p = "run.googleapis.com/"
    fake.monitoring.add_arrays(metric=p + MEMORY, kind="DELTA", value_type="DISTRIBUTION", resource=resource,
                                 metric_labels={"container_name": "app"}, ends=ends,
                                 dists=_histograms(samples, UTILIZATION_BUCKETS))
    fake.monitoring.add_arrays(metric=p + REQUESTS, kind="DELTA", value_type="INT64", resource=resource,
                                 metric_labels={"response_code_class": "2xx", "response_code": "200"}, ends=ends,
                                 values=np.full(len(ends), 10.0))
    fake.monitoring.add_arrays(metric=p + INSTANCES, kind="GAUGE", value_type="INT64", resource=resource,
                                 metric_labels={"state": "active", "container_name": "app"}, ends=ends,
                                 values=np.full(len(ends), 2.0))


def _services(fake: Google, *names: str) -> None:
    for name in names:
        fake.run.add_service({"name": f"projects/p1/locations/us-central1/services/{name}"})


@pytest.fixture
def shop(google: Google) -> Google:  # noqa: F811
    _services(google, "shop", "legacy")
    _revision(google, "shop", 1, OLD_DEPLOY, _minutes(OLD_DEPLOY, DEPLOY), memory=0.6)
    _revision(google, "shop", 2, DEPLOY, _minutes(DEPLOY, int(END.timestamp())), memory=0.3)
    _revision(google, "legacy", 1, LEGACY_DEPLOY, _minutes(LEGACY_DEPLOY, int(END.timestamp())), memory=0.4)
    return google


def _before(data: RawData) -> list[RawSeries]:
    return [s for s in data.series if len(s.end_times) and int(s.end_times[0]) <= W]


def _history_calls(fake: Google) -> list[str]:
    return [c.detail for c in fake.behaviour.calls if "revision_name" in c.detail]


def _window_only(data: RawData) -> list[RawSeries]:
    return [s for s in data.series if int(s.end_times[0]) > W]


def assert_shop_history(data: RawData) -> None:
    """shop-00002's three metrics from its deploy to the window's start, and nothing else before the window."""
    early = _before(data)
    assert {(s.revision, s.metric) for s in early} == {("shop-00002", m) for m in HISTORY_METRICS}
    for s in early:
        assert s.end_times.tolist() == list(range(W - 20 * HOUR + 300, W + 1, 300)), s.metric
        assert len(s.end_times) == PRE_WINDOW_PERIODS
    by_metric = {s.metric: s for s in early}
    memory = by_metric[MEMORY]
    assert (memory.value_type, memory.metric_labels) == ("DISTRIBUTION", {"container_name": "app"})
    assert memory.histograms is not None
    np.testing.assert_allclose(memory.histograms.mean, 0.3)  # shop-00002's, not shop-00001's 0.6
    # The first period holds the 2 raw points after the deploy (ending W-20h+240 and +300), the others 5.
    requests = by_metric[REQUESTS]
    assert requests.metric_labels == {"response_code_class": "2xx"}
    assert requests.values is not None
    assert requests.values.tolist() == [20.0] + [50.0] * (PRE_WINDOW_PERIODS - 1)
    instances = by_metric[INSTANCES]
    assert instances.values is not None
    assert set(instances.values.tolist()) == {2.0}


# ---------------------------------------------------------------------------------------------
# The plan (pure)


def test_history_hours_is_validated() -> None:
    assert query(history_hours=0).history_hours == 0
    with pytest.raises(ConfigError, match="history_hours"):
        query(history_hours=-1)
    with pytest.raises(ConfigError, match="history_hours"):
        query(history_hours=42 * 24 + 1)


def test_the_interval_runs_from_the_deploys_day_to_at_most_the_window_start() -> None:
    at = datetime.fromtimestamp
    day = W // 86400 * 86400  # the window's start is midnight UTC
    assert day == W
    deployed = at(W - 20 * HOUR + 130, UTC)  # 04:02:10 the day before
    assert history_interval(deployed, window_start=START, hours=72, period_s=300) == (
        at(W - 24 * HOUR, UTC), START)
    deployed = at(W - 100 * HOUR + 130, UTC)  # 20:02:10 five days before: its day and 72 h after that day
    assert history_interval(deployed, window_start=START, hours=72, period_s=300) == (
        at(W - 120 * HOUR, UTC), at(W - 120 * HOUR + 96 * HOUR, UTC))
    later = at(W - 98 * HOUR, UTC)  # the same day, two hours later: the same interval (one request)
    assert history_interval(later, window_start=START, hours=72, period_s=300) == history_interval(
        deployed, window_start=START, hours=72, period_s=300)
    assert history_interval(deployed, window_start=START, hours=72, period_s=420)[1].timestamp() % 420 == 0


def _revision_info(revision: str, created: datetime, service: str = "shop") -> RevisionInfo:
    return RevisionInfo("p1", "us-central1", service, revision, create_time=created)


def _series_of(revision: str, service: str = "shop") -> RawSeries:
    ends = np.array([W + 300], dtype=np.int64)
    return RawSeries("request_count", "DELTA", "INT64", "p1", "us-central1", service, revision, {}, ends - 300,
                     ends, values=np.array([1.0]))


def test_only_revisions_serving_at_the_start_within_retention_are_read() -> None:
    data = RawData(series=[_series_of("a"), _series_of("b"), _series_of("c"), _series_of("x", "other")],
                   window_start=START, window_end=END)
    now = START + timedelta(hours=7)
    edge = now - timedelta(days=42) + timedelta(hours=1)
    revisions = [
        _revision_info("a", START - timedelta(hours=20)),
        _revision_info("b", edge + timedelta(minutes=1)),  # just inside the retention (and its margin)
        _revision_info("c", edge),  # at the edge: its first points may be gone
        _revision_info("d", START - timedelta(hours=5)),  # no points in the window: did not serve
        _revision_info("e", START + timedelta(hours=1)),  # deployed in the window: the window shows it
        _revision_info("x", START - timedelta(hours=20), "other"),  # same interval as a: read with it
    ]
    reads = history_reads(query(), data, revisions, now=now)
    assert [[r for _, r in read.revisions] for read in reads] == [["b"], ["x", "a"]]  # by (service, revision)
    assert history_reads(query(history_hours=0), data, revisions, now=now) == []


# ---------------------------------------------------------------------------------------------
# Through the real client


def test_the_serving_revisions_first_hours_are_read_up_to_the_window_start(shop: Google) -> None:
    data = fetch(shop, query())
    assert data.problems == []
    assert_shop_history(data)
    calls = _history_calls(shop)
    assert len(calls) == len(HISTORY_METRICS)  # shop-00002 only: one request a metric
    assert all('resource.labels.revision_name = "shop-00002"' in c for c in calls)
    assert not any("shop-00001" in c or "legacy" in c for c in calls)  # legacy: deployed 50 days ago
    without = fetch(shop, query(history_hours=0))
    assert_same_series(_window_only(data), without.series)  # the window's own data is untouched


def test_history_hours_zero_reads_none(shop: Google) -> None:
    data = fetch(shop, query(history_hours=0))
    assert _history_calls(shop) == []
    assert _before(data) == []
    assert {s.revision for s in data.series} == {"shop-00002", "legacy-00001"}


def test_revisions_sharing_a_deploy_interval_are_read_in_one_request_a_metric(shop: Google) -> None:
    _services(shop, "cart")
    _revision(shop, "cart", 1, DEPLOY + 60, _minutes(DEPLOY + 60, int(END.timestamp())), memory=0.2)
    data = fetch(shop, query())
    calls = _history_calls(shop)
    assert len(calls) == len(HISTORY_METRICS)
    assert all('revision_name = one_of("cart-00001", "shop-00002")' in c for c in calls)
    assert {(s.service, s.revision) for s in _before(data)} == {("shop", "shop-00002"), ("cart", "cart-00001")}


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAUTHENTICATED]
)
def test_a_refused_history_read_is_one_problem_and_the_window_is_read(shop: Google, code: grpc.StatusCode) -> None:
    without = fetch(shop, query(history_hours=0))
    shop.behaviour.inject(Fault(code, "no history for you", ("ListTimeSeries",), times=None,
                                 detail_contains="revision_name"))
    data = fetch(shop, query())
    assert _before(data) == []
    assert_same_series(data.series, without.series)
    assert data.revisions == without.revisions
    assert len(data.problems) == 1
    problem = data.problems[0]
    assert problem.subject == "project p1"
    assert "first hours after the deploy" in problem.message
    assert "not read: " in problem.message and "of shop-00002 before the window" in problem.message


def test_progress_counts_the_history_reads(shop: Google) -> None:
    seen: list[tuple[int, int]] = []
    fetch(shop, query(), progress=lambda done, total, _: seen.append((done, total)))
    calls = len(shop.behaviour.calls)
    assert calls == 8 + 2 + len(HISTORY_METRICS)  # the plan, revisions and services, the history
    assert seen[-1] == (calls, calls)
    assert [d for d, _ in seen] == list(range(1, calls + 1))


def test_a_snapshot_keeps_the_history(shop: Google, tmp_path: Path) -> None:
    live, written = fetch_to_snapshot(query(), tmp_path, clients=shop.clients, now=LATER)
    stems = sorted(p.name for p in written if p.name.startswith("history-"))
    assert stems == sorted(f"history-p1.us-central1.{m.replace('/', '_')}.shop-00002.000.json"
                           for m in HISTORY_METRICS)
    replayed = snapshot.read_snapshot(tmp_path)
    assert replayed.problems == []
    assert_same_series(live.series, replayed.series)
    assert_shop_history(replayed)


# ---------------------------------------------------------------------------------------------
# The batch path: revisions listed once, each batch reads only metrics


def _keys() -> list[ServiceKey]:
    return [ServiceKey("p1", "us-central1", name) for name in ("legacy", "shop")]


def test_a_share_read_in_batches_reads_the_history_of_the_revisions_listed_for_it(shop: Google) -> None:
    listed = list_revisions(shop.clients, _keys(), start=START, end=END)
    shop.behaviour.reset()
    data = fetch_share(shop.clients, _keys(), start=START, end=END, now=LATER, batch=1, admin=False,
                       revisions=listed.revisions)
    assert shop.behaviour.count("ListRevisions") == 0
    assert data.problems == []
    assert_shop_history(data)
    assert len(_history_calls(shop)) == len(HISTORY_METRICS)


def test_a_live_batch_plan_reads_the_history(shop: Google) -> None:
    env: dict[str, Any] = shop.env
    plan = batches.plan_live(query(), env=env, now=LATER, batch_size=1)
    try:
        assert all(b.live is not None and b.live.listed for b in plan.batches)
        loaded = [batches.load_batch(b) for b in plan.batches]
    finally:
        plan.close()
    shop_batch = next(raw for raw, b in zip(loaded, plan.batches, strict=True) if b.keys[0].service == "shop")
    assert_shop_history(shop_batch)
    legacy_batch = next(raw for raw, b in zip(loaded, plan.batches, strict=True) if b.keys[0].service == "legacy")
    assert _before(legacy_batch) == []
    off = batches.plan_live(query(history_hours=0), env=env, now=LATER, batch_size=1)
    try:
        assert all(_before(batches.load_batch(b)) == [] for b in off.batches)
    finally:
        off.close()


def test_history_read_live_from_a_simulated_service_teaches_the_envelope_its_warm_up(
        google: Google) -> None:  # noqa: F811
    # The whole path: a simulated service (its runtime warms up over two hours after each deploy) whose
    # serving revision was deployed 20 h before the window, served by the fake from the simulator's
    # documents, read with Google's client, built into frames: the revision's first hours come back as
    # Frames.history, and the envelope learns its course from them (nothing of a judged revision is left
    # out). Read without history, the same data teach a flat course and the 3 h skip.
    window = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))
    serving = sim.RevisionSpec(name="svc-00002-cur", deployed_at=window[0] - timedelta(hours=20, seconds=17))
    spec = sim.ServiceSpec(
        service="svc", project="p1", region="us-central1",
        revisions=(sim.RevisionSpec(name="svc-00001-old", deployed_at=window[0] - timedelta(days=30)), serving),
        traffic=sim.TrafficSpec(peak_rps=12.0), runtime=sim.RuntimeSpec(warmup_minutes=120.0, cache_memory_mib=80.0),
    )
    simulated = sim.simulate_service(spec, start=window[0], end=window[1], seed=7)
    for sub, _, body in simulated.documents():
        if sub == "timeSeries":
            google.monitoring.load_response(body)
        elif sub == "revisions":
            google.run.load_revisions(body)
    courses = {}
    for hours in (72, 0):
        q = query(start=window[0], end=window[1], history_hours=hours)
        frames = build(fetch_live(q, clients=google.clients, now=window[1] + timedelta(hours=1)))
        view = build_view(frames, frames.services[0])
        courses[hours] = envelope.build_envelope(view, [view.span("svc-00002-cur")], DetectionConfig())
        if hours:
            first = frames.history["ts"].min()
            assert set(frames.history["revision"]) == {"svc-00002-cur"}
            assert serving.deployed_at <= first <= serving.deployed_at + timedelta(minutes=10)
            assert frames.history["ts"].max() < window[0] <= frames.metrics["ts"].min()
        else:
            assert frames.history.empty
    seen, unseen = courses[72], courses[0]
    assert seen is not None and seen.settle_hours == 0.0 and seen.rise.max() > 0.0
    assert unseen is not None and unseen.settle_hours == envelope.UNSEEN_WARMUP_HOURS and not unseen.rise.any()
