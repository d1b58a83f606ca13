"""Read Cloud Run metrics and revisions live from Google's APIs with a query plan built for fleets.

The plan per project is one ListTimeSeries per metric, aligned and reduced server-side and grouped
by project, region, service and revision (plus the metric labels the analysis needs), so the number
of calls does not grow with the number of services; paging adds calls only when one metric's answer
exceeds a page (100,000 points). Revisions and services are then listed once per (project, region)
that has data (``services/-`` lists a region's revisions; the Admin API refuses ``locations/-``).

Monitoring's response pages are received as wire bytes (``sources/rawpages.py``: the client's own
channel, retry and headers) and parsed once, straight into column arrays, a whole page at once
(``sources/columnar.py``). Only when ``capture`` asks for the bodies, which ``fetch --snapshot DIR``
writes as Google's REST JSON (the proto3 JSON mapping, exactly what curl returns), or when the
client's transport is not gRPC, do the pages go through the client's own call and messages
(``_time_series_pages`` decides); the snapshot reader parses the REST JSON back into the same
``RawSeries`` (a tested equality), so a snapshot replays to the same findings. The small Admin API
pages go through ``snapshot.ingest`` as REST JSON.

History: once the window's series and the revisions are known, the revisions that served at the window's
start (points in the window, deployed before it) get their first ``history_hours`` after the deploy read
too, for the memory envelope only (``HISTORY_METRICS``): the window alone never shows their warm-up, so
the analysis would have to wait out a young revision's first hours before judging a leak. Revisions of
one project and region deployed on the same UTC day share one interval and are read together
(``revision_name = one_of(...)``), so the calls grow with the days deploys were made on, not with the
services. Their points end at or
before the window's start and come back as ordinary series (``frames`` tells them apart); their bodies
are captured under stems starting ``history-``. A history read that fails is one Problem and the fetch
goes on without it: history sharpens the analysis, it is never needed for it.

Faults: UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are retried with exponential backoff
inside a per-call and an overall deadline. A failing project (no permission, API disabled, quota)
becomes a Problem naming the fix while the other projects are read; only when nothing at all could
be read, or credentials are missing, is the error raised.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry, if_exception_type
from google.auth import exceptions as auth_exceptions
from google.cloud import monitoring_v3, run_v2
from google.protobuf import json_format

from analyzer.errors import (
    AnalyzerError,
    ApiDisabledError,
    ConfigError,
    CredentialsError,
    PermissionDeniedError,
    QuotaExhaustedError,
    SourceError,
)
from analyzer.model import (
    HISTORY_HOURS,
    HISTORY_METRICS,
    HISTORY_STEM,
    METRICS_RETENTION,
    Problem,
    RawData,
    RevisionInfo,
    history_retained,
)
from analyzer.sources import columnar, rawpages, restjson, snapshot
from analyzer.sources.duplicates import drop_duplicate_series
from analyzer.sources.google_clients import LOGIN_HINT, GoogleClients, build_clients

METRIC_PREFIX = "run.googleapis.com/"
RESOURCE_FIELDS = (
    "resource.labels.project_id",
    "resource.labels.location",
    "resource.labels.service_name",
    "resource.labels.revision_name",
)
MAX_ONE_OF = 100  # services named in one filter; more are split over several queries
RETRYABLE = (
    api_exceptions.ServiceUnavailable,
    api_exceptions.DeadlineExceeded,
    api_exceptions.ResourceExhausted,
)
# History: the serving revision's first hours before the window (see the module docstring).
DAY_S = 86400  # history intervals start at the deploy's UTC day (``history_interval``)
Progress = Callable[[int, int, str], None]
Document = tuple[str, str, Any]  # (snapshot subdirectory, file stem, REST JSON body)


@dataclass(frozen=True, slots=True)
class MetricQuery:
    """One ListTimeSeries per project: a metric, its aligner and reducer, and the extra labels kept."""

    metric: str  # without the run.googleapis.com/ prefix
    aligner: str  # an Aggregation.Aligner name
    reducer: str = "REDUCE_SUM"
    extra_group_by: tuple[str, ...] = ()

    @property
    def group_by(self) -> tuple[str, ...]:
        return RESOURCE_FIELDS + self.extra_group_by


# DELTA + SUM keeps amounts as amounts and merges distributions by adding bucket counts; instance
# counts are a GAUGE, so their mean per period is summed over what is not grouped.
DEFAULT_PLAN: tuple[MetricQuery, ...] = (
    # Per container: a sidecar's utilizations must not be summed into the ingress container's.
    MetricQuery("container/memory/utilizations", "ALIGN_DELTA", extra_group_by=("metric.labels.container_name",)),
    MetricQuery("container/cpu/utilizations", "ALIGN_DELTA", extra_group_by=("metric.labels.container_name",)),
    MetricQuery("request_latencies", "ALIGN_DELTA"),
    MetricQuery("request_count", "ALIGN_DELTA", extra_group_by=("metric.labels.response_code_class",)),
    # container_name is kept so sidecars are not counted as extra instances (frames takes the largest).
    MetricQuery(
        "container/instance_count",
        "ALIGN_MEAN",
        extra_group_by=("metric.labels.state", "metric.labels.container_name"),
    ),
    MetricQuery("container/billable_instance_time", "ALIGN_DELTA"),
    MetricQuery("container/cpu/allocation_time", "ALIGN_DELTA"),
    MetricQuery("container/memory/allocation_time", "ALIGN_DELTA"),
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff for UNAVAILABLE, DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED, and the deadlines around it."""

    initial_s: float = 0.5
    maximum_s: float = 30.0
    multiplier: float = 2.0
    call_deadline_s: float = 60.0  # one page request, all its attempts (the read quota is per minute)
    overall_deadline_s: float = 300.0  # the whole fetch


