"""Builders of Google REST JSON bodies for tests, written independently of the parser under test:
they follow the proto3 JSON mapping (camelCase, INT64 as strings, newest point first)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

T0 = datetime(2026, 11, 16, tzinfo=UTC)


def rfc3339(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def linear_distribution(samples: Sequence[float], *, width: float = 0.01, buckets: int = 100) -> dict[str, Any]:
    """A point value holding a DISTRIBUTION over ``samples`` with linear buckets of ``width`` starting at 0."""
    counts = [0] * (buckets + 2)
    for value in samples:
        index = 0 if value < 0 else min(int(value // width) + 1, buckets + 1)
        counts[index] += 1
    n = len(samples)
    mean = sum(samples) / n if n else 0.0
    body: dict[str, Any] = {
        "count": str(n),
        "mean": mean,
        "sumOfSquaredDeviation": sum((v - mean) ** 2 for v in samples),
        "bucketOptions": {"linearBuckets": {"numFiniteBuckets": buckets, "width": width, "offset": 0}},
        "bucketCounts": [str(c) for c in counts],
    }
    while body["bucketCounts"] and body["bucketCounts"][-1] == "0":
        body["bucketCounts"].pop()  # the API omits trailing zero counts
    return {"distributionValue": body}


def series(
    metric: str,
    points: Sequence[tuple[datetime, dict[str, Any]]],
    *,
    service: str = "svc",
    revision: str = "svc-00001-abc",
    project: str = "proj",
    region: str = "europe-west1",
    kind: str = "DELTA",
    value_type: str = "DISTRIBUTION",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A TimeSeries; ``points`` are (end time, value) oldest first, DELTA intervals one minute long."""
    out_points = []
    for end, value in reversed(points):
        interval = {"endTime": rfc3339(end)}
        if kind == "DELTA":
            interval["startTime"] = rfc3339(end - timedelta(minutes=1))
        out_points.append({"interval": interval, "value": value})
    return {
        "metric": {"type": f"run.googleapis.com/{metric}", "labels": {"container_name": "app", **(labels or {})}},
        "resource": {
            "type": "cloud_run_revision",
            "labels": {"project_id": project, "service_name": service, "revision_name": revision,
                       "location": region, "configuration_name": service},
        },
        "metricKind": kind,
        "valueType": value_type,
        "points": out_points,
    }


def revision(name: str, *, service: str = "svc", project: str = "proj", region: str = "europe-west1",
             created: datetime = T0, cpu: str = "1", memory: str = "512Mi", cpu_idle: bool | None = True,
             min_instances: int = 0, labels: dict[str, str] | None = None,
             annotations: dict[str, str] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {"limits": {"cpu": cpu, "memory": memory}}
    if cpu_idle:
        resources["cpuIdle"] = True  # proto3 JSON omits false
    body: dict[str, Any] = {
        "name": f"projects/{project}/locations/{region}/services/{service}/revisions/{name}",
        "createTime": rfc3339(created),
        "containers": [{"image": f"europe-docker.pkg.dev/{project}/app/{service}:{name}", "resources": resources,
                        "ports": [{"containerPort": 8080}]}],
        "scaling": {"maxInstanceCount": 100, **({"minInstanceCount": min_instances} if min_instances else {})},
        "maxInstanceRequestConcurrency": 80,
    }
    if labels:
        body["labels"] = labels
    if annotations:
        body["annotations"] = annotations
    return body
