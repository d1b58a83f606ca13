"""The live source with Google's real client libraries against the fake APIs on loopback gRPC.

No mocks of the SDK: the clients are built by ``build_clients`` from the emulator variables, exactly
as a user's run with MONITORING_EMULATOR_HOST / RUN_EMULATOR_HOST would build them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, fields, is_dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from google.cloud import monitoring_v3
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from analyzer import frames
from analyzer.cli import cli
from analyzer.errors import (
    ApiDisabledError,
    ConfigError,
    CredentialsError,
    PermissionDeniedError,
    QuotaExhaustedError,
    SourceError,
)
from analyzer.model import RawData, RawSeries
from analyzer.pipeline import analyze
from analyzer.render.json_report import report_json as analysis_json
from analyzer.simulate import demo_documents
from analyzer.sources import rawpages, snapshot
from analyzer.sources.google_clients import GoogleClients, build_clients
from analyzer.sources.live import (
    DEFAULT_PLAN,
    HISTORY_METRICS,
    LiveQuery,
    MetricQuery,
    RestJson,
    RetryPolicy,
    _time_series_pages,
    effective_window,
    fetch_live,
    fetch_to_snapshot,
    time_series_filter,
    time_series_requests,
)
from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import (
    Behaviour,
    Fault,
    RunningServer,
    deadline_exceeded,
    permission_denied,
    resource_exhausted,
    service_disabled,
    start,
    unavailable,
)

START = datetime.fromtimestamp(FleetSpec.start, UTC)
END = START + timedelta(hours=6)
LATER = END + timedelta(hours=1)  # "now" for every fetch: the whole window is complete
FAST_RETRY = RetryPolicy(
    initial_s=0.01, maximum_s=0.05, multiplier=2.0, call_deadline_s=5.0, overall_deadline_s=20.0
)
# A fleet's first revisions were deployed a day before the window (FleetSpec) and serve at its start:
# one history read a metric of the memory envelope reads their first hours (all at once: one interval).
HISTORY_CALLS = len(HISTORY_METRICS)
# one ListTimeSeries per metric + revisions + services + the history
PER_PROJECT_CALLS = len(DEFAULT_PLAN) + 2 + HISTORY_CALLS


@pytest.fixture(autouse=True)
def _no_metadata_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@dataclass
class Google:
    behaviour: Behaviour
    monitoring: FakeMetricService
    run: FakeRun
    server: RunningServer
    clients: GoogleClients

    @property
    def env(self) -> dict[str, str]:
        return {"MONITORING_EMULATOR_HOST": self.server.address, "RUN_EMULATOR_HOST": self.server.address}

    def fleet(self, **kwargs: Any) -> list[str]:
        return add_fleet(self.monitoring, self.run, FleetSpec(**kwargs))


@pytest.fixture
def google() -> Iterator[Google]:
    behaviour = Behaviour()
    monitoring, run = FakeMetricService(behaviour), FakeRun(behaviour)
    server = start([monitoring, run])
    clients = build_clients({"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address})
    assert clients.emulated == ("monitoring", "run")
    yield Google(behaviour, monitoring, run, server, clients)
    clients.close()
    server.stop()


def query(*projects: str, **kwargs: Any) -> LiveQuery:
    settings: dict[str, Any] = {"start": START, "end": END, "retry": FAST_RETRY, **kwargs}
    return LiveQuery(projects=projects or ("p1",), **settings)


def fetch(google: Google, q: LiveQuery, **kwargs: Any) -> RawData:
    return fetch_live(q, clients=google.clients, now=LATER, **kwargs)


def series_key(s: RawSeries) -> tuple[Any, ...]:
    return (
        s.metric,
        s.project,
        s.region,
        s.service,
        s.revision,
        sorted(s.metric_labels.items()),
        int(s.end_times[0]),
    )


def assert_same_value(x: Any, y: Any, where: str) -> None:
    if is_dataclass(x):
        assert type(x) is type(y), where
        for f in fields(x):
            assert_same_value(getattr(x, f.name), getattr(y, f.name), f"{where}.{f.name}")
    elif isinstance(x, np.ndarray):
        np.testing.assert_array_equal(x, y, err_msg=where)
    elif isinstance(x, list):
        assert isinstance(y, list), where
        assert len(x) == len(y), where
        for i, (a, b) in enumerate(zip(x, y, strict=True)):
            assert_same_value(a, b, f"{where}[{i}]")
    else:
        assert x == y, where


def assert_same_series(left: list[RawSeries], right: list[RawSeries]) -> None:
    assert len(left) == len(right)
    for a, b in zip(sorted(left, key=series_key), sorted(right, key=series_key), strict=True):
        assert_same_value(replace(a, source=""), replace(b, source=""), a.metric)


def frame_of(data: RawData) -> pd.DataFrame:
    table = frames.build(data, step_seconds=300).metrics
    return table.sort_values(["project", "region", "service", "revision", "ts"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# The query plan


def test_window_leaves_out_the_newest_minutes_and_sits_on_the_period_grid() -> None:
    q = query(start=START + timedelta(seconds=170), end=END)
    now = START + timedelta(hours=2, minutes=7, seconds=30)
    start, end = effective_window(q, now)
    assert start == START  # floored to 300 s
    assert end == START + timedelta(hours=2)  # now - 5 min = 2:02:30, floored
    assert effective_window(q, LATER) == (START, END)
    with pytest.raises(ConfigError, match="newest 5 minutes"):
        effective_window(q, START + timedelta(minutes=6))


def test_filter_names_one_metric_and_narrows_to_region_and_services() -> None:
    assert time_series_filter("request_count") == (
        'metric.type = "run.googleapis.com/request_count" AND resource.type = "cloud_run_revision"'
    )
    assert time_series_filter("request_count", region="europe-west1", services=["a", 'we"ird']).endswith(
        'AND resource.labels.location = "europe-west1" '
        'AND resource.labels.service_name = one_of("a", "we\\"ird")'
    )


def test_one_request_per_metric_grouped_by_service_and_revision() -> None:
    requests = time_series_requests(query(), "p1", (START, END))
    assert [m.metric for m, _, _ in requests] == [m.metric for m in DEFAULT_PLAN]
    by_metric = {m.metric: r for m, _, r in requests}
    latencies = by_metric["request_latencies"]
    assert latencies.name == "projects/p1"
    assert latencies.page_size == 100_000
    assert latencies.aggregation.alignment_period.total_seconds() == 300
    assert latencies.aggregation.per_series_aligner.name == "ALIGN_DELTA"
    assert latencies.aggregation.cross_series_reducer.name == "REDUCE_SUM"
    assert list(latencies.aggregation.group_by_fields) == [
        "resource.labels.project_id",
        "resource.labels.location",
        "resource.labels.service_name",
        "resource.labels.revision_name",
    ]
    assert by_metric["container/instance_count"].aggregation.per_series_aligner.name == "ALIGN_MEAN"
    assert "metric.labels.state" in by_metric["container/instance_count"].aggregation.group_by_fields
    assert "metric.labels.response_code_class" in by_metric["request_count"].aggregation.group_by_fields
    many = time_series_requests(query(services=tuple(f"s{i}" for i in range(150))), "p1", (START, END))
    assert len(many) == 2 * len(DEFAULT_PLAN)  # one_of takes at most 100 names per query


def test_query_is_validated() -> None:
    with pytest.raises(ConfigError):
        LiveQuery(projects=(), start=START, end=END)
    with pytest.raises(ConfigError):
        query(alignment_period_s=30)
    with pytest.raises(ConfigError):
        query(start=END, end=START)


# ---------------------------------------------------------------------------------------------
# Reading


def test_reads_a_fleet_through_the_real_clients(google: Google) -> None:
    google.fleet(project="p1", services=3)
    seen: list[tuple[int, int, str]] = []
    data = fetch(google, query(), progress=lambda done, total, label: seen.append((done, total, label)))
    assert data.problems == []
    assert (data.window_start, data.window_end) == (START, END)
    # 3 services x 2 revisions x (3 distributions + 2 response classes + 2 states + 3 amounts)
    assert len(data.series) == 3 * 2 * 10
    assert {s.service for s in data.series} == {"svc-0000", "svc-0001", "svc-0002"}
    memory = next(s for s in data.series if s.metric == "container/memory/utilizations")
    assert (memory.metric_kind, memory.value_type) == ("DELTA", "DISTRIBUTION")
    assert set(np.diff(memory.end_times)) == {300}
    instances = next(s for s in data.series if s.metric == "container/instance_count")
    assert (instances.metric_kind, instances.value_type) == ("GAUGE", "DOUBLE")
    assert len(data.revisions) == 6
    assert len(data.services) == 3
    assert data.revisions[0].memory_limit_gib == 0.5
    assert data.revisions[0].request_based_billing is True
    assert google.behaviour.counts() == {
        "ListTimeSeries": len(DEFAULT_PLAN) + HISTORY_CALLS,
        "ListRevisions": 1,
        "ListServices": 1,
    }
    assert [(d, t) for d, t, _ in seen][-1] == (PER_PROJECT_CALLS, PER_PROJECT_CALLS)


def test_server_side_aggregation_gives_the_same_frames_as_raw_points(google: Google) -> None:
    """The fleet plan (aligned, reduced) and raw 60 s points must build the same analysis table."""
    google.fleet(project="p1", services=2, leaking=[1])
    aggregated = fetch(google, query())
    raw_plan = tuple(MetricQuery(m.metric, "ALIGN_NONE", "REDUCE_NONE") for m in DEFAULT_PLAN)
    raw = fetch(google, query(plan=raw_plan))
    points = sum(len(s.end_times) for s in raw.series)
    assert points == 5 * sum(len(s.end_times) for s in aggregated.series)  # 60 s points vs 300 s periods
    left, right = frame_of(aggregated), frame_of(raw)
    assert sorted(left.columns) == sorted(right.columns)
    pd.testing.assert_frame_equal(left, right[left.columns], check_exact=False, rtol=1e-9)
    leak = left[left["service"] == "svc-0001"].groupby("revision")["mem_mean"].agg(["first", "last"])
    assert (leak["last"] - leak["first"]).iloc[-1] > 0.1  # the leaking revision's memory climbs


def test_calls_do_not_grow_with_the_number_of_services(google: Google) -> None:
    google.fleet(project="small", services=1)
    google.fleet(project="large", services=50)
    for project in ("small", "large"):
        data = fetch(google, query(project))
        assert len({s.service for s in data.series}) == (1 if project == "small" else 50)
        assert google.behaviour.count(project=project) == PER_PROJECT_CALLS


def test_projects_and_metrics_are_fetched_concurrently(google: Google) -> None:
    google.fleet(project="p1", services=2)
    google.fleet(project="p2", services=2)
    google.behaviour.latency_s = 0.2
    began = time.monotonic()
    fetch(google, query("p1", "p2", max_concurrency=16))
    elapsed = time.monotonic() - began
    # 20 calls of 0.2 s: 4 s one after another; two rounds (metrics, then revisions) when concurrent.
    assert elapsed < 1.5


def test_paging_reads_every_point(google: Google) -> None:
    google.fleet(project="p1", services=3)
    whole = fetch(google, query())
    google.behaviour.reset()
    paged = fetch(google, query(page_size=50))  # 72 points per series: every series spans pages
    assert google.behaviour.count("ListTimeSeries") > 3 * len(DEFAULT_PLAN)
    assert sum(len(s.end_times) for s in paged.series) == sum(len(s.end_times) for s in whole.series)
    pd.testing.assert_frame_equal(frame_of(paged), frame_of(whole))


def test_region_and_service_filters(google: Google) -> None:
    google.fleet(project="p1", services=4)
    google.fleet(project="p1", services=2, region="europe-west1", names=["eu-a", "eu-b"])
    everywhere = fetch(google, query())
    assert {s.region for s in everywhere.series} == {"us-central1", "europe-west1"}
    parents = {c.detail for c in google.behaviour.calls if c.method != "ListTimeSeries"}
    assert parents == {
        "projects/p1/locations/us-central1/services/-",
        "projects/p1/locations/us-central1",
        "projects/p1/locations/europe-west1/services/-",
        "projects/p1/locations/europe-west1",
    }
    google.behaviour.reset()
    narrowed = fetch(google, query(region="us-central1", services=("svc-0001", "svc-0003", "nope")))
    assert {s.service for s in narrowed.series} == {"svc-0001", "svc-0003"}
    assert {r.service for r in narrowed.revisions} == {"svc-0001", "svc-0003"}
    assert {k.service for k in narrowed.services} == {"svc-0001", "svc-0003"}
    assert [p.subject for p in narrowed.problems] == ["service nope"]
    filters = [c.detail for c in google.behaviour.calls if c.method == "ListTimeSeries"]
    plan, history = [f for f in filters if "revision_name" not in f], [f for f in filters if "revision_name" in f]
    assert all('one_of("svc-0001", "svc-0003", "nope")' in f and 'location = "us-central1"' in f for f in plan)
    assert len(history) == HISTORY_CALLS
    assert all('one_of("svc-0001", "svc-0003")' in f and 'location = "us-central1"' in f for f in history)
    assert google.behaviour.count() == PER_PROJECT_CALLS


# ---------------------------------------------------------------------------------------------
# Faults


@pytest.mark.parametrize(
    "fault",
    [unavailable(times=3), deadline_exceeded(times=3), resource_exhausted(times=3)],
    ids=["unavailable", "deadline_exceeded", "resource_exhausted"],
)
def test_transient_errors_are_retried(google: Google, fault: Fault) -> None:
    google.fleet(project="p1", services=2)
    google.behaviour.inject(replace(fault, methods=("ListTimeSeries",)))
    data = fetch(google, query())
    assert data.problems == []
    assert len(data.series) == 2 * 2 * 10
    assert google.behaviour.count("ListTimeSeries", status=fault.code.name) == 3
    assert google.behaviour.count("ListTimeSeries", status="OK") == len(DEFAULT_PLAN) + HISTORY_CALLS


def test_admin_api_errors_are_retried_too(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.behaviour.inject(unavailable(times=3, method="ListRevisions"))
    data = fetch(google, query())
    assert data.problems == []
    assert len(data.revisions) == 2


def test_quota_exhausted_past_the_deadline_is_a_problem_of_that_project(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.fleet(project="p2", services=1)
    google.behaviour.inject(resource_exhausted(times=None, project="p2"))
    # p2's calls are retried until this deadline; p1's must still fit in it on a loaded machine (0.3 s
    # did not, once, under a parallel test run).
    retry = replace(FAST_RETRY, call_deadline_s=2.0)
    data = fetch(google, query("p1", "p2", retry=retry))
    assert {s.project for s in data.series} == {"p1"}
    [problem] = data.problems
    assert problem.subject == "project p2"
    assert "quota" in problem.message
    assert "quota" in problem.hint
    with pytest.raises(QuotaExhaustedError):
        fetch(google, query("p2", retry=retry))


def test_overall_deadline_bounds_the_whole_fetch(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.behaviour.inject(unavailable(times=None))
    began = time.monotonic()
    with pytest.raises(Exception, match=r"did not answer|deadline"):
        fetch(google, query(retry=replace(FAST_RETRY, call_deadline_s=60, overall_deadline_s=0.5)))
    assert time.monotonic() - began < 5


def test_permission_denied_on_one_of_two_projects(google: Google) -> None:
    google.fleet(project="p1", services=2)
    google.fleet(project="p2", services=2)
    google.behaviour.inject(permission_denied("p2"))
    data = fetch(google, query("p1", "p2"))
    assert {s.project for s in data.series} == {"p1"}
    assert len(data.series) == 40
    [problem] = data.problems
    assert problem.subject == "project p2"
    assert "permission denied" in problem.message
    assert "monitoring.timeSeries.list" in problem.message
    assert "roles/monitoring.viewer" in problem.hint
    assert "p2" in problem.hint
    assert google.behaviour.count("ListTimeSeries", project="p2", status="OK") == 0
    assert google.behaviour.count("ListTimeSeries", project="p2") <= len(DEFAULT_PLAN)  # never retried


def test_no_monitoring_access_anywhere_raises_with_the_role(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.behaviour.inject(permission_denied("p1"))
    with pytest.raises(PermissionDeniedError) as caught:
        fetch(google, query("p1"))
    assert "roles/monitoring.viewer" in caught.value.hint


def test_run_permission_denied_names_run_viewer(google: Google) -> None:
    google.fleet(project="p1", services=2)
    google.behaviour.inject(
        permission_denied("p1", method="ListRevisions"), permission_denied("p1", method="ListServices")
    )
    data = fetch(google, query())
    assert len(data.series) == 40
    assert data.revisions == []
    [problem] = data.problems
    assert "roles/run.viewer" in problem.hint
    assert "run.revisions.list" in problem.message


def test_disabled_api_says_how_to_enable_it(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.behaviour.inject(service_disabled("p1", "run.googleapis.com"))
    data = fetch(google, query())
    [problem] = data.problems
    assert "Cloud Run Admin API is not enabled in project p1" in problem.message
    assert "gcloud services enable run.googleapis.com --project p1" in problem.hint
    google.behaviour.reset()
    google.behaviour.inject(service_disabled("p1"))
    with pytest.raises(ApiDisabledError) as caught:
        fetch(google, query())
    assert "gcloud services enable monitoring.googleapis.com --project p1" in caught.value.hint


def test_refused_credentials_say_how_to_log_in(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.behaviour.inject(
        Fault(grpc.StatusCode.UNAUTHENTICATED, "Request had invalid authentication credentials.", times=None)
    )
    with pytest.raises(CredentialsError) as caught:
        fetch(google, query())
    assert "gcloud auth application-default login" in caught.value.hint


def test_missing_credentials_say_how_to_log_in(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud ADC file
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(CredentialsError) as caught:
        build_clients({})
    assert "gcloud auth application-default login" in caught.value.hint


def test_emulator_variable_must_be_host_and_port() -> None:
    with pytest.raises(ConfigError, match="host:port"):
        build_clients({"MONITORING_EMULATOR_HOST": "localhost", "RUN_EMULATOR_HOST": "localhost:1"})


# ---------------------------------------------------------------------------------------------
# Snapshots


def test_fetch_snapshot_round_trip_gives_identical_raw_data(google: Google, tmp_path: Path) -> None:
    google.fleet(project="p1", services=3, leaking=[2])
    live, written = fetch_to_snapshot(query(), tmp_path, clients=google.clients, now=LATER)
    assert {p.parent.name for p in written} == {"timeSeries", "revisions", "services"}
    assert (tmp_path / "manifest.json").exists()
    replayed = snapshot.read_snapshot(tmp_path)
    assert replayed.problems == []
    assert (replayed.window_start, replayed.window_end) == (live.window_start, live.window_end)
    assert_same_series(live.series, replayed.series)
    assert sorted(replayed.revisions, key=lambda r: r.revision) == sorted(
        live.revisions, key=lambda r: r.revision
    )
    assert sorted(replayed.services, key=str) == sorted(live.services, key=str)
    pd.testing.assert_frame_equal(frame_of(live), frame_of(replayed))


def test_snapshot_bodies_are_googles_rest_json(google: Google) -> None:
    google.fleet(project="p1", services=1)
    captured: list[tuple[str, str, Any]] = []
    fetch(google, query(), capture=captured)
    body = next(b for sub, stem, b in captured if stem.startswith("p1.request_count"))
    series = body["timeSeries"][0]
    assert set(series) >= {"metric", "resource", "metricKind", "valueType", "points"}
    point = series["points"][0]
    assert isinstance(point["value"]["int64Value"], str)  # INT64 as a string, like curl
    assert point["interval"]["endTime"].endswith("Z")
    assert (
        series["points"][0]["interval"]["endTime"] > series["points"][-1]["interval"]["endTime"]
    )  # newest first
    revisions = next(b for sub, _, b in captured if sub == "revisions")
    assert "createTime" in revisions["revisions"][0]
    assert "cpuIdle" in revisions["revisions"][0]["containers"][0]["resources"]


# ---------------------------------------------------------------------------------------------
# Pages read as wire bytes (sources/rawpages.py) against the client's own call and messages


def test_wire_pages_and_client_messages_give_the_same_data_and_findings(google: Google) -> None:
    """The report reads pages as bytes; ``fetch --snapshot`` (capture) through the client's pager and
    messages. Over several pages per query, both give identical series, frames, problems and findings."""
    from bench.fleet_scale import START as MONTH  # a month with a leak the report finds
    from bench.fleet_scale import add_aligned_fleet

    add_aligned_fleet(google.monitoring, google.run, project="p1", services=2, days=30)
    google.fleet(project="p2", services=2)
    small = query("p1", "p2", start=MONTH, end=MONTH + timedelta(days=30), page_size=5000)
    now = MONTH + timedelta(days=31)
    wire = fetch_live(small, clients=google.clients, now=now)
    paged = google.behaviour.count("ListTimeSeries")
    assert paged >= 3 * len(DEFAULT_PLAN) + len(DEFAULT_PLAN)  # p1's queries span several pages each
    google.behaviour.reset()
    messages = fetch_live(small, clients=google.clients, now=now, capture=[])
    assert google.behaviour.count("ListTimeSeries") == paged
    assert wire.problems == messages.problems == []
    assert_same_series(wire.series, messages.series)
    pd.testing.assert_frame_equal(frame_of(wire), frame_of(messages))
    found = [analysis_json(analyze(data), generated_at=LATER) for data in (wire, messages)]
    assert found[0]["findings"] and found[0]["findings"] == found[1]["findings"]
    assert found[0]["services"] == found[1]["services"]


def test_the_fetch_path_is_chosen_in_one_place(google: Google) -> None:
    assert _time_series_pages(google.clients, capture=False).func is rawpages.pages
    assert _time_series_pages(google.clients, capture=True).func is not rawpages.pages


def test_wire_pages_send_the_clients_headers(google: Google) -> None:
    """Routing header with the project, and the client's x-goog-api-client, on every page of both paths."""
    google.fleet(project="p1", services=2)
    headers = []
    for capture in (None, []):
        google.behaviour.reset()
        fetch(google, query(page_size=100), capture=capture)
        calls = [c for c in google.behaviour.calls if c.method == "ListTimeSeries"]
        assert len(calls) > len(DEFAULT_PLAN)
        seen = {frozenset((k, v) for k, v in c.metadata if k.startswith("x-goog-")) for c in calls}
        assert len(seen) == 1  # the same on every page
        headers.append(dict(seen.pop()))
    assert headers[0] == headers[1]
    assert headers[0]["x-goog-request-params"] == "name=projects/p1"
    assert "gapic/" in headers[0]["x-goog-api-client"]