@dataclass(frozen=True, slots=True)
class LiveQuery:
    """What to read: projects, window, optional region and services, and how to read it."""

    projects: tuple[str, ...]
    start: datetime
    end: datetime
    region: str | None = None
    services: tuple[str, ...] = ()
    alignment_period_s: int = 300
    freshness_lag_s: int = 300  # the newest minutes are incomplete (points arrive 1-4 min late)
    max_concurrency: int = 8
    page_size: int = 100_000  # points per page, the API's maximum
    admin_page_size: int = 1000  # revisions/services per page (servers coerce it to their maximum)
    max_queries_per_minute: int = 3000  # per API and consumer project (quota's); Monitoring's is 6,000
    plan: tuple[MetricQuery, ...] = DEFAULT_PLAN
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    admin: bool = True  # also list revisions and services; False: the caller listed them (``fetch_admin``)
    history_hours: int = HISTORY_HOURS  # first hours read of revisions deployed before the window; 0: none

    def __post_init__(self) -> None:
        if not self.projects:
            raise ConfigError("no project to read", hint="pass --project PROJECT_ID (repeat it for several)")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError(
                "the window's start and end must carry a time zone", hint="e.g. 2026-01-05T00:00:00Z"
            )
        if self.start >= self.end:
            raise ConfigError(
                f"window start {self.start:%Y-%m-%dT%H:%M:%SZ} is not before its end",
                hint="pass --start earlier than --end",
            )
        if self.alignment_period_s < 60:
            raise ConfigError(
                f"alignment period {self.alignment_period_s}s is under 60 s",
                hint="Cloud Monitoring aligns to 60 s or more; use 60 or 300",
            )
        if min(self.max_concurrency, self.page_size, self.admin_page_size, self.max_queries_per_minute) < 1:
            raise ConfigError("max_concurrency, page sizes and max_queries_per_minute must be positive")
        if not 0 <= self.history_hours <= METRICS_RETENTION // timedelta(hours=1):
            raise ConfigError(
                f"history_hours {self.history_hours} is outside 0..{METRICS_RETENTION // timedelta(hours=1)}",
                hint="hours after a deploy to read before the window (Cloud Monitoring keeps 6 weeks); 0 reads none",
            )


# ---------------------------------------------------------------------------------------------
# The query plan (pure)


def effective_window(query: LiveQuery, now: datetime) -> tuple[datetime, datetime]:
    """The window actually read: the end leaves out the incomplete newest minutes; both on the period grid."""
    period = query.alignment_period_s
    end = min(query.end, now - timedelta(seconds=query.freshness_lag_s))
    end_s = int(end.timestamp()) // period * period
    start_s = int(query.start.timestamp()) // period * period
    if start_s >= end_s:
        raise ConfigError(
            f"nothing to read: the window ends within the newest {query.freshness_lag_s // 60} minutes, "
            "which are left out because Cloud Monitoring has not written them yet",
            hint="widen the window (--days, or an earlier --start)",
        )
    return datetime.fromtimestamp(start_s, UTC), datetime.fromtimestamp(end_s, UTC)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def time_series_filter(metric: str, *, region: str | None = None, services: Iterable[str] = ()) -> str:
    """The Monitoring filter for one metric, narrowed to a region and services when given."""
    terms = [f"metric.type = {_quote(METRIC_PREFIX + metric)}", 'resource.type = "cloud_run_revision"']
    if region:
        terms.append(f"resource.labels.location = {_quote(region)}")
    names = list(services)
    if names:
        terms.append(f"resource.labels.service_name = one_of({', '.join(_quote(s) for s in names)})")
    return " AND ".join(terms)


def _list_request(
    query: LiveQuery, project: str, metric: MetricQuery, text: str, interval: tuple[datetime, datetime]
) -> monitoring_v3.ListTimeSeriesRequest:
    """One ListTimeSeries of the plan's ``metric`` with the filter ``text`` over ``interval``."""
    return monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=text,
        interval=monitoring_v3.TimeInterval(start_time=interval[0], end_time=interval[1]),
        aggregation=monitoring_v3.Aggregation(
            alignment_period={"seconds": query.alignment_period_s},
            per_series_aligner=getattr(monitoring_v3.Aggregation.Aligner, metric.aligner),
            cross_series_reducer=getattr(monitoring_v3.Aggregation.Reducer, metric.reducer),
            group_by_fields=list(metric.group_by),
        ),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        page_size=query.page_size,
    )


