"""Synthetic Cloud Run fleets for the fakes: raw 60-second series the way Cloud Monitoring stores them.

``add_fleet`` fills a FakeMetricService and a FakeRun with ``services`` services (each with its
revisions) in one project and region. Values are deterministic (seeded) and plausible: memory
utilization distributions over a few instances, CPU, latencies, request counts by response class,
instance counts by state, and the billable/allocation amounts. ``leaking`` services get a memory
baseline that climbs after their last deploy, so a fleet can carry a known anomaly. A ``sidecar``
names a second container in every revision: it has its own limits and reports its own utilization and
instance-count series (metric label ``container_name``), from its own random stream, so the ingress
container's series are the same as without it. Its memory sits high and flat, or climbs after the
last deploy in the ``sidecar_leaking`` services.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tests.fakes.monitoring import Dists, FakeMetricService, bucket_bounds
from tests.fakes.run import FakeRun

P = "run.googleapis.com/"
UTILIZATION_BUCKETS = {"linearBuckets": {"numFiniteBuckets": 20, "width": 0.05, "offset": 0.0}}
LATENCY_BUCKETS = {"exponentialBuckets": {"numFiniteBuckets": 24, "growthFactor": 1.5, "scale": 1.0}}


@dataclass
class FleetSpec:
    project: str = "demo-project"
    region: str = "us-central1"
    services: int = 3
    start: int = 1_767_225_600  # 2026-01-01T00:00:00Z
    hours: float = 6.0
    revisions_per_service: int = 2
    instances: int = 3
    leaking: Sequence[int] = ()  # indexes of services whose newest revision (or ``leaking_revision``) leaks
    seed: int = 7
    names: list[str] = field(default_factory=list)
    sidecar: str = ""  # a second container's name (every revision runs it beside "app")
    sidecar_leaking: Sequence[int] = ()  # indexes of services whose newest revision's sidecar leaks
    leak_per_minute: float = 0.0015  # how fast a leak climbs, fraction of the container's limit per minute
    leaking_revision: int = -1  # which revision of a leaking service leaks (-1: the newest; a later one fixes it)

    def service_name(self, index: int) -> str:
        return self.names[index] if index < len(self.names) else f"svc-{index:04d}"


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _histograms(samples: np.ndarray, options: dict[str, Any]) -> Dists:
    """One distribution per row of ``samples`` (rows = points, columns = instances)."""
    bounds = bucket_bounds(options)
    buckets = np.searchsorted(bounds, samples, side="right")  # 0 underflow .. len(bounds) overflow
    counts = np.zeros((samples.shape[0], len(bounds) + 1), dtype=np.int64)
    rows = np.repeat(np.arange(samples.shape[0]), samples.shape[1])
    np.add.at(counts, (rows, buckets.reshape(-1)), 1)
    mean = samples.mean(axis=1)
    ssd = ((samples - mean[:, None]) ** 2).sum(axis=1)
    return Dists(
        options, bounds, counts, np.full(samples.shape[0], samples.shape[1], dtype=np.int64), mean, ssd
    )


def revision_body(spec: FleetSpec, service: str, index: int, deployed: int) -> dict[str, Any]:
    name = (
        f"projects/{spec.project}/locations/{spec.region}/services/{service}/revisions/{service}-{index:05d}"
    )
    return {
        "name": name,
        "uid": f"uid-{service}-{index}",
        "generation": str(index + 1),
        "createTime": _rfc3339(deployed),
        "labels": {"commit-sha": f"c0ffee{index:02d}"},
        "scaling": {"minInstanceCount": 1, "maxInstanceCount": 20},
        "maxInstanceRequestConcurrency": 80,
        "containers": [
            {
                "name": "app",
                "image": f"us-docker.pkg.dev/{spec.project}/app/{service}:{index}",
                "ports": [{"containerPort": 8080}],
                "resources": {"limits": {"cpu": "1000m", "memory": "512Mi"}, "cpuIdle": True},
            }
        ]
        + (
            [
                {
                    "name": spec.sidecar,
                    "image": "otel/opentelemetry-collector-contrib:0.112.0",
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "cpuIdle": True},
                }
            ]
            if spec.sidecar
            else []
        ),
    }


def add_fleet(monitoring: FakeMetricService, run: FakeRun, spec: FleetSpec) -> list[str]:
    """Add the fleet's raw series and revisions; returns the service names."""
    rng = np.random.default_rng(spec.seed)
    ends = spec.start + 60 * np.arange(1, int(spec.hours * 60) + 1, dtype=np.int64)
    n = len(ends)
    names = []
    for i in range(spec.services):
        service = spec.service_name(i)
        names.append(service)
        run.add_service(
            {
                "name": f"projects/{spec.project}/locations/{spec.region}/services/{service}",
                "uri": f"https://{service}.a.run.app",
            }
        )
        deploys = spec.start + (np.arange(spec.revisions_per_service) * n * 60) // spec.revisions_per_service
        deploys[0] = spec.start - 86_400
        for r, deployed in enumerate(deploys):
            run.add_revision(revision_body(spec, service, r + 1, int(deployed)))
        for r, deployed in enumerate(deploys):
            until = deploys[r + 1] if r + 1 < len(deploys) else ends[-1] + 1
            mask = (ends > deployed) & (ends <= until)
            if not mask.any():
                continue
            revision = f"{service}-{r + 1:05d}"
            _add_revision_series(
                monitoring,
                spec,
                rng,
                service,
                revision,
                ends[mask],
                leaking=i in spec.leaking and r == spec.leaking_revision % len(deploys),
                sidecar_leaking=i in spec.sidecar_leaking and r == spec.leaking_revision % len(deploys),
            )
    return names


