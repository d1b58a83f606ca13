"""Seeded generator of labelled Cloud Run scenarios for the detection-quality bench (issue 4).

Each scenario is one project with one or two services, simulated by ``analyzer.simulate`` over a
3-14 day window, written as a snapshot directory (Google's REST JSON) plus a ``labels.json``:

    {"scenario": id, "class": "...", "positive": bool, "window": {"start", "end"},
     "labels": [{"kind": "memory_baseline_rise" | "instance_creep" | "latency_regression" | "cpu_regression",
                 "service", "revision", "onset": RFC 3339, "slope_pct_limit_per_day"?, ...}], ...}

Labels come from the simulation itself, not from the knobs that were turned, so they state what
physically happened:

* memory_baseline_rise: a leaking revision; ``slope_pct_limit_per_day`` is the realized growth of each
  instance's live set (leaked MiB per instance-day, in % of the limit), ``sustained_hours`` how long
  the leak ran inside the window; ``strong`` = slope >= 5 %/day and sustained >= 12 h. A leak that began
  before the window keeps its true onset and is marked ``onset_before_window``.
* instance_creep: only where the run had clearly more instances than the counterfactual run (same
  traffic, anomaly removed) needed: mean excess >= max(0.5 instance, 25 %), sustained >= 3 h.
* latency_regression / cpu_regression: the revision's latency or CPU-per-request factor rose >= 15 %
  against its predecessor (``basis: factor``, onset at the deploy), or the realized mean latency /
  CPU-seconds per request did against the counterfactual (``basis: realized``: a leak's GC work or
  connection churn; onset when it has held for 3 h); only for anomalies that start in the window.
* ``ambiguous: true`` marks changes just below those margins (creep between half the margin and the
  margin, regressions of 8-15 %): real, but small enough that reasonable detectors may disagree.
  The scorer neither rewards nor penalises findings that match them (strictly: onset within 2 h); one on
  their revision dated further off matches nothing and is a false finding.

Attribution is always the revision serving at the onset (the one that introduced the anomaly, also
when a later deploy carries it on, or when a flag flip starts it hours after its deploy).

Nothing here is tuned to any detector: parameters are drawn from plausible ranges for Go, JVM,
Node.js and Python services on Cloud Run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from analyzer import simulate as sim

GENERATOR_VERSION = "bench-scenarios/2"
KINDS = ("memory_baseline_rise", "instance_creep", "latency_regression", "cpu_regression")
STRONG_SLOPE = 5.0  # % of the memory limit per day
STRONG_HOURS = 12.0
REGRESSION_RATIO = 1.15
AMBIGUOUS_RATIO = 1.08  # changes between this and REGRESSION_RATIO are labelled ambiguous
CREEP_MIN_INSTANCES = 0.5
CREEP_MIN_FRACTION = 0.25  # creep between half this margin and the margin is labelled ambiguous
LIMITS_MIB = (256, 512, 1024, 2048, 4096)

# Scenario classes and their weights in a suite. Positives first.
POSITIVE_CLASSES: dict[str, float] = {
    "leak_at_deploy": 0.17,
    "leak_before_window": 0.06,
    "leak_fixed": 0.07,
    "leak_delayed": 0.05,
    "incident_like": 0.06,
    "latency_regression": 0.07,
    "cpu_regression": 0.07,
    "concurrency_cut": 0.03,
}
NEGATIVE_CLASSES: dict[str, float] = {
    "healthy": 0.07,
    "traffic_growth": 0.05,
    "level_shift": 0.06,
    "warmup": 0.05,
    "big_sawtooth": 0.05,
    "min_instances_idle": 0.04,
    "batch_spikes": 0.04,
    "data_gaps": 0.04,
    "scale_to_zero": 0.03,
}
CLASSES = {**POSITIVE_CLASSES, **NEGATIVE_CLASSES}


@dataclass(frozen=True, slots=True)
class Episode:
    """One injected anomaly: the revision that introduced it and any later revisions that carried it on."""

    service: str
    origin: str  # revision name
    carriers: tuple[str, ...]  # revisions (origin first) whose behaviour includes the anomaly
    start: datetime  # deploy of the origin, or the flag flip that started a leak


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything needed to simulate one labelled scenario (cheap to create; simulation happens in build)."""

    id: str
    klass: str
    positive: bool
    start: datetime
    end: datetime
    seed: int
    specs: tuple[sim.ServiceSpec, ...]
    episodes: tuple[Episode, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------
# Random building blocks
# ----------------------------------------------------------------------------------------------


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _choice(
    rng: np.random.Generator, options: tuple[Any, ...] | list[Any], weights: list[float] | None = None
) -> Any:
    p = None if weights is None else np.asarray(weights) / float(np.sum(weights))
    return options[int(rng.choice(len(options), p=p))]


def _sha(rng: np.random.Generator) -> str:
    return "".join(_choice(rng, tuple("0123456789abcdef")) for _ in range(7))


def _suffix(rng: np.random.Generator) -> str:
    return "".join(_choice(rng, tuple("abcdefghijklmnopqrstuvwxyz0123456789")) for _ in range(3))


_SERVICE_NAMES = (
    "api", "auth", "billing", "search", "orders", "gateway", "profile", "media", "notify", "ingest",
    "pricing", "cart", "reports", "recommender", "geo", "webhooks", "inventory", "chat", "embeddings",
    "thumbnails",
)  # fmt: skip

_LANGUAGES: dict[str, dict[str, tuple[float, float]]] = {
    # base footprint and caches as fractions of the limit, GC amplitude as a fraction of the limit,
    # Go-style live-heap proportional GC threshold, container start seconds.
    "go": {
        "base": (0.08, 0.3),
        "cache": (0.01, 0.08),
        "amp": (0.02, 0.14),
        "live": (0.2, 0.6),
        "start": (0.5, 2.0),
    },
    "jvm": {
        "base": (0.25, 0.45),
        "cache": (0.04, 0.12),
        "amp": (0.06, 0.22),
        "live": (0.0, 0.0),
        "start": (4.0, 15.0),
    },
    "node": {
        "base": (0.12, 0.3),
        "cache": (0.02, 0.08),
        "amp": (0.03, 0.14),
        "live": (0.0, 0.2),
        "start": (1.0, 4.0),
    },
    "python": {
        "base": (0.15, 0.35),
        "cache": (0.02, 0.1),
        "amp": (0.01, 0.06),
        "live": (0.0, 0.0),
        "start": (2.0, 8.0),
    },
}
_LANGUAGE_LIMITS = {"go": (256, 512, 512, 1024), "jvm": (1024, 2048, 2048, 4096), "node": (512, 512, 1024),
                    "python": (512, 1024, 1024, 2048)}  # fmt: skip


@dataclass(slots=True)
class Profile:
    """A drawn service: runtime, traffic and the configuration of its first revision."""

    name: str
    language: str
    runtime: sim.RuntimeSpec
    traffic: sim.TrafficSpec
    base_revision: dict[str, Any]  # RevisionSpec keyword arguments (config)
    peak_instances: float
    capacity_rps: float  # requests per second one instance absorbs at the autoscaler's target
    requests_per_instance_day: float


def _draw_profile(
    rng: np.random.Generator,
    name: str,
    *,
    peak_instances: float | None = None,
    gc_amplitude: tuple[float, float] | None = None,
    min_instances: int | None = None,
    traffic_overrides: dict[str, Any] | None = None,
) -> Profile:
    language = _choice(rng, ("go", "jvm", "node", "python"), [0.35, 0.25, 0.2, 0.2])
    ranges = _LANGUAGES[language]
    limit = int(_choice(rng, _LANGUAGE_LIMITS[language]))
    cpu_limit = float(_choice(rng, (1.0, 1.0, 1.0, 2.0, 2.0, 4.0)))
    concurrency = int(
        _choice(rng, (10, 20, 40, 60, 80, 80, 80, 100, 250) if language != "python" else (4, 8, 10, 20, 40))
    )
    llm_like = rng.random() < 0.1
    latency_ms = _log_uniform(rng, 600.0, 3000.0) if llm_like else _log_uniform(rng, 12.0, 500.0)
    sigma = float(rng.uniform(0.35, 0.8))
    cpu_ms = _log_uniform(rng, 2.0, 60.0)
    mean_latency_s = latency_ms / 1000.0 * math.exp(sigma**2 / 2.0)
    capacity = min(
        sim.SCALE_TARGET * concurrency / mean_latency_s, sim.SCALE_TARGET * cpu_limit / (cpu_ms / 1000.0)
    )
    peak = peak_instances if peak_instances is not None else _log_uniform(rng, 1.0, 50.0)
    traffic = sim.TrafficSpec(
        peak_rps=peak * capacity,
        night_fraction=float(rng.uniform(0.05, 0.45)),
        peak_hour_utc=float(rng.uniform(0.0, 24.0)),
        sharpness=float(rng.uniform(1.0, 2.5)),
        weekend_factor=float(rng.uniform(0.4, 1.2)),
        noise=float(rng.uniform(0.03, 0.2)),
        bursts_per_day=float(rng.uniform(0.0, 3.0)),
        client_error_rate=_log_uniform(rng, 1e-4, 1e-2),
        server_error_rate=_log_uniform(rng, 1e-5, 1e-3),
    )
    if traffic_overrides:
        traffic = replace(traffic, **traffic_overrides)
    # Memory layout, sized so that a healthy instance peaks well below its limit.
    peak_inflight = sim.SCALE_TARGET * concurrency
    base = rng.uniform(*ranges["base"]) * limit
    cache = rng.uniform(*ranges["cache"]) * limit
    working_set = rng.uniform(0.02, 0.12) * limit
    amp_lo, amp_hi = gc_amplitude or ranges["amp"]
    amplitude = rng.uniform(amp_lo, amp_hi) * limit
    total = base + cache + working_set + 1.15 * amplitude
    ceiling = 0.78 * limit
    if total > ceiling:  # keep the amplitude (it is what a class may ask for) and shrink the rest
        squeeze = max(ceiling - 1.15 * amplitude, 0.1 * limit) / (base + cache + working_set)
        base, cache, working_set = base * squeeze, cache * squeeze, working_set * squeeze
    per_instance_rpm = capacity * 60.0
    gc_period_peak = _log_uniform(rng, 2.0, 180.0)  # minutes between collections at peak load
    runtime = sim.RuntimeSpec(
        base_memory_mib=base,
        cache_memory_mib=cache,
        warmup_minutes=float(rng.uniform(5.0, 30.0)),
        working_set_mib_per_inflight=working_set / peak_inflight,
        gc_amplitude_mib=amplitude,
        gc_live_fraction=float(rng.uniform(*ranges["live"])),
        gc_alloc_mib_per_request=amplitude / (gc_period_peak * per_instance_rpm),
        gc_alloc_mib_per_minute=amplitude / _log_uniform(rng, 60.0, 1440.0),
        memory_noise_mib=float(rng.uniform(0.002, 0.01)) * limit,
        base_latency_ms=latency_ms,
        latency_sigma=sigma,
        cpu_ms_per_request=cpu_ms,
        idle_cpu_vcpu=float(rng.uniform(0.003, 0.03)) * cpu_limit,
        startup_cpu_vcpu=float(rng.uniform(0.4, 1.0)) * cpu_limit,
        startup_seconds=float(rng.uniform(*ranges["start"])),
        recycle_per_day=float(rng.uniform(0.0, 0.2)),
        thrash_cpu_vcpu=float(rng.uniform(0.2, 0.6)) * cpu_limit,
    )
    if min_instances is None:
        min_instances = int(_choice(rng, (0, 1, 2, 3), [0.55, 0.3, 0.1, 0.05]))
    max_instances = int(min(max(math.ceil(peak * 4), 10), 200))
    base_revision = {
        "memory_limit_mib": limit,
        "cpu_limit": cpu_limit,
        "max_concurrency": concurrency,
        "min_instances": min_instances,
        "max_instances": max_instances,
        "request_based_billing": bool(rng.random() < 0.65),
        "startup_cpu_boost": bool(rng.random() < 0.5),
    }
    profile = Profile(name, language, runtime, traffic, base_revision, peak, capacity, 0.0)
    profile.requests_per_instance_day = _requests_per_instance_day(profile)
    return profile


def _requests_per_instance_day(profile: Profile) -> float:
    """Requests one instance serves per day on average, from the noiseless traffic curve and autoscaler."""
    t = profile.traffic
    hours = np.arange(0, 24 * 7, 0.25)
    hump = ((1.0 + np.cos(2 * np.pi * (hours % 24 - t.peak_hour_utc) / 24.0)) / 2.0) ** t.sharpness
    rate = t.peak_rps * (t.night_fraction + (1.0 - t.night_fraction) * hump)
    rate = rate * np.where((hours // 24) % 7 >= 5, t.weekend_factor, 1.0)
    instances = np.maximum(
        np.ceil(rate / profile.capacity_rps), max(1, profile.base_revision["min_instances"])
    )
    return float(np.sum(rate) / np.sum(instances) * 86400.0)


def _revision_name(service: str, number: int, rng: np.random.Generator) -> str:
    return f"{service}-{number:05d}-{_suffix(rng)}"


def _image(project: str, service: str, rng: np.random.Generator) -> str:
    digest = "".join(_choice(rng, tuple("0123456789abcdef")) for _ in range(64))
    return f"europe-docker.pkg.dev/{project}/apps/{service}@sha256:{digest}"


def _at_minute(t: datetime, rng: np.random.Generator) -> datetime:
    return t.replace(second=int(rng.integers(0, 60)), microsecond=0)


_BEHAVIOUR = (
    "latency_factor", "cpu_factor", "memory_step_mib", "leak_mib_per_1k_requests", "leak_mib_per_hour",
    "leak_cpu_vcpu_at_limit", "max_concurrency", "memory_limit_mib", "cpu_limit",
)  # fmt: skip


class _Builder:
    """Accumulates one service's revisions and the anomaly episodes injected into them."""

    def __init__(
        self, rng: np.random.Generator, project: str, profile: Profile, first_deploy: datetime
    ) -> None:
        self.rng = rng
        self.project = project
        self.profile = profile
        self.number = int(rng.integers(3, 400))
        self.revisions: list[sim.RevisionSpec] = []
        self.episodes: list[Episode] = []
        self.gaps: tuple[tuple[datetime, datetime], ...] = ()
        self.burn_in = timedelta(hours=12)
        self.add(first_deploy)

    @property
    def service(self) -> str:
        return self.profile.name

    def add(self, at: datetime, **changes: Any) -> sim.RevisionSpec:
        """A new revision deployed at ``at``: the latest behaviour and config, with ``changes`` applied."""
        if self.revisions:
            previous = self.revisions[-1]
            fields = {f: getattr(previous, f) for f in previous.__dataclass_fields__}
        else:
            fields = dict(self.profile.base_revision)
        self.number += 1
        fields.update(
            name=_revision_name(self.service, self.number, self.rng),
            deployed_at=_at_minute(at, self.rng),
            image=_image(self.project, self.service, self.rng),
            commit_sha=_sha(self.rng),
            leak_delay=timedelta(0),
            anomalous=False,
        )
        fields.update(changes)
        revision = sim.RevisionSpec(**fields)
        self.revisions.append(revision)
        return revision

    def benign(self, at: datetime) -> sim.RevisionSpec:
        """A routine deploy: a few percent either way, never enough to call a regression."""
        last = self.revisions[-1]
        return self.add(
            at,
            latency_factor=last.latency_factor * float(self.rng.uniform(0.96, 1.04)),
            cpu_factor=last.cpu_factor * float(self.rng.uniform(0.96, 1.04)),
            memory_step_mib=last.memory_step_mib
            + float(self.rng.uniform(-0.015, 0.015)) * last.memory_limit_mib,
        )

    def leak_rate(self, slope_pct: float, per_request: bool, limit: int) -> dict[str, float]:
        leaked_per_day = slope_pct / 100.0 * limit
        if per_request:
            return {
                "leak_mib_per_1k_requests": leaked_per_day / (self.profile.requests_per_instance_day / 1000.0)
            }
        return {"leak_mib_per_hour": leaked_per_day / 24.0}

    def anomaly(self, at: datetime, *, start: datetime | None = None, **changes: Any) -> sim.RevisionSpec:
        revision = self.add(at, anomalous=True, **changes)
        self.episodes.append(
            Episode(self.service, revision.name, (revision.name,), start or revision.deployed_at)
        )
        return revision

    def carry(self, at: datetime) -> sim.RevisionSpec:
        """A later routine deploy of code that still has the anomaly (same behaviour)."""
        revision = self.add(at, anomalous=True)
        last = self.episodes[-1]
        self.episodes[-1] = replace(last, carriers=(*last.carriers, revision.name))
        return revision

    def heal(self, at: datetime) -> sim.RevisionSpec:
        """The fix (or a rollback): the behaviour of the last healthy revision, under a new name."""
        healthy = next(r for r in reversed(self.revisions) if not r.anomalous)
        return self.add(at, **{f: getattr(healthy, f) for f in _BEHAVIOUR}, anomalous=False)

    def spec(self, region: str) -> sim.ServiceSpec:
        return sim.ServiceSpec(
            service=self.service,
            revisions=tuple(self.revisions),
            traffic=self.profile.traffic,
            runtime=self.profile.runtime,
            project=self.project,
            region=region,
            gaps=self.gaps,
            burn_in=self.burn_in,
        )


# ----------------------------------------------------------------------------------------------
# Scenario classes
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Context:
    rng: np.random.Generator
    project: str
    start: datetime
    end: datetime

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600.0

    def at_fraction(
        self, low: float, high: float, *, min_before_h: float = 12.0, min_after_h: float = 6.0
    ) -> datetime:
        """A time in the window at a random fraction in [low, high], respecting the margins."""
        lo = max(low * self.hours, min_before_h)
        hi = min(high * self.hours, self.hours - min_after_h)
        hours = self.rng.uniform(lo, max(lo, hi))
        return self.start + timedelta(hours=float(hours))

    def before_start(self, days: float) -> datetime:
        return self.start - timedelta(days=days)


def _maybe_benign(
    ctx: _Context, b: _Builder, *, chance: float = 0.35, before: datetime | None = None
) -> None:
    """Perhaps a routine deploy in the window (kept 12 h clear of ``before``, the anomaly's deploy)."""
    if ctx.rng.random() >= chance:
        return
    earliest = max(ctx.start, b.revisions[-1].deployed_at) + timedelta(hours=1)
    latest = (before - timedelta(hours=12)) if before is not None else ctx.end - timedelta(hours=2)
    if latest <= earliest:
        return
    b.benign(earliest + (latest - earliest) * float(ctx.rng.uniform(0.0, 1.0)))


def _leak_changes(
    ctx: _Context, b: _Builder, *, slope: float | None = None, cpu_coupling: bool | None = None
) -> tuple[dict[str, Any], float]:
    rng = ctx.rng
    slope = slope if slope is not None else _log_uniform(rng, 2.0, 40.0)
    per_request = bool(rng.random() < 0.6)
    changes = b.leak_rate(slope, per_request, b.revisions[-1].memory_limit_mib)
    coupled = cpu_coupling if cpu_coupling is not None else bool(rng.random() < 0.35)
    if coupled:  # sockets, buffers, goroutines held by the leak cost CPU too
        changes["leak_cpu_vcpu_at_limit"] = float(rng.uniform(0.15, 0.8)) * b.revisions[-1].cpu_limit
    return changes, slope


def _class_leak_at_deploy(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.1, 0.85, min_after_h=float(ctx.rng.uniform(3.0, 36.0)))
    _maybe_benign(ctx, b, before=deploy)
    changes, _ = _leak_changes(ctx, b)
    if ctx.rng.random() < 0.25:  # the same change also made requests slower
        changes["latency_factor"] = b.revisions[-1].latency_factor * _log_uniform(ctx.rng, 1.15, 1.5)
    b.anomaly(deploy, **changes)
    if ctx.rng.random() < 0.3:  # a later routine deploy still ships the leak
        later = deploy + timedelta(hours=float(ctx.rng.uniform(6.0, 72.0)))
        if later < ctx.end - timedelta(hours=1):
            b.carry(later)


def _class_leak_before_window(ctx: _Context, b: _Builder) -> None:
    days = float(ctx.rng.uniform(0.3, 3.0))
    changes, _ = _leak_changes(ctx, b, cpu_coupling=False)
    b.revisions.clear()
    b.add(ctx.before_start(days + float(ctx.rng.uniform(2.0, 20.0))))
    b.anomaly(ctx.before_start(days), **changes)
    b.burn_in = timedelta(days=days + 0.5)
    if ctx.rng.random() < 0.3:  # a routine deploy inside the window still ships the leak
        b.carry(ctx.at_fraction(0.2, 0.9))


def _class_leak_fixed(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.1, 0.6, min_after_h=18.0)
    changes, _ = _leak_changes(ctx, b)
    b.anomaly(deploy, **changes)
    remaining = (ctx.end - deploy).total_seconds() / 3600.0
    fix_after = float(ctx.rng.uniform(min(6.0, remaining * 0.5), max(remaining - 6.0, 6.0)))
    b.heal(deploy + timedelta(hours=fix_after))


def _class_leak_delayed(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.05, 0.6)
    delay = timedelta(hours=float(ctx.rng.uniform(2.0, 48.0)))
    if deploy + delay > ctx.end - timedelta(hours=12):
        delay = max(ctx.end - timedelta(hours=12) - deploy, timedelta(hours=1))
    changes, _ = _leak_changes(ctx, b)
    b.anomaly(deploy, start=deploy + delay, leak_delay=delay, **changes)


def _class_incident_like(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.15, 0.6, min_after_h=24.0)
    changes, _ = _leak_changes(ctx, b, slope=_log_uniform(ctx.rng, 8.0, 40.0), cpu_coupling=True)
    last = b.revisions[-1]
    changes["latency_factor"] = last.latency_factor * float(ctx.rng.uniform(1.15, 1.25))
    changes["cpu_factor"] = last.cpu_factor * float(ctx.rng.uniform(1.5, 3.0))
    b.anomaly(deploy, **changes)
    if ctx.rng.random() < 0.6:
        remaining = (ctx.end - deploy).total_seconds() / 3600.0
        b.heal(deploy + timedelta(hours=float(ctx.rng.uniform(0.4, 0.85)) * remaining))


def _class_latency_regression(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.15, 0.85)
    _maybe_benign(ctx, b, before=deploy)
    b.anomaly(deploy, latency_factor=b.revisions[-1].latency_factor * _log_uniform(ctx.rng, 1.15, 2.0))


def _class_cpu_regression(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.15, 0.85)
    _maybe_benign(ctx, b, before=deploy)
    b.anomaly(deploy, cpu_factor=b.revisions[-1].cpu_factor * _log_uniform(ctx.rng, 1.15, 3.0))


def _class_concurrency_cut(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.15, 0.85)
    current = b.revisions[-1].max_concurrency
    b.anomaly(deploy, max_concurrency=max(1, int(current * float(ctx.rng.uniform(0.1, 0.4)))))


def _class_healthy(ctx: _Context, b: _Builder) -> None:
    for _ in range(int(ctx.rng.integers(0, 3))):
        _maybe_benign(ctx, b, chance=1.0)


def _class_level_shift(ctx: _Context, b: _Builder) -> None:
    deploy = ctx.at_fraction(0.1, 0.9, min_before_h=6.0, min_after_h=3.0)
    last = b.revisions[-1]
    rt = b.profile.runtime
    working_set = rt.working_set_mib_per_inflight * sim.SCALE_TARGET * last.max_concurrency
    used = (
        rt.base_memory_mib
        + rt.cache_memory_mib
        + working_set
        + 1.15 * rt.gc_amplitude_mib
        + last.memory_step_mib
    )
    limits = [m for m in LIMITS_MIB if m != last.memory_limit_mib and used <= 0.75 * m]
    if limits and ctx.rng.random() < 0.25:  # a new limit: utilization steps although usage does not
        b.add(deploy, memory_limit_mib=int(_choice(ctx.rng, limits)))
        return
    headroom = 0.8 * last.memory_limit_mib - used - 0.12 * last.memory_limit_mib
    step = float(ctx.rng.uniform(0.08, 0.35)) * last.memory_limit_mib
    if ctx.rng.random() < 0.25:
        step = -min(step, 0.5 * rt.base_memory_mib)
    b.add(
        deploy, memory_step_mib=last.memory_step_mib + min(step, max(headroom, 0.05 * last.memory_limit_mib))
    )


def _class_warmup(ctx: _Context, b: _Builder) -> None:
    """Frequent routine deploys, each followed by a warm-up. Bounded growth must be seen to level off
    before the next deploy (four time constants, 98 % filled), or no one could tell it from a leak."""
    settle_h = 4.0 * b.profile.runtime.warmup_minutes / 3.0 / 60.0
    every = float(ctx.rng.uniform(4.0, 30.0))
    t = ctx.start + timedelta(hours=float(ctx.rng.uniform(1.0, every)))
    while t < ctx.end - timedelta(minutes=20):
        b.benign(t)
        t += timedelta(hours=max(every * float(ctx.rng.uniform(0.5, 1.5)), settle_h))


def _class_warmup_rare_deploy(ctx: _Context, b: _Builder) -> None:
    """A service with a long warm-up deployed once in the window, 4-48 h before its end: the report after a
    deploy sees one young revision and a predecessor deployed before the window, never seen warming up."""
    b.benign(ctx.end - timedelta(hours=float(ctx.rng.uniform(4.0, 48.0))))


def _class_scale_to_zero(ctx: _Context, b: _Builder) -> None:
    _maybe_benign(ctx, b)


_CLASS_BUILDERS = {
    "leak_at_deploy": _class_leak_at_deploy,
    "leak_before_window": _class_leak_before_window,
    "leak_fixed": _class_leak_fixed,
    "leak_delayed": _class_leak_delayed,
    "incident_like": _class_incident_like,
    "latency_regression": _class_latency_regression,
    "cpu_regression": _class_cpu_regression,
    "concurrency_cut": _class_concurrency_cut,
    "healthy": _class_healthy,
    "traffic_growth": _class_healthy,
    "level_shift": _class_level_shift,
    "warmup": _class_warmup,
    "big_sawtooth": _class_healthy,
    "min_instances_idle": _class_healthy,
    "batch_spikes": _class_healthy,
    "data_gaps": _class_healthy,
    "scale_to_zero": _class_scale_to_zero,
    # Drawn only on request (``bench/quick.py make --classes warmup_rare_deploy:N``): a negative class
    # outside the suites' mix (CLASSES), so that the draws scored so far stay comparable.
    "warmup_rare_deploy": _class_warmup_rare_deploy,
}


def _profile_for(klass: str, rng: np.random.Generator, name: str, ctx: _Context) -> Profile:
    days = ctx.hours / 24.0
    if klass == "traffic_growth":
        growth = min(float(rng.uniform(0.03, 0.2)), 4.0 ** (1.0 / days) - 1.0)
        return _draw_profile(rng, name, traffic_overrides={"growth_per_day": growth})
    if klass == "big_sawtooth":
        profile = _draw_profile(rng, name, gc_amplitude=(0.25, 0.45))
        rt = profile.runtime  # slow, tall sawtooth: one collection every 30 min to 6 h at peak
        period = _log_uniform(rng, 30.0, 360.0)
        profile.runtime = replace(
            rt,
            gc_alloc_mib_per_request=rt.gc_amplitude_mib / (period * profile.capacity_rps * 60),
            gc_live_fraction=0.0,
        )
        return profile
    if klass == "min_instances_idle":
        return _draw_profile(
            rng, name, peak_instances=_log_uniform(rng, 1.0, 3.0), min_instances=int(rng.integers(3, 11))
        )
    if klass == "batch_spikes":
        batch_days = tuple(
            sorted({int(d) for d in rng.integers(0, max(1, int(days)), size=int(rng.integers(1, 4)))})
        )
        profile = _draw_profile(rng, name)
        profile.traffic = replace(
            profile.traffic,
            batch_days=batch_days,
            batch_start_hour_utc=float(rng.uniform(0, 22)),
            batch_hours=float(rng.uniform(0.5, 4.0)),
            batch_extra_rps=float(rng.uniform(1.0, 6.0)) * profile.traffic.peak_rps,
        )
        return profile
    if klass == "scale_to_zero":
        return _draw_profile(
            rng,
            name,
            peak_instances=_log_uniform(rng, 1.0, 8.0),
            min_instances=0,
            traffic_overrides={
                "night_fraction": _log_uniform(rng, 5e-4, 1e-2),
                "sharpness": float(rng.uniform(2.0, 4.0)),
                "weekend_factor": float(rng.uniform(0.1, 0.6)),
            },
        )
    if klass in ("warmup", "warmup_rare_deploy"):
        profile = _draw_profile(rng, name)
        # caches that take hours to fill, then stay flat (always, for a rare deploy)
        if klass == "warmup_rare_deploy" or rng.random() < 0.5:
            rt = profile.runtime
            limit = profile.base_revision["memory_limit_mib"]
            cache = float(rng.uniform(0.1, 0.25)) * limit
            room = 0.78 * limit - (
                rt.base_memory_mib
                + rt.cache_memory_mib
                + 1.15 * rt.gc_amplitude_mib
                + rt.working_set_mib_per_inflight
                * sim.SCALE_TARGET
                * profile.base_revision["max_concurrency"]
            )
            profile.runtime = replace(
                rt,
                warmup_minutes=float(rng.uniform(90.0, 360.0)),
                cache_memory_mib=rt.cache_memory_mib + max(0.0, min(cache, room)),
            )
        else:
            profile.runtime = replace(profile.runtime, warmup_minutes=float(rng.uniform(20.0, 45.0)))
        return profile
    if klass == "leak_before_window" or klass.startswith("leak") or klass == "incident_like":
        # Leaks need instances that live long enough to show them: some minimum instances now and then.
        return _draw_profile(rng, name, min_instances=int(_choice(rng, (0, 1, 1, 2))))
    return _draw_profile(rng, name)


def _gaps(ctx: _Context, *, heavy: bool) -> tuple[tuple[datetime, datetime], ...]:
    rng = ctx.rng
    found = []
    for _ in range(int(rng.integers(2, 7) if heavy else rng.integers(1, 3))):
        at = ctx.start + timedelta(hours=float(rng.uniform(0.0, ctx.hours)))
        length = timedelta(minutes=_log_uniform(rng, 3.0, 360.0 if heavy else 90.0))
        found.append(
            (at.replace(second=0, microsecond=0), min(at + length, ctx.end).replace(second=0, microsecond=0))
        )
    return tuple(found)


def generate_one(seed: int, index: int, klass: str) -> Scenario:
    """Scenario ``index`` of the suite drawn with ``seed`` (independent of the other scenarios)."""
    rng = np.random.default_rng([seed, index, 0x5CE7])
    days = int(
        rng.integers(3, 8) if rng.random() < 0.55 else rng.integers(8, 15)
    )  # 3-14 days, more short ones
    end = datetime(2026, 1, 5, tzinfo=UTC) + timedelta(
        days=int(rng.integers(0, 300)), hours=int(rng.integers(0, 24))
    )
    start = end - timedelta(days=days)
    project = f"bench-{seed}-{index:04d}"
    ctx = _Context(rng, project, start, end)
    names = list(rng.permutation(_SERVICE_NAMES))
    profile = _profile_for(klass, rng, str(names[0]), ctx)
    primary = _Builder(rng, project, profile, ctx.before_start(float(rng.uniform(0.5, 20.0))))
    _CLASS_BUILDERS[klass](ctx, primary)
    if klass == "data_gaps" or rng.random() < 0.1:
        primary.gaps = _gaps(ctx, heavy=klass == "data_gaps")
    builders = [primary]
    if rng.random() < 0.15:  # a bystander: a healthy second service in the same project
        other = _Builder(
            rng,
            project,
            _draw_profile(rng, str(names[1]), peak_instances=_log_uniform(rng, 1.0, 10.0)),
            ctx.before_start(float(rng.uniform(0.5, 20.0))),
        )
        _maybe_benign(ctx, other, chance=0.5)
        builders.append(other)
    region = str(_choice(rng, ("europe-west1", "us-central1", "asia-northeast1", "europe-west4", "us-east4")))
    return Scenario(
        id=f"s{seed}-{index:04d}-{klass}",
        klass=klass,
        positive=klass in POSITIVE_CLASSES,
        start=start,
        end=end,
        seed=int(rng.integers(0, 2**31 - 1)),
        specs=tuple(b.spec(region) for b in builders),
        episodes=tuple(e for b in builders for e in b.episodes),
        notes={
            "days": days,
            "language": profile.language,
            "peak_instances": round(profile.peak_instances, 2),
            "billing": "request" if profile.base_revision["request_based_billing"] else "instance",
            "memory_limit_mib": profile.base_revision["memory_limit_mib"],
        },
    )


def suite_classes(count: int, seed: int) -> list[str]:
    """``count`` class names in proportion to their weights (every class at least once when count allows)."""
    names = list(CLASSES)
    weights = np.asarray([CLASSES[n] for n in names])
    quota = np.floor(weights / weights.sum() * count).astype(int)
    if count >= len(names):
        quota = np.maximum(quota, 1)
    rng = np.random.default_rng([seed, 0xC1A55])
    while quota.sum() < count:
        quota[rng.choice(len(names), p=weights / weights.sum())] += 1
    while quota.sum() > count:
        quota[int(np.argmax(quota))] -= 1
    order = [n for n, q in zip(names, quota, strict=True) for _ in range(q)]
    return [order[i] for i in rng.permutation(len(order))]


def generate(count: int, seed: int) -> list[Scenario]:
    return [generate_one(seed, i, k) for i, k in enumerate(suite_classes(count, seed))]


# ----------------------------------------------------------------------------------------------
# Labels from what the simulation did
# ----------------------------------------------------------------------------------------------


def _iso(t: datetime | float) -> str:
    stamp = t if isinstance(t, datetime) else datetime.fromtimestamp(float(t), UTC)
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sustained_onset(ratio_or_excess: np.ndarray, threshold: float, minutes: int) -> int | None:
    values = np.nan_to_num(ratio_or_excess.astype(np.float64))
    if len(values) < minutes:
        return None
    csum = np.concatenate(([0.0], np.cumsum(values)))
    rolling = (csum[minutes:] - csum[:-minutes]) / minutes
    hits = np.flatnonzero(rolling >= threshold)
    return int(hits[0]) if hits.size else None


def labels_for(scenario: Scenario, services: list[sim.SimulatedService]) -> list[dict[str, Any]]:
    """The ground-truth labels of one simulated scenario."""
    by_name = {s.spec.service: s for s in services}
    labels: list[dict[str, Any]] = []
    for episode in scenario.episodes:
        result = by_name[episode.service]
        spec = result.spec
        names = [r.name for r in spec.revisions]
        origin_index = names.index(episode.origin)
        origin = spec.revisions[origin_index]
        predecessor = spec.revisions[origin_index - 1] if origin_index else origin
        carriers = {names.index(c) for c in episode.carriers}
        tl, cf = result.timeline, result.counterfactual
        rows = np.isin(tl.revision, list(carriers)) & (tl.ends > episode.start.timestamp())
        if not rows.any():
            continue
        idx = np.flatnonzero(rows)
        first_end, last_end = int(tl.ends[idx[0]]), int(tl.ends[idx[-1]])
        in_window = episode.start >= scenario.start
        onset_iso = _iso(episode.start)
        base = {"service": episode.service, "revision": episode.origin, "onset": onset_iso}
        if cf is not None and in_window:
            base["excess_fraction_last_day"] = _excess_fraction(tl, cf, origin_index, episode.start)
        if origin.leaks:
            inst_minutes = float(tl.instances[rows].sum())
            slope = (
                float(tl.leak_growth_mib[rows].sum())
                / max(inst_minutes, 1.0)
                * 1440.0
                / origin.memory_limit_mib
                * 100
            )
            sustained = (
                last_end - max(first_end - sim.STEP_SECONDS, int(episode.start.timestamp()))
            ) / 3600.0
            labels.append(
                {
                    "kind": "memory_baseline_rise",
                    **base,
                    "slope_pct_limit_per_day": round(slope, 3),
                    "sustained_hours": round(sustained, 2),
                    "strong": bool(slope >= STRONG_SLOPE and sustained >= STRONG_HOURS),
                    "onset_before_window": not in_window,
                    "oom_kills": int(tl.oom_kills[rows].sum()),
                    "leak": "per_request" if origin.leak_mib_per_1k_requests else "per_hour",
                }
            )
        if cf is None or not in_window:
            continue
        # Instance creep: clearly more instances than the counterfactual run needed.
        excess = (tl.instances - cf.instances).astype(np.float64)
        cf_mean = float(cf.instances[rows].mean())
        margin = max(CREEP_MIN_INSTANCES, CREEP_MIN_FRACTION * cf_mean)
        mean_excess = float(excess[rows].mean())
        for level, ambiguous in ((margin, False), (margin / 2.0, True)):
            onset_i = _sustained_onset(excess[idx], level, 180)
            if mean_excess >= level and onset_i is not None:
                labels.append({
                    "kind": "instance_creep", **base,
                    "onset": _iso(int(tl.ends[idx[onset_i]]) - sim.STEP_SECONDS),
                    "mean_excess_instances": round(mean_excess, 3),
                    "counterfactual_instances": round(cf_mean, 3), "ambiguous": ambiguous,
                })  # fmt: skip
                break
        weights = np.maximum(tl.requests[rows], 1).astype(np.float64)
        for kind, factor, realized, per_minute in (
            ("latency_regression", origin.latency_factor / predecessor.latency_factor,
             float(np.average(tl.latency_mean_ms[rows], weights=weights)
                   / np.average(cf.latency_mean_ms[rows], weights=np.maximum(cf.requests[rows], 1))),
             tl.latency_mean_ms / np.maximum(cf.latency_mean_ms, 1e-9)),
            ("cpu_regression", origin.cpu_factor / predecessor.cpu_factor,
             float((tl.cpu_seconds[rows].sum() / max(tl.requests[rows].sum(), 1))
                   / max(cf.cpu_seconds[rows].sum() / max(cf.requests[rows].sum(), 1), 1e-12)),
             _hourly_cpu_ratio(tl, cf)),
        ):  # fmt: skip
            label = _regression_label(kind, base, factor, realized, per_minute[idx], tl.ends[idx])
            if label is not None:
                labels.append(label)
    return labels


def _excess_fraction(tl: sim.Timeline, cf: sim.Timeline, revision: int, onset: datetime) -> float | None:
    """The share of the revision's billable instance time beyond the counterfactual run's, over the last
    24 h it served after ``onset``: what a finding's excess cost is a share of (its evidence's cost now
    against the counterfactual cost, over the same last day). None when it served none of it."""
    rows = np.flatnonzero((tl.revision == revision) & (tl.ends > onset.timestamp()))
    if not rows.size:
        return None
    last = rows[tl.ends[rows] > tl.ends[rows[-1]] - 86_400]
    actual = float(tl.billable_s[last].sum())
    if actual <= 0:
        return None
    return round((actual - float(cf.billable_s[last].sum())) / actual, 4)


def _regression_label(
    kind: str, base: dict[str, Any], factor: float, realized: float, per_minute: np.ndarray, ends: np.ndarray
) -> dict[str, Any] | None:
    """A latency or CPU regression: from the revision's own factor (onset at the deploy) or, failing
    that, from what was realized against the counterfactual (onset when it held for 3 h)."""
    facts = {"factor": round(factor, 4), "realized_ratio": round(realized, 4)}
    for threshold, ambiguous in ((REGRESSION_RATIO, False), (AMBIGUOUS_RATIO, True)):
        if factor >= threshold:
            return {"kind": kind, **base, **facts, "basis": "factor", "ambiguous": ambiguous}
        if realized >= threshold:
            onset = _sustained_onset(per_minute, threshold, 180)
            if onset is not None:
                return {
                    "kind": kind,
                    **base,
                    **facts,
                    "basis": "realized",
                    "ambiguous": ambiguous,
                    "onset": _iso(int(ends[onset]) - sim.STEP_SECONDS),
                }
    return None


def _hourly_cpu_ratio(tl: sim.Timeline, cf: sim.Timeline) -> np.ndarray:
    """Per minute: CPU-seconds per request over the trailing hour, run against counterfactual."""

    def trailing(values: np.ndarray) -> np.ndarray:
        csum = np.concatenate(([0.0], np.cumsum(values.astype(np.float64))))
        width = 60
        out = csum[width:] - csum[:-width]
        return np.concatenate((np.full(width - 1, np.nan), out))

    ours = trailing(tl.cpu_seconds) / np.maximum(trailing(tl.requests), 1.0)
    theirs = trailing(cf.cpu_seconds) / np.maximum(trailing(cf.requests), 1.0)
    return np.asarray(ours / np.maximum(theirs, 1e-12))


def build(
    scenario: Scenario, *, history: bool = True
) -> tuple[list[sim.SimulatedService], list[sim.Document], dict[str, Any], dict[str, Any]]:
    """Simulate a scenario: (services, snapshot documents, manifest, labels.json body).

    ``history`` adds the serving revisions' first hours before the window (``history-*`` documents, as
    a live source reads them); the window's documents and the labels are the same either way.
    """
    anomalous = {e.service for e in scenario.episodes}
    services = [
        sim.simulate_service(
            spec,
            start=scenario.start,
            end=scenario.end,
            seed=scenario.seed,
            counterfactual=spec.service in anomalous,
            history=history,
        )
        for spec in scenario.specs
    ]
    documents = sim.snapshot_documents(services)
    manifest = sim.manifest_for(services, origin=f"bench scenario {scenario.id}")
    labels = labels_for(scenario, services)
    body = {
        "scenario": scenario.id,
        "class": scenario.klass,
        "positive": scenario.positive,
        "generator": GENERATOR_VERSION,
        "window": {"start": _iso(scenario.start), "end": _iso(scenario.end)},
        "labels": labels,
        "services": [
            {
                "service": s.spec.service,
                "revisions": [r.name for r in s.spec.revisions],
                "oom_kills": int(s.timeline.oom_kills.sum()),
                "peak_instances": int(s.timeline.instances.max()),
                "mean_instances": round(float(s.timeline.instances.mean()), 3),
            }
            for s in services
        ],
        "notes": scenario.notes,
    }
    return services, documents, manifest, body