def time_series_requests(
    query: LiveQuery,
    project: str,
    window: tuple[datetime, datetime],
) -> list[tuple[MetricQuery, int, monitoring_v3.ListTimeSeriesRequest]]:
    """(metric, chunk, request) for every ListTimeSeries of one project."""
    chunks = [query.services[i : i + MAX_ONE_OF] for i in range(0, len(query.services), MAX_ONE_OF)] or [()]
    requests = []
    for metric in query.plan:
        for index, chunk in enumerate(chunks):
            text = time_series_filter(metric.metric, region=query.region, services=chunk)
            requests.append((metric, index, _list_request(query, project, metric, text, window)))
    return requests


@dataclass(frozen=True, slots=True)
class HistoryRead:
    """Revisions of one project and region whose history spans the same interval: read together."""

    project: str  # the project the request names: the one their window's series were read through
    member: str  # their own project (resource.labels.project_id; differs when read through a scope)
    region: str
    interval: tuple[datetime, datetime]
    revisions: tuple[tuple[str, str], ...]  # (service, revision), sorted


def serving_at_start(data: RawData, revisions: Iterable[RevisionInfo]) -> list[RevisionInfo]:
    """The revisions that served when the window began: points in the window, deployed before it."""
    start = data.window_start
    if start is None:
        return []
    with_points = {(s.project, s.region, s.service, s.revision) for s in data.series if len(s.end_times)}
    found: dict[tuple[str, str, str, str], RevisionInfo] = {}
    for r in revisions:
        key = (r.project, r.region, r.service, r.revision)
        if key in with_points and r.create_time is not None and r.create_time < start:
            found.setdefault(key, r)
    return list(found.values())


