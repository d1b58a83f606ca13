"""Property-based tests of the analysis: no crash on NaN, gaps, constant, very short or very long
series; no findings on pure noise; the same findings whatever the memory unit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from analyzer.analysis import analyze_frames
from analyzer.config import AnalysisConfig
from analyzer.frames import KEY_COLUMNS, METRIC_COLUMNS, Frames, build
from analyzer.model import RawData, RevisionInfo, ServiceKey
from analyzer.sources.snapshot import ingest
from tests.wire import linear_distribution, revision, series

KEY = ServiceKey("p", "europe-west1", "svc")
START = datetime(2026, 11, 1, tzinfo=UTC)
CONFIG = AnalysisConfig()
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _frames(table: pd.DataFrame, revisions: list[str], step: int = 300) -> Frames:
    infos = {(KEY, r): RevisionInfo(KEY.project, KEY.region, KEY.service, r,
                                    create_time=START + timedelta(days=i), cpu_limit=1.0, memory_limit_gib=0.5)
             for i, r in enumerate(revisions)}
    end = START + timedelta(seconds=step * max(len(table), 1))
    return Frames(table, infos, step, START, end, [KEY], [])


def _table(n: int, rng: np.random.Generator, *, noise: float, nan_fraction: float, constant: bool,
           two_revisions: bool) -> pd.DataFrame:
    ts = pd.date_range(START, periods=n, freq="300s", tz="UTC")
    revision = np.where((np.arange(n) >= n // 2) & two_revisions, "svc-00002-b", "svc-00001-a")
    data: dict[str, object] = {"project": KEY.project, "region": KEY.region, "service": KEY.service,
                               "revision": revision, "ts": ts}
    levels = {"mem": 0.4, "cpu": 0.3, "lat": 120.0, "req_rate": 20.0, "inst_active": 3.0}
    for column in METRIC_COLUMNS:
        prefix = column.split("_")[0]
        base = levels.get(prefix, levels.get(column, 1.0))
        values = np.full(n, base) if constant else base * (1 + noise * rng.uniform(-1, 1, n))
        if column.startswith("mem_") or column.startswith("cpu_"):
            values = np.clip(values, 0, 1)
        values[rng.random(n) < nan_fraction] = np.nan
        data[column] = values
    data["requests"] = np.nan_to_num(np.asarray(data["req_rate"], dtype=float)) * 300
    table = pd.DataFrame(data)
    table["inst_idle"] = 0.0
    return table[[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]]


@SETTINGS
@given(
    n=st.integers(min_value=0, max_value=4000),
    seed=st.integers(0, 2**16),
    nan_fraction=st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]),
    constant=st.booleans(),
    two_revisions=st.booleans(),
    gap=st.booleans(),
)
# Found by this test: a finding whose excess had no instance-seconds (NaN) crashed the cost evidence.
@example(n=3720, seed=3720, nan_fraction=0.1, constant=False, two_revisions=False, gap=False)
def test_no_crash_on_nan_gaps_constant_short_or_long(n: int, seed: int, nan_fraction: float, constant: bool,
                                                     two_revisions: bool, gap: bool) -> None:
    rng = np.random.default_rng(seed)
    table = _table(n, rng, noise=0.3, nan_fraction=nan_fraction, constant=constant, two_revisions=two_revisions)
    if gap and n > 10:
        table = table.drop(table.index[n // 3: 2 * n // 3]).reset_index(drop=True)
    analysis = analyze_frames(_frames(table, ["svc-00001-a", "svc-00002-b"]), CONFIG)
    assert not [p for p in analysis.problems if "analysis failed" in p.message]


@SETTINGS
@given(n=st.integers(min_value=50, max_value=4000), seed=st.integers(0, 2**16), two_revisions=st.booleans())
def test_no_findings_on_pure_noise(n: int, seed: int, two_revisions: bool) -> None:
    table = _table(n, np.random.default_rng(seed), noise=0.04, nan_fraction=0.0, constant=False,
                   two_revisions=two_revisions)
    analysis = analyze_frames(_frames(table, ["svc-00001-a", "svc-00002-b"]), CONFIG)
    assert analysis.findings == []


def _leaky_usage(scale: float) -> RawData:
    """Three days of a leaking revision's memory as usage in some unit (no utilization metric)."""
    start = START
    points = []
    for minute in range(3 * 24 * 60):
        level = 0.3 + 0.1 * minute / 1440  # +10 % of the limit per day
        saw = 0.05 * ((minute % 30) / 30)  # GC sawtooth
        samples = [(level + saw + d) * scale for d in (0.0, 0.01, 0.02)]
        points.append((start + timedelta(minutes=minute + 1), linear_distribution(samples, width=scale / 100)))
    requests = [(start + timedelta(minutes=m + 1), {"int64Value": "600"}) for m in range(3 * 24 * 60)]
    instances = [(start + timedelta(minutes=m + 1), {"int64Value": "3"}) for m in range(3 * 24 * 60)]
    data = RawData()
    ingest(data, "timeSeries", "mem", {"timeSeries": [series("container/memory/usage", points, kind="GAUGE")]})
    ingest(data, "timeSeries", "req", {"timeSeries": [series("request_count", requests, value_type="INT64")]})
    ingest(data, "timeSeries", "inst", {"timeSeries": [series("container/instance_count", instances, kind="GAUGE",
                                                              value_type="INT64", labels={"state": "active"})]})
    ingest(data, "revisions", "revs", {"revisions": [{**revision("svc-00001-abc", created=start),
                                                      "containers": [{"image": "x"}]}]})
    return data


@settings(max_examples=6, deadline=None)
@given(scale=st.sampled_from([1.0, 1024.0, 2.0**20, 2.0**30, 1e9, 0.001]))
def test_the_same_findings_whatever_the_memory_unit(scale: float) -> None:
    reference = analyze_frames(build(_leaky_usage(1.0)), CONFIG)
    scaled = analyze_frames(build(_leaky_usage(scale)), CONFIG)
    assert [(f.kind, f.revision, f.onset) for f in reference.findings] == [
        (f.kind, f.revision, f.onset) for f in scaled.findings
    ]
    assert any(f.kind.value == "memory_baseline_rise" for f in scaled.findings)
