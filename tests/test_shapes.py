"""Real shapes of real data (issue 16): each test reads a body in a shape Google's APIs or Google's own
clients really produce (fixtures in tests/data/shapes/, written for these tests) and checks that every
amount is counted once and every gap is said.

The same shapes reach the live path through the fakes in tests/fakes (see test_live.py's shape tests).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.api_core import exceptions
from google.cloud import monitoring_v3, run_v2
from google.protobuf import json_format

from analyzer.errors import NoDataError
from analyzer.frames import build
from analyzer.model import FindingKind, RawData, RawSeries, metric_kind_name, value_type_name
from analyzer.pipeline import analyze
from analyzer.render.json_report import report_json
from analyzer.render.links import revision_url, service_url
from analyzer.sources import restjson
from analyzer.sources.duplicates import drop_duplicate_series
from analyzer.sources.google_clients import GoogleClients, build_clients
from analyzer.sources.inventory import join
from analyzer.sources.live import (
    DEFAULT_PLAN,
    HISTORY_METRICS,
    LiveQuery,
    RestJson,
    fetch_live,
    time_series_requests,
)
from analyzer.sources.quota import ReadBudget
from analyzer.sources.snapshot import ingest, read_snapshot
from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import Behaviour, rest_error_body, start
from tests.sidecars import (
    DEPLOYED,
    INGRESS_LEAKS,
    LEAKING_REVISION,
    SIDECAR_FLAT,
    SIDECAR_LEAKS,
    analysis_of,
    query_of,
)

SHAPES = Path(__file__).parent / "data" / "shapes"
FLEET = FleetSpec(services=2, hours=3.0)


@pytest.fixture(scope="module")
def fleet_documents() -> list[tuple[str, str, Any]]:
    """What the live source reads of a small fleet (the fake's answers to the live query plan, as REST
    JSON), plus its revisions and services as the Admin API returns them."""
    monitoring, run = FakeMetricService(), FakeRun()
    add_fleet(monitoring, run, FLEET)
    start = datetime.fromtimestamp(FLEET.start, UTC)
    query = LiveQuery(projects=(FLEET.project,), start=start, end=start + timedelta(hours=FLEET.hours))
    documents: list[tuple[str, str, Any]] = []
    for metric, _, request in time_series_requests(query, FLEET.project, (query.start, query.end)):
        page = monitoring.page(monitoring_v3.ListTimeSeriesRequest.pb(request))
        documents.append(("timeSeries", metric.metric, RestJson().page(page)))
    revisions = [json_format.MessageToDict(r) for r in run.revisions()]
    services = [json_format.MessageToDict(s) for s in run.services()]
    documents += [("revisions", "all", {"revisions": revisions}), ("services", "all", {"services": services})]
    return documents


def _load(*parts: str) -> Any:
    return json.loads((SHAPES.joinpath(*parts)).read_text(encoding="utf-8"))


# --- 1. integer enums (the Python client's to_dict / MessageToDict(use_integers_for_enums=True)) ----------


def test_enums_by_number_map_to_their_names() -> None:
    assert [metric_kind_name(v) for v in (1, 2, 3, "2", "DELTA")] == ["GAUGE", "DELTA", "CUMULATIVE", "DELTA",
                                                                      "DELTA"]
    assert [value_type_name(v) for v in (2, 3, 5, "INT64")] == ["INT64", "DOUBLE", "DISTRIBUTION", "INT64"]
    with pytest.raises(ValueError, match="unknown metricKind 9"):
        metric_kind_name(9)


def test_a_series_made_with_numbers_holds_names() -> None:
    made = RawSeries("request_count", 2, 2, "p", "r", "s", "v", {},  # type: ignore[arg-type]
                     np.zeros(0, np.int64), np.zeros(0, np.int64), values=np.zeros(0))
    assert (made.metric_kind, made.value_type, made.points_are_rates) == ("DELTA", "INT64", False)


def test_client_to_dict_snapshot_counts_requests_as_amounts() -> None:
    """Three per-minute counts of 1, 2 and 8 requests are 11 requests, not 660 (11 × 60 s)."""
    raw = read_snapshot(SHAPES / "client_to_dict")
    assert not raw.problems
    frames = build(raw, step_seconds=300)
    assert frames.metrics["requests"].sum() == 11
    assert frames.metrics["billable_s"].sum() == pytest.approx(165.5)
    assert frames.metrics["inst_active"].tolist() == [1.0]
    info = next(iter(frames.revisions.values()))
    assert (info.request_based_billing, info.max_concurrency, info.max_instances) == (True, None, None)


def test_an_int64_gauge_point_is_never_a_rate() -> None:
    """INT64 is an amount whatever the kind says (ALIGN_RATE gives DOUBLE); a GAUGE DOUBLE is a rate."""
    body = _load("client_to_dict", "timeSeries", "request_count.json")
    body["time_series"][0]["metric_kind"] = 1  # GAUGE: e.g. a tool that re-labelled the kind
    raw = RawData()
    ingest(raw, "timeSeries", "gauge-int64", body)
    assert build(raw).metrics["requests"].sum() == 11
    for point in body["time_series"][0]["points"]:
        point["value"] = {"double_value": float(point["value"]["int64_value"]) / 60.0}
    body["time_series"][0]["value_type"] = 3
    raw = RawData()
    ingest(raw, "timeSeries", "gauge-double", body)
    assert build(raw).metrics["requests"].sum() == pytest.approx(11)


def _to_dict(sub: str, body: dict[str, Any]) -> dict[str, Any]:
    """A REST JSON body re-written the way Google's Python client's ``to_dict`` writes it."""
    kind = {"timeSeries": monitoring_v3.ListTimeSeriesResponse, "revisions": run_v2.ListRevisionsResponse,
            "services": run_v2.ListServicesResponse}[sub]
    return kind.to_dict(kind.from_json(json.dumps(body), ignore_unknown_fields=True))  # type: ignore[no-any-return]


def test_to_dict_bodies_give_the_same_frames_and_revisions_as_rest_json(fleet_documents: list) -> None:
    """The issue's 59×: a whole snapshot re-written as to_dict output must read exactly as the REST one."""
    rest, client = RawData(), RawData()
    for sub, stem, body in fleet_documents:
        ingest(rest, sub, stem, body)
        ingest(client, sub, stem, _to_dict(sub, body))
    assert not rest.problems and not client.problems
    a, b = build(rest), build(client)
    assert a.metrics.equals(b.metrics)
    assert a.revisions == b.revisions


