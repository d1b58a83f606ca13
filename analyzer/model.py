"""Plain data shared by every layer: revisions, raw series, findings and recorded problems.

Nothing here knows where data came from (a live API, a snapshot, the demo) or how it is shown.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


# The serving revision's first hours before the window (the "history"): what a live source reads of each
# revision serving at the window's start, from its deploy (``sources.live``), and what the simulator emits
# alike (``simulate``); ``frames`` keeps the points apart (``Frames.history``).
HISTORY_HOURS = 72  # hours after the deploy
HISTORY_METRICS = frozenset({"container/memory/utilizations", "request_count", "container/instance_count"})
HISTORY_STEM = "history-"  # how their snapshot files' names begin
# Read only for revisions whose first hours are still kept (``history_retained``): Cloud Monitoring keeps
# Cloud Run's metrics six weeks, and a deploy this near that edge may have lost its first points already.
METRICS_RETENTION = timedelta(days=42)
RETENTION_MARGIN = timedelta(hours=1)


def history_retained(deployed: datetime, end: datetime) -> bool:
    """The first hours of a revision deployed at ``deployed`` are still in Cloud Monitoring at ``end``
    (the live source's read time, the simulator's window end): deployed after ``end`` less
    ``METRICS_RETENTION``, with ``RETENTION_MARGIN`` to spare."""
    return deployed > end - METRICS_RETENTION + RETENTION_MARGIN


@dataclass(frozen=True, slots=True)
class ServiceKey:
    """One Cloud Run service: the unit the report is organised by."""

    project: str
    region: str
    service: str

    def __str__(self) -> str:
        return f"{self.project}/{self.region}/{self.service}"


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the Cloud Run Admin API says about one service that matters beyond its revisions."""

    key: ServiceKey
    min_instances: int = 0  # Service.scaling.min_instance_count: a floor for the whole service
    traffic: dict[str, float] = field(default_factory=dict)  # revision -> percent now (LATEST resolved)


@dataclass(frozen=True, slots=True)
class ContainerInfo:
    """One container of a revision (``Revision.containers[]``): sidecars have their own limits."""

    name: str  # as the container_name metric label reports it ("" when the revision left it unnamed)
    ingress: bool  # the container that serves requests (the one with a port)
    cpu_limit: float | None = None  # vCPU
    memory_limit_gib: float | None = None
    image: str = ""


@dataclass(frozen=True, slots=True)
class RevisionInfo:
    """What the Cloud Run Admin API says about one revision (all optional but its identity).

    ``cpu_limit``, ``memory_limit_gib`` and ``image`` are the ingress container's; ``containers`` lists
    every container, sidecars included (empty when the revision was not listed).
    """

    project: str
    region: str
    service: str
    revision: str
    create_time: datetime | None = None
    cpu_limit: float | None = None  # vCPU
    memory_limit_gib: float | None = None
    request_based_billing: bool | None = None  # containers[].resources.cpu_idle
    min_instances: int = 0
    max_instances: int | None = None
    max_concurrency: int | None = None
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    containers: tuple[ContainerInfo, ...] = ()
    service_min_instances: int = 0  # this revision's share of a service-level floor (in min_instances)

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.project, self.region, self.service)

    @property
    def ingress_container(self) -> ContainerInfo | None:
        return next((c for c in self.containers if c.ingress), None)

    @property
    def sidecars(self) -> tuple[ContainerInfo, ...]:
        return tuple(c for c in self.containers if not c.ingress)

    def instance_limits(self) -> tuple[float | None, float | None]:
        """(vCPU, GiB) of one instance: every container's limits added (Cloud Run bills the sum), or the
        ingress container's alone when a sidecar's limit is unknown."""
        if len(self.containers) > 1:
            cpus = [c.cpu_limit for c in self.containers]
            memories = [c.memory_limit_gib for c in self.containers]
            cpu = sum(c for c in cpus if c is not None) if None not in cpus else self.cpu_limit
            memory = sum(m for m in memories if m is not None) if None not in memories else self.memory_limit_gib
            return cpu, memory
        return self.cpu_limit, self.memory_limit_gib

    @property
    def commit(self) -> str:
        """A source commit if the deploy recorded one (common labels and annotations)."""
        for source in (self.labels, self.annotations):
            for name in ("commit-sha", "commit_sha", "commit", "git-commit", "gcb-build-id"):
                if source.get(name):
                    return source[name]
        return ""


