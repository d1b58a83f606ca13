"""The simulator's history: the serving revision's first hours before the window, as a live source reads
them (memory utilizations, request count, instance count from its deploy, at most HISTORY_HOURS), in
documents of their own, without changing a byte of the window's documents or ground truth."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.cloud import monitoring_v3

from analyzer import model
from analyzer import simulate as sim
from analyzer.sources.snapshot import read_snapshot, write_snapshot
from bench import scenarios
from tests.fakes.monitoring import FakeMetricService

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
END = START + timedelta(days=1)
MEMORY = "container/memory/utilizations"


def _spec(serving_age: timedelta, *, leak: bool = False) -> sim.ServiceSpec:
    """An old revision, then the one serving at START (deployed ``serving_age`` before it, off the minute),
    on a runtime with a two-hour warm-up so the first hours after a deploy rise."""
    old = sim.RevisionSpec(name="svc-00001-old", deployed_at=START - timedelta(days=60))
    serving = sim.RevisionSpec(
        name="svc-00002-cur",
        deployed_at=START - serving_age,
        leak_mib_per_hour=1.0 if leak else 0.0,
        anomalous=leak,
    )
    later = sim.RevisionSpec(name="svc-00003-new", deployed_at=START + timedelta(hours=10))
    return sim.ServiceSpec(
        service="svc",
        project="p1",
        revisions=(old, serving, later),
        traffic=sim.TrafficSpec(peak_rps=12.0),
        runtime=sim.RuntimeSpec(warmup_minutes=120.0, cache_memory_mib=80.0),
    )


def _simulate(spec: sim.ServiceSpec, *, history: bool = True) -> sim.SimulatedService:
    return sim.simulate_service(spec, start=START, end=END, seed=7, history=history)


def _ends(message: dict[str, Any]) -> list[int]:
    """End times of a series' points, oldest first (messages list them newest first)."""
    return [int(datetime.fromisoformat(p["interval"]["endTime"]).timestamp()) for p in message["points"]][::-1]


def _dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _timeline_equal(a: sim.Timeline | None, b: sim.Timeline | None) -> bool:
    if a is None or b is None:
        return a is b
    return all(np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True) for f in a.__dataclass_fields__)


def _without_history(documents: list[sim.Document]) -> list[sim.Document]:
    return [d for d in documents if not d[1].startswith(sim.HISTORY_STEM)]


@pytest.fixture(scope="module")
def twenty_hours() -> sim.SimulatedService:
    return _simulate(_spec(timedelta(hours=20, seconds=17)))


def test_history_runs_from_the_deploy_to_the_window_start(twenty_hours: sim.SimulatedService) -> None:
    deploy = START - timedelta(hours=20, seconds=17)  # 03:59:43: the revision's first whole minute is 04:00
    first_end = int((deploy + timedelta(seconds=17 + 60)).timestamp())
    assert set(twenty_hours.history) == sim.HISTORY_METRICS
    for metric, messages in twenty_hours.history.items():
        for message in messages:
            assert message["resource"]["labels"]["revision_name"] == "svc-00002-cur", metric
            ends = _ends(message)
            assert ends[-1] <= START.timestamp() - 60 and ends[0] >= first_end, metric
    [memory] = twenty_hours.history[MEMORY]
    ends = _ends(memory)
    assert ends[0] == first_end and ends[-1] == START.timestamp() - 60 and len(ends) == 20 * 60 - 1
    means = [p["value"]["distributionValue"]["mean"] for p in memory["points"][::-1]]
    assert np.mean(means[:10]) < np.mean(means[180:240]) - 0.05  # fresh instances warm up after the deploy
    states = {m["metric"]["labels"]["state"] for m in twenty_hours.history["container/instance_count"]}
    assert states == {"active", "idle"}


@pytest.mark.parametrize("age", [timedelta(hours=5), timedelta(hours=100)])
def test_history_from_the_window_run_and_capped_at_its_hours(age: timedelta) -> None:
    """5 h: the window's own run (12 h burn-in) covers the deploy and its rows are emitted; 100 h: a run
    of its own, cut HISTORY_HOURS after the deploy."""
    [memory] = _simulate(_spec(age)).history[MEMORY]
    ends = _ends(memory)
    deploy = (START - age).timestamp()
    assert ends[0] == deploy + 60
    assert ends[-1] == min(deploy + sim.HISTORY_HOURS * 3600, START.timestamp() - 60)


# The live source reads the first hours of revisions deployed after the window's end less Cloud
# Monitoring's retention (six weeks) plus a margin of an hour: here END - 42 d + 1 h = START - 40 d 23 h.
EDGE = START - (END - model.METRICS_RETENTION + model.RETENTION_MARGIN)


@pytest.mark.parametrize("age", [EDGE, EDGE + timedelta(days=1), timedelta(minutes=30)])
def test_no_history_for_a_revision_deployed_too_long_or_too_shortly_before(age: timedelta) -> None:
    simulated = _simulate(_spec(age))
    assert simulated.history == {}
    assert not [d for d in simulated.documents() if d[1].startswith(sim.HISTORY_STEM)]


