"""Deterministic, seeded Cloud Run fleet simulator that speaks Google's own REST JSON.

One service at a time, minute by minute, it simulates what a Cloud Run service really does:

* traffic with a diurnal and weekly rhythm, correlated noise, short bursts, optional growth,
  batch-spike days and near-zero (scale-to-zero) nights;
* a Cloud Run-like autoscaler: it targets 60 % of ``max_concurrency`` in flight per instance
  (Little's law: in flight = rate × latency) and 60 % CPU, scales out at once and scales in only
  after an instance has been surplus for 15 minutes; ``min_instances`` floor, ``max_instances`` cap
  (requests beyond it get 429), active versus idle instances;
* per-instance memory: runtime footprint, a warm-up ramp, a working set proportional to the
  requests in flight, a GC sawtooth (garbage accumulates with allocation and is collected at a
  jittered threshold), and optionally a leak whose live set grows per request served or per hour.
  An instance that reaches its limit is OOM-killed (its in-flight requests fail with 503) and
  replaced by a fresh one; the platform also recycles instances now and then;
* per-instance CPU from requests, background work, start-up, a leak's extra work and GC thrash
  near the memory limit; request-based billing throttles CPU outside requests;
* request latency as a log-normal distribution: base × revision factor × CPU-load and GC factors;
* deploys: each new revision takes 100 % of traffic with fresh instances; the old ones drain (idle)
  for a few minutes and go away.

It emits exactly what the Cloud Monitoring v3 ``timeSeries.list`` REST call returns for raw
(``ALIGN_NONE``) data, as proto3 JSON, plus Cloud Run Admin API v2 ``revisions.list`` and
``services.list`` bodies, and ground truth (true totals per revision, and each anomaly's realized
leak slope and its excess against a counterfactual run without the anomaly). For the revision serving
at the window start it also emits, in documents of their own (``history-*``), that revision's first hours
after its deploy before the window (memory utilizations, request count, instance count), as a live
source reads them to learn the service's after-deploy warm-up; they come from random streams of their
own, so the window's documents and truth are the same with or without them.

``demo_documents()`` is the bundled demo: the incident of docs/incident.md on three services.
"""

from __future__ import annotations

import gc
import hashlib
import math
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.model import HISTORY_HOURS, HISTORY_METRICS, HISTORY_STEM, history_retained

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
Document = tuple[str, str, Any]

METRIC_PREFIX = "run.googleapis.com/"
STEP_SECONDS = 60
SCALE_TARGET = 0.6  # Cloud Run aims at 60 % of max concurrency and 60 % CPU per instance
SCALE_IN_MINUTES = 15  # a surplus instance is removed after about 15 idle minutes
DRAIN_MINUTES = (2, 5)  # old revision's instances linger idle this many minutes (low, high exclusive)
OOM_FRACTION = 1.0  # the container is killed when its memory reaches the limit
THRASH_START = 0.85  # above this fraction of the limit a garbage collector runs nearly continuously
BILLING_ROUNDING_S = 0.1  # request-based billable time is rounded up to 100 ms per busy period
CONTAINER_NAME = "app"
# The serving revision's first hours before the window ("history", ``model.HISTORY_*``: what a live source
# reads): emitted when it was deployed at least HISTORY_MIN_AGE before the window start and, as the live
# source reads it, within Cloud Monitoring's retention of the window's end (``model.METRICS_RETENTION``).
HISTORY_MIN_AGE = timedelta(hours=1)

# Bucket layouts of Cloud Run's distributions (unverified against a live project: kept here, in data).
UTILIZATION_BUCKETS: dict[str, Any] = {
    "exponentialBuckets": {"numFiniteBuckets": 100, "growthFactor": 10**0.02, "scale": 0.01}
}
LATENCY_BUCKETS: dict[str, Any] = {
    "exponentialBuckets": {"numFiniteBuckets": 100, "growthFactor": 1.4, "scale": 1.0}
}

# Response codes the simulator emits: (code, class, latency multiplier relative to a 200).
_CODES: tuple[tuple[str, str, float], ...] = (
    ("200", "2xx", 1.0),
    ("400", "4xx", 0.25),
    ("404", "4xx", 0.15),
    ("429", "4xx", 0.02),
    ("500", "5xx", 0.8),
    ("503", "5xx", 1.5),
)


# ----------------------------------------------------------------------------------------------
# Specifications
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrafficSpec:
    """Requests per second arriving at a service, before autoscaling."""

    peak_rps: float = 20.0  # weekday diurnal peak
    night_fraction: float = 0.2  # diurnal trough as a fraction of the peak (≈0 for quiet nights)
    peak_hour_utc: float = 14.0
    sharpness: float = 1.5  # >1 narrows the daytime hump
    weekend_factor: float = 0.65
    growth_per_day: float = 0.0  # compound growth from the window start, 0.05 = +5 %/day
    noise: float = 0.08  # standard deviation of the correlated log-rate noise
    bursts_per_day: float = 1.0  # short surges of 5-40 minutes
    batch_days: tuple[int, ...] = ()  # days (0 = the window's first) with a batch spike
    batch_start_hour_utc: float = 2.0
    batch_hours: float = 2.0
    batch_extra_rps: float = 0.0
    client_error_rate: float = 0.004  # share of requests answered 4xx
    server_error_rate: float = 0.0004  # share answered 500 (application errors)


@dataclass(frozen=True, slots=True)
class RuntimeSpec:
    """How one service's code behaves on an instance (all revisions share it)."""

    base_memory_mib: float = 110.0  # runtime + binary footprint once started
    cache_memory_mib: float = 30.0  # caches/JIT that fill during warm-up
    warmup_minutes: float = 15.0  # cache reaches ~95 % after this long
    working_set_mib_per_inflight: float = 0.6
    gc_amplitude_mib: float = 40.0  # garbage accumulated before a collection
    gc_live_fraction: float = 0.0  # Go-like GOGC: the threshold also grows with the leaked live set
    # A runtime's own memory cap (Go's GOMEMLIMIT, a JVM's maximum heap) as a share of the container's
    # limit: the collector also runs when the instance would hold more than this. 0 = none.
    gc_memory_cap_fraction: float = 0.0
    gc_alloc_mib_per_request: float = 0.02
    gc_alloc_mib_per_minute: float = 0.3  # background allocation, also when idle
    memory_noise_mib: float = 2.0
    base_latency_ms: float = 80.0  # median at low load
    latency_sigma: float = 0.55  # log-normal shape of the request latency
    cpu_ms_per_request: float = 12.0
    idle_cpu_vcpu: float = 0.01  # background work of a healthy instance
    startup_cpu_vcpu: float = 0.9  # CPU burnt right after start (decays over ~2 minutes)
    startup_seconds: float = 2.5  # container start, billable
    recycle_per_day: float = 0.05  # chance per instance per day that the platform replaces it
    thrash_cpu_vcpu: float = 0.5  # extra CPU when memory sits at the limit (GC thrash)


@dataclass(frozen=True, slots=True)
class RevisionSpec:
    """One deploy: configuration (as the Admin API shows it) and behaviour (what the code does)."""

    name: str
    deployed_at: datetime
    memory_limit_mib: int = 512
    cpu_limit: float = 1.0
    max_concurrency: int = 80
    min_instances: int = 0
    max_instances: int = 100
    request_based_billing: bool = True  # containers[].resources.cpuIdle
    startup_cpu_boost: bool = False
    image: str = ""
    commit_sha: str = ""
    latency_factor: float = 1.0
    cpu_factor: float = 1.0
    memory_step_mib: float = 0.0  # a flat change of footprint (not a leak)
    leak_mib_per_1k_requests: float = 0.0
    leak_mib_per_hour: float = 0.0
    leak_cpu_vcpu_at_limit: float = 0.0  # extra background CPU per instance when its leak fills the limit
    leak_delay: timedelta = timedelta(0)  # the leak starts this long after the deploy (a flag flipped)
    anomalous: bool = False  # the counterfactual run gives it its predecessor's behaviour and config
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def leaks(self) -> bool:
        return self.leak_mib_per_1k_requests > 0 or self.leak_mib_per_hour > 0

    @property
    def memory_limit_gib(self) -> float:
        return self.memory_limit_mib / 1024.0

    def leak_start(self) -> datetime:
        return self.deployed_at + self.leak_delay


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """A service: its revisions (oldest first), traffic and runtime, and where its data has gaps."""

    service: str
    revisions: tuple[RevisionSpec, ...]
    traffic: TrafficSpec = field(default_factory=TrafficSpec)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    project: str = "demo-project"
    region: str = "europe-west1"
    gaps: tuple[tuple[datetime, datetime], ...] = ()  # no points are emitted in these intervals
    burn_in: timedelta = timedelta(hours=12)  # simulated before the window so it starts in steady state

    def __post_init__(self) -> None:
        if not self.revisions:
            raise ValueError(f"service {self.service!r} needs at least one revision")
        times = [r.deployed_at for r in self.revisions]
        if times != sorted(times):
            raise ValueError(f"service {self.service!r}: revisions must be given oldest deploy first")
        names = [r.name for r in self.revisions]
        if len(set(names)) != len(names):
            raise ValueError(f"service {self.service!r}: revision names must be unique")

    def counterfactual(self) -> ServiceSpec:
        """The same service had each anomalous revision behaved like (and been set up as) its predecessor."""
        healthy: list[RevisionSpec] = []
        for rev in self.revisions:
            if not rev.anomalous:
                healthy.append(rev)
                continue
            if healthy:
                before = healthy[-1]
                healthy.append(
                    replace(
                        before,
                        name=rev.name,
                        deployed_at=rev.deployed_at,
                        image=rev.image,
                        commit_sha=rev.commit_sha,
                        labels=rev.labels,
                        anomalous=False,
                    )
                )
            else:
                healthy.append(
                    replace(
                        rev,
                        latency_factor=1.0,
                        cpu_factor=1.0,
                        leak_mib_per_1k_requests=0.0,
                        leak_mib_per_hour=0.0,
                        leak_cpu_vcpu_at_limit=0.0,
                        anomalous=False,
                    )
                )
        return replace(self, revisions=tuple(healthy))


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RevisionTruth:
    """What really happened to one revision inside the window (gap minutes included)."""

    revision: str
    requests: int
    billable_instance_seconds: float
    cpu_allocation_vcpu_seconds: float
    memory_allocation_gib_seconds: float
    instance_seconds: float
    oom_kills: int
    observed_requests: int  # the same, summed over emitted points only (gaps excluded)
    observed_billable_instance_seconds: float