# --- 2. the same series twice --------------------------------------------------------------------------


def test_a_scope_read_beside_its_member_counts_the_member_once() -> None:
    raw = read_snapshot(SHAPES / "scope_and_member")
    requests = build(raw).metrics.groupby("service")["requests"].sum().to_dict()
    assert requests == {"cart": 60, "gateway": 15}
    (problem,) = [p for p in raw.problems if p.subject == "duplicate series"]
    assert "1 series (3 points) were read twice" in problem.message
    assert "acme-shop.request_count.json (already in" in problem.message
    assert "acme-monitoring.request_count.json" in problem.message
    assert "scope" in problem.hint


def test_the_same_body_under_two_file_names_is_read_once(tmp_path: Path) -> None:
    for name in ("billable.json", "billable (1).json"):
        target = tmp_path / "timeSeries" / name
        target.parent.mkdir(exist_ok=True)
        target.write_bytes((SHAPES / "client_to_dict" / "timeSeries" / "billable_instance_time.json").read_bytes())
    raw = read_snapshot(tmp_path)
    assert build(raw).metrics["billable_s"].sum() == pytest.approx(165.5)
    assert [p.subject for p in raw.problems] == ["duplicate series"]
    assert "billable (1).json" in raw.problems[0].message


def test_pages_of_one_series_are_not_duplicates() -> None:
    body = _load("client_to_dict", "timeSeries", "request_count.json")
    newest, *older = body["time_series"][0]["points"]
    first = {"time_series": [{**body["time_series"][0], "points": [newest]}]}
    second = {"time_series": [{**body["time_series"][0], "points": older}]}
    raw = RawData()
    ingest(raw, "timeSeries", "page.000", first)
    ingest(raw, "timeSeries", "page.001", second)
    drop_duplicate_series(raw)
    assert not raw.problems
    assert build(raw).metrics["requests"].sum() == 11


def test_joining_batches_counts_a_repeated_series_once() -> None:
    parts = []
    for name in ("acme-monitoring.request_count.json", "acme-shop.request_count.json"):
        part = RawData()
        ingest(part, "timeSeries", name, _load("scope_and_member", "timeSeries", name))
        parts.append(part)
    joined = RawData()
    for part in parts:
        join(joined, part)
    assert build(joined).metrics["requests"].sum() == 75
    assert [p.subject for p in joined.problems] == ["duplicate series"]