def test_wire_pages_are_retried_and_refused_as_the_clients_messages(google: Google) -> None:
    google.fleet(project="p1", services=1)
    google.fleet(project="p2", services=1)
    assert _time_series_pages(google.clients, capture=False).func is rawpages.pages
    google.behaviour.inject(unavailable(times=2, method="ListTimeSeries", project="p1"), permission_denied("p2"))
    data = fetch(google, query("p1", "p2", page_size=100))
    assert google.behaviour.count("ListTimeSeries", "p1", status="UNAVAILABLE") == 2
    assert {s.project for s in data.series} == {"p1"}
    [problem] = data.problems
    assert "roles/monitoring.viewer on project p2" in problem.hint


def test_a_page_that_does_not_parse_fails_as_it_does_in_the_client(google: Google) -> None:
    """Bytes that are not a ListTimeSeriesResponse: the client's deserializer fails with INTERNAL; the
    wire path says the same (an InternalServerError, mapped to a SourceError naming the API)."""
    garbage = grpc.method_handlers_generic_handler(
        "google.monitoring.v3.MetricService",
        {"ListTimeSeries": grpc.unary_unary_rpc_method_handler(lambda request, context: b"\x12\x05ab")},
    )

    class Broken:
        def handlers(self) -> list[grpc.GenericRpcHandler]:
            return [garbage]

    server = start([Broken()])
    clients = build_clients({"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address})
    try:
        errors = []
        for capture in (None, []):
            with pytest.raises(SourceError) as caught:
                fetch_live(query(), clients=clients, now=LATER, capture=capture)
            errors.append(caught.value.message)
    finally:
        clients.close()
        server.stop()
    assert all("Cloud Monitoring API" in e and "deserializing" in e for e in errors), errors


# ---------------------------------------------------------------------------------------------
# The fast REST JSON writer equals MessageToDict

_numbers = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-300, 5e-324])
_int64 = st.integers(-(2**63), 2**63 - 1)
_nanos = st.sampled_from([0, 1, 500_000_000, 123_456_000, 999_999_999])