@dataclass(frozen=True, slots=True)
class AnomalyTruth:
    """One anomalous revision against the counterfactual run in which it behaved like its predecessor."""

    revision: str
    start: datetime  # deploy, or leak activation
    end: datetime  # next deploy or window end
    leak_slope_pct_limit_per_day: float  # realized live-set growth per instance, % of the limit per day
    excess_instance_seconds: float
    excess_billable_instance_seconds: float
    excess_cpu_allocation_vcpu_seconds: float
    excess_memory_allocation_gib_seconds: float
    mean_instances: float
    counterfactual_mean_instances: float
    creep_onset: datetime | None  # when the excess instances became clear, if they did
    latency_ratio: float  # realized mean latency against the counterfactual
    cpu_per_request_ratio: float  # realized CPU-seconds per request against the counterfactual
    oom_kills: int


@dataclass(slots=True)
class Timeline:
    """Per-minute truth inside the window, for tests and labels (index i = minute ending ends[i])."""

    ends: IntArray  # epoch seconds of each minute's end
    revision: IntArray  # index into spec.revisions of the serving revision
    instances: IntArray
    active: IntArray
    requests: IntArray
    mem_mean: FloatArray  # fleet mean memory, fraction of the limit (NaN with no instance)
    mem_min: FloatArray
    cpu_mean: FloatArray
    latency_mean_ms: FloatArray
    cpu_seconds: FloatArray  # CPU actually used by the serving instances
    leak_growth_mib: FloatArray  # live-set growth summed over instances in the minute
    billable_s: FloatArray
    oom_kills: IntArray
    gap: BoolArray


@dataclass(slots=True)
class SimulatedService:
    """One simulated service: its wire-format documents and the truth behind them."""

    spec: ServiceSpec
    start: datetime
    end: datetime
    seed: int
    series: dict[str, list[dict[str, Any]]]  # metric type -> TimeSeries messages
    revisions_body: dict[str, Any]
    service_resource: dict[str, Any]
    revisions: dict[str, RevisionTruth]
    anomalies: list[AnomalyTruth]
    timeline: Timeline
    counterfactual: Timeline | None = None
    # The serving revision's first hours before the window (HISTORY_METRICS only), metric -> messages.
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def documents(self, *, page_points: int | None = None) -> list[Document]:
        """This service alone as snapshot documents."""
        return snapshot_documents([self], page_points=page_points)

    def truth(self) -> dict[str, Any]:
        """Ground truth as plain JSON-able data."""
        return {
            "service": self.spec.service,
            "revisions": {name: _plain(t) for name, t in self.revisions.items()},
            "anomalies": [_plain(a) for a in self.anomalies],
        }


# ----------------------------------------------------------------------------------------------
# Traffic
# ----------------------------------------------------------------------------------------------


def _smoothed_noise(rng: np.random.Generator, minutes: int, window: int) -> FloatArray:
    """Unit-variance noise correlated over about ``window`` minutes (a moving average of white noise)."""
    white = rng.standard_normal(minutes + window)
    csum = np.concatenate(([0.0], np.cumsum(white)))
    moving = (csum[window:] - csum[:-window])[:minutes] / math.sqrt(window)
    return np.asarray(moving, dtype=np.float64)


