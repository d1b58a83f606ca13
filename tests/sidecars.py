"""Two-container fleets with a known leak, for the sidecar tests: one service whose revisions run the
ingress container ``app`` (512 MiB) beside the sidecar ``otel-collector`` (256 MiB), 36 hours, the
second revision deployed halfway. Read as a snapshot of what the live query plan gets from the fakes
(Google's REST JSON), so frames, analysis and report see Google's real shapes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache

from google.cloud import monitoring_v3
from google.protobuf import json_format

from analyzer.analysis import Analysis
from analyzer.model import RawData
from analyzer.pipeline import analyze
from analyzer.sources.live import LiveQuery, RestJson, time_series_requests
from analyzer.sources.snapshot import ingest
from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun

# 0.0002 of the limit per minute: about 29 % per day, from 50 % at the deploy to ~72 % at the end.
SIDECAR_LEAKS = FleetSpec(project="sidecar-leaks", services=1, hours=36.0, sidecar="otel-collector",
                          sidecar_leaking=[0], leak_per_minute=0.0002)
SIDECAR_FLAT = replace(SIDECAR_LEAKS, project="sidecar-flat", sidecar_leaking=[])
INGRESS_LEAKS = replace(SIDECAR_LEAKS, project="ingress-leaks", sidecar_leaking=[], leaking=[0])
# Three revisions of 12 h: the second one's sidecar leaks, the third one's does not (it fixed it).
SIDECAR_FIXED = replace(SIDECAR_LEAKS, project="sidecar-fixed", revisions_per_service=3, leaking_revision=1)
LEAKING_REVISION = "svc-0000-00002"
DEPLOYED = datetime.fromtimestamp(SIDECAR_LEAKS.start, UTC) + timedelta(hours=18)  # the second revision


def query_of(spec: FleetSpec) -> LiveQuery:
    start = datetime.fromtimestamp(spec.start, UTC)
    return LiveQuery(projects=(spec.project,), start=start, end=start + timedelta(hours=spec.hours))


def snapshot(spec: FleetSpec) -> RawData:
    """The fleet as a snapshot of the live plan's answers (REST JSON), revisions and services."""
    monitoring, run = FakeMetricService(), FakeRun()
    add_fleet(monitoring, run, spec)
    query = query_of(spec)
    raw = RawData()
    for metric, _, request in time_series_requests(query, spec.project, (query.start, query.end)):
        page = monitoring.page(monitoring_v3.ListTimeSeriesRequest.pb(request))
        ingest(raw, "timeSeries", metric.metric.replace("/", "_"), RestJson().page(page))
    ingest(raw, "revisions", "all", {"revisions": [json_format.MessageToDict(r) for r in run.revisions()]})
    ingest(raw, "services", "all", {"services": [json_format.MessageToDict(s) for s in run.services()]})
    return raw


@cache
def _analysis(project: str) -> Analysis:
    spec = next(s for s in (SIDECAR_LEAKS, SIDECAR_FLAT, INGRESS_LEAKS, SIDECAR_FIXED) if s.project == project)
    return analyze(snapshot(spec))


def analysis_of(spec: FleetSpec) -> Analysis:
    """The analysis of ``snapshot(spec)`` for one of the specs above, made once per test process (do
    not modify it)."""
    return _analysis(spec.project)