@dataclass(frozen=True, slots=True)
class Distribution:
    """One Cloud Monitoring distribution value, with its buckets resolved to finite bounds."""

    count: int
    mean: float
    bounds: FloatArray  # the len(counts) - 1 boundaries between buckets (underflow first)
    counts: IntArray
    range_min: float | None = None
    range_max: float | None = None


@dataclass(slots=True)
class Histograms:
    """The DISTRIBUTION points of one series, column-wise: one row per point, one bucket layout.

    Kept as arrays rather than per-point objects because a week of raw data is ~10,000 points per
    series and a fleet has thousands of series.
    """

    bounds: FloatArray  # boundaries between buckets, shared by every point (empty: no buckets sent)
    counts: FloatArray  # (points, len(bounds) + 1) bucket counts, underflow first
    count: FloatArray  # (points,) samples in each point
    mean: FloatArray  # (points,)
    range_min: FloatArray  # (points,) NaN where the point has no range
    range_max: FloatArray


# Cloud Monitoring's enums by number, as the Python client's ``to_dict`` and ``MessageToDict(...,
# use_integers_for_enums=True)`` write them (google.api.MetricDescriptor.MetricKind / ValueType).
METRIC_KINDS = ("METRIC_KIND_UNSPECIFIED", "GAUGE", "DELTA", "CUMULATIVE")
VALUE_TYPES = ("VALUE_TYPE_UNSPECIFIED", "BOOL", "INT64", "DOUBLE", "STRING", "DISTRIBUTION", "MONEY")


def _enum_name(value: object, names: tuple[str, ...], what: str) -> str:
    """An enum given by name or by number (an int, or its digits as a string) as its name."""
    text = str(value).strip()
    if text in names:
        return text
    if isinstance(value, int | str) and text.isdigit() and int(text) < len(names):
        return names[int(text)]
    raise ValueError(f"unknown {what} {value!r} (expected one of {', '.join(names)} or its number)")


def metric_kind_name(value: object) -> str:
    """GAUGE, DELTA, CUMULATIVE (or METRIC_KIND_UNSPECIFIED) from a name or a number."""
    return _enum_name(value, METRIC_KINDS, "metricKind")


def value_type_name(value: object) -> str:
    """INT64, DOUBLE, DISTRIBUTION, ... (or VALUE_TYPE_UNSPECIFIED) from a name or a number."""
    return _enum_name(value, VALUE_TYPES, "valueType")


@dataclass(slots=True)
class RawSeries:
    """One time series as read from Cloud Monitoring, points oldest first.

    ``values`` holds numbers for INT64/DOUBLE series; ``histograms`` holds the points of a
    DISTRIBUTION series. Times are epoch seconds (UTC).
    """

    metric: str  # without the "run.googleapis.com/" prefix
    metric_kind: str  # GAUGE or DELTA by name (ALIGN_RATE turns DELTA into GAUGE); numbers are mapped
    value_type: str  # INT64, DOUBLE or DISTRIBUTION by name; numbers are mapped
    project: str
    region: str
    service: str
    revision: str
    metric_labels: dict[str, str]
    start_times: IntArray
    end_times: IntArray
    values: FloatArray | None = None
    histograms: Histograms | None = None
    source: str = ""  # the file or API call it came from, for error messages

    def __post_init__(self) -> None:
        # Every parser hands its enums through here, so a number never reaches the analysis.
        self.metric_kind = metric_kind_name(self.metric_kind)
        self.value_type = value_type_name(self.value_type)

    @property
    def points_are_rates(self) -> bool:
        """True when each point is a per-second rate (what ALIGN_RATE returns: GAUGE and DOUBLE);
        a DELTA point, and any INT64 point, is an amount."""
        return self.metric_kind == "GAUGE" and self.value_type == "DOUBLE"