def _set_time(stamp: Any, draw: st.DrawFn) -> None:
    stamp.seconds = draw(st.integers(0, 4_000_000_000))
    stamp.nanos = draw(_nanos)


def _fill_distribution(dist: Any, draw: st.DrawFn) -> None:
    dist.count = draw(st.integers(0, 2**62))
    dist.mean = draw(_numbers)
    dist.sum_of_squared_deviation = draw(_numbers)
    dist.bucket_counts.extend(draw(st.lists(st.integers(0, 2**62), max_size=7)))
    layout = draw(st.sampled_from(["none", "linear", "exponential", "explicit"]))
    if layout == "linear":
        dist.bucket_options.linear_buckets.num_finite_buckets = draw(st.integers(0, 5))
        dist.bucket_options.linear_buckets.width = draw(_numbers)
        dist.bucket_options.linear_buckets.offset = draw(_numbers)
    elif layout == "exponential":
        dist.bucket_options.exponential_buckets.num_finite_buckets = draw(st.integers(0, 5))
        dist.bucket_options.exponential_buckets.growth_factor = draw(_numbers)
        dist.bucket_options.exponential_buckets.scale = draw(_numbers)
    elif layout == "explicit":
        dist.bucket_options.explicit_buckets.bounds.extend(draw(st.lists(_numbers, max_size=4)))
    if draw(st.booleans()):
        dist.range.min = draw(_numbers)
        dist.range.max = draw(_numbers)
    if draw(st.integers(0, 4)) == 0:
        exemplar = dist.exemplars.add()
        exemplar.value = draw(_numbers)
        _set_time(exemplar.timestamp, draw)