def _traffic_rps(
    spec: TrafficSpec, mid: FloatArray, window_start: float, rng: np.random.Generator
) -> FloatArray:
    """Expected requests per second at each minute's midpoint."""
    minutes = len(mid)
    hours = (mid / 3600.0) % 24.0
    hump = ((1.0 + np.cos(2 * np.pi * (hours - spec.peak_hour_utc) / 24.0)) / 2.0) ** spec.sharpness
    diurnal = spec.night_fraction + (1.0 - spec.night_fraction) * hump
    dow = (np.floor(mid / 86400.0).astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    weekly = np.where(dow >= 5, spec.weekend_factor, 1.0)
    kernel = np.ones(180) / 180.0  # weekends fade in and out over about three hours
    weekly = np.convolve(np.pad(weekly, 90, mode="edge"), kernel, mode="same")[90:-90][:minutes]
    days = (mid - window_start) / 86400.0
    growth = (1.0 + spec.growth_per_day) ** days
    sigma = spec.noise
    log_noise = sigma * (0.6 * _smoothed_noise(rng, minutes, 20) + 0.8 * _smoothed_noise(rng, minutes, 240))
    rate = spec.peak_rps * diurnal * weekly * growth * np.exp(log_noise - sigma**2 / 2.0)
    n_bursts = rng.poisson(spec.bursts_per_day * minutes / 1440.0)
    for _ in range(int(n_bursts)):
        at = int(rng.integers(0, minutes))
        length = int(rng.integers(5, 41))
        lift = float(rng.uniform(1.3, 2.5))
        span = np.arange(at, min(minutes, at + length))
        shape = np.sin(np.pi * (span - at + 0.5) / length) ** 0.5
        rate[span] *= 1.0 + (lift - 1.0) * shape
    if spec.batch_days and spec.batch_extra_rps > 0:
        day_index = np.floor(days).astype(np.int64)
        hour_of_day = (mid - window_start) / 3600.0 - 24.0 * day_index
        into = hour_of_day - spec.batch_start_hour_utc
        edge = np.clip(np.minimum(into, spec.batch_hours - into) * 6.0, 0.0, 1.0)  # ten-minute ramps
        on = (
            np.isin(day_index, np.asarray(spec.batch_days, dtype=np.int64))
            & (into >= 0)
            & (into <= spec.batch_hours)
        )
        rate = rate + spec.batch_extra_rps * edge * on
    return np.asarray(np.maximum(rate, 0.0), dtype=np.float64)


# ----------------------------------------------------------------------------------------------
# The minute-by-minute fleet
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Drain:
    revision: int
    minute: int  # first minute the old instances sit idle
    length: int
    memory: FloatArray  # MiB of each old instance
    cpu: float  # utilization of an idle old instance


@dataclass(slots=True)
class _Run:
    """Raw per-minute state of one simulation (over the whole simulated span, burn-in included)."""

    rev: IntArray
    arrivals: IntArray
    served: IntArray
    rejected: IntArray
    oom_failed: IntArray
    instances: IntArray
    active: IntArray
    fresh: IntArray  # instances started in the minute (scale-out, replacement, deploy)
    oom: IntArray
    latency_s: FloatArray  # mean request latency
    share: FloatArray  # requests per active instance in the minute
    memory: npt.NDArray[np.float32]  # MiB per slot (NaN when the slot holds no instance)
    cpu: npt.NDArray[np.float32]  # utilization per slot, fraction of the CPU limit
    cpu_seconds: FloatArray
    leak_growth: FloatArray
    drains: list[_Drain]


def _revision_minutes(spec: ServiceSpec, sim_start: int, minutes: int) -> IntArray:
    starts = sim_start + STEP_SECONDS * np.arange(minutes, dtype=np.int64)
    deploys = np.asarray([int(r.deployed_at.timestamp()) for r in spec.revisions], dtype=np.int64)
    rev = np.searchsorted(deploys, starts, side="right") - 1
    return np.asarray(np.maximum(rev, 0), dtype=np.int64)


def _simulate(
    spec: ServiceSpec, sim_start: int, minutes: int, window_start: int, seed_seq: np.random.SeedSequence
) -> _Run:
    """Run the autoscaler and every instance minute by minute, vectorised over instances.

    Per-minute scalars live in plain lists (indexing them is far cheaper than numpy scalars); the
    per-instance state (birth minute, leaked live set, garbage, GC threshold) in numpy arrays over
    instance slots. Slots [0, n) hold the n running instances; the first ``active`` of them serve.
    """
    traffic_seq, fleet_seq = seed_seq.spawn(2)
    traffic_rng = np.random.default_rng(traffic_seq)
    rng = np.random.default_rng(fleet_seq)
    rt = spec.runtime
    revs = spec.revisions
    mid = sim_start + STEP_SECONDS * (np.arange(minutes, dtype=np.float64) + 0.5)
    rps = _traffic_rps(spec.traffic, mid, float(window_start), traffic_rng)
    arrivals = traffic_rng.poisson(rps * STEP_SECONDS).astype(np.int64)
    rev_at = _revision_minutes(spec, sim_start, minutes)
    # Leak rates per minute, zero before each leak starts.
    minute_start = sim_start + STEP_SECONDS * np.arange(minutes, dtype=np.int64)
    leak_start = np.asarray([int(r.leak_start().timestamp()) for r in revs], dtype=np.int64)
    leak_on = minute_start >= leak_start[rev_at]
    leak_req = np.where(leak_on, np.asarray([r.leak_mib_per_1k_requests / 1000.0 for r in revs])[rev_at], 0.0)
    leak_min = np.where(leak_on, np.asarray([r.leak_mib_per_hour / 60.0 for r in revs])[rev_at], 0.0)

    slots = int(min(max(r.max_instances for r in revs), 400))
    sigma = rt.latency_sigma
    lat_mean_base = rt.base_latency_ms / 1000.0 * math.exp(sigma**2 / 2.0)
    tau = max(rt.warmup_minutes / 3.0, 0.5)
    # Tables by instance age in minutes: memory of a fresh instance (the runtime maps its heap in the
    # first minutes, caches fill during warm-up) and its start-up CPU.
    ages = np.arange(minutes + 1, dtype=np.float64)
    heap_shape = 0.85 + 0.15 * (1.0 - np.exp(-ages / 2.0))
    cache_ramp = rt.cache_memory_mib * (1.0 - np.exp(-ages / tau))
    boot = rt.startup_cpu_vcpu * np.exp(-ages / 1.5)
    static_tables: dict[float, FloatArray] = {}

    # Platform recycling of instances: precomputed (minute -> slots) events.
    recycle: dict[int, list[int]] = {}
    n_events = int(rng.poisson(rt.recycle_per_day * slots * minutes / 1440.0))
    for m_evt, s_evt in zip(
        rng.integers(0, minutes, n_events).tolist(), rng.integers(0, slots, n_events).tolist(), strict=True
    ):
        recycle.setdefault(m_evt, []).append(s_evt)
    jitter = rng.uniform(0.85, 1.15, size=4096)
    n_jitter = len(jitter)
    jitter_at = 0
    drain_lengths = rng.integers(*DRAIN_MINUTES, size=len(revs)).tolist()
    initial_garbage = rng.uniform(0.0, 0.3, size=4096) * rt.gc_amplitude_mib

    birth = np.zeros(slots, dtype=np.int64)
    leak = np.zeros(slots)
    garbage = np.zeros(slots)
    threshold = np.full(slots, rt.gc_amplitude_mib)
    rec_memory = np.full((minutes, slots), np.nan, dtype=np.float32)
    rec_cpu = np.full((minutes, slots), np.nan, dtype=np.float32)
    served_l = [0] * minutes
    oom_failed_l = [0] * minutes
    inst_l = [0] * minutes
    active_l = [0] * minutes
    fresh_l = [0] * minutes
    oom_l = [0] * minutes
    latency_l = [0.0] * minutes
    share_l = [0.0] * minutes
    drains: list[_Drain] = []

    arrivals_l, rev_l = arrivals.tolist(), rev_at.tolist()
    leak_req_l, leak_min_l = leak_req.tolist(), leak_min.tolist()
    gc_amp, gc_live, gc_cap = rt.gc_amplitude_mib, rt.gc_live_fraction, rt.gc_memory_cap_fraction
    gc_req, gc_idle = rt.gc_alloc_mib_per_request, rt.gc_alloc_mib_per_minute
    ws_per_inflight, idle_cpu, thrash_cpu = (
        rt.working_set_mib_per_inflight,
        rt.idle_cpu_vcpu,
        rt.thrash_cpu_vcpu,
    )
    last_birth = -(10**9)

    def fresh(lo: int, hi: int, m: int) -> None:
        nonlocal jitter_at, last_birth
        k = hi - lo
        picks = (jitter_at + np.arange(k)) % n_jitter
        birth[lo:hi] = m
        leak[lo:hi] = 0.0
        garbage[lo:hi] = initial_garbage[picks]
        threshold[lo:hi] = gc_amp * jitter[picks]
        jitter_at = (jitter_at + k) % n_jitter
        last_birth = m

    ring: deque[int] = deque(maxlen=SCALE_IN_MINUTES)
    n = 0
    r = -1
    rev = revs[0]
    lim = cpu_lim = cpu_req = lat_factor = leak_cpu = 1.0
    static = boot_table = heap_shape
    lat_prev = lat_mean_base
    background_prev = 0.0
    for m in range(minutes):
        if rev_l[m] != r:  # a deploy: the new revision takes all traffic on fresh instances
            if n:
                idle_util = 0.002 if rev.request_based_billing else idle_cpu / cpu_lim
                memory_then = np.asarray(rec_memory[m - 1, :n], dtype=np.float64)
                drains.append(_Drain(r, m, int(drain_lengths[r]), memory_then, idle_util))
            r = rev_l[m]
            rev = revs[r]
            n = 0
            background_prev = 0.0
            lim, cpu_lim = float(rev.memory_limit_mib), rev.cpu_limit
            cpu_req = rt.cpu_ms_per_request / 1000.0 * rev.cpu_factor
            lat_factor, leak_cpu = rev.latency_factor, rev.leak_cpu_vcpu_at_limit
            base = rt.base_memory_mib + rev.memory_step_mib
            if base not in static_tables:
                static_tables[base] = base * heap_shape + cache_ramp
            static = static_tables[base]
            boot_table = boot * 2.0 if rev.startup_cpu_boost else boot
            lat_prev = lat_mean_base * lat_factor
        a_count = arrivals_l[m]
        rate = a_count / STEP_SECONDS
        in_flight = rate * lat_prev
        need = max(
            in_flight / (SCALE_TARGET * rev.max_concurrency),
            (rate * cpu_req + background_prev) / (SCALE_TARGET * cpu_lim),
        )
        ring.append(math.ceil(need - 1e-9) if a_count else 0)
        target = min(max(max(ring), rev.min_instances), rev.max_instances, slots)
        started = 0
        if target > n:
            fresh(n, target, m)
            started = target - n
        n = target
        if n == 0:
            latency_l[m] = lat_prev
            continue
        served = a_count if need <= n else round(a_count * n / need)  # beyond max instances: 429
        active = 0 if served == 0 else min(n, max(1, math.ceil(need * 1.1)))
        share = served / active if active else 0.0
        inflight = in_flight * (served / a_count) / active if active else 0.0

        # Live set (leak) and garbage grow; the collector drops garbage at a jittered threshold.
        if active and leak_req_l[m]:
            leak[:active] += leak_req_l[m] * share
        if leak_min_l[m]:
            leak[:n] += leak_min_l[m]
        garb = garbage[:n]
        garb += gc_idle
        if active:
            garbage[:active] += gc_req * share
        over = garb >= threshold[:n]
        if over.any():
            idx = np.flatnonzero(over)
            garbage[idx] %= threshold[idx]
            picks = (jitter_at + np.arange(idx.size)) % n_jitter
            jitter_at = (jitter_at + idx.size) % n_jitter
            threshold[idx] = (gc_amp + gc_live * leak[idx]) * jitter[picks]
        age = m - birth[:n]
        if gc_cap:  # the runtime's cap: a collection when live set and garbage would pass it
            garbage[np.flatnonzero(static[age] + leak[:n] + garb >= gc_cap * lim)] = 0.0

        mem = static[age]
        mem += leak[:n]
        mem += garb
        if active:
            mem[:active] += ws_per_inflight * inflight
        peak = float(mem.max())
        if peak >= OOM_FRACTION * lim:  # OOM: in-flight requests fail, a fresh instance replaces it
            killed = np.flatnonzero(mem >= OOM_FRACTION * lim)
            oom_l[m] = killed.size
            n_active_killed = int(np.count_nonzero(killed < active))
            oom_failed_l[m] = round(inflight * n_active_killed) + n_active_killed
            for s_kill in killed.tolist():
                fresh(s_kill, s_kill + 1, m)
            started += killed.size
            mem[killed] = static[0] + np.where(killed < active, ws_per_inflight * inflight, 0.0)
            age[killed] = 0
            peak = float(mem.max())
        for s_rec in recycle.get(m, ()):
            if s_rec < n:
                fresh(s_rec, s_rec + 1, m)
                mem[s_rec] = static[0] + (ws_per_inflight * inflight if s_rec < active else 0.0)
                age[s_rec] = 0
                started += 1

        # CPU: start-up, background (plus a leak's extra work and GC thrash), and the requests.
        cpu = boot_table[age]
        per_request = cpu_req * share / STEP_SECONDS
        background: FloatArray | float = idle_cpu
        thrash_mean = 0.0
        if leak_cpu:
            background = idle_cpu + (leak_cpu / lim) * leak[:n]
        if peak > THRASH_START * lim:
            thrash = np.clip((mem / lim - THRASH_START) / (1.0 - THRASH_START), 0.0, 1.0) ** 2
            background = background + thrash_cpu * thrash
            thrash_mean = float(thrash[:active].sum()) / active if active else 0.0
        if rev.request_based_billing:  # CPU is throttled outside requests
            busy = 1.0 - math.exp(-inflight) if active else 0.0
            if isinstance(background, float):
                if active:
                    cpu[:active] += background * busy + per_request
                background_prev = background * busy * active
            else:
                cpu[:active] += background[:active] * busy + per_request
                background_prev = float(background[:active].sum()) * busy
            if active < n:
                cpu[active:] += 0.002 * cpu_lim
        else:
            cpu += background
            if active:
                cpu[:active] += per_request
            background_prev = background * n if isinstance(background, float) else float(background.sum())
        if m - last_birth < 12 or not isinstance(background, float) or per_request + idle_cpu > cpu_lim:
            np.minimum(cpu, cpu_lim, out=cpu)

        # Latency of this minute's requests: CPU queueing and GC thrash slow them down (requests only
        # reach started containers, so start-up CPU does not queue them).
        if active:
            work = per_request + background_prev / (active if rev.request_based_billing else n)
            util = min(work / cpu_lim, 0.95)
            lat_prev = (
                lat_mean_base * lat_factor * (1.0 + 0.05 * util / (1.0 - util)) * (1.0 + 0.8 * thrash_mean)
            )

        rec_memory[m, :n] = mem
        rec_cpu[m, :n] = cpu
        latency_l[m] = lat_prev
        share_l[m] = share
        served_l[m] = served
        inst_l[m] = n
        active_l[m] = active
        fresh_l[m] = started

    cpu_seconds = np.asarray(np.nansum(rec_cpu, axis=1, dtype=np.float64) * STEP_SECONDS, dtype=np.float64)
    rec_cpu /= np.asarray([r.cpu_limit for r in revs], dtype=np.float32)[rev_at][:, None]
    served_rec = np.asarray(served_l, dtype=np.int64)
    inst_rec = np.asarray(inst_l, dtype=np.int64)
    leak_growth = leak_req * served_rec + leak_min * inst_rec
    return _Run(
        rev=rev_at,
        arrivals=arrivals,
        served=served_rec,
        rejected=arrivals - served_rec,
        oom_failed=np.asarray(oom_failed_l, dtype=np.int64),
        instances=inst_rec,
        active=np.asarray(active_l, dtype=np.int64),
        fresh=np.asarray(fresh_l, dtype=np.int64),
        oom=np.asarray(oom_l, dtype=np.int64),
        latency_s=np.asarray(latency_l),
        share=np.asarray(share_l),
        memory=rec_memory,
        cpu=rec_cpu,
        cpu_seconds=cpu_seconds,
        leak_growth=leak_growth,
        drains=drains,
    )


# ----------------------------------------------------------------------------------------------
# Wire format
# ----------------------------------------------------------------------------------------------


def format_time(epoch: int | float, *, nanos: bool = False) -> str:
    stamp = datetime.fromtimestamp(epoch, UTC)
    if nanos:
        return stamp.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _times(epochs: IntArray) -> list[str]:
    text = np.datetime_as_string(epochs.astype("datetime64[s]"), unit="s")
    return [t + "Z" for t in text.tolist()]


def _bounds(options: Mapping[str, Any]) -> FloatArray:
    expo = options["exponentialBuckets"]
    n = int(expo["numFiniteBuckets"])
    return np.asarray(
        float(expo["scale"]) * float(expo["growthFactor"]) ** np.arange(n + 1), dtype=np.float64
    )


_SMALL_INTS = np.asarray([str(i) for i in range(4096)], dtype=object)


def _count_rows(counts: IntArray) -> list[list[str]]:
    """Bucket counts as INT64 strings, trailing zero buckets dropped (as Google's JSON does)."""
    width = counts.shape[1]
    nonzero = counts != 0
    last = width - np.argmax(nonzero[:, ::-1], axis=1)
    last[~nonzero.any(axis=1)] = 0
    small = counts < len(_SMALL_INTS)
    text = _SMALL_INTS[np.where(small, counts, 0)]
    if not small.all():
        for i, j in zip(*np.nonzero(~small), strict=True):
            text[i, j] = str(int(counts[i, j]))
    rows: list[list[str]] = text.tolist()
    return [row[:k] for row, k in zip(rows, last.tolist(), strict=True)]


_Z = np.linspace(-9.0, 9.0, 18001)
_PHI = np.asarray([0.5 * math.erfc(-z / math.sqrt(2.0)) for z in _Z.tolist()], dtype=np.float64)


def _normal_cdf(z: FloatArray) -> FloatArray:
    return np.asarray(np.interp(z, _Z, _PHI), dtype=np.float64)


def _lognormal_probs(median: FloatArray, sigma: float, bounds: FloatArray) -> FloatArray:
    """Probability of each bucket (underflow first) for log-normal latencies, one row per minute."""
    z = (np.log(bounds)[None, :] - np.log(median)[:, None]) / sigma
    cdf = _normal_cdf(z)
    probs = np.diff(
        np.concatenate([np.zeros((len(median), 1)), cdf, np.ones((len(median), 1))], axis=1), axis=1
    )
    probs = np.clip(probs, 0.0, None)
    return np.asarray(probs / probs.sum(axis=1, keepdims=True), dtype=np.float64)


def _series(
    metric: str,
    kind: str,
    value_type: str,
    unit: str,
    spec: ServiceSpec,
    revision: str,
    metric_labels: Mapping[str, str],
    points: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "metric": {"labels": dict(metric_labels), "type": METRIC_PREFIX + metric},
        "resource": {
            "type": "cloud_run_revision",
            "labels": {
                "project_id": spec.project,
                "service_name": spec.service,
                "revision_name": revision,
                "location": spec.region,
                "configuration_name": spec.service,
            },
        },
        "metricKind": kind,
        "valueType": value_type,
        "points": points,
        "unit": unit,
    }


def _distribution_points(
    idx: IntArray,
    intervals: list[dict[str, str]],
    counts: IntArray,
    means: FloatArray,
    ssd: FloatArray,
    rows: list[list[str]],
    options: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """DISTRIBUTION points for rows ``idx`` (oldest first in, newest first out); zero fields left out."""
    count_text = _SMALL_INTS[np.minimum(counts, len(_SMALL_INTS) - 1)].tolist()
    big = np.flatnonzero(counts >= len(_SMALL_INTS))
    for i in big.tolist():
        count_text[i] = str(int(counts[i]))
    mean_list, ssd_list = means.tolist(), ssd.tolist()
    points: list[dict[str, Any]] = []
    for i in idx[::-1].tolist():
        dist: dict[str, Any] = {"count": count_text[i], "bucketOptions": options, "bucketCounts": rows[i]}
        if mean_list[i]:
            dist["mean"] = mean_list[i]
        if ssd_list[i] > 0:
            dist["sumOfSquaredDeviation"] = ssd_list[i]
        points.append({"interval": intervals[i], "value": {"distributionValue": dist}})
    return points


def _int_points(idx: IntArray, intervals: list[dict[str, str]], values: IntArray) -> list[dict[str, Any]]:
    """INT64 points (values as strings, per proto3 JSON); equal values share one value object."""
    vals = values.tolist()
    cache: dict[int, dict[str, str]] = {}
    points: list[dict[str, Any]] = []
    for i in idx[::-1].tolist():
        v = vals[i]
        value = cache.get(v)
        if value is None:
            value = cache[v] = {"int64Value": str(v)}
        points.append({"interval": intervals[i], "value": value})
    return points


def _double_points(
    idx: IntArray, intervals: list[dict[str, str]], values: FloatArray
) -> list[dict[str, Any]]:
    vals = values.tolist()
    return [{"interval": intervals[i], "value": {"doubleValue": vals[i]}} for i in idx[::-1].tolist()]


@dataclass(slots=True)
class _Window:
    """The emitted part of a run: minute rows w0..w1 of the simulation plus drain rows."""

    lo: int
    hi: int
    ends: IntArray
    gap: BoolArray


def _instance_matrix(
    run: _Run, window: _Window, spec: ServiceSpec, rng: np.random.Generator
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], BoolArray]:
    """Memory and CPU utilization per (minute, slot) with per-instance measurement noise."""
    lo, hi = window.lo, window.hi
    memory = run.memory[lo:hi].astype(np.float64)
    cpu = run.cpu[lo:hi].astype(np.float64)
    alive = ~np.isnan(memory)
    limit = np.asarray([r.memory_limit_mib for r in spec.revisions], dtype=np.float64)[run.rev[lo:hi]]
    noisy = memory + rng.normal(0.0, spec.runtime.memory_noise_mib, size=memory.shape)
    mem_frac = np.clip(noisy / limit[:, None], 0.0, 1.0)
    cpu_frac = np.clip(
        cpu * (1.0 + rng.normal(0.0, 0.04, size=cpu.shape)) + rng.normal(0.0, 0.003, size=cpu.shape), 0.0, 1.0
    )
    return mem_frac, cpu_frac, alive


def _histograms(
    values: FloatArray, alive: BoolArray, bounds: FloatArray
) -> tuple[IntArray, FloatArray, FloatArray, IntArray]:
    """Per row: bucket counts, mean and sum of squared deviations of the alive entries."""
    rows, _ = values.shape
    nb = len(bounds) + 1
    bucket = np.searchsorted(bounds, np.where(alive, values, 0.0), side="right")
    flat = (np.arange(rows)[:, None] * nb + bucket)[alive]
    counts = np.bincount(flat, minlength=rows * nb).reshape(rows, nb).astype(np.int64)
    n = alive.sum(axis=1)
    total = np.where(alive, values, 0.0).sum(axis=1)
    mean = np.divide(total, n, out=np.zeros(rows), where=n > 0)
    ssd = np.where(alive, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
    return counts, mean, ssd, n.astype(np.int64)


@dataclass(slots=True)
class _Emitted:
    series: dict[str, list[dict[str, Any]]]
    timeline: Timeline
    billable: FloatArray  # per window minute, serving revision
    drain_billable: dict[int, float]  # revision -> billable seconds of its drain inside the window
    drain_instance_seconds: dict[int, float]
    requests_by_code: dict[str, IntArray]


def _requests_by_code(
    spec: ServiceSpec, run: _Run, lo: int, hi: int, rng: np.random.Generator
) -> dict[str, IntArray]:
    served = run.served[lo:hi]
    client = rng.binomial(served, spec.traffic.client_error_rate)
    app_errors = rng.binomial(np.maximum(served - client, 0), spec.traffic.server_error_rate)
    crashed = np.minimum(run.oom_failed[lo:hi], np.maximum(served - client - app_errors, 0))
    not_found = rng.binomial(client, 0.85)  # most client errors are 404s; the rest 400s
    return {
        "200": (served - client - app_errors - crashed).astype(np.int64),
        "400": (client - not_found).astype(np.int64),
        "404": not_found.astype(np.int64),
        "429": run.rejected[lo:hi].astype(np.int64),
        "500": app_errors.astype(np.int64),
        "503": crashed.astype(np.int64),
    }


def _billable(spec: ServiceSpec, run: _Run, lo: int, hi: int) -> FloatArray:
    """Billable instance-seconds per minute of the serving revision.

    Request-based: the time each active instance has at least one request in flight (M/G/∞:
    P(busy) = 1 - exp(-λ·L)), each busy period rounded up to 100 ms, plus container start-up.
    Instance-based: every instance's whole minute, idle ones included.
    """
    revs = spec.revisions
    rev = run.rev[lo:hi]
    request_based = np.asarray([r.request_based_billing for r in revs], dtype=bool)[rev]
    lam = run.share[lo:hi] / STEP_SECONDS
    lat = run.latency_s[lo:hi]
    busy = 1.0 - np.exp(-lam * lat)
    periods = lam * STEP_SECONDS * np.exp(-lam * lat)
    per_active = np.minimum(
        STEP_SECONDS * busy + BILLING_ROUNDING_S / 2.0 * periods + BILLING_ROUNDING_S * (lam > 0),
        STEP_SECONDS,
    )
    active = run.active[lo:hi]
    startup = spec.runtime.startup_seconds * run.fresh[lo:hi]
    billable = np.where(
        request_based,
        active * per_active + startup * (active > 0),
        STEP_SECONDS * run.instances[lo:hi].astype(np.float64),
    )
    return np.asarray(np.round(billable, 1), dtype=np.float64)


def _latency_stats(
    spec: ServiceSpec,
    run: _Run,
    lo: int,
    hi: int,
    by_code: Mapping[str, IntArray],
    keep: BoolArray,
    rng: np.random.Generator,
) -> dict[str, tuple[IntArray, FloatArray, FloatArray, list[list[str]]]]:
    """Per response code: rows with requests, sample means, sums of squared deviations and bucket counts."""
    sigma = spec.runtime.latency_sigma
    rows = hi - lo
    mean_ms = run.latency_s[lo:hi] * 1000.0
    median_ms = mean_ms / math.exp(sigma**2 / 2.0)
    bounds = _bounds(LATENCY_BUCKETS)
    cv = math.sqrt(math.exp(sigma**2) - 1.0)
    out: dict[str, tuple[IntArray, FloatArray, FloatArray, list[list[str]]]] = {}
    for code, _, factor in _CODES:
        counts = by_code[code]
        with_requests = np.flatnonzero((counts > 0) & keep)
        if not with_requests.size:
            continue
        probs = _lognormal_probs(median_ms[with_requests] * factor, sigma, bounds)
        buckets = rng.multinomial(counts[with_requests], probs).astype(np.int64)
        bucket_rows: list[list[str]] = [[] for _ in range(rows)]
        for i, row in zip(with_requests.tolist(), _count_rows(buckets), strict=True):
            bucket_rows[i] = row
        k = counts.astype(np.float64)
        sample_mean = mean_ms * factor * (1.0 + cv * rng.standard_normal(rows) / np.sqrt(np.maximum(k, 1.0)))
        ssd = np.maximum(k - 1.0, 0.0) * (mean_ms * factor * cv) ** 2 * rng.uniform(0.9, 1.1, size=rows)
        out[code] = (with_requests, np.maximum(sample_mean, 0.0), ssd, bucket_rows)
    return out


def _drain_rows(run: _Run, lo: int, hi: int) -> list[_Drain]:
    """Drains clipped to the window, one entry per drained minute (length 1)."""
    found: list[_Drain] = []
    for d in run.drains:
        for j in range(d.length):
            row = d.minute + j - lo
            if 0 <= row < hi - lo:
                found.append(_Drain(d.revision, row, 1, d.memory, d.cpu))
    return found


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Building hundreds of thousands of small acyclic dicts: the cycle collector only slows it down."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass(frozen=True, slots=True)
class _Only:
    """Emit just these metrics of just this revision (the history): skips building what is thrown away."""

    revision: int
    metrics: frozenset[str]


def _emit(
    spec: ServiceSpec,
    run: _Run,
    window: _Window,
    rng: np.random.Generator,
    *,
    with_series: bool = True,
    only: _Only | None = None,
) -> _Emitted:
    """Turn a run into Cloud Monitoring series (per revision) and the window's timeline."""
    with _gc_paused():
        return _emit_unpaused(spec, run, window, rng, with_series=with_series, only=only)


def _emit_unpaused(
    spec: ServiceSpec,
    run: _Run,
    window: _Window,
    rng: np.random.Generator,
    *,
    with_series: bool,
    only: _Only | None = None,
) -> _Emitted:
    lo, hi = window.lo, window.hi
    rows = hi - lo
    rev = run.rev[lo:hi]
    keep = ~window.gap
    revs = spec.revisions
    util_bounds = _bounds(UTILIZATION_BUCKETS)
    mem_frac, cpu_frac, alive = _instance_matrix(run, window, spec, rng)
    instances = run.instances[lo:hi]
    active = run.active[lo:hi]
    mem_counts, mem_mean, mem_ssd, mem_n = _histograms(mem_frac, alive, util_bounds)
    by_code = _requests_by_code(spec, run, lo, hi, rng)
    billable = _billable(spec, run, lo, hi)
    drains = _drain_rows(run, lo, hi)
    drain_billable: dict[int, float] = {}
    drain_seconds: dict[int, float] = {}
    for d in drains:
        seconds = STEP_SECONDS * float(len(d.memory))
        drain_seconds[d.revision] = drain_seconds.get(d.revision, 0.0) + seconds
        if not revs[d.revision].request_based_billing:
            drain_billable[d.revision] = drain_billable.get(d.revision, 0.0) + seconds

    series: dict[str, list[dict[str, Any]]] = {}
    if with_series:
        cpu_counts, cpu_mean, cpu_ssd, _ = _histograms(cpu_frac, alive, util_bounds)
        ends = _times(window.ends)
        starts = _times(window.ends - STEP_SECONDS)
        delta = [{"startTime": s0, "endTime": e0} for s0, e0 in zip(starts, ends, strict=True)]
        gauge = [{"endTime": e0} for e0 in ends]
        latency = (
            _latency_stats(spec, run, lo, hi, by_code, keep, rng)
            if only is None or "request_latencies" in only.metrics
            else {}
        )
        utilization = (_count_rows(mem_counts), mem_mean, mem_ssd, _count_rows(cpu_counts), cpu_mean, cpu_ssd)
        for r_idx in range(len(revs)):
            if only is not None and r_idx != only.revision:
                continue
            own_drains = [d for d in drains if d.revision == r_idx and keep[d.minute]]
            _emit_revision(
                spec,
                r_idx,
                series,
                (rev == r_idx) & keep,
                own_drains,
                delta,
                gauge,
                mem_n,
                utilization,
                instances,
                active,
                by_code,
                latency,
                billable,
                rng,
                None if only is None else only.metrics,
            )

    mem_min = np.where(alive, mem_frac, np.inf).min(axis=1)
    timeline = Timeline(
        ends=window.ends,
        revision=rev,
        instances=instances.copy(),
        active=active.copy(),
        requests=sum(by_code.values(), np.zeros(rows, dtype=np.int64)),
        mem_mean=np.where(mem_n > 0, mem_mean, np.nan),
        mem_min=np.where(mem_n > 0, mem_min, np.nan),
        cpu_mean=np.where(
            mem_n > 0, np.where(alive, cpu_frac, 0.0).sum(axis=1) / np.maximum(mem_n, 1), np.nan
        ),
        latency_mean_ms=run.latency_s[lo:hi] * 1000.0,
        cpu_seconds=run.cpu_seconds[lo:hi].copy(),
        leak_growth_mib=run.leak_growth[lo:hi].copy(),
        billable_s=billable,
        oom_kills=run.oom[lo:hi].copy(),
        gap=window.gap,
    )
    return _Emitted(series, timeline, billable, drain_billable, drain_seconds, by_code)


def _emit_revision(
    spec: ServiceSpec,
    r_idx: int,
    series: dict[str, list[dict[str, Any]]],
    here: BoolArray,
    drains: list[_Drain],
    delta: list[dict[str, str]],
    gauge: list[dict[str, str]],
    mem_n: IntArray,
    utilization: tuple[list[list[str]], FloatArray, FloatArray, list[list[str]], FloatArray, FloatArray],
    instances: IntArray,
    active: IntArray,
    by_code: Mapping[str, IntArray],
    latency: Mapping[str, tuple[IntArray, FloatArray, FloatArray, list[list[str]]]],
    billable: FloatArray,
    rng: np.random.Generator,
    metrics: frozenset[str] | None = None,
) -> None:
    """Every series of one revision (or only ``metrics``): the minutes it served, plus the idle minutes
    of its drain."""
    rev = spec.revisions[r_idx]
    name = rev.name
    mem_rows, mem_mean, mem_ssd, cpu_rows, cpu_mean, cpu_ssd = utilization

    def add(
        metric: str,
        kind: str,
        value_type: str,
        unit: str,
        labels: Mapping[str, str],
        points: list[dict[str, Any]],
    ) -> None:
        if points and (metrics is None or metric in metrics):
            series.setdefault(metric, []).append(
                _series(metric, kind, value_type, unit, spec, name, labels, points)
            )

    idx = np.flatnonzero(here & (mem_n > 0))
    serving = np.flatnonzero(here)
    mem_pts = _distribution_points(idx, delta, mem_n, mem_mean, mem_ssd, mem_rows, UTILIZATION_BUCKETS)
    cpu_pts = _distribution_points(idx, delta, mem_n, cpu_mean, cpu_ssd, cpu_rows, UTILIZATION_BUCKETS)
    act_pts = _int_points(serving, gauge, active)
    idle_pts = _int_points(serving, gauge, instances - active)
    bill = np.where(here, billable, 0.0)
    if drains:  # drained instances: idle, after the next revision took the traffic (newest points first)
        bounds = _bounds(UTILIZATION_BUCKETS)
        extra: list[list[dict[str, Any]]] = [[], [], [], []]
        for d in sorted(drains, key=lambda d: d.minute, reverse=True):
            k = len(d.memory)
            frac = np.clip((d.memory + rng.normal(0.0, 1.0, size=k)) / rev.memory_limit_mib, 0.0, 1.0)[
                None, :
            ]
            for slot, values in ((0, frac), (1, np.full((1, k), d.cpu))):
                counts, mean, ssd, n = _histograms(values, np.ones((1, k), dtype=bool), bounds)
                extra[slot].extend(
                    _distribution_points(
                        np.zeros(1, dtype=np.int64),
                        [delta[d.minute]],
                        n,
                        mean,
                        ssd,
                        _count_rows(counts),
                        UTILIZATION_BUCKETS,
                    )
                )
            extra[2].append({"interval": gauge[d.minute], "value": {"int64Value": "0"}})
            extra[3].append({"interval": gauge[d.minute], "value": {"int64Value": str(k)}})
            if not rev.request_based_billing:
                bill[d.minute] += STEP_SECONDS * k
        # A revision's drain follows all of its serving minutes, so its points go first (newest first).
        mem_pts, cpu_pts, act_pts, idle_pts = (
            e + p for e, p in zip(extra, (mem_pts, cpu_pts, act_pts, idle_pts), strict=True)
        )
    labels = {"container_name": CONTAINER_NAME}
    add("container/memory/utilizations", "DELTA", "DISTRIBUTION", "10^2.%", labels, mem_pts)
    add("container/cpu/utilizations", "DELTA", "DISTRIBUTION", "10^2.%", labels, cpu_pts)
    add(
        "container/instance_count",
        "GAUGE",
        "INT64",
        "1",
        {"container_name": CONTAINER_NAME, "state": "active"},
        act_pts,
    )
    add(
        "container/instance_count",
        "GAUGE",
        "INT64",
        "1",
        {"container_name": CONTAINER_NAME, "state": "idle"},
        idle_pts,
    )
    for code, klass, _ in _CODES:
        counts = by_code[code]
        code_labels = {"response_code": code, "response_code_class": klass}
        add(
            "request_count",
            "DELTA",
            "INT64",
            "1",
            code_labels,
            _int_points(np.flatnonzero(here & (counts > 0)), delta, counts),
        )
        if code in latency:
            with_requests, means, ssd, bucket_rows = latency[code]
            mine = with_requests[here[with_requests]]
            add(
                "request_latencies",
                "DELTA",
                "DISTRIBUTION",
                "ms",
                code_labels,
                _distribution_points(mine, delta, counts, means, ssd, bucket_rows, LATENCY_BUCKETS),
            )
    billed = np.flatnonzero(bill > 0)
    add("container/billable_instance_time", "DELTA", "DOUBLE", "s", {}, _double_points(billed, delta, bill))
    add(
        "container/cpu/allocation_time",
        "DELTA",
        "DOUBLE",
        "s{vCPU}",
        {},
        _double_points(billed, delta, np.round(bill * rev.cpu_limit, 6)),
    )
    add(
        "container/memory/allocation_time",
        "DELTA",
        "DOUBLE",
        "GiBy.s",
        {},
        _double_points(billed, delta, np.round(bill * rev.memory_limit_gib, 6)),
    )


# ----------------------------------------------------------------------------------------------
# Admin API documents
# ----------------------------------------------------------------------------------------------


def _digest(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _uid(*parts: str) -> str:
    h = _digest(*parts, length=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _container(rev: RevisionSpec) -> dict[str, Any]:
    cpu = f"{rev.cpu_limit:g}" if rev.cpu_limit >= 1 else f"{round(rev.cpu_limit * 1000)}m"
    memory = (
        f"{rev.memory_limit_mib // 1024}Gi"
        if rev.memory_limit_mib % 1024 == 0
        else f"{rev.memory_limit_mib}Mi"
    )
    resources: dict[str, Any] = {"limits": {"cpu": cpu, "memory": memory}}
    if rev.request_based_billing:  # proto3 JSON leaves a false bool out
        resources["cpuIdle"] = True
    if rev.startup_cpu_boost:
        resources["startupCpuBoost"] = True
    return {
        "name": CONTAINER_NAME,
        "image": rev.image,
        "ports": [{"name": "http1", "containerPort": 8080}],
        "resources": resources,
    }


def _scaling(rev: RevisionSpec) -> dict[str, Any]:
    scaling: dict[str, Any] = {"maxInstanceCount": rev.max_instances}
    if rev.min_instances:
        scaling["minInstanceCount"] = rev.min_instances
    return scaling


def _project_number(project: str) -> str:
    return str(100000000000 + int(_digest(project, length=10), 16) % 899999999999)


def revision_resource(spec: ServiceSpec, rev: RevisionSpec, *, serving: bool) -> dict[str, Any]:
    """One Revision message of the Cloud Run Admin API v2, as REST JSON."""
    parent = f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"
    created = rev.deployed_at.timestamp() - 40.0 + (int(_digest(rev.name, length=4), 16) % 20000) / 1000.0
    ready = created + 25.0
    labels = {"cloud.googleapis.com/location": spec.region, "managed-by": "cloud-deploy"}
    if rev.commit_sha:
        labels["commit-sha"] = rev.commit_sha
    labels.update(dict(rev.labels))
    active_state = (
        {
            "type": "Active",
            "state": "CONDITION_SUCCEEDED",
            "lastTransitionTime": format_time(ready, nanos=True),
            "severity": "INFO",
        }
        if serving
        else {
            "type": "Active",
            "state": "CONDITION_SUCCEEDED",
            "revisionReason": "RETIRED",
            "lastTransitionTime": format_time(ready + 3600.0, nanos=True),
            "severity": "INFO",
        }
    )
    return {
        "name": f"{parent}/revisions/{rev.name}",
        "uid": _uid(spec.project, spec.service, rev.name),
        "generation": "1",
        "labels": labels,
        "annotations": {
            "run.googleapis.com/client-name": "cloud-deploy",
            "run.googleapis.com/operation-id": _uid("op", rev.name),
        },
        "createTime": format_time(created, nanos=True),
        "updateTime": format_time(ready, nanos=True),
        "launchStage": "GA",
        "service": spec.service,
        "scaling": _scaling(rev),
        "maxInstanceRequestConcurrency": rev.max_concurrency,
        "timeout": "300s",
        "serviceAccount": f"{_project_number(spec.project)}-compute@developer.gserviceaccount.com",
        "containers": [_container(rev)],
        "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
        "conditions": [
            {
                "type": "ResourcesAvailable",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": format_time(ready - 5.0, nanos=True),
            },
            {
                "type": "ContainerHealthy",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": format_time(ready, nanos=True),
            },
            active_state,
        ],
        "observedGeneration": "1",
        "logUri": f"https://console.cloud.google.com/logs/viewer?project={spec.project}&resource=cloud_run_revision"
        f"/service_name/{spec.service}/revision_name/{rev.name}",
        "etag": f'"{_digest("etag", rev.name, length=20)}"',
    }


def service_resource(spec: ServiceSpec, latest: RevisionSpec) -> dict[str, Any]:
    """One Service message of the Cloud Run Admin API v2, as REST JSON (traffic 100 % to latest)."""
    name = f"projects/{spec.project}/locations/{spec.region}/services/{spec.service}"
    revision_name = f"{name}/revisions/{latest.name}"
    first = spec.revisions[0].deployed_at.timestamp() - 86400.0 * 30
    updated = latest.deployed_at.timestamp() - 40.0
    region_code = "".join(part[0] for part in spec.region.split("-"))[:2] + spec.region[-1]
    uri = f"https://{spec.service}-{_digest(spec.project, spec.service, length=10)}-{region_code}.a.run.app"
    generation = str(len(spec.revisions) + 3)
    done = {
        "type": "Ready",
        "state": "CONDITION_SUCCEEDED",
        "lastTransitionTime": format_time(updated + 30.0, nanos=True),
    }
    return {
        "name": name,
        "uid": _uid(spec.project, spec.service),
        "generation": generation,
        "labels": {"team": "platform"},
        "createTime": format_time(first, nanos=True),
        "updateTime": format_time(updated, nanos=True),
        "creator": "deployer@" + spec.project + ".iam.gserviceaccount.com",
        "lastModifier": "deployer@" + spec.project + ".iam.gserviceaccount.com",
        "client": "cloud-deploy",
        "ingress": "INGRESS_TRAFFIC_ALL",
        "launchStage": "GA",
        "template": {
            "labels": {"commit-sha": latest.commit_sha} if latest.commit_sha else {},
            "scaling": _scaling(latest),
            "timeout": "300s",
            "serviceAccount": f"{_project_number(spec.project)}-compute@developer.gserviceaccount.com",
            "containers": [_container(latest)],
            "executionEnvironment": "EXECUTION_ENVIRONMENT_GEN2",
            "maxInstanceRequestConcurrency": latest.max_concurrency,
        },
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
        "urls": [uri],
        "observedGeneration": generation,
        "terminalCondition": done,
        "conditions": [
            {
                "type": "RoutesReady",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": format_time(updated + 30.0, nanos=True),
            },
            {
                "type": "ConfigurationsReady",
                "state": "CONDITION_SUCCEEDED",
                "lastTransitionTime": format_time(updated + 25.0, nanos=True),
            },
        ],
        "latestReadyRevision": revision_name,
        "latestCreatedRevision": revision_name,
        "trafficStatuses": [
            {"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "revision": latest.name, "percent": 100}
        ],
        "uri": uri,
        "etag": f'"{_digest("etag", spec.service, length=20)}"',
    }


# ----------------------------------------------------------------------------------------------
# Truth
# ----------------------------------------------------------------------------------------------


def _plain(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return format_time(obj.timestamp())
    if hasattr(obj, "__dataclass_fields__"):
        return {name: _plain(getattr(obj, name)) for name in obj.__dataclass_fields__}
    if isinstance(obj, float):
        return round(obj, 6)
    return obj


def _revision_truth(
    spec: ServiceSpec, emitted: _Emitted, run: _Run, window: _Window
) -> dict[str, RevisionTruth]:
    tl = emitted.timeline
    out: dict[str, RevisionTruth] = {}
    keep = ~window.gap
    for r_idx, rev in enumerate(spec.revisions):
        here = tl.revision == r_idx
        drain_bill = emitted.drain_billable.get(r_idx, 0.0)
        billable = float(emitted.billable[here].sum()) + drain_bill
        if not here.any() and not drain_bill and r_idx not in emitted.drain_instance_seconds:
            continue
        out[rev.name] = RevisionTruth(
            revision=rev.name,
            requests=int(tl.requests[here].sum()),
            billable_instance_seconds=round(billable, 3),
            cpu_allocation_vcpu_seconds=round(billable * rev.cpu_limit, 3),
            memory_allocation_gib_seconds=round(billable * rev.memory_limit_gib, 3),
            instance_seconds=float(STEP_SECONDS * tl.instances[here].sum())
            + emitted.drain_instance_seconds.get(r_idx, 0.0),
            oom_kills=int(tl.oom_kills[here].sum()),
            observed_requests=int(tl.requests[here & keep].sum()),
            observed_billable_instance_seconds=round(float(emitted.billable[here & keep].sum()), 3),
        )
    return out


def _sustained_onset(excess: FloatArray, ends: IntArray, threshold: float, hours: float) -> int | None:
    """First index where the rolling mean of ``excess`` over ``hours`` stays at or above ``threshold``."""
    width = int(hours * 60)
    if len(excess) < width:
        return None
    csum = np.concatenate(([0.0], np.cumsum(np.nan_to_num(excess))))
    rolling = (csum[width:] - csum[:-width]) / width
    hits = np.flatnonzero(rolling >= threshold)
    return int(hits[0]) if hits.size else None


def _anomaly_truth(
    spec: ServiceSpec,
    tl: Timeline,
    cf: Timeline | None,
    cf_billable: FloatArray | None,
    start: datetime,
    end: datetime,
) -> list[AnomalyTruth]:
    anomalies: list[AnomalyTruth] = []
    for r_idx, rev in enumerate(spec.revisions):
        if not rev.anomalous:
            continue
        a_start = max(rev.leak_start() if rev.leaks else rev.deployed_at, start)
        nxt = spec.revisions[r_idx + 1].deployed_at if r_idx + 1 < len(spec.revisions) else end
        a_end = min(nxt, end)
        if a_end <= a_start:
            continue
        rows = (tl.ends > a_start.timestamp()) & (tl.ends <= a_end.timestamp()) & (tl.revision == r_idx)
        inst_minutes = float(tl.instances[rows].sum())
        limit = float(rev.memory_limit_mib)
        slope = (
            (float(tl.leak_growth_mib[rows].sum()) / inst_minutes * 1440.0 / limit * 100.0)
            if inst_minutes
            else 0.0
        )
        mean_inst = float(tl.instances[rows].mean()) if rows.any() else 0.0
        creep_onset: datetime | None = None
        excess_inst = excess_bill = 0.0
        cf_mean = mean_inst
        lat_ratio = cpu_ratio = 1.0
        if cf is not None and cf_billable is not None and rows.any():
            diff = (tl.instances - cf.instances).astype(np.float64)
            excess_inst = float(STEP_SECONDS * diff[rows].sum())
            excess_bill = float(tl.billable_s[rows].sum() - cf_billable[rows].sum())
            cf_mean = float(cf.instances[rows].mean())
            margin = max(0.5, 0.25 * cf_mean)
            idx = np.flatnonzero(rows)
            onset_i = _sustained_onset(diff[idx], tl.ends[idx], margin, 3.0)
            if onset_i is not None and mean_inst - cf_mean >= margin:
                creep_onset = datetime.fromtimestamp(int(tl.ends[idx[onset_i]]) - STEP_SECONDS, UTC)
            lat_w = tl.requests[rows].astype(np.float64)
            if lat_w.sum() > 0:
                lat_ratio = float(
                    np.average(tl.latency_mean_ms[rows], weights=lat_w)
                    / max(
                        np.average(cf.latency_mean_ms[rows], weights=np.maximum(cf.requests[rows], 1)), 1e-9
                    )
                )
            req_sim = max(float(tl.requests[rows].sum()), 1.0)
            req_cf = max(float(cf.requests[rows].sum()), 1.0)
            cpu_ratio = float(
                (tl.cpu_seconds[rows].sum() / req_sim) / max(cf.cpu_seconds[rows].sum() / req_cf, 1e-12)
            )
        anomalies.append(
            AnomalyTruth(
                revision=rev.name,
                start=a_start,
                end=a_end,
                leak_slope_pct_limit_per_day=round(slope, 4),
                excess_instance_seconds=excess_inst,
                excess_billable_instance_seconds=excess_bill,
                excess_cpu_allocation_vcpu_seconds=excess_bill * rev.cpu_limit,
                excess_memory_allocation_gib_seconds=excess_bill * rev.memory_limit_gib,
                mean_instances=mean_inst,
                counterfactual_mean_instances=cf_mean,
                creep_onset=creep_onset,
                latency_ratio=lat_ratio,
                cpu_per_request_ratio=cpu_ratio,
                oom_kills=int(tl.oom_kills[rows].sum()),
            )
        )
    return anomalies


# ----------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------


def _seed_sequence(seed: int, spec: ServiceSpec) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed & 0xFFFFFFFF, zlib.crc32(f"{spec.project}/{spec.service}".encode())])


def _aligned(stamp: datetime) -> int:
    if stamp.tzinfo is None:
        raise ValueError(f"{stamp!r} must be timezone-aware (UTC)")
    epoch = int(stamp.timestamp())
    return epoch - epoch % STEP_SECONDS


def _prepare(spec: ServiceSpec, start: datetime, end: datetime) -> tuple[int, int, int, int]:
    t0, t1 = _aligned(start), _aligned(end)
    if t1 <= t0:
        raise ValueError("end must be after start")
    first = _aligned(spec.revisions[0].deployed_at)
    serving = [r for r in spec.revisions if r.deployed_at <= start]
    burn = int(spec.burn_in.total_seconds())
    sim_start = t0 - burn
    if serving and serving[-1].leaks:  # a leak that began before the window: simulate it from its start
        sim_start = min(sim_start, _aligned(serving[-1].deployed_at))
    sim_start = max(sim_start, first, t0 - 14 * 86400)
    minutes = (t1 - sim_start) // STEP_SECONDS
    lo = (t0 - sim_start) // STEP_SECONDS
    return sim_start, minutes, lo, minutes


def _gap_mask(spec: ServiceSpec, ends: IntArray) -> BoolArray:
    gap = np.zeros(len(ends), dtype=bool)
    for g0, g1 in spec.gaps:
        gap |= (ends > g0.timestamp()) & (ends <= g1.timestamp())
    return gap


def _timeline_only(
    spec: ServiceSpec, start: datetime, end: datetime, seed: int
) -> tuple[Timeline, FloatArray]:
    sim_start, minutes, lo, hi = _prepare(spec, start, end)
    seq = _seed_sequence(seed, spec)
    run_seq, emit_seq = seq.spawn(2)
    run = _simulate(spec, sim_start, minutes, _aligned(start), run_seq)
    ends = sim_start + STEP_SECONDS * (np.arange(lo, hi, dtype=np.int64) + 1)
    window = _Window(lo, hi, ends, _gap_mask(spec, ends))
    emitted = _emit(spec, run, window, np.random.default_rng(emit_seq), with_series=False)
    return emitted.timeline, emitted.billable


@dataclass(frozen=True, slots=True)
class _HistorySpan:
    """The serving revision's first minutes before the window: row i ends at sim_start + 60·(i + 1)."""

    revision: int
    sim_start: int  # start of the revision's first whole minute (its deploy rounded up to the minute)
    minutes: int


def _history_span(spec: ServiceSpec, start: datetime, end: datetime) -> _HistorySpan | None:
    """Where the history of the revision serving at ``start`` lies, or None when there is none to read.

    It starts at the first whole minute after the deploy (the minute holding the deploy is still served
    by the previous revision, as in ``_simulate``) and ends before ``start`` (a point ending at the
    window start is not the window's, nor read by its query) and at most HISTORY_HOURS after the deploy.
    """
    serving = [i for i, r in enumerate(spec.revisions) if r.deployed_at <= start]
    if not serving:
        return None
    revision = serving[-1]
    deployed = spec.revisions[revision].deployed_at
    if start - deployed < HISTORY_MIN_AGE or not history_retained(deployed, end):
        return None
    first = -(-int(deployed.timestamp()) // STEP_SECONDS) * STEP_SECONDS  # as _revision_minutes rounds
    last_end = min(
        _aligned(deployed + timedelta(hours=HISTORY_HOURS)),
        -(-math.ceil(start.timestamp()) // STEP_SECONDS) * STEP_SECONDS - STEP_SECONDS,
    )
    minutes = (last_end - first) // STEP_SECONDS
    return _HistorySpan(revision, first, minutes) if minutes > 0 else None


def _history(
    spec: ServiceSpec,
    start: datetime,
    end: datetime,
    window_run: _Run,
    window_sim_start: int,
    seq: np.random.SeedSequence,
) -> dict[str, list[dict[str, Any]]]:
    """The serving revision's HISTORY_METRICS series from its deploy to the window start.

    When the window's own run already covers the deploy (burn-in, or a leak simulated from its deploy)
    its rows are emitted, so the history continues into the window exactly; otherwise the revision is
    simulated on its own from the deploy, which starts fresh instances as a deploy does. Either way only
    ``seq`` is drawn from (the window run's streams are untouched, so the window's documents and truth
    are the same with history on or off).
    """
    span = _history_span(spec, start, end)
    if span is None:
        return {}
    run_seq, emit_seq = seq.spawn(2)
    if window_sim_start <= span.sim_start:
        run, lo = window_run, (span.sim_start - window_sim_start) // STEP_SECONDS
    else:
        run, lo = _simulate(spec, span.sim_start, span.minutes, _aligned(start), run_seq), 0
    ends = span.sim_start + STEP_SECONDS * (np.arange(span.minutes, dtype=np.int64) + 1)
    window = _Window(lo, lo + span.minutes, ends, _gap_mask(spec, ends))
    only = _Only(span.revision, HISTORY_METRICS)
    return _emit(spec, run, window, np.random.default_rng(emit_seq), only=only).series


def simulate_service(
    spec: ServiceSpec,
    *,
    start: datetime,
    end: datetime,
    seed: int,
    counterfactual: bool = True,
    history: bool = True,
) -> SimulatedService:
    """Simulate one service over [start, end) and emit its documents and ground truth.

    The first revision must be deployed at or before ``start``. With ``counterfactual`` (and an
    anomalous revision in the spec) the service is simulated a second time with the anomalies
    removed, on the same traffic, to measure their excess instances and cost. With ``history`` the
    revision serving at ``start`` also gets its first hours before the window (``_history``), from
    random streams of its own: the window's documents and truth do not depend on it.
    """
    if spec.revisions[0].deployed_at > start:
        raise ValueError(f"service {spec.service!r}: the first revision must be deployed by the window start")
    sim_start, minutes, lo, hi = _prepare(spec, start, end)
    seq = _seed_sequence(seed, spec)
    run_seq, emit_seq = seq.spawn(2)
    run = _simulate(spec, sim_start, minutes, _aligned(start), run_seq)
    ends = sim_start + STEP_SECONDS * (np.arange(lo, hi, dtype=np.int64) + 1)
    window = _Window(lo, hi, ends, _gap_mask(spec, ends))
    emitted = _emit(spec, run, window, np.random.default_rng(emit_seq))
    history_series = _history(spec, start, end, run, sim_start, seq.spawn(1)[0]) if history else {}

    cf_timeline: Timeline | None = None
    cf_billable: FloatArray | None = None
    if counterfactual and any(r.anomalous for r in spec.revisions):
        cf_timeline, cf_billable = _timeline_only(spec.counterfactual(), start, end, seed)

    serving_at_end = spec.revisions[int(run.rev[hi - 1])]
    revisions_body = {
        "revisions": [
            revision_resource(spec, r, serving=r is serving_at_end) for r in reversed(spec.revisions)
        ]
    }
    return SimulatedService(
        spec=spec,
        start=start,
        end=end,
        seed=seed,
        series=emitted.series,
        revisions_body=revisions_body,
        service_resource=service_resource(spec, spec.revisions[-1]),
        revisions=_revision_truth(spec, emitted, run, window),
        anomalies=_anomaly_truth(spec, emitted.timeline, cf_timeline, cf_billable, start, end),
        timeline=emitted.timeline,
        counterfactual=cf_timeline,
        history=history_series,
    )


def _stem(metric: str) -> str:
    return metric.replace("/", "-")


def _paged(series: list[dict[str, Any]], page_points: int) -> list[dict[str, Any]]:
    """Split one response into pages of at most ``page_points`` points, continuing a series across pages."""
    pages: list[dict[str, Any]] = []
    current: list[dict[str, Any]] = []
    room = page_points
    for message in series:
        points = message["points"]
        at = 0
        while at < len(points):
            take = min(room, len(points) - at)
            current.append({**message, "points": points[at : at + take]})
            at += take
            room -= take
            if room == 0:
                pages.append({"timeSeries": current})
                current, room = [], page_points
    if current or not pages:
        pages.append({"timeSeries": current})
    for i, page in enumerate(pages[:-1]):
        page["nextPageToken"] = _digest("page", str(i), str(len(pages)), length=24)
    return pages


def _series_documents(
    per_service: Sequence[Mapping[str, list[dict[str, Any]]]], prefix: str, page_points: int | None
) -> list[Document]:
    """One timeSeries.list response per metric over every service, stems prefixed with ``prefix``."""
    by_metric: dict[str, list[dict[str, Any]]] = {}
    for series in per_service:
        for metric, messages in series.items():
            by_metric.setdefault(metric, []).extend(messages)
    documents: list[Document] = []
    for metric in sorted(by_metric):
        messages = by_metric[metric]
        stem = prefix + _stem(metric)
        if page_points is None:
            documents.append(("timeSeries", stem, {"timeSeries": messages}))
        else:
            for i, page in enumerate(_paged(messages, page_points)):
                documents.append(("timeSeries", f"{stem}.page{i + 1:03d}", page))
    return documents


def snapshot_documents(
    services: Sequence[SimulatedService], *, page_points: int | None = None
) -> list[Document]:
    """(sub, stem, body) documents for ``write_snapshot``/``ingest``: one timeSeries.list response per
    metric covering every service (the fleet-efficient query), then one per metric of the services'
    history (stems starting with HISTORY_STEM: the serving revisions' first hours before the window, as a
    live source reads them), one revisions.list per service and one services.list per project and region.
    ``page_points`` splits responses into pages (files).
    """
    documents = _series_documents([sim.series for sim in services], "", page_points)
    documents += _series_documents([sim.history for sim in services], HISTORY_STEM, page_points)
    for sim in services:
        documents.append(
            ("revisions", f"{sim.spec.project}.{sim.spec.region}.{sim.spec.service}", sim.revisions_body)
        )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for sim in services:
        groups.setdefault((sim.spec.project, sim.spec.region), []).append(sim.service_resource)
    for (project, region), resources in sorted(groups.items()):
        documents.append(("services", f"{project}.{region}", {"services": resources}))
    return documents


def simulate_fleet(
    specs: Iterable[ServiceSpec],
    *,
    start: datetime,
    end: datetime,
    seed: int,
    counterfactual: bool = True,
    history: bool = True,
) -> list[SimulatedService]:
    return [
        simulate_service(s, start=start, end=end, seed=seed, counterfactual=counterfactual, history=history)
        for s in specs
    ]


def manifest_for(services: Sequence[SimulatedService], *, origin: str) -> dict[str, Any]:
    """A snapshot manifest: the window, and the simulation's ground truth for whoever wants it."""
    if not services:
        raise ValueError("no services")
    first = services[0]
    return {
        "window": {"start": format_time(first.start.timestamp()), "end": format_time(first.end.timestamp())},
        "origin": origin,
        "simulation": {"seed": first.seed, "services": [s.truth() for s in services]},
    }


# ----------------------------------------------------------------------------------------------
# The bundled demo: the incident of docs/incident.md
# ----------------------------------------------------------------------------------------------

DEMO_PROJECT = "demo-project"
DEMO_REGION = "europe-west1"
DEMO_END = datetime(2026, 11, 23, tzinfo=UTC)
DEMO_START = DEMO_END - timedelta(days=7)
DEMO_SEED = 20261123


def _at(day: int, hh: int, mm: int, ss: int = 0) -> datetime:
    """Day 1 is the window's first day."""
    return DEMO_START + timedelta(days=day - 1, hours=hh, minutes=mm, seconds=ss)


def demo_specs() -> list[ServiceSpec]:
    """The demo services: llm-router (the leak and its fix), checkout (healthy), catalog (a flat step)."""
    go_router = RuntimeSpec(
        base_memory_mib=92.0,
        cache_memory_mib=26.0,
        warmup_minutes=12.0,
        working_set_mib_per_inflight=0.45,
        gc_amplitude_mib=38.0,
        gc_live_fraction=0.25,
        gc_alloc_mib_per_request=0.012,
        gc_alloc_mib_per_minute=0.4,
        memory_noise_mib=2.5,
        base_latency_ms=1650.0,
        latency_sigma=0.6,
        cpu_ms_per_request=19.0,
        idle_cpu_vcpu=0.015,
        startup_cpu_vcpu=0.7,
        startup_seconds=1.2,
        recycle_per_day=0.08,
        thrash_cpu_vcpu=0.45,
    )
    router_common: dict[str, Any] = {
        "memory_limit_mib": 512,
        "cpu_limit": 1.0,
        "max_concurrency": 80,
        "min_instances": 1,
        "max_instances": 20,
        "request_based_billing": False,
        "startup_cpu_boost": True,
    }
    image = f"{DEMO_REGION}-docker.pkg.dev/{DEMO_PROJECT}/services/llm-router"
    router = ServiceSpec(
        service="llm-router",
        project=DEMO_PROJECT,
        region=DEMO_REGION,
        runtime=go_router,
        traffic=TrafficSpec(
            peak_rps=58.0,
            night_fraction=0.18,
            peak_hour_utc=13.5,
            weekend_factor=0.72,
            noise=0.09,
            bursts_per_day=1.5,
            client_error_rate=0.006,
            server_error_rate=0.0008,
        ),
        revisions=(
            RevisionSpec(
                name="llm-router-00041-abc",
                deployed_at=_at(-6, 10, 12, 33),
                image=f"{image}@sha256:" + _digest("41", length=64),
                commit_sha="3f9c2e1",
                **router_common,
            ),
            RevisionSpec(
                name="llm-router-00042-xyz",
                deployed_at=_at(2, 15, 20, 7),
                image=f"{image}@sha256:" + _digest("42", length=64),
                commit_sha="a71d0b4",
                latency_factor=1.17,
                cpu_factor=2.0,
                leak_mib_per_1k_requests=0.2,
                leak_cpu_vcpu_at_limit=0.6,
                anomalous=True,
                **router_common,
            ),
            RevisionSpec(
                name="llm-router-00043-fix",
                deployed_at=_at(5, 10, 5, 41),
                image=f"{image}@sha256:" + _digest("43", length=64),
                commit_sha="c4e8f52",
                latency_factor=0.99,
                **router_common,
            ),
        ),
    )
    jvm = RuntimeSpec(
        base_memory_mib=310.0,
        cache_memory_mib=90.0,
        warmup_minutes=25.0,
        working_set_mib_per_inflight=1.2,
        gc_amplitude_mib=150.0,
        gc_alloc_mib_per_request=0.045,
        gc_alloc_mib_per_minute=1.5,
        memory_noise_mib=6.0,
        base_latency_ms=140.0,
        latency_sigma=0.5,
        cpu_ms_per_request=38.0,
        idle_cpu_vcpu=0.02,
        startup_cpu_vcpu=1.0,
        startup_seconds=6.0,
        recycle_per_day=0.05,
    )
    checkout_image = f"{DEMO_REGION}-docker.pkg.dev/{DEMO_PROJECT}/services/checkout"
    checkout_common: dict[str, Any] = {
        "memory_limit_mib": 1024,
        "cpu_limit": 2.0,
        "max_concurrency": 40,
        "min_instances": 2,
        "max_instances": 30,
        "startup_cpu_boost": True,
    }
    checkout = ServiceSpec(
        service="checkout",
        project=DEMO_PROJECT,
        region=DEMO_REGION,
        runtime=jvm,
        traffic=TrafficSpec(
            peak_rps=95.0,
            night_fraction=0.08,
            peak_hour_utc=18.0,
            weekend_factor=1.25,
            noise=0.1,
            bursts_per_day=2.0,
            client_error_rate=0.01,
        ),
        revisions=(
            RevisionSpec(
                name="checkout-00187-kdw",
                deployed_at=_at(-9, 9, 41, 2),
                image=f"{checkout_image}:v2.31.0",
                commit_sha="91be7aa",
                **checkout_common,
            ),
            RevisionSpec(
                name="checkout-00188-p2m",
                deployed_at=_at(4, 11, 2, 50),
                image=f"{checkout_image}:v2.32.0",
                commit_sha="0d3f611",
                latency_factor=0.98,
                cpu_factor=1.02,
                **checkout_common,
            ),
        ),
    )
    python_rt = RuntimeSpec(
        base_memory_mib=150.0,
        cache_memory_mib=35.0,
        warmup_minutes=20.0,
        working_set_mib_per_inflight=2.5,
        gc_amplitude_mib=22.0,
        gc_alloc_mib_per_request=0.01,
        gc_alloc_mib_per_minute=0.2,
        memory_noise_mib=3.0,
        base_latency_ms=45.0,
        latency_sigma=0.45,
        cpu_ms_per_request=22.0,
        idle_cpu_vcpu=0.01,
        startup_cpu_vcpu=0.8,
        startup_seconds=4.0,
        recycle_per_day=0.05,
    )
    catalog_image = f"{DEMO_REGION}-docker.pkg.dev/{DEMO_PROJECT}/services/catalog"
    catalog_common: dict[str, Any] = {
        "memory_limit_mib": 512,
        "cpu_limit": 1.0,
        "max_concurrency": 20,
        "max_instances": 40,
    }
    catalog = ServiceSpec(
        service="catalog",
        project=DEMO_PROJECT,
        region=DEMO_REGION,
        runtime=python_rt,
        traffic=TrafficSpec(
            peak_rps=70.0, night_fraction=0.12, peak_hour_utc=15.0, weekend_factor=0.8, noise=0.08
        ),
        revisions=(
            RevisionSpec(
                name="catalog-00311-q7v",
                deployed_at=_at(-3, 16, 30, 15),
                image=f"{catalog_image}:2026.11.13",
                commit_sha="5a0e9c3",
                **catalog_common,
            ),
            RevisionSpec(
                name="catalog-00312-h4n",
                deployed_at=_at(3, 13, 47, 9),
                image=f"{catalog_image}:2026.11.18",
                commit_sha="e2b7d90",
                memory_step_mib=85.0,
                **catalog_common,
            ),
        ),
    )
    return [router, checkout, catalog]


def demo_services(*, counterfactual: bool = True, history: bool = True) -> list[SimulatedService]:
    return simulate_fleet(
        demo_specs(),
        start=DEMO_START,
        end=DEMO_END,
        seed=DEMO_SEED,
        counterfactual=counterfactual,
        history=history,
    )


def demo_documents() -> tuple[list[Document], dict[str, Any]]:
    """The bundled demo as snapshot documents and manifest (deterministic)."""
    services = demo_services()
    return snapshot_documents(services), manifest_for(services, origin="demo")
