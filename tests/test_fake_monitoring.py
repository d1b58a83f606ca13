"""The fake MetricService's semantics against hand-computed values, so it cannot agree with a wrong client.

Every expected number below is worked out from the raw points in the test, not from the fake's code.
"""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import pytest
from google.api_core import exceptions
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import MetricServiceGrpcTransport
from google.protobuf import json_format

from tests.fakes.monitoring import (
    FakeMetricService,
    InvalidArgument,
    Series,
    TimeSeriesPb,
    distribution_percentile,
    parse_filter,
    series_from_json,
    series_from_pb,
)
from tests.fakes.server import Behaviour, permission_denied, resource_exhausted, serving, unavailable

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, a multiple of 300
REQ = "run.googleapis.com/request_count"
MEM = "run.googleapis.com/container/memory/utilizations"
INST = "run.googleapis.com/container/instance_count"
BOUNDS = [1.0, 2.0, 4.0]  # buckets: (-inf,1) [1,2) [2,4) [4,inf)
EXPLICIT = {"explicitBuckets": {"bounds": BOUNDS}}


@pytest.fixture(autouse=True)
def _no_metadata_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_GCE_CHECK", "true")


def resource(service: str = "a", revision: str = "a-1", project: str = "p") -> dict[str, str]:
    return {
        "project_id": project,
        "location": "us-central1",
        "service_name": service,
        "revision_name": revision,
    }


def interval(start: int, end: int) -> dict[str, Any]:
    return {"startTime": _ts(start), "endTime": _ts(end)}


def _ts(epoch: int) -> str:
    return np.datetime_as_string(np.datetime64(epoch, "s"), unit="s") + "Z"


def delta_series(
    values: list[float],
    *,
    res: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    metric: str = REQ,
    first_end: int = T0 + 60,
) -> dict[str, Any]:
    """A raw DELTA INT64 series, one point a minute, in REST JSON (newest first, INT64 as strings)."""
    points = [
        {
            "interval": interval(first_end + 60 * i - 60, first_end + 60 * i),
            "value": {"int64Value": str(int(v))},
        }
        for i, v in enumerate(values)
    ]
    return {
        "metric": {"type": metric, "labels": labels or {}},
        "resource": {"type": "cloud_run_revision", "labels": res or resource()},
        "metricKind": "DELTA",
        "valueType": "INT64",
        "points": points[::-1],
    }


def gauge_series(
    values: list[float], *, res: dict[str, str] | None = None, labels: dict[str, str] | None = None
) -> dict[str, Any]:
    points = [
        {"interval": {"endTime": _ts(T0 + 60 * (i + 1))}, "value": {"int64Value": str(int(v))}}
        for i, v in enumerate(values)
    ]
    return {
        "metric": {"type": INST, "labels": labels or {"state": "active"}},
        "resource": {"type": "cloud_run_revision", "labels": res or resource()},
        "metricKind": "GAUGE",
        "valueType": "INT64",
        "points": points[::-1],
    }


def dist_value(samples: list[float]) -> dict[str, Any]:
    """A distribution over BOUNDS built from explicit samples (hand-checkable)."""
    counts = [0, 0, 0, 0]
    for x in samples:
        counts[sum(x >= b for b in BOUNDS)] += 1
    mean = sum(samples) / len(samples)
    value: dict[str, Any] = {
        "count": str(len(samples)),
        "mean": mean,
        "sumOfSquaredDeviation": sum((x - mean) ** 2 for x in samples),
        "bucketOptions": EXPLICIT,
        "bucketCounts": [str(c) for c in counts],
    }
    while value["bucketCounts"] and value["bucketCounts"][-1] == "0":  # trailing zeros may be omitted
        value["bucketCounts"].pop()
    return value