def _fill_point(point: Any, draw: st.DrawFn) -> None:
    if draw(st.integers(0, 9)):
        _set_time(point.interval.end_time, draw)
        if draw(st.booleans()):
            _set_time(point.interval.start_time, draw)
    elif draw(st.booleans()):
        point.interval.SetInParent()  # an empty interval is present, and written as {}
    kind = draw(st.sampled_from(["int64", "double", "bool", "string", "distribution", "empty", "absent"]))
    value = point.value
    if kind == "int64":
        value.int64_value = draw(_int64)
    elif kind == "double":
        value.double_value = draw(_numbers)
    elif kind == "bool":
        value.bool_value = draw(st.booleans())
    elif kind == "string":
        value.string_value = draw(st.text(max_size=5))
    elif kind == "distribution":
        _fill_distribution(value.distribution_value, draw)
    elif kind == "empty":
        value.SetInParent()


@st.composite
def _pages(draw: st.DrawFn) -> Any:
    page = monitoring_v3.ListTimeSeriesResponse.pb()()
    for _ in range(draw(st.integers(0, 3))):
        ts = page.time_series.add()
        ts.metric.type = draw(st.sampled_from(["run.googleapis.com/request_count", ""]))
        ts.metric.labels.update(
            draw(st.dictionaries(st.sampled_from(["state", "code"]), st.text(max_size=3)))
        )
        ts.resource.type = "cloud_run_revision"
        ts.resource.labels["service_name"] = draw(st.text(max_size=3))
        ts.metric_kind = draw(st.integers(0, 3))
        ts.value_type = draw(st.integers(0, 6))
        ts.unit = draw(st.sampled_from(["", "10^2.%", "ms"]))
        for _ in range(draw(st.integers(0, 4))):
            _fill_point(ts.points.add(), draw)
    page.next_page_token = draw(st.sampled_from(["", "abc"]))
    if draw(st.integers(0, 4)) == 0:
        error = page.execution_errors.add()
        error.code, error.message = 8, "partial"
    return page