def _add_revision_series(
    monitoring: FakeMetricService,
    spec: FleetSpec,
    rng: np.random.Generator,
    service: str,
    revision: str,
    ends: np.ndarray,
    *,
    leaking: bool,
    sidecar_leaking: bool = False,
) -> None:
    resource = {
        "project_id": spec.project,
        "location": spec.region,
        "service_name": service,
        "revision_name": revision,
        "configuration_name": service,
    }
    n, k = len(ends), spec.instances
    minutes = np.arange(n)[:, None]
    memory = 0.30 + 0.05 * rng.random((n, k)) + (spec.leak_per_minute * minutes if leaking else 0.0)
    cpu = 0.20 + 0.10 * rng.random((n, k))
    latency = 40.0 * np.exp(0.3 * rng.standard_normal((n, 8)))
    for metric, dists in (
        (f"{P}container/memory/utilizations", _histograms(np.clip(memory, 0, 0.99), UTILIZATION_BUCKETS)),
        (f"{P}container/cpu/utilizations", _histograms(cpu, UTILIZATION_BUCKETS)),
        (f"{P}request_latencies", _histograms(latency, LATENCY_BUCKETS)),
    ):
        labels = (
            {"response_code_class": "2xx", "response_code": "200"}
            if "latencies" in metric
            else {"container_name": "app"}
        )
        monitoring.add_arrays(
            metric=metric,
            kind="DELTA",
            value_type="DISTRIBUTION",
            resource=resource,
            metric_labels=labels,
            ends=ends,
            dists=dists,
        )
    ok = rng.poisson(120, n).astype(np.float64)
    for code_class, code, values in (
        ("2xx", "200", ok),
        ("5xx", "500", rng.poisson(1, n).astype(np.float64)),
    ):
        monitoring.add_arrays(
            metric=f"{P}request_count",
            kind="DELTA",
            value_type="INT64",
            resource=resource,
            metric_labels={"response_code_class": code_class, "response_code": code},
            ends=ends,
            values=values,
        )
    for state, count in (("active", float(k - 1)), ("idle", 1.0)):
        for container in ("app", spec.sidecar) if spec.sidecar else ("app",):
            monitoring.add_arrays(
                metric=f"{P}container/instance_count",
                kind="GAUGE",
                value_type="INT64",
                resource=resource,
                metric_labels={"state": state, "container_name": container},
                ends=ends,
                values=np.full(n, count),
            )
    if spec.sidecar:
        _add_sidecar_series(monitoring, spec, resource, ends, leaking=sidecar_leaking)
    for metric, per_instance in (
        ("container/billable_instance_time", 60.0),
        ("container/cpu/allocation_time", 60.0),
        ("container/memory/allocation_time", 30.0),
    ):
        monitoring.add_arrays(
            metric=f"{P}{metric}",
            kind="DELTA",
            value_type="DOUBLE",
            resource=resource,
            ends=ends,
            values=np.full(n, per_instance * k),
        )


def _add_sidecar_series(
    monitoring: FakeMetricService,
    spec: FleetSpec,
    resource: dict[str, str],
    ends: np.ndarray,
    *,
    leaking: bool,
) -> None:
    """The sidecar's own utilizations: memory above the ingress container's (so merging it would show),
    flat, or climbing from the same level when it leaks."""
    rng = np.random.default_rng([spec.seed, len(ends), 0x51DE])
    n, k = len(ends), spec.instances
    level = 0.50 + (spec.leak_per_minute * np.arange(n)[:, None] if leaking else 0.0)
    memory = np.clip(level + 0.02 * rng.random((n, k)), 0, 0.99)
    for metric, samples in (
        (f"{P}container/memory/utilizations", memory),
        (f"{P}container/cpu/utilizations", 0.60 + 0.05 * rng.random((n, k))),
    ):
        monitoring.add_arrays(
            metric=metric,
            kind="DELTA",
            value_type="DISTRIBUTION",
            resource=resource,
            metric_labels={"container_name": spec.sidecar},
            ends=ends,
            dists=_histograms(samples, UTILIZATION_BUCKETS),
        )