@pytest.mark.parametrize("age", [timedelta(days=20), EDGE - timedelta(minutes=5)])
def test_history_for_a_revision_deployed_weeks_before_within_the_retention(age: timedelta) -> None:
    # As the live source reads it: three weeks back, or five minutes inside the retention's edge.
    simulated = _simulate(_spec(age))
    assert simulated.history
    assert [d for d in simulated.documents() if d[1].startswith(sim.HISTORY_STEM)]


@pytest.mark.parametrize("leak", [False, True])
def test_window_documents_and_truth_are_the_same_with_history_on_or_off(leak: bool) -> None:
    spec = _spec(timedelta(hours=20), leak=leak)
    on, off = _simulate(spec), _simulate(spec, history=False)
    assert off.history == {} and on.history
    on_docs, off_docs = on.documents(), off.documents()
    assert _dump(_without_history(on_docs)) == _dump(off_docs)
    extra = [d for d in on_docs if d[1].startswith(sim.HISTORY_STEM)]
    assert sorted(stem for _, stem, _ in extra) == sorted(sim.HISTORY_STEM + sim._stem(m) for m in sim.HISTORY_METRICS)
    assert _dump(on.series) == _dump(off.series)
    assert _dump(on.truth()) == _dump(off.truth())
    assert _timeline_equal(on.timeline, off.timeline)
    assert _timeline_equal(on.counterfactual, off.counterfactual)
    assert (on.counterfactual is not None) == leak


def test_paged_history_documents_keep_their_stem(twenty_hours: sim.SimulatedService) -> None:
    paged = twenty_hours.documents(page_points=500)
    pages = [stem for _, stem, _ in paged if stem.startswith(sim.HISTORY_STEM + sim._stem(MEMORY))]
    assert pages == [f"{sim.HISTORY_STEM}{sim._stem(MEMORY)}.page{i:03d}" for i in (1, 2, 3)]


@pytest.mark.parametrize(("index", "klass"), [(0, "leak_fixed"), (1, "warmup"), (2, "incident_like")])
def test_bench_scenarios_keep_their_window_documents_and_labels(index: int, klass: str) -> None:
    scenario = scenarios.generate_one(1234, index, klass)
    services_on, docs_on, manifest_on, labels_on = scenarios.build(scenario)
    services_off, docs_off, manifest_off, labels_off = scenarios.build(scenario, history=False)
    assert _dump(_without_history(docs_on)) == _dump(docs_off)
    assert _dump(labels_on) == _dump(labels_off) and _dump(manifest_on) == _dump(manifest_off)
    for on, off in zip(services_on, services_off, strict=True):
        assert _timeline_equal(on.timeline, off.timeline) and _timeline_equal(on.counterfactual, off.counterfactual)


def test_a_snapshot_reads_history_as_series_before_the_window(
    twenty_hours: sim.SimulatedService, tmp_path: Path
) -> None:
    write_snapshot(tmp_path, twenty_hours.documents(), manifest=sim.manifest_for([twenty_hours], origin="test"))
    raw = read_snapshot(tmp_path)
    assert raw.problems == []  # history and window points of one series are not duplicates
    assert raw.window_start == START
    early = [s for s in raw.series if len(s.end_times) and s.end_times.max() < START.timestamp()]
    assert {s.metric for s in early} == sim.HISTORY_METRICS
    assert {s.revision for s in early} == {"svc-00002-cur"}
    assert min(int(s.end_times.min()) for s in early) == int((START - timedelta(hours=20)).timestamp()) + 60
    window = [s for s in raw.series if s.end_times.min() > START.timestamp()]
    assert len(window) + len(early) == len(raw.series)  # no series mixes history and window points


def _query(fake: FakeMetricService, metric: str, start: datetime, end: datetime) -> list[Any]:
    request = monitoring_v3.ListTimeSeriesRequest(
        name="projects/p1",
        filter=f'metric.type = "{sim.METRIC_PREFIX}{metric}"',
        interval=monitoring_v3.TimeInterval(
            start_time={"seconds": int(start.timestamp())}, end_time={"seconds": int(end.timestamp())}
        ),
    )
    return fake.query(monitoring_v3.ListTimeSeriesRequest.pb(request))


def test_the_fake_monitoring_server_answers_history_and_window_queries(twenty_hours: sim.SimulatedService) -> None:
    fake = FakeMetricService()
    for sub, _, body in twenty_hours.documents():
        if sub == "timeSeries":
            fake.load_response(body)
    deploy = START - timedelta(hours=20, seconds=17)
    [history] = _query(fake, MEMORY, deploy, START)  # one series: the serving revision's, merged
    assert len(history) == 20 * 60 - 1 and int(history.ends.max()) == int(START.timestamp()) - 60
    window = _query(fake, MEMORY, START, END)
    in_window = {
        m["resource"]["labels"]["revision_name"]: len(m["points"]) for m in twenty_hours.series[MEMORY]
    }
    assert {s.resource_labels["revision_name"]: len(s) for s in window} == in_window
    assert all(int(s.ends.min()) > START.timestamp() for s in window)