def _same(a: Any, b: Any) -> bool:
    """Equality that tells 0.0 from -0.0 (their JSON differs) and compares types."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return (
            isinstance(b, list) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, float):
        return (
            isinstance(b, float)
            and (a == b or (math.isnan(a) and math.isnan(b)))
            and math.copysign(1, a) == math.copysign(1, b)
        )
    return type(a) is type(b) and a == b


# Hypothesis reports any change of the global `random` state while a strategy draws, as the strategy's
# doing. `_pages` calls only `draw` and protobuf; the report came once in a full-suite run
# (`--randomly-seed=1065148265`), as a FlakyFailure that reproduced neither on this file alone nor on the
# whole suite again in the same order: a timing, so something else moved the state meanwhile (a background
# thread of an earlier test's fake server or client is the likely one; not traced). Not what this test checks.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pages())
def test_rest_json_writer_equals_message_to_dict(page: Any) -> None:
    expected = json_format.MessageToDict(page)
    assert _same(RestJson().page(page), expected)


def test_rest_json_writer_on_real_pages(google: Google) -> None:
    google.fleet(project="p1", services=2)
    captured: list[tuple[str, str, Any]] = []
    fetch(google, query(page_size=40), capture=captured)
    request = time_series_requests(query(page_size=40), "p1", (START, END))[0][2]
    pages = list(google.clients.monitoring.list_time_series(request=request).pages)
    writer = RestJson()
    assert all(_same(writer.page(type(p).pb(p)), json_format.MessageToDict(type(p).pb(p))) for p in pages)
    assert len(pages) > 1


def test_protobuf_parser_equals_rest_json_parser_on_real_pages(google: Google) -> None:
    from tests.test_columnar import check_page

    google.fleet(project="p1", services=3, leaking=[1])
    pages = []
    for _, _, request in time_series_requests(query(page_size=500), "p1", (START, END)):
        pages.extend(type(p).pb(p) for p in google.clients.monitoring.list_time_series(request=request).pages)
    assert sum(len(ts.points) for page in pages for ts in page.time_series) > 1000
    for page in pages:
        check_page(page)


# ---------------------------------------------------------------------------------------------
# The command line, with the emulator variables pointing at the fakes


@dataclass
class Scenario:
    """The bundled demo incident served by the fakes as raw API data (one-minute points, a week)."""

    google: Google
    window: dict[str, str]


@pytest.fixture(scope="module")
def demo() -> Iterator[Scenario]:
    documents, manifest = demo_documents()
    behaviour = Behaviour()
    monitoring, run = FakeMetricService(behaviour), FakeRun(behaviour)
    for sub, _, body in documents:
        {
            "timeSeries": monitoring.load_response,
            "revisions": run.load_revisions,
            "services": run.load_services,
        }[sub](body)
    server = start([monitoring, run])
    google = Google(
        behaviour,
        monitoring,
        run,
        server,
        build_clients({"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address}),
    )
    yield Scenario(google, manifest["window"])
    google.clients.close()
    server.stop()


def invoke(args: list[str], env: dict[str, str] | None = None) -> Any:
    result = CliRunner().invoke(cli, args, env={"NO_GCE_CHECK": "true", **(env or {})})
    return result


def report_json(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    result = invoke(["report", *args, "--format", "json"], env)
    assert result.exit_code == 0, result.output
    body: dict[str, Any] = json.loads(result.stdout)
    return body


def test_cli_live_report_finds_the_demo_incident_and_fetch_replays_it(demo: Scenario, tmp_path: Path) -> None:
    """The demo incident served as raw API data: live report finds and attributes it; fetch + replay agree."""
    window = ["--start", demo.window["start"], "--end", demo.window["end"]]
    demo.google.behaviour.reset()
    live = report_json(["--project", "demo-project", *window], demo.google.env)
    assert demo.google.behaviour.counts() == {
        # the plan, one query listing the fleet's services, and the history of its three services'
        # revisions serving at the window's start (deployed at three different times: three reads)
        "ListTimeSeries": len(DEFAULT_PLAN) + 1 + 3 * len(HISTORY_METRICS),
        "ListRevisions": 1,
        "ListServices": 1,
    }
    kinds = {(f["kind"], f["service"], f["revision"]) for f in live["findings"]}
    assert ("memory_baseline_rise", "llm-router", "llm-router-00042-xyz") in kinds
    assert ("instance_creep", "llm-router", "llm-router-00042-xyz") in kinds
    assert live["problems"] == []

    folder = tmp_path / "snap"
    fetched = invoke(
        ["fetch", "--project", "demo-project", *window, "--snapshot", str(folder)], demo.google.env
    )
    assert fetched.exit_code == 0, fetched.output
    assert "wrote" in fetched.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["window"] == demo.window
    assert manifest["projects"] == ["demo-project"]
    replayed = report_json(["--snapshot", str(folder)])
    for key in ("findings", "services", "fixes", "summary", "window", "problems"):
        assert live[key] == replayed[key], key
    again = invoke(
        ["fetch", "--project", "demo-project", *window, "--snapshot", str(folder)], demo.google.env
    )
    assert again.exit_code == 2
    assert "not empty" in again.stderr


def test_cli_reports_a_project_without_permission_and_analyzes_the_other(google: Google) -> None:
    google.fleet(project="p1", services=2)
    google.fleet(project="p2", services=2)
    google.behaviour.inject(permission_denied("p2"))
    window = ["--start", START.isoformat(), "--end", END.isoformat()]
    body = report_json(["--project", "p1", "--project", "p2", *window], google.env)
    assert {s["project"] for s in body["services"]} == {"p1"}
    [problem] = body["problems"]
    assert "p2" in json.dumps(problem)
    assert "roles/monitoring.viewer" in json.dumps(problem)


def test_cli_exit_codes_and_hints(google: Google) -> None:
    google.fleet(project="p1", services=1)
    assert invoke(["report", "--region", "us-central1"]).exit_code == 2
    assert (
        invoke(["report", "--project", "p1", "--days", "2", "--start", "2026-01-01T00:00:00Z"]).exit_code == 2
    )
    assert invoke(["report", "--project", "p1", "--start", "yesterday"]).exit_code == 2
    assert invoke(["fetch", "--days", "2", "--snapshot", "x"]).exit_code == 2
    google.behaviour.inject(service_disabled("p1"))
    window = ["--start", "2026-01-01T00:00:00Z", "--end", "2026-01-01T06:00:00Z"]
    denied = invoke(["report", "--project", "p1", *window], google.env)
    assert denied.exit_code == 4
    assert "gcloud services enable monitoring.googleapis.com --project p1" in denied.stderr