def history_interval(
    deployed: datetime, *, window_start: datetime, hours: int, period_s: int
) -> tuple[datetime, datetime]:
    """From the start of the deploy's UTC day to ``hours`` after that day's end (up to the period grid),
    or to the window's start, whichever is first: it holds the revision's first ``hours`` whatever the
    hour of its deploy, every revision deployed that day shares it (one request for all of them: the
    calls grow with the days deploys were made on, not with the services), and every aligned point
    sits on the window's own grid. A revision has no points before its deploy, so the day's earlier
    hours cost nothing."""
    day = math.floor(deployed.timestamp()) // DAY_S * DAY_S
    start_s = day // period_s * period_s
    end_s = -(-(day + DAY_S + hours * 3600) // period_s) * period_s
    end_s = min(end_s, int(window_start.timestamp()))
    return datetime.fromtimestamp(start_s, UTC), datetime.fromtimestamp(end_s, UTC)


def history_reads(
    query: LiveQuery,
    data: RawData,
    revisions: Iterable[RevisionInfo],
    *,
    now: datetime,
    read_through: Mapping[str, str] | None = None,
) -> list[HistoryRead]:
    """What to read of the history of the revisions serving at the window's start (``data``'s window
    series tell which): those deployed within Monitoring's retention, grouped by shared interval.
    ``read_through`` maps a series' project to the project it was read through (a metrics scope)."""
    if not query.history_hours or data.window_start is None:
        return []
    groups: dict[tuple[str, str, str, tuple[datetime, datetime]], list[tuple[str, str]]] = {}
    for r in serving_at_start(data, revisions):
        assert r.create_time is not None  # serving_at_start keeps only dated revisions
        if not history_retained(r.create_time, now):
            continue  # its first hours are past Cloud Monitoring's retention
        interval = history_interval(
            r.create_time, window_start=data.window_start, hours=query.history_hours, period_s=query.alignment_period_s
        )
        project = (read_through or {}).get(r.project, r.project)
        groups.setdefault((project, r.project, r.region, interval), []).append((r.service, r.revision))
    reads = []
    for (project, member, region, interval), members in sorted(groups.items()):
        ordered = sorted(members)
        for i in range(0, len(ordered), MAX_ONE_OF):
            reads.append(HistoryRead(project, member, region, interval, tuple(ordered[i : i + MAX_ONE_OF])))
    return reads


def history_filter(metric: str, read: HistoryRead) -> str:
    """The plan's filter for ``metric`` narrowed to the revisions of ``read`` (and their project)."""
    services = sorted({service for service, _ in read.revisions})
    names = [_quote(revision) for _, revision in read.revisions]
    revision = names[0] if len(names) == 1 else f"one_of({', '.join(names)})"
    return (
        f"{time_series_filter(metric, region=read.region, services=services)}"
        f" AND resource.labels.project_id = {_quote(read.member)} AND resource.labels.revision_name = {revision}"
    )


def history_requests(
    query: LiveQuery, read: HistoryRead
) -> list[tuple[MetricQuery, monitoring_v3.ListTimeSeriesRequest]]:
    """One request per HISTORY_METRICS metric of the plan, aggregated as the plan aggregates it (so a
    history point is the same kind of point as the window's)."""
    plan = {metric.metric: metric for metric in query.plan}
    return [
        (metric, _list_request(query, read.project, metric, history_filter(name, read), read.interval))
        for name, metric in plan.items()
        if name in HISTORY_METRICS
    ]


def manifest(query: LiveQuery, data: RawData) -> dict[str, Any]:
    """What ``fetch`` writes next to the bodies: the window read and the query that read it."""
    return {
        "window": {
            "start": restjson.format_time(data.window_start) if data.window_start else None,
            "end": restjson.format_time(data.window_end) if data.window_end else None,
        },
        "projects": list(query.projects),
        "query": {
            "region": query.region,
            "services": list(query.services),
            "alignmentPeriodSeconds": query.alignment_period_s,
            "historyHours": query.history_hours,
            "plan": [
                {
                    "metric": METRIC_PREFIX + m.metric,
                    "aligner": m.aligner,
                    "reducer": m.reducer,
                    "groupByFields": list(m.group_by),
                }
                for m in query.plan
            ],
        },
        "problems": [{"subject": p.subject, "message": p.message, "hint": p.hint} for p in data.problems],
    }


# ---------------------------------------------------------------------------------------------
# Errors

API_TITLES = {"monitoring": "Cloud Monitoring API", "run": "Cloud Run Admin API"}
API_SERVICES = {"monitoring": "monitoring.googleapis.com", "run": "run.googleapis.com"}
ROLES = {"monitoring": "roles/monitoring.viewer", "run": "roles/run.viewer"}


def _is_disabled(exc: api_exceptions.GoogleAPICallError) -> bool:
    text = exc.message or ""
    return (
        exc.reason == "SERVICE_DISABLED" or "has not been used in project" in text or "it is disabled" in text
    )


def map_error(exc: Exception, *, api: str, project: str, what: str) -> AnalyzerError:
    """Turn a client-library exception into the analyzer's error, with the fix in its hint."""
    title = API_TITLES[api]
    retried = ""
    if isinstance(exc, api_exceptions.RetryError):
        retried = " (retried until the deadline)"
        if isinstance(exc.cause, Exception):
            exc = exc.cause
        else:
            return SourceError(
                f"{title}: {what} in project {project} failed{retried}: {exc}",
                hint="re-run later, or raise the retry deadline",
            )
    if isinstance(exc, auth_exceptions.GoogleAuthError | api_exceptions.Unauthenticated):
        return CredentialsError(f"{title}: the credentials were refused: {exc}", hint=LOGIN_HINT)
    if isinstance(exc, api_exceptions.PermissionDenied):
        if _is_disabled(exc):
            service = API_SERVICES[api]
            return ApiDisabledError(
                f"{title} is not enabled in project {project}",
                hint=f"enable it: gcloud services enable {service} --project {project} "
                f"(or https://console.cloud.google.com/apis/library/{service}?project={project})",
            )
        role = ROLES[api]
        return PermissionDeniedError(
            f"permission denied by the {title} in project {project}: {exc.message}",
            hint=f"grant {role} on project {project} to the account running the analyzer: gcloud projects "
            f"add-iam-policy-binding {project} --member=user:YOU@example.com --role={role}",
        )
    if isinstance(exc, api_exceptions.ResourceExhausted):
        return QuotaExhaustedError(
            f"{title}: read quota exhausted in project {project} while reading {what}{retried}",
            hint="wait a minute and re-run; lower the concurrency, or request a higher 'Time series queries "
            "per minute' quota for monitoring.googleapis.com",
        )
    if isinstance(exc, api_exceptions.NotFound):
        return SourceError(
            f"{title}: {what} not found in project {project}: {exc.message}",
            hint="check the project ID (not its number or name) and --region",
        )
    if isinstance(exc, api_exceptions.ServiceUnavailable | api_exceptions.DeadlineExceeded):
        return SourceError(
            f"{title} did not answer for {what} in project {project}{retried}: {exc.message}",
            hint="re-run later, or raise the retry deadline",
        )
    if isinstance(exc, api_exceptions.InvalidArgument):
        return SourceError(
            f"{title} rejected the query for {what} in project {project}: {exc.message}",
            hint="check --region and --service values; otherwise report this as a bug",
        )
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return SourceError(f"{title}: {what} in project {project} failed{retried}: {exc.message}")
    return SourceError(f"{title}: {what} in project {project} failed: {exc}")


# ---------------------------------------------------------------------------------------------
# REST JSON of a response page


class RestJson:
    """``json_format.MessageToDict`` of response pages (camelCase, INT64 as strings, enums by name).

    A ListTimeSeries page holds up to 100,000 points, and reflection-driven MessageToDict costs
    ~20 µs a point, so points and their values are written here directly; everything else (and
    any point value outside the common shapes) still goes through MessageToDict, so the output is
    the same dict. ``tests/test_live.py`` checks the equality on generated messages.
    """

    def __init__(self) -> None:
        self._times: dict[tuple[int, int], str] = {}
        self._options: dict[bytes, dict[str, Any]] = {}

    def page(self, message: Any) -> dict[str, Any]:
        """One response page (a raw protobuf message) as its REST JSON body."""
        if message.DESCRIPTOR.full_name != "google.monitoring.v3.ListTimeSeriesResponse":
            return dict(json_format.MessageToDict(message))
        rest = type(message)()
        rest.CopyFrom(message)
        rest.ClearField("time_series")
        body: dict[str, Any] = json_format.MessageToDict(rest)
        if len(message.time_series):
            body = {"timeSeries": [self.series(ts) for ts in message.time_series], **body}
        return body

    def series(self, ts: Any) -> dict[str, Any]:
        header = type(ts)()
        header.CopyFrom(ts)
        header.ClearField("points")
        out: dict[str, Any] = json_format.MessageToDict(header)
        if len(ts.points):
            out["points"] = [self.point(p) for p in ts.points]
        return out

    def _time(self, stamp: Any) -> str:
        key = (stamp.seconds, stamp.nanos)
        text = self._times.get(key)
        if text is None:
            text = self._times[key] = stamp.ToJsonString()
        return text

    def point(self, point: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if point.HasField("interval"):
            interval = point.interval
            span: dict[str, str] = {}
            if interval.HasField("start_time"):
                span["startTime"] = self._time(interval.start_time)
            if interval.HasField("end_time"):
                span["endTime"] = self._time(interval.end_time)
            out["interval"] = span
        if point.HasField("value"):
            out["value"] = self.value(point.value)
        return out

    def value(self, value: Any) -> dict[str, Any]:
        kind = value.WhichOneof("value")
        if kind == "int64_value":
            return {"int64Value": str(value.int64_value)}
        if kind == "double_value" and math.isfinite(value.double_value):
            return {"doubleValue": value.double_value}
        if kind == "bool_value":
            return {"boolValue": value.bool_value}
        if kind == "distribution_value":
            dist = self.distribution(value.distribution_value)
            if dist is not None:
                return {"distributionValue": dist}
        return dict(json_format.MessageToDict(value))

    def distribution(self, dist: Any) -> dict[str, Any] | None:
        """The common shape (no range, no exemplars, finite numbers); None for MessageToDict to handle."""
        out: dict[str, Any] = {}
        for descriptor, item in dist.ListFields():
            name = descriptor.name
            if name == "count":
                out["count"] = str(item)
            elif name in ("mean", "sum_of_squared_deviation") and math.isfinite(item):
                out[descriptor.json_name] = item
            elif name == "bucket_options":
                raw = item.SerializeToString(deterministic=True)
                options = self._options.get(raw)
                if options is None:
                    options = self._options[raw] = json_format.MessageToDict(item)
                out["bucketOptions"] = options
            elif name == "bucket_counts":
                out["bucketCounts"] = [str(c) for c in item]
            else:
                return None
        return out


# ---------------------------------------------------------------------------------------------
# Running the plan


@dataclass(frozen=True, slots=True)
class _Task:
    api: str  # "monitoring" | "run"
    project: str
    what: str  # for messages and progress: a metric, "revisions in R", "services in R"
    stem: str  # snapshot file stem; pages add .000, .001, ...
    sub: str  # snapshot subdirectory / ingest kind
    request: Callable[[Retry, float], Iterable[Any]]  # (retry, timeout) -> the pages (messages or columnar.Page)


@dataclass(slots=True)
class _Outcome:
    task: _Task
    documents: list[Document] = field(default_factory=list)  # REST JSON: Admin API pages, captured pages
    data: RawData = field(default_factory=RawData)  # series parsed straight from Monitoring's pages
    error: AnalyzerError | None = None
    skipped: bool = False


class _Runner:
    """Runs tasks on a bounded pool: rate limit, retries, deadlines, and one Problem per failing API."""

    def __init__(
        self, query: LiveQuery, pool: ThreadPoolExecutor, clients: GoogleClients, *, capture: bool = False
    ) -> None:
        self.query = query
        self.pool = pool
        self.capture = capture  # keep every page's REST JSON too (``fetch --snapshot``)
        self.budget = clients.reads  # shared by every fetch with these clients: quota is per consumer
        self.consumer = clients.quota_project or "the credentials' project"
        self.deadline = time.monotonic() + query.retry.overall_deadline_s
        self.blocked: set[tuple[str, str]] = set()  # (project, api) known to be refused
        self.lock = threading.Lock()
        policy = query.retry
        self.retry = Retry(
            predicate=if_exception_type(*RETRYABLE),
            initial=policy.initial_s,
            maximum=policy.maximum_s,
            multiplier=policy.multiplier,
        )

    def submit(self, task: _Task) -> Future[_Outcome]:
        return self.pool.submit(self._run, task)

    def _check_deadline(self, task: _Task) -> float:
        """Seconds left for the next call; SourceError once the overall deadline has passed."""
        remaining = min(self.query.retry.call_deadline_s, self.deadline - time.monotonic())
        if remaining <= 0:
            raise SourceError(
                f"{API_TITLES[task.api]}: the overall deadline passed before reading "
                f"{task.what} in project {task.project}",
                hint="raise the overall deadline or read fewer projects at once",
            )
        return remaining

    def _acquire(self, task: _Task) -> None:
        self.budget.acquire(f"{task.api} for {self.consumer}", self.query.max_queries_per_minute)

    def _run(self, task: _Task) -> _Outcome:
        outcome = _Outcome(task)
        with self.lock:
            if (task.project, task.api) in self.blocked:
                outcome.skipped = True
                return outcome
        try:
            self._acquire(task)
            remaining = self._check_deadline(task)
            pages = iter(task.request(self.retry.with_timeout(remaining), remaining))
            to_json = RestJson()
            index = 0
            more = True  # the first page came with the call above
            while more:
                if index:  # the pager asks for the next page inside next(): one more call to pay for
                    self._acquire(task)
                    self._check_deadline(task)
                page = next(pages, None)
                if page is None:
                    break
                more = bool(getattr(page, "next_page_token", ""))
                self._take(outcome, page, f"{task.stem}.{index:03d}", to_json)
                index += 1
        except AnalyzerError as exc:
            outcome.error = exc
        except (
            api_exceptions.GoogleAPICallError,
            api_exceptions.RetryError,
            auth_exceptions.GoogleAuthError,
        ) as exc:
            outcome.error = map_error(exc, api=task.api, project=task.project, what=task.what)
            if isinstance(outcome.error, PermissionDeniedError | ApiDisabledError | CredentialsError):
                with self.lock:
                    self.blocked.add((task.project, task.api))
        return outcome


    def _take(self, outcome: _Outcome, page: Any, stem: str, to_json: RestJson) -> None:
        """Monitoring pages are parsed into column arrays at once (no REST JSON unless captured);
        the small Admin API pages travel as REST JSON, the snapshot reader's own input. ``page``: a
        ``columnar.Page`` already read from the wire, or the client's message."""
        task = outcome.task
        message = None if isinstance(page, columnar.Page) else type(page).pb(page)
        if task.sub == "timeSeries":
            read = page if message is None else columnar.Page(message)  # every point at once, column-wise
            errors = [json_format.MessageToDict(e) for e in read.execution_errors]
            warnings = [f"the response reports executionErrors, so its data may be partial: {errors}"] if errors else []
            snapshot.add_time_series(
                outcome.data, read.indices, read.parse, read.metric_type, source_of(task, stem), warnings
            )
        if self.capture or task.sub != "timeSeries":
            if message is None:
                raise AssertionError("a page read from the wire cannot be captured: _time_series_pages decides")
            if task.sub in ("revisions", "services") and self.query.services:
                message = _of_services(message, task.sub, frozenset(self.query.services))
            outcome.documents.append((task.sub, stem, to_json.page(message)))


def source_of(task: _Task, stem: str) -> str:
    """How the problems of one response page name it."""
    return f"live projects/{task.project} {task.sub} {task.what} ({stem})"


def _slug(metric: str) -> str:
    return metric.replace("/", "_")


def _pages(method: Callable[..., Any], request: Any, retry: Retry, timeout: float) -> Iterable[Any]:
    """Call a paged list method: its pager fetches the first page now and the others when iterated."""
    return method(request=request, retry=retry, timeout=timeout).pages  # type: ignore[no-any-return]


def _time_series_pages(clients: GoogleClients, *, capture: bool) -> Callable[..., Iterable[Any]]:
    """How ListTimeSeries pages are read, the one place that chooses: as wire bytes decoded once
    (``rawpages``), unless their REST JSON is captured (it is written from the client's messages) or
    the client's transport has no gRPC channel; then through the client's own pager."""
    method = None if capture else rawpages.method_for(clients.monitoring)
    if method is None:
        return partial(_pages, clients.monitoring.list_time_series)
    return partial(rawpages.pages, method)


def _metric_tasks(
    query: LiveQuery, clients: GoogleClients, window: tuple[datetime, datetime], *, capture: bool
) -> list[_Task]:
    read_pages = _time_series_pages(clients, capture=capture)
    tasks = []
    for project in query.projects:
        for metric, chunk, request in time_series_requests(query, project, window):
            suffix = f".{chunk}" if len(query.services) > MAX_ONE_OF else ""
            stem = f"{project}.{_slug(metric.metric)}{suffix}"
            call = partial(read_pages, request)
            tasks.append(_Task("monitoring", project, metric.metric, stem, "timeSeries", call))
    return tasks


def _history_tasks(
    query: LiveQuery, clients: GoogleClients, reads: Iterable[HistoryRead], *, capture: bool
) -> list[_Task]:
    """The history reads' requests; stems ``history-PROJECT.REGION.METRIC.REVISION`` (its first revision)."""
    read_pages = _time_series_pages(clients, capture=capture)
    tasks = []
    for read in reads:
        first = read.revisions[0][1]
        more = f" and {len(read.revisions) - 1} more" if len(read.revisions) > 1 else ""
        for metric, request in history_requests(query, read):
            stem = f"{HISTORY_STEM}{read.member}.{read.region}.{_slug(metric.metric)}.{first}"
            what = f"{metric.metric} of {first}{more} before the window"
            tasks.append(_Task("monitoring", read.project, what, stem, "timeSeries", partial(read_pages, request)))
    return tasks


def _admin_tasks(query: LiveQuery, clients: GoogleClients, pairs: Iterable[tuple[str, str]]) -> list[_Task]:
    """List revisions (``services/-``: all of a region) and services once per (project, region)."""
    tasks = []
    for project, region in sorted(pairs):
        location = f"projects/{project}/locations/{region}"
        revisions = run_v2.ListRevisionsRequest(
            parent=f"{location}/services/-", page_size=query.admin_page_size
        )
        services = run_v2.ListServicesRequest(parent=location, page_size=query.admin_page_size)
        stem = f"{project}.{region}"
        tasks.append(
            _Task(
                "run",
                project,
                f"revisions in {region}",
                stem,
                "revisions",
                partial(_pages, clients.revisions.list_revisions, revisions),
            )
        )
        tasks.append(
            _Task(
                "run",
                project,
                f"services in {region}",
                stem,
                "services",
                partial(_pages, clients.services.list_services, services),
            )
        )
    return tasks


def _of_services(message: Any, field: str, services: frozenset[str]) -> Any:
    """An Admin API page (``revisions`` or ``services``: a region's, ``services/-``) without the items of
    services that were not asked for. Before it becomes REST JSON: a batch of a fleet asks for a few
    services of the region's thousands, and converting the others cost more than receiving them."""
    items = getattr(message, field)
    kept = [item for item in items if item.name.split("/services/")[-1].split("/")[0] in services]
    if len(kept) == len(items):
        return message
    out = type(message)()
    out.CopyFrom(message)
    out.ClearField(field)
    getattr(out, field).extend(kept)
    return out


class _Collector:
    """Ingests outcomes in plan order, records failures as Problems, reports progress."""

    def __init__(
        self, query: LiveQuery, data: RawData, capture: list[Document] | None, progress: Progress | None
    ) -> None:
        self.query = query
        self.data = data
        self.capture = capture
        self.progress = progress
        self.done = 0
        self.total = 0
        self.failures: dict[tuple[str, str, type[AnalyzerError]], tuple[AnalyzerError, list[str]]] = {}
        self.succeeded: set[tuple[str, str]] = set()  # (project, api) with at least one answer
        self.read_through: dict[str, str] = {}  # a series' project -> the project it was read through

    def run(self, runner: _Runner, tasks: list[_Task]) -> None:
        """Run ``tasks`` and absorb their outcomes in plan order, so the result does not depend on
        timing; each is absorbed as soon as every earlier one is (parsing overlaps the waiting), and
        skipped ones last, once their project's failure is known."""
        self.total += len(tasks)
        futures = {runner.submit(task): index for index, task in enumerate(tasks)}
        results: dict[int, _Outcome] = {}
        skipped: list[_Outcome] = []
        next_index = 0
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    outcome = future.result()
                    results[futures[future]] = outcome
                    self.done += 1
                    if self.progress is not None:
                        self.progress(self.done, self.total, f"{outcome.task.project} {outcome.task.what}")
                while next_index in results:
                    outcome = results.pop(next_index)
                    next_index += 1
                    if outcome.skipped:
                        skipped.append(outcome)
                    else:
                        self._absorb(outcome)
        except BaseException:  # Ctrl-C or a bug: do not start what is still queued
            for future in pending:
                future.cancel()
            raise
        for outcome in skipped:
            self._absorb(outcome)

    def _absorb(self, outcome: _Outcome) -> None:
        task = outcome.task
        if outcome.skipped:
            for (project, api, _), (_, failed) in self.failures.items():
                if (project, api) == (task.project, task.api):
                    failed.append(task.what)
                    break
            return
        if outcome.error is not None:
            key = (task.project, task.api, type(outcome.error))
            self.failures.setdefault(key, (outcome.error, []))[1].append(task.what)
            return
        self.succeeded.add((task.project, task.api))
        for s in outcome.data.series:
            self.read_through.setdefault(s.project, task.project)
        self.data.series.extend(outcome.data.series)
        self.data.problems.extend(outcome.data.problems)
        for sub, stem, body in outcome.documents:
            if self.capture is not None:
                self.capture.append((sub, stem, body))
            if sub != "timeSeries":
                snapshot.ingest(self.data, sub, source_of(task, stem), body)

    def problems(self) -> list[Problem]:
        found = []
        for (project, _api, _kind), (error, failed) in self.failures.items():
            shown = ", ".join(failed[:4]) + (f" and {len(failed) - 4} more" if len(failed) > 4 else "")
            found.append(Problem(f"project {project}", f"{error.message} — not read: {shown}", error.hint))
        return found


def fetch_live(
    query: LiveQuery,
    *,
    clients: GoogleClients | None = None,
    progress: Progress | None = None,
    capture: list[Document] | None = None,
    now: datetime | None = None,
    revisions: Sequence[RevisionInfo] = (),
) -> RawData:
    """Read the query's metrics, revisions and services, then the history of the revisions serving at
    the window's start; ``capture`` receives every body read. ``revisions``: those the caller listed
    (``fetch_admin``, with ``query.admin`` False), which tell whose history to read.

    Raises CredentialsError when credentials are missing or refused, and the first project's error
    when nothing at all could be read; any other failure is a Problem in the returned RawData.
    """
    now = now or datetime.now(UTC)
    window = effective_window(query, now)
    own_clients = clients is None
    clients = clients or build_clients()
    data = RawData(
        window_start=window[0], window_end=window[1], origin=f"live projects {', '.join(query.projects)}"
    )
    collector = _Collector(query, data, capture, progress)
    try:
        with ThreadPoolExecutor(max_workers=query.max_concurrency, thread_name_prefix="live-fetch") as pool:
            runner = _Runner(query, pool, clients, capture=capture is not None)
            asked = {(project, query.region) for project in query.projects} if query.region else set()
            metric_tasks = _metric_tasks(query, clients, window, capture=capture is not None)
            collector.run(runner, metric_tasks + (_admin_tasks(query, clients, asked) if query.admin else []))
            seen = {(s.project, s.region) for s in data.series if s.project and s.region}
            if query.admin:
                collector.run(runner, _admin_tasks(query, clients, seen - asked))
            known = [*revisions, *data.revisions]
            reads = history_reads(query, data, known, now=now, read_through=collector.read_through)
            history = _read_history(query, clients, runner, collector, reads)
    finally:
        if own_clients:
            clients.close()
    _raise_if_unusable(collector)
    drop_duplicate_series(data)
    data.problems.extend(collector.problems())
    data.problems.extend(history)
    data.problems.extend(_missing_services(query, data))
    return data


def fetch_admin(query: LiveQuery, places: Iterable[tuple[str, str]], *, clients: GoogleClients) -> RawData:
    """Every revision and service of each (project, region) in ``places``, listed once: what a fleet's
    batches share (each then reads only its metrics, ``LiveQuery.admin`` False). Without this, each
    batch listed its whole region again (``services/-``), a cost that grew with the fleet times the
    batches. A refusal is a Problem of the place (missing credentials are raised)."""
    data = RawData(origin=f"live projects {', '.join(query.projects)}")
    collector = _Collector(query, data, None, None)
    with ThreadPoolExecutor(max_workers=query.max_concurrency, thread_name_prefix="live-admin") as pool:
        collector.run(_Runner(query, pool, clients, capture=False), _admin_tasks(query, clients, places))
    for error, _ in collector.failures.values():
        if isinstance(error, CredentialsError):
            raise error
    data.problems.extend(collector.problems())
    return data


def _read_history(
    query: LiveQuery, clients: GoogleClients, runner: _Runner, collector: _Collector, reads: list[HistoryRead]
) -> list[Problem]:
    """Read ``reads`` into the collector's data, on one progress bar with it; their failures are kept
    apart (a Problem saying the analysis went on without history), never raised, whatever they are."""
    if not reads:
        return []
    history = _Collector(query, collector.data, collector.capture, collector.progress)
    history.done, history.total = collector.done, collector.total
    history.run(runner, _history_tasks(query, clients, reads, capture=collector.capture is not None))
    said = "the first hours after the deploy of revisions serving at the window's start were not read, so "
    return [
        replace(p, message=f"{said}their warm-up is judged from the window alone: {p.message}")
        for p in history.problems()
    ]


def _raise_if_unusable(collector: _Collector) -> None:
    # Monitoring's errors first: without metrics there is nothing to analyze, so they are the cause.
    failures = sorted(collector.failures.items(), key=lambda item: item[0][1] != "monitoring")
    errors = [error for _, (error, _) in failures]
    for error in errors:
        if isinstance(error, CredentialsError):
            raise error
    if errors and not any(api == "monitoring" for _, api in collector.succeeded):
        first = errors[0]
        if len({type(e) for e in errors}) == 1 and len(errors) == 1:
            raise first
        lines = "\n  ".join(f"{p.subject}: {p.message}" for p in collector.problems())
        raise type(first)(f"nothing could be read from Cloud Monitoring:\n  {lines}", hint=first.hint)


def _missing_services(query: LiveQuery, data: RawData) -> list[Problem]:
    seen = {s.service for s in data.series}
    where = f" in {query.region}" if query.region else ""
    return [
        Problem(
            f"service {name}",
            f"no Cloud Run metrics{where} in projects {', '.join(query.projects)} during the window",
            "check the service name and --region, and that it served traffic in the window",
        )
        for name in query.services
        if name not in seen
    ]


def fetch_to_snapshot(
    query: LiveQuery,
    directory: Path,
    *,
    clients: GoogleClients | None = None,
    progress: Progress | None = None,
    now: datetime | None = None,
) -> tuple[RawData, list[Path]]:
    """Read live and write exactly the bodies read as a snapshot directory, with its manifest."""
    documents: list[Document] = []
    data = fetch_live(query, clients=clients, progress=progress, capture=documents, now=now)
    written = snapshot.write_snapshot(directory, documents, manifest=manifest(query, data))
    return data, written