@dataclass
class Google:
    """Google's real clients against the loopback fakes (as tests/test_live.py builds them)."""

    monitoring: FakeMetricService
    run: FakeRun
    clients: GoogleClients
    address: str

    def fetch(self, *projects: str, **kwargs: Any) -> RawData:
        start = datetime.fromtimestamp(FLEET.start, UTC)
        query = LiveQuery(projects=projects, start=start, end=start + timedelta(hours=FLEET.hours), **kwargs)
        return fetch_live(query, clients=self.clients, now=query.end + timedelta(hours=1))


@pytest.fixture
def google() -> Iterator[Google]:
    behaviour = Behaviour()
    monitoring, run = FakeMetricService(behaviour), FakeRun(behaviour)
    server = start([monitoring, run])
    clients = build_clients({"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address})
    yield Google(monitoring, run, clients, server.address)
    clients.close()
    server.stop()


def test_live_scope_and_member_read_together_count_each_series_once(google: Google) -> None:
    add_fleet(google.monitoring, google.run, replace(FLEET, project="acme-shop"))
    add_fleet(google.monitoring, google.run, replace(FLEET, project="acme-monitoring", names=["gateway"],
                                                     services=1))
    google.monitoring.add_scope("acme-monitoring", ["acme-shop"])
    scope = google.fetch("acme-monitoring")  # the scope alone: its own series and its member's, once
    assert {s.project for s in scope.series} == {"acme-monitoring", "acme-shop"}
    assert not [p for p in scope.problems if p.subject == "duplicate series"]
    both = google.fetch("acme-monitoring", "acme-shop")
    assert build(both).metrics.equals(build(scope).metrics)
    (problem,) = [p for p in both.problems if p.subject == "duplicate series"]
    assert "live projects/acme-shop" in problem.message and "live projects/acme-monitoring" in problem.message


# --- 3. sidecars -----------------------------------------------------------------------------------------


def test_a_sidecar_revision_is_analyzed_on_its_ingress_container_and_says_so() -> None:
    raw = read_snapshot(SHAPES / "sidecar")
    frames = build(raw)
    m = frames.metrics
    assert m["mem_mean"].tolist() == pytest.approx([0.40, 0.40])  # app's, not merged with the collector's 0.90
    assert m["cpu_mean"].tolist() == pytest.approx([0.20, 0.20])
    assert m["inst_active"].tolist() == [2.0, 2.0]  # containers of one instance are not extra instances
    (said,) = [p for p in frames.problems if p.subject == "shapes-proj/europe-west4/search"]
    assert "otel-collector" in said.message and "ingress container app" in said.message
    info = next(iter(frames.revisions.values()))
    assert (info.ingress_container.name if info.ingress_container else None) == "app"
    assert (info.cpu_limit, info.memory_limit_gib) == (1.0, 1.0)  # the ingress container's
    assert info.image == "europe-docker.pkg.dev/shapes-proj/app/search:21"
    assert info.instance_limits() == (1.5, 1.25)  # what one instance is billed for: both containers


def _memory_in_bytes(raw: Any, gib_by_container: dict[str, float]) -> None:
    """The sidecar fixture's memory as ``container/memory/usage`` (bytes) only: each container's
    utilization series replaced by a usage series of that many GiB."""
    usage = []
    for container, gib in gib_by_container.items():
        body = _load("sidecar", "timeSeries", "memory_utilizations.json")["timeSeries"][0]
        body["metric"] = {"type": "run.googleapis.com/container/memory/usage", "labels": {"container_name": container}}
        for point in body["points"]:
            point["value"] = {"distributionValue": {"count": "2", "mean": gib * 2**30}}
        usage.append(body)
    raw.series = [s for s in raw.series if s.metric != "container/memory/utilizations"]
    ingest(raw, "timeSeries", "usage", {"timeSeries": usage})


def test_sidecar_memory_usage_is_read_against_the_ingress_containers_limit() -> None:
    raw = read_snapshot(SHAPES / "sidecar")
    _memory_in_bytes(raw, {"app": 0.5, "otel-collector": 0.25})
    assert build(raw).metrics["mem_mean"].tolist() == pytest.approx([0.5, 0.5])  # 0.5 GiB of app's 1 GiB


def test_several_containers_without_revisions_are_merged_and_said() -> None:
    raw = read_snapshot(SHAPES / "sidecar")
    raw.revisions = []
    frames = build(raw)
    assert frames.metrics["mem_mean"].tolist() == pytest.approx([0.65, 0.65])
    assert any("which one serves requests is unknown" in p.message for p in frames.problems)


def test_live_sidecars_are_kept_apart_by_the_query_plan(google: Google) -> None:
    add_fleet(google.monitoring, google.run, replace(FLEET, project="plain"))
    add_fleet(google.monitoring, google.run, replace(FLEET, project="with-sidecar", sidecar="otel-collector"))
    plain, sidecar = build(google.fetch("plain")), build(google.fetch("with-sidecar"))
    columns = ["mem_mean", "mem_p99", "cpu_mean", "inst_active", "inst_idle", "billable_s", "requests"]
    assert sidecar.metrics[columns].equals(plain.metrics[columns])
    assert any("otel-collector" in p.message and "ingress container app" in p.message for p in sidecar.problems)
    info = next(iter(sidecar.revisions.values()))
    assert info.instance_limits() == (1.5, 0.75)


def test_each_sidecars_memory_is_kept_apart_on_its_own_limit() -> None:
    raw = read_snapshot(SHAPES / "sidecar")
    sidecars = build(raw).sidecars
    assert sidecars["container"].tolist() == ["otel-collector"] * 2
    assert sidecars["mem_mean"].tolist() == pytest.approx([0.90, 0.90])  # its utilization, not app's 0.40
    # Memory usage alone (bytes): divided by the sidecar's own 256 MiB, not by app's 1 GiB.
    _memory_in_bytes(raw, {"app": 0.5, "otel-collector": 0.125})
    frames = build(raw)
    assert frames.metrics["mem_mean"].tolist() == pytest.approx([0.5, 0.5])
    assert frames.sidecars["mem_mean"].tolist() == pytest.approx([0.5, 0.5])  # 128 MiB of its 256 MiB


def test_a_leaking_sidecar_is_one_finding_that_names_it_on_the_revision_that_brought_it() -> None:
    analysis = analysis_of(SIDECAR_LEAKS)
    (finding,) = analysis.findings  # the ingress container (flat) has none
    assert finding.kind is FindingKind.MEMORY_BASELINE_RISE
    assert (finding.container, finding.revision, finding.onset) == ("otel-collector", LEAKING_REVISION, DEPLOYED)
    assert finding.summary.startswith("Sidecar otel-collector leaks: its memory troughs")
    assert "of its 256 MiB limit per day" in finding.summary
    assert finding.evidence["memory_limit"] == "0.25 GiB"  # the sidecar's own, not app's 512 MiB
    assert 20 <= float(finding.evidence["trough_slope_pct_of_limit_per_day"]) <= 40  # ~29 % of its limit a day
    assert finding.time_to_limit_hours is not None and finding.impact.hours_to_limit == finding.time_to_limit_hours
    assert finding.excess_cost_usd_per_month == 0.0 and "creep" in str(finding.evidence["excess_cost"])
    (doc,) = report_json(analysis, generated_at=datetime(2026, 1, 3, tzinfo=UTC))["findings"]
    assert (doc["container"], doc["revision"]) == ("otel-collector", LEAKING_REVISION)
    # The service itself is analyzed and priced exactly as beside a sidecar that does not leak.
    flat = analysis_of(SIDECAR_FLAT)
    assert not flat.findings and not flat.services[0].sidecars
    assert analysis.total_cost_usd == pytest.approx(flat.total_cost_usd)
    assert analysis.at_risk_usd_per_month == flat.at_risk_usd_per_month == 0.0


def test_a_leaking_ingress_beside_a_flat_sidecar_is_the_services_finding() -> None:
    analysis = analysis_of(INGRESS_LEAKS)
    (finding,) = analysis.findings
    assert (finding.kind, finding.container, finding.revision) == (FindingKind.MEMORY_BASELINE_RISE, "",
                                                                   LEAKING_REVISION)
    # The service's own troughs (whichever instance shows the climb first), not a sidecar's.
    assert re.match(rf"Memory troughs \((typical|worst) instance\) of {LEAKING_REVISION} climb", finding.summary)
    assert finding.evidence["memory_limit"] == "0.5 GiB" and "container" not in finding.evidence
    assert not analysis.services[0].sidecars
    (doc,) = report_json(analysis, generated_at=datetime(2026, 1, 3, tzinfo=UTC))["findings"]
    assert doc["container"] is None


def test_live_a_leaking_sidecar_is_found_through_the_real_clients(google: Google) -> None:
    add_fleet(google.monitoring, google.run, SIDECAR_LEAKS)
    query = query_of(SIDECAR_LEAKS)
    analysis = analyze(fetch_live(query, clients=google.clients, now=query.end + timedelta(hours=1)))
    (finding,) = analysis.findings
    assert (finding.container, finding.revision, finding.onset) == ("otel-collector", LEAKING_REVISION, DEPLOYED)
    assert finding.evidence["memory_limit"] == "0.25 GiB"
    assert any("runs sidecar containers (otel-collector)" in p.message and "ingress container app" in p.message
               for p in analysis.problems)


# --- 4. service-level scaling ------------------------------------------------------------------------------


def _revision(frames: Any, name: str) -> Any:
    return next(info for (_, revision), info in frames.revisions.items() if revision == name)


def test_service_level_min_instances_reach_the_revisions_and_the_idle_cost() -> None:
    raw = read_snapshot(SHAPES / "service_scaling")
    assert not raw.problems
    frames = build(raw)
    serving = _revision(frames, "billing-00004-fiz")
    assert (serving.min_instances, serving.service_min_instances) == (2, 2)
    result = analyze(raw)
    (service,) = result.services
    assert service.cost is not None
    (cost,) = service.cost.revisions
    assert cost.idle_min_instance_seconds == pytest.approx(2 * 3600)  # two idle instances held all hour
    assert cost.idle_min_instance_usd > 0


def test_a_service_floor_is_split_by_traffic_and_a_revision_floor_wins_when_higher() -> None:
    body = _load("service_scaling", "services", "europe-west1.json")
    body["services"][0]["scaling"]["minInstanceCount"] = 3
    body["services"][0]["trafficStatuses"] = [
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "billing-00004-fiz", "percent": 50},
        {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_REVISION", "revision": "billing-00003-tam", "percent": 50},
    ]
    revisions = _load("service_scaling", "revisions", "europe-west1.json")
    revisions["revisions"][1]["scaling"]["minInstanceCount"] = 4
    raw = RawData()
    ingest(raw, "services", "services", body)
    ingest(raw, "revisions", "revisions", revisions)
    ingest(raw, "timeSeries", "instances", _load("service_scaling", "timeSeries", "instance_count.json"))
    frames = build(raw)
    assert _revision(frames, "billing-00004-fiz").min_instances == 2  # ceil(3 × 50 %)
    assert _revision(frames, "billing-00003-tam").min_instances == 4  # its own floor is higher


def test_client_to_dict_service_traffic_is_read() -> None:
    service = run_v2.Service(name="projects/p/locations/l/services/s", scaling={"min_instance_count": 1},
                             traffic=[{"type_": 1, "percent": 100}],
                             latest_ready_revision="projects/p/locations/l/services/s/revisions/s-00002-abc")
    info = restjson.parse_service(run_v2.Service.to_dict(service))
    assert (info.min_instances, info.traffic) == (1, {"s-00002-abc": 100.0})


def test_live_service_level_scaling_is_read_from_the_admin_api(google: Google) -> None:
    add_fleet(google.monitoring, google.run, FLEET)
    name = f"projects/{FLEET.project}/locations/{FLEET.region}/services/{FLEET.service_name(0)}"
    google.run.add_service({"name": name, "scaling": {"minInstanceCount": 3},
                            "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
                            "latestReadyRevision": f"{name}/revisions/{FLEET.service_name(0)}-00002"})
    frames = build(google.fetch(FLEET.project))
    newest = _revision(frames, f"{FLEET.service_name(0)}-00002")
    assert (newest.min_instances, newest.service_min_instances) == (3, 3)
    other = _revision(frames, f"{FLEET.service_name(1)}-00002")
    assert (other.min_instances, other.service_min_instances) == (1, 0)  # the fleet's revision-level floor


# --- 5. error bodies -----------------------------------------------------------------------------------------


def test_error_bodies_are_named_with_their_status_and_the_rest_is_read() -> None:
    raw = read_snapshot(SHAPES / "error_bodies")
    by_file = {Path(p.subject).name: p for p in raw.problems}
    assert set(by_file) == {"all.json", "us-central1.json", "latencies.json"}
    assert "INVALID_ARGUMENT" in by_file["all.json"].message and "wildcard" in by_file["all.json"].message
    assert "region by region" in by_file["all.json"].hint
    assert "PERMISSION_DENIED" in by_file["us-central1.json"].message
    assert "RESOURCE_EXHAUSTED" in by_file["latencies.json"].message
    assert build(raw).metrics["requests"].sum() == 60


@pytest.mark.parametrize(("sub", "body"), [("revisions", {"items": []}), ("services", {"kind": "x"})])
def test_an_object_that_is_no_list_response_is_named(sub: str, body: dict[str, Any]) -> None:
    raw = RawData()
    ingest(raw, sub, f"{sub}/odd.json", body)
    assert [p.message for p in raw.problems] == [f"{sub}/odd.json: not a {sub}.list response "
                                                 f"(keys: {next(iter(body))})"]


def test_the_admin_apis_refusal_of_locations_dash_is_the_error_body_curl_saves(google: Google) -> None:
    """The fake refuses locations/- as the v2 API does; its REST error body, saved, reads as a Problem."""
    with pytest.raises(exceptions.InvalidArgument) as refused:
        list(google.clients.revisions.list_revisions(parent="projects/p/locations/-/services/-"))
    body = rest_error_body(refused.value.grpc_status_code, refused.value.message)
    raw = RawData()
    ingest(raw, "revisions", "snap/revisions/all.json", body)
    (problem,) = raw.problems
    assert problem.message.startswith("snap/revisions/all.json: holds an API error, not a revisions response: "
                                      "INVALID_ARGUMENT location must be a region")


# --- 6. what is left out is said --------------------------------------------------------------------------


def test_placeless_empty_and_unknown_series_are_each_said() -> None:
    raw = read_snapshot(SHAPES / "placeless")
    said = {Path(p.subject).stem: p for p in raw.problems}
    assert "resource.labels.location (1 series) and resource.labels.revision_name (1 series)" in (
        said["request_count"].message)
    assert "groupByFields" in said["request_count"].hint
    assert said["memory_utilizations"].message == (
        "series without points skipped: run.googleapis.com/container/memory/utilizations (1)")
    assert said["network"].message == ("unknown metric run.googleapis.com/container/network/received_bytes_count "
                                       "(1 series) ignored")
    assert "run.googleapis.com/request_count" in said["network"].hint
    assert build(raw).metrics["requests"].sum() == 12  # read all the same


def test_console_links_of_a_placeless_series_are_never_broken() -> None:
    assert service_url("p", "", "ledger") == "https://console.cloud.google.com/run?project=p"
    assert revision_url("p", "us-east4", "ledger", "") == service_url("p", "us-east4", "ledger")
    assert "//" not in revision_url("p", "", "ledger", "").removeprefix("https://")


def test_no_usable_data_counts_the_problems_it_does_not_list(tmp_path: Path) -> None:
    (tmp_path / "revisions").mkdir()
    for index in range(8):
        (tmp_path / "revisions" / f"r{index}.json").write_text('{"error": {"code": 403, "status": "DENIED"}}')
    with pytest.raises(NoDataError) as refused:
        analyze(read_snapshot(tmp_path))
    assert refused.value.message.endswith("; and 3 more)")


# --- 9. quota is the consumer's ------------------------------------------------------------------------------


def test_projects_read_under_one_consumer_share_one_read_budget() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = ReadBudget(clock=lambda: now[0], sleep=sleep)
    for _ in range(3):  # three calls for project a and three for project b, all charged to "payer"
        budget.acquire("monitoring for payer", 4)
        now[0] += 1.0
    for _ in range(3):
        budget.acquire("monitoring for payer", 4)
        now[0] += 1.0
    assert slept == [56.0]  # the 5th call (at 4 s) waits until the 1st (at 0 s) leaves the minute
    budget.acquire("monitoring for other-payer", 4)  # another consumer has its own budget
    assert slept == [56.0]


def test_live_reads_of_several_projects_draw_on_the_consumers_budget(google: Google) -> None:
    for project in ("shop-a", "shop-b"):
        add_fleet(google.monitoring, google.run, replace(FLEET, project=project))
    env = {"MONITORING_EMULATOR_HOST": google.address, "RUN_EMULATOR_HOST": google.address,
           "GOOGLE_CLOUD_QUOTA_PROJECT": "payer"}
    clients = build_clients(env)
    try:
        assert clients.quota_project == "payer"
        google.clients = clients
        google.fetch("shop-a", "shop-b")
        google.fetch("shop-a")  # a second fetch with the same clients draws on the same budget
    finally:
        clients.close()
    calls = google.monitoring.behaviour.count("ListTimeSeries")
    spent = clients.reads.spent()
    assert set(spent) == {"monitoring for payer", "run for payer"}
    # per project read: the plan, and the history of the fleet's revisions serving at the window's start
    assert spent["monitoring for payer"] == calls == 3 * (len(DEFAULT_PLAN) + len(HISTORY_METRICS))