def dist_series(per_minute: list[list[float]], *, res: dict[str, str] | None = None) -> dict[str, Any]:
    points = [
        {"interval": interval(T0 + 60 * i, T0 + 60 * (i + 1)), "value": {"distributionValue": dist_value(s)}}
        for i, s in enumerate(per_minute)
    ]
    return {
        "metric": {"type": MEM, "labels": {"container_name": "app"}},
        "resource": {"type": "cloud_run_revision", "labels": res or resource()},
        "metricKind": "DELTA",
        "valueType": "DISTRIBUTION",
        "points": points[::-1],
    }


def request(
    metric: str = REQ,
    *,
    start: int = T0,
    end: int = T0 + 600,
    period: int = 300,
    aligner: str = "ALIGN_NONE",
    reducer: str = "REDUCE_NONE",
    group_by: tuple[str, ...] = (),
    extra_filter: str = "",
    project: str = "p",
    page_size: int = 0,
) -> Any:
    message = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=f'metric.type = "{metric}"' + (f" AND {extra_filter}" if extra_filter else ""),
        interval=monitoring_v3.TimeInterval(start_time={"seconds": start}, end_time={"seconds": end}),
        aggregation=monitoring_v3.Aggregation(
            alignment_period={"seconds": period},
            per_series_aligner=getattr(monitoring_v3.Aggregation.Aligner, aligner),
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, reducer),
            group_by_fields=list(group_by),
        ),
        page_size=page_size,
    )
    return monitoring_v3.ListTimeSeriesRequest.pb(message)


def fake(*bodies: dict[str, Any]) -> FakeMetricService:
    service = FakeMetricService()
    for body in bodies:
        service.add_time_series(body)
    return service


def points(s: Series) -> list[tuple[int, int, float]]:
    assert s.values is not None
    return [(int(a) - T0, int(b) - T0, float(v)) for a, b, v in zip(s.starts, s.ends, s.values, strict=True)]


# ---------------------------------------------------------------------------------------------
# Filters


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('metric.type = "m"', {"a", "b", "c"}),
        ('metric.type = "m" AND resource.labels.service_name = "a"', {"a"}),
        ('metric.type = "m" AND resource.labels.service_name = one_of("a", "c")', {"a", "c"}),
        ('metric.type = "m" AND resource.labels.service_name != "a"', {"b", "c"}),
        ('metric.type = "m" AND NOT resource.labels.service_name = one_of("a","b")', {"c"}),
        ('metric.type = "m" AND resource.labels.service_name = starts_with("b")', {"b"}),
        ('metric.type = "m" AND resource.labels.location = monitoring.regex.full_match("europe-.*")', {"c"}),
        (
            'metric.type = "m" AND (resource.labels.service_name = "a" OR '
            'resource.label.location = "europe-west1")',
            {"a", "c"},
        ),
        ('metric.type = "m" AND metric.labels.state = "idle"', {"b"}),
        ('metric.type = "m" AND resource.type = "cloud_run_revision" AND project = "p"', {"a", "b", "c"}),
        ('metric.type = "m" AND resource.labels.service_name : "b"', {"b"}),
    ],
)
def test_filter_selects_hand_picked_series(text: str, expected: set[str]) -> None:
    def make(service: str, location: str, state: str) -> Series:
        empty = np.empty(0, dtype=np.int64)
        return Series(
            "m",
            {"state": state},
            "cloud_run_revision",
            {"project_id": "p", "service_name": service, "location": location},
            "GAUGE",
            "INT64",
            empty,
            empty,
            np.empty(0),
        )

    candidates = [
        make("a", "us-central1", "active"),
        make("b", "us-central1", "idle"),
        make("c", "europe-west1", "active"),
    ]
    metric, predicate = parse_filter(text)
    assert metric == "m"
    assert {s.resource_labels["service_name"] for s in candidates if predicate(s)} == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        'resource.type = "cloud_run_revision"',  # no metric type
        'metric.type = "a" OR metric.type = "b"',  # not exactly one
        'metric.type = "a" AND metric.type = "b"',
        'metric.type = starts_with("run.googleapis.com/")',
        'metric.type = "a" AND resource.labels.x = "unterminated',
        'metric.type = "a" AND metadata.user_labels.x = "y"',  # outside the subset
        'metric.type = "a" AND resource.labels.x = lower("y")',
        'metric.type = "a" resource.labels.x = "y"',  # implicit AND is not in the subset
        'metric.type = "a" AND (resource.labels.x = "y"',
    ],
)
def test_filter_outside_the_subset_is_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_filter(text)


