"""Hand-made analysis tables for detector unit tests: a service's revisions, each with its own
memory, instance, latency and CPU behaviour, written straight into the frames table (no simulator),
so a test can put a quantity exactly where a threshold sits."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from analyzer.analysis.timeline import ServiceView, build_view
from analyzer.frames import KEY_COLUMNS, METRIC_COLUMNS, Frames
from analyzer.model import RevisionInfo, ServiceKey

START = pd.Timestamp(datetime(2026, 3, 2, tzinfo=UTC))  # a Monday, midnight
STEP = 300
KEY = ServiceKey("p", "europe-west1", "svc")
Curve = Callable[[np.ndarray], np.ndarray]  # hours since the revision's deploy -> a per-step value


@dataclass(frozen=True)
class Rev:
    """One revision: deployed ``at`` hours after START, serving until the next one (or ``until``). A name
    that comes again is a rollback: traffic goes back to that revision, which keeps its behaviour."""

    name: str
    at: float
    memory: Curve = field(default=lambda age: np.full(len(age), 0.40))  # typical instance, fraction of limit
    instance_factor: Curve = field(default=lambda age: np.ones(len(age)))  # instances per load, x normal
    latency_factor: Curve = field(default=lambda age: np.ones(len(age)))
    cpu_factor: Curve = field(default=lambda age: np.ones(len(age)))


def leak(per_day: float, base: float = 0.40) -> Curve:
    return lambda age: base + per_day * age / 24.0


def step_up(factor: float, *, hours: float = float("inf")) -> Curve:
    """``factor`` for the first ``hours`` of the revision, then back to 1."""
    return lambda age: np.where(age < hours, factor, 1.0)


def frames(revisions: list[Rev], *, until: float, seed: int = 1, peak_rps: float = 20.0, diurnal: float = 0.5,
           per_instance_rps: float = 2.0, memory_noise: float = 0.002, sawtooth: float = 0.03,
           sawtooth_minutes: float = 40.0, metric_noise: float = 0.02, history: bool = False) -> Frames:
    """The frames table of one service from START to ``until`` hours: each step is served by the latest
    revision deployed. Load follows a daily cycle (±``diurnal``); instances follow load; memory is the
    revision's curve plus a GC sawtooth and noise; latency and CPU per request are constant times the
    revision's factors, with noise. With ``history``, the steps from the first deploy before START are
    made too and given as ``Frames.history`` (what a source read of the first hours before the window)."""
    rng = np.random.default_rng(seed)
    first_hour = min(0.0, *(r.at for r in revisions)) if history else 0.0
    hours = np.arange(first_hour, until, STEP / 3600.0)
    stamps = START + pd.to_timedelta(hours, unit="h")
    deploys = np.asarray([r.at for r in revisions])
    serving = np.searchsorted(deploys, hours, side="right") - 1
    load = peak_rps * (1.0 + diurnal * np.sin(2 * np.pi * (hours - 8.0) / 24.0)) / (1.0 + diurnal)
    load *= 1.0 + metric_noise * rng.standard_normal(len(hours))
    tables = []
    first = {r.name: r for r in reversed(revisions)}  # a rollback serves the revision first deployed
    for index, served in enumerate(revisions):
        mine = serving == index
        rev = first[served.name]
        if not mine.any():
            continue
        age = hours[mine] - rev.at
        n = int(mine.sum())
        rps = load[mine]
        instances = np.maximum(rps / per_instance_rps * rev.instance_factor(age), 1.0)
        phase = (hours[mine] * 60.0 / sawtooth_minutes) % 1.0
        memory = rev.memory(age) + sawtooth * phase + memory_noise * rng.standard_normal(n)
        latency = 80.0 * rev.latency_factor(age) * (1.0 + metric_noise * rng.standard_normal(n))
        cpu_per_request = 0.02 * rev.cpu_factor(age) * (1.0 + metric_noise * rng.standard_normal(n))
        table = pd.DataFrame({
            "ts": stamps[mine], "mem_mean": memory, "mem_p50": memory, "mem_p95": memory + 0.02,
            "mem_p99": memory + 0.03, "mem_max": memory + 0.04,
            "cpu_mean": np.clip(cpu_per_request * rps / instances, 0.0, 1.0), "cpu_p50": np.nan, "cpu_p95": np.nan,
            "cpu_p99": np.nan,
            "lat_p50": latency, "lat_p95": 2.0 * latency, "lat_p99": 3.0 * latency,
            "req_rate": rps, "err_rate": 0.0, "requests": rps * STEP, "inst_active": instances, "inst_idle": 0.0,
            "billable_s": instances * STEP, "cpu_alloc_s": instances * STEP, "mem_alloc_gibs": instances * STEP * 0.5,
        })  # fmt: skip
        for column, value in zip(KEY_COLUMNS, (KEY.project, KEY.region, KEY.service, rev.name), strict=True):
            table[column] = value
        tables.append(table)
    metrics = pd.concat(tables, ignore_index=True)[[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]]
    metrics = metrics.sort_values(["revision", "ts"], kind="stable").reset_index(drop=True)
    early = (metrics["ts"] < START).to_numpy()
    before, metrics = metrics.loc[early].reset_index(drop=True), metrics.loc[~early].reset_index(drop=True)
    infos = {
        (KEY, r.name): RevisionInfo(KEY.project, KEY.region, KEY.service, r.name,
                                    create_time=(START + pd.Timedelta(hours=r.at)).to_pydatetime(),
                                    cpu_limit=1.0, memory_limit_gib=0.5)
        for r in first.values()
    }
    return Frames(metrics, infos, STEP, START.to_pydatetime(), (START + pd.Timedelta(hours=until)).to_pydatetime(),
                  [KEY], history=before)


def view(revisions: list[Rev], *, until: float, **kw: float) -> ServiceView:
    return build_view(frames(revisions, until=until, **kw), KEY)