@dataclass(frozen=True, slots=True)
class Problem:
    """Something that could not be read or analyzed; always shown in the report, never dropped."""

    subject: str  # a file, a project, a service
    message: str
    hint: str = ""


class FindingKind(enum.StrEnum):
    MEMORY_BASELINE_RISE = "memory_baseline_rise"
    INSTANCE_CREEP = "instance_creep"
    LATENCY_REGRESSION = "latency_regression"
    CPU_REGRESSION = "cpu_regression"


class Severity(enum.StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Impact:
    """What a finding's revision did to users while it served, beside its dollars (measured by
    ``analysis.impact``; the findings of one revision share it, as they share its dollars)."""

    oom_kills: int = 0  # episodes of the worst instance reaching its memory limit and being replaced
    worst_memory_end: float | None = None  # worst instance over the revision's last hour, fraction of the limit
    requests: float = 0.0  # requests the revision served in the window
    error_rate: float | None = None  # share of them that ended in 5xx
    baseline_error_rate: float | None = None  # the predecessor's share (None: no predecessor in the window)
    excess_errors: float = 0.0  # requests that ended in 5xx beyond the predecessor's rate
    errors_rising: bool = False  # that excess is clearly more than chance
    latency_added_ms_p95: float | None = None  # typical p95 latency against the predecessor's
    baseline_latency_ms_p95: float | None = None  # the predecessor's typical p95 latency
    hours_to_limit: float | None = None  # the worst instance to its memory limit at the leak's rate
    harming: bool = False  # users were hurt while it served: OOM kills, memory at the limit or 5xx rising


@dataclass(slots=True)
class Finding:
    """One anomaly: what, where, since when, caused by which revision, why we think so, what it costs."""

    kind: FindingKind
    project: str
    region: str
    service: str
    revision: str  # the revision serving at the onset (the one that introduced it)
    onset: datetime
    severity: Severity
    confidence: float  # 0..1, how sure the detector is that this is real
    summary: str  # one sentence a person reads first
    evidence: dict[str, float | str] = field(default_factory=dict)
    attribution_confidence: float = 0.0  # 0..1, how sure we are that `revision` caused it
    deploy_time: datetime | None = None
    ongoing: bool = True  # still present at the end of the window
    resolved_by: str = ""  # the revision after which it went away, if any
    time_to_limit_hours: float | None = None
    likely_cause: str = ""
    excess_cost_usd_window: float = 0.0
    excess_cost_usd_per_month: float = 0.0
    savings_usd_per_month: float = 0.0  # what the resolving revision saves, if resolved
    impact: Impact = field(default_factory=Impact)  # what it does to users (analysis.impact)
    container: str = ""  # the sidecar container it is about ("": the service's, i.e. its ingress container)

    @property
    def key(self) -> ServiceKey:
        return ServiceKey(self.project, self.region, self.service)


@dataclass(slots=True)
class RawData:
    """Everything a source produced, before any analysis: the input of ``frames.build``."""

    series: list[RawSeries] = field(default_factory=list)
    revisions: list[RevisionInfo] = field(default_factory=list)
    services: list[ServiceKey] = field(default_factory=list)  # known services, even without data
    problems: list[Problem] = field(default_factory=list)
    window_start: datetime | None = None
    window_end: datetime | None = None
    origin: str = ""  # "demo", "snapshot DIR", "live projects a, b"
    service_infos: list[ServiceInfo] = field(default_factory=list)  # services as the Admin API describes them