# ---------------------------------------------------------------------------------------------
# Aligners


def test_align_delta_sums_each_period_anchored_on_the_end() -> None:
    service = fake(delta_series([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))  # ends T0+60 .. T0+600
    [s] = service.query(request(aligner="ALIGN_DELTA"))
    assert (s.kind, s.value_type) == ("DELTA", "INT64")
    # (T0, T0+300] holds 1..5, (T0+300, T0+600] holds 6..10
    assert points(s) == [(0, 300, 15.0), (300, 600, 40.0)]


def test_interval_is_half_open_and_periods_end_at_the_interval_end() -> None:
    service = fake(delta_series([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]))
    # (T0+60, T0+570]: the point ending at T0+60 is excluded (start is open), T0+600 is past the end.
    # Periods end at T0+570 and T0+270: (T0+270, T0+570] = ends 300..540 -> 5+6+7+8+9 = 35;
    # (T0-30, T0+270] within the interval = ends 120..240 -> 2+3+4 = 9.
    [s] = service.query(request(aligner="ALIGN_DELTA", start=T0 + 60, end=T0 + 570))
    assert points(s) == [(-30, 270, 9.0), (270, 570, 35.0)]


def test_align_rate_divides_by_the_period() -> None:
    [s] = fake(delta_series([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])).query(request(aligner="ALIGN_RATE"))
    assert (s.kind, s.value_type) == ("GAUGE", "DOUBLE")
    assert [v for *_, v in points(s)] == pytest.approx([15 / 300, 40 / 300])


@pytest.mark.parametrize(
    ("aligner", "value_type", "expected"),
    [
        ("ALIGN_MEAN", "DOUBLE", [(3 + 1 + 4 + 1 + 5) / 5, (9 + 2 + 6 + 5 + 3) / 5]),
        ("ALIGN_MIN", "INT64", [1, 2]),
        ("ALIGN_MAX", "INT64", [5, 9]),
        ("ALIGN_SUM", "INT64", [14, 25]),
        ("ALIGN_COUNT", "INT64", [5, 5]),
    ],
)
def test_statistical_aligners_on_a_gauge(aligner: str, value_type: str, expected: list[float]) -> None:
    [s] = fake(gauge_series([3, 1, 4, 1, 5, 9, 2, 6, 5, 3])).query(request(INST, aligner=aligner))
    assert (s.kind, s.value_type) == ("GAUGE", value_type)
    assert [v for *_, v in points(s)] == pytest.approx(expected)
    assert [e for _, e, _ in points(s)] == [300, 600]


@pytest.mark.parametrize("aligner", ["ALIGN_DELTA", "ALIGN_RATE"])
def test_delta_aligners_refuse_gauges(aligner: str) -> None:
    with pytest.raises(InvalidArgument, match="kind GAUGE"):
        fake(gauge_series([1, 2])).query(request(INST, aligner=aligner))


def test_align_none_returns_the_raw_points_in_the_interval() -> None:
    [s] = fake(delta_series([1, 2, 3, 4])).query(request(start=T0 + 60, end=T0 + 180))
    assert points(s) == [(60, 120, 2.0), (120, 180, 3.0)]


# Distribution samples per minute; merged per period by hand.
MINUTE_1 = [1.5, 1.5, 3.0]  # buckets [0, 2, 1, 0]
MINUTE_2 = [0.5, 3.0, 5.0]  # buckets [1, 0, 1, 1]


def test_align_delta_merges_distributions_exactly() -> None:
    [s] = fake(dist_series([MINUTE_1, MINUTE_2])).query(request(MEM, aligner="ALIGN_DELTA", end=T0 + 300))
    assert s.dists is not None
    assert s.value_type == "DISTRIBUTION"
    assert s.kind == "DELTA"
    merged = MINUTE_1 + MINUTE_2
    mean = sum(merged) / 6  # 14.5 / 6
    assert s.dists.counts.tolist() == [[1, 2, 2, 1]]
    assert s.dists.count.tolist() == [6]
    assert s.dists.mean[0] == pytest.approx(mean)
    assert s.dists.ssd[0] == pytest.approx(sum((x - mean) ** 2 for x in merged))


@pytest.mark.parametrize(
    ("aligner", "expected"),
    [
        # merged buckets [1,2,2,1], 6 samples:
        ("ALIGN_PERCENTILE_50", 2.0),  # rank 3 ends bucket [1,2): 1 + (3-1)/2 * 1
        ("ALIGN_PERCENTILE_95", 4.0),  # rank 5.7 falls in the overflow bucket: its lower bound
        ("ALIGN_PERCENTILE_05", 1.0),  # rank 0.3 falls in the underflow bucket: its upper bound
    ],
)
def test_percentile_aligners(aligner: str, expected: float) -> None:
    [s] = fake(dist_series([MINUTE_1, MINUTE_2])).query(request(MEM, aligner=aligner, end=T0 + 300))
    assert (s.kind, s.value_type) == ("GAUGE", "DOUBLE")
    assert [v for *_, v in points(s)] == pytest.approx([expected])


@pytest.mark.parametrize(
    ("q", "expected"), [(50, 2.0), (95, 2 + 0.9 * 2), (5, 1 + 0.4 / 4 * 1), (99, 2 + 0.98 * 2)]
)
def test_distribution_percentile_interpolates_inside_the_bucket(q: float, expected: float) -> None:
    # 8 samples: 4 in [1,2), 4 in [2,4); rank q/100*8
    counts = np.asarray([0, 4, 4, 0])
    assert distribution_percentile(counts, np.asarray(BOUNDS), 2.0, q) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Reducers and group_by_fields


def three_revisions() -> FakeMetricService:
    return fake(
        delta_series([1, 1, 1, 1, 1], res=resource("a", "a-1"), labels={"response_code_class": "2xx"}),
        delta_series([2, 2, 2, 2, 2], res=resource("a", "a-1"), labels={"response_code_class": "5xx"}),
        delta_series([10, 10, 10, 10, 10], res=resource("a", "a-2"), labels={"response_code_class": "2xx"}),
        # b has points only in the second period
        delta_series(
            [7, 7], res=resource("b", "b-1"), labels={"response_code_class": "2xx"}, first_end=T0 + 360
        ),
    )


def test_reduce_sum_grouped_by_revision_keeps_only_grouped_labels() -> None:
    result = three_revisions().query(
        request(
            aligner="ALIGN_DELTA",
            reducer="REDUCE_SUM",
            group_by=("resource.labels.service_name", "resource.labels.revision_name"),
        )
    )
    by_revision = {s.resource_labels["revision_name"]: s for s in result}
    assert set(by_revision) == {"a-1", "a-2", "b-1"}
    assert by_revision["a-1"].resource_labels == {"service_name": "a", "revision_name": "a-1"}
    assert by_revision["a-1"].metric_labels == {}
    assert points(by_revision["a-1"]) == [(0, 300, 15.0)]  # 5x1 + 5x2
    assert points(by_revision["a-2"]) == [(0, 300, 50.0)]
    assert points(by_revision["b-1"]) == [(300, 600, 14.0)]


def test_reduce_sum_grouped_by_a_metric_label() -> None:
    result = three_revisions().query(
        request(aligner="ALIGN_DELTA", reducer="REDUCE_SUM", group_by=("metric.labels.response_code_class",))
    )
    by_class = {s.metric_labels["response_code_class"]: s for s in result}
    assert points(by_class["2xx"]) == [(0, 300, 55.0), (300, 600, 14.0)]
    assert points(by_class["5xx"]) == [(0, 300, 10.0)]
    assert by_class["2xx"].resource_labels == {}


@pytest.mark.parametrize(
    ("reducer", "value_type", "first", "second"),
    [
        # first period: a-1/2xx 5, a-1/5xx 10, a-2 50; second period: b-1 14 only
        ("REDUCE_SUM", "INT64", 65.0, 14.0),
        ("REDUCE_MEAN", "DOUBLE", 65.0 / 3, 14.0),
        ("REDUCE_MIN", "INT64", 5.0, 14.0),
        ("REDUCE_MAX", "INT64", 50.0, 14.0),
        ("REDUCE_COUNT", "INT64", 3.0, 1.0),
        ("REDUCE_PERCENTILE_50", "DOUBLE", 10.0, 14.0),
        ("REDUCE_PERCENTILE_95", "DOUBLE", 10 + 0.9 * 40, 14.0),  # linear between order statistics
    ],
)
def test_numeric_reducers_over_every_series(
    reducer: str, value_type: str, first: float, second: float
) -> None:
    [s] = three_revisions().query(request(aligner="ALIGN_DELTA", reducer=reducer))
    assert s.value_type == value_type
    assert s.kind == "DELTA"
    assert points(s) == [(0, 300, pytest.approx(first)), (300, 600, pytest.approx(second))]


def test_reduce_sum_merges_distributions_across_series() -> None:
    service = fake(
        dist_series([MINUTE_1], res=resource("a", "a-1")), dist_series([MINUTE_2], res=resource("a", "a-2"))
    )
    [s] = service.query(
        request(
            MEM,
            aligner="ALIGN_DELTA",
            reducer="REDUCE_SUM",
            end=T0 + 300,
            group_by=("resource.labels.service_name",),
        )
    )
    assert s.dists is not None
    assert s.resource_labels == {"service_name": "a"}
    assert s.dists.counts.tolist() == [[1, 2, 2, 1]]
    merged = MINUTE_1 + MINUTE_2
    assert s.dists.mean[0] == pytest.approx(sum(merged) / 6)
    assert s.dists.ssd[0] == pytest.approx(sum((x - sum(merged) / 6) ** 2 for x in merged))
    [mean] = service.query(request(MEM, aligner="ALIGN_DELTA", reducer="REDUCE_MEAN", end=T0 + 300))
    assert mean.value_type == "DOUBLE"
    assert mean.values is not None
    assert mean.values.tolist() == pytest.approx([sum(merged) / 6])
    [p50] = service.query(request(MEM, aligner="ALIGN_DELTA", reducer="REDUCE_PERCENTILE_50", end=T0 + 300))
    assert p50.values is not None
    assert p50.values.tolist() == pytest.approx([2.0])


def test_instance_counts_mean_then_sum_by_state() -> None:
    service = fake(
        gauge_series([2, 2, 2, 4, 5], res=resource("a", "a-1"), labels={"state": "active"}),
        gauge_series([1, 1, 1, 1, 1], res=resource("a", "a-2"), labels={"state": "active"}),
        gauge_series([3, 3, 3, 3, 3], res=resource("a", "a-2"), labels={"state": "idle"}),
    )
    result = service.query(
        request(
            INST, aligner="ALIGN_MEAN", reducer="REDUCE_SUM", end=T0 + 300, group_by=("metric.labels.state",)
        )
    )
    by_state = {s.metric_labels["state"]: s for s in result}
    assert points(by_state["active"]) == [(300, 300, pytest.approx(15 / 5 + 1))]  # GAUGE: start = end
    assert points(by_state["idle"]) == [(300, 300, 3.0)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aligner": "ALIGN_DELTA", "period": 30}, "at least 60 seconds"),
        ({"reducer": "REDUCE_SUM"}, "requires a per-series aligner"),
        (
            {"aligner": "ALIGN_DELTA", "reducer": "REDUCE_SUM", "group_by": ("resource.service_name",)},
            "group_by",
        ),
        ({"aligner": "ALIGN_STDDEV"}, "does not implement"),
        ({"aligner": "ALIGN_PERCENTILE_99"}, "kind DELTA and value type INT64"),
    ],
)
def test_invalid_aggregations(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        three_revisions().query(request(**kwargs))


def test_name_must_be_a_project_and_only_its_series_are_served() -> None:
    service = fake(
        delta_series([1, 2], res=resource(project="p")), delta_series([5], res=resource(project="q"))
    )
    assert [points(s) for s in service.query(request(project="q"))] == [[(0, 60, 5.0)]]
    bad = request()
    bad.name = "organizations/1"
    with pytest.raises(InvalidArgument):
        service.query(bad)


# ---------------------------------------------------------------------------------------------
# Paging, served over gRPC to the real client


def client_for(address: str) -> monitoring_v3.MetricServiceClient:
    return monitoring_v3.MetricServiceClient(
        transport=MetricServiceGrpcTransport(channel=grpc.insecure_channel(address))
    )


def test_pages_count_points_and_split_series() -> None:
    service = fake(
        delta_series([1] * 5, res=resource("a", "a-1")), delta_series([2] * 5, res=resource("b", "b-1"))
    )
    with serving(service) as server:
        client = client_for(server.address)
        pager = client.list_time_series(
            request=monitoring_v3.ListTimeSeriesRequest.wrap(request(page_size=4))
        )
        pages = [
            [(ts.resource.labels["service_name"], len(ts.points)) for ts in page.time_series]
            for page in pager.pages
        ]
        client.transport.close()
    assert pages == [[("a", 4)], [("a", 1), ("b", 3)], [("b", 2)]]
    assert service.behaviour.count("ListTimeSeries") == 3


def test_page_token_is_bound_to_the_request() -> None:
    service = fake(delta_series([1] * 5))
    first = service.page(request(page_size=2))
    assert first.next_page_token
    other = request(page_size=2, start=T0 + 60)
    other.page_token = first.next_page_token
    with pytest.raises(InvalidArgument, match="different request"):
        service.page(other)
    same = request(page_size=2)
    same.page_token = first.next_page_token
    assert len(service.page(same).time_series[0].points) == 2


def test_headers_view_counts_series() -> None:
    service = three_revisions()
    message = request(page_size=2)
    message.view = monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS
    page = service.page(message)
    assert len(page.time_series) == 2
    assert all(len(ts.points) == 0 for ts in page.time_series)
    assert page.next_page_token


def test_wire_format_is_newest_first_with_int64_and_distributions() -> None:
    service = fake(dist_series([MINUTE_1, MINUTE_2]), delta_series([3, 4]))
    with serving(service) as server:
        client = client_for(server.address)
        [dist] = list(client.list_time_series(request=monitoring_v3.ListTimeSeriesRequest.wrap(request(MEM))))
        [count] = list(client.list_time_series(request=monitoring_v3.ListTimeSeriesRequest.wrap(request())))
        client.transport.close()
    assert [p.value.int64_value for p in count.points] == [4, 3]
    newest = dist.points[0].value.distribution_value
    assert list(newest.bucket_counts) == [1, 0, 1, 1]
    assert newest.count == 3
    assert list(newest.bucket_options.explicit_buckets.bounds) == BOUNDS


# ---------------------------------------------------------------------------------------------
# Faults and latency


def test_faults_fire_the_given_number_of_times_and_carry_details() -> None:
    behaviour = Behaviour()
    service = FakeMetricService(behaviour)
    service.add_time_series(delta_series([1, 2]))
    behaviour.inject(unavailable(times=2), permission_denied("q"), resource_exhausted(times=1, project="r"))
    message = monitoring_v3.ListTimeSeriesRequest.wrap(request())
    with serving(service) as server:
        client = client_for(server.address)
        for _ in range(2):
            with pytest.raises(exceptions.ServiceUnavailable):
                client.list_time_series(request=message, retry=None)
        assert len(list(client.list_time_series(request=message, retry=None))) == 1
        denied = monitoring_v3.ListTimeSeriesRequest.wrap(request(project="q"))
        with pytest.raises(exceptions.PermissionDenied) as caught:
            client.list_time_series(request=denied, retry=None)
        assert caught.value.reason == "IAM_PERMISSION_DENIED"
        with pytest.raises(exceptions.ResourceExhausted):
            client.list_time_series(
                request=monitoring_v3.ListTimeSeriesRequest.wrap(request(project="r")), retry=None
            )
        client.transport.close()
    assert behaviour.count("ListTimeSeries", status="UNAVAILABLE") == 2
    assert behaviour.count("ListTimeSeries", status="OK") == 1


def test_invalid_requests_answer_invalid_argument_over_grpc() -> None:
    service = fake(delta_series([1]))
    bad = request()
    bad.filter = 'resource.type = "cloud_run_revision"'
    with serving(service) as server:
        client = client_for(server.address)
        with pytest.raises(exceptions.InvalidArgument, match="exactly one metric type"):
            client.list_time_series(request=monitoring_v3.ListTimeSeriesRequest.wrap(bad), retry=None)
        client.transport.close()


def test_loading_rest_json_accepts_proto3_json_spellings() -> None:
    body = dist_series([MINUTE_2])
    body["points"][0]["value"]["distributionValue"]["bucketCounts"] = ["1", "0", "1"]  # trailing "1" dropped
    service = fake(body)
    [s] = service.query(request(MEM))
    assert s.dists is not None
    assert s.dists.counts.tolist() == [[1, 0, 1, 0]]
    snake = {
        "metric": {"type": REQ},
        "resource": {"type": "cloud_run_revision", "labels": resource("z", "z-1")},
        "metric_kind": "DELTA",
        "value_type": "INT64",
        "points": [
            {"interval": {"start_time": _ts(T0), "end_time": _ts(T0 + 60)}, "value": {"int64_value": "9"}}
        ],
    }
    service.add_time_series(snake)
    assert {s.resource_labels["service_name"] for s in service.query(request())} == {"z"}


@pytest.mark.parametrize(
    "body",
    [
        delta_series([1, 2, 3], labels={"response_code_class": "2xx"}),
        gauge_series([4, 5]),
        dist_series([MINUTE_1, MINUTE_2]),
        {
            **delta_series([1]),
            "valueType": "DOUBLE",
            "points": [{"interval": interval(T0, T0 + 60), "value": {"doubleValue": 2.5}}],
        },
    ],
    ids=["delta", "gauge", "distribution", "double"],
)
def test_fast_json_loader_agrees_with_protobufs_parser(body: dict[str, Any]) -> None:
    fast = series_from_json(body)
    slow = series_from_pb(json_format.ParseDict(body, TimeSeriesPb()))
    assert fast.header == slow.header
    assert (fast.kind, fast.value_type) == (slow.kind, slow.value_type)
    np.testing.assert_array_equal(fast.ends, slow.ends)
    np.testing.assert_array_equal(fast.starts, slow.starts)
    if slow.dists is None:
        np.testing.assert_array_equal(fast.values, slow.values)
    else:
        assert fast.dists is not None
        assert fast.dists.layout == slow.dists.layout
        for name in ("counts", "count", "mean", "ssd", "bounds"):
            np.testing.assert_array_equal(getattr(fast.dists, name), getattr(slow.dists, name))
