"""The cost model: hand-computed window costs (Tier 2, instance-based, idle min-instances, CUD, free
tier), properties (linear in time, no request fee without requests), excess against a hand-built
counterfactual and against the simulator's ground truth, savings of a fix, and the what-ifs."""

from __future__ import annotations

import math
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analyzer import simulate as sim
from analyzer.analysis import Analysis, cost, load_model
from analyzer.analysis.creep import detect_creep
from analyzer.analysis.timeline import ServiceView, build_view
from analyzer.analysis.whatif import WhatIfKind, service_what_ifs
from analyzer.config import AnalysisConfig, parse_config
from analyzer.frames import KEY_COLUMNS, METRIC_COLUMNS, Frames
from analyzer.model import RevisionInfo
from analyzer.pipeline import analyze
from analyzer.prices import SECONDS_PER_MONTH, load_table
from analyzer.render.html import render_report
from analyzer.render.json_report import report_json
from analyzer.sources.snapshot import read_snapshot, write_snapshot

TABLE = load_table("builtin")
T0 = pd.Timestamp("2026-11-02T00:00:00Z")
STEP = 300


def config(**pricing: Any) -> AnalysisConfig:
    return parse_config(AnalysisConfig, {"pricing": pricing}, source="test")


def info(name: str = "svc-00001-abc", *, region: str = "us-central1", cpu: float | None = 1.0,
         memory: float | None = 0.5, request_based: bool | None = True, min_instances: int = 0,
         project: str = "proj", created: pd.Timestamp | None = None) -> RevisionInfo:
    return RevisionInfo(project, region, "svc", name, (created or T0).to_pydatetime(), cpu, memory,
                        request_based, min_instances)


def rows(rev: RevisionInfo, steps: int, *, start: pd.Timestamp = T0, **columns: Any) -> pd.DataFrame:
    """``steps`` rows of one revision; columns given as a number or one value per step, others NaN."""
    data: dict[str, Any] = {
        "project": rev.project, "region": rev.region, "service": rev.service, "revision": rev.revision,
        "ts": pd.date_range(start, periods=steps, freq=f"{STEP}s"),
    }
    for name in METRIC_COLUMNS:
        value = columns.get(name, np.nan)
        data[name] = np.broadcast_to(np.asarray(value, dtype=np.float64), (steps,)).copy()
    return pd.DataFrame(data)[[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]]


def view_of(*parts: tuple[RevisionInfo, pd.DataFrame]) -> ServiceView:
    metrics = pd.concat([frame for _, frame in parts], ignore_index=True)
    revisions = {(r.key, r.revision): r for r, _ in parts}
    start, end = metrics["ts"].min(), metrics["ts"].max() + pd.Timedelta(seconds=STEP)
    key = parts[0][0].key
    frames = Frames(metrics, revisions, STEP, start.to_pydatetime(), end.to_pydatetime(), [key])
    return build_view(frames, key)


def window(view: ServiceView) -> tuple[pd.Timestamp, pd.Timestamp]:
    return view.rows["ts"].min(), view.rows["ts"].max() + pd.Timedelta(seconds=STEP)


def service(view: ServiceView, cfg: AnalysisConfig | None = None) -> cost.ServiceCost:
    return cost.service_cost(view, TABLE, cfg or config(), window(view))


# --- hand-computed window costs -------------------------------------------------------------------------

def test_tier2_request_based_is_allocation_times_tier2_prices_plus_the_request_fee() -> None:
    rev = info(region="europe-west2")
    result = service(view_of((rev, rows(rev, 12, cpu_alloc_s=100.0, mem_alloc_gibs=50.0, billable_s=100.0,
                                        requests=1000.0))))
    (revision,) = result.revisions
    # 1,200 vCPU-s × 0.0000336 + 600 GiB-s × 0.0000035 + 12,000 requests × 0.40 / 1e6
    assert revision.prices.tier == "tier2"
    assert revision.cost_usd == pytest.approx(0.04032 + 0.0021 + 0.0048)
    assert result.cost_usd == pytest.approx(0.04722)
    assert revision.basis == "allocation time"
    assert revision.crosscheck_difference == pytest.approx(0.0)


def test_instance_based_without_allocation_uses_billable_time_times_limits_and_no_request_fee() -> None:
    rev = info(cpu=2.0, memory=1.0, request_based=False)
    result = service(view_of((rev, rows(rev, 12, billable_s=600.0, requests=5000.0))))
    (revision,) = result.revisions
    # 7,200 instance-s × (2 vCPU × 0.000018 + 1 GiB × 0.000002)
    assert revision.cost_usd == pytest.approx(7200 * (2 * 0.000018 + 0.000002))
    assert revision.requests_usd == 0.0
    assert revision.basis == "billable instance time × limits"
    assert revision.crosscheck_difference is None


def test_idle_min_instances_are_estimated_at_the_idle_rates_and_kept_apart_by_default() -> None:
    rev = info(min_instances=2)
    frame = rows(rev, 12, cpu_alloc_s=30.0, mem_alloc_gibs=15.0, billable_s=30.0, inst_active=0.5,
                 inst_idle=2.5)
    view = view_of((rev, frame))
    metered = 12 * (30 * 0.000024 + 15 * 0.0000025)
    # Busy 30 s of each 300 s step (billable time) = 0.1 instance: the floor of 2 holds 1.9 instances
    # with no request in flight (the third idle one waits to be scaled in, unbilled).
    idle = 12 * 1.9 * STEP * (1.0 * 0.0000025 + 0.5 * 0.0000025)
    apart = service(view)
    assert apart.revisions[0].idle_min_instance_seconds == pytest.approx(12 * 1.9 * STEP)
    assert apart.idle_min_instance_usd == pytest.approx(idle)
    assert apart.cost_usd == pytest.approx(metered)
    billed = service(view, config(bill_idle_min_instances=True))
    assert billed.cost_usd == pytest.approx(metered + idle)
    assert billed.monthly_projection_usd == pytest.approx((metered + idle) / (12 * STEP) * SECONDS_PER_MONTH)


def test_idle_min_instances_without_counts_assume_the_floor_and_never_apply_to_instance_billing() -> None:
    rev = info(min_instances=3)
    # Without counts the floor is held throughout, idle but for the 10 s of each step it was busy.
    assert service(view_of((rev, rows(rev, 4, billable_s=10.0)))).revisions[0].idle_min_instance_seconds == \
        pytest.approx(4 * (3 * STEP - 10.0))
    always = info(min_instances=3, request_based=False)
    frame = rows(always, 4, billable_s=900.0, inst_active=0.0, inst_idle=3.0)
    assert service(view_of((always, frame))).idle_min_instance_usd == 0.0


def test_committed_use_discounts_apply_per_billing_mode_to_compute_but_not_to_the_request_fee() -> None:
    request = info("svc-00001-req")
    instance = info("svc-00002-ins", request_based=False, created=T0 + pd.Timedelta(hours=1))
    view = view_of((request, rows(request, 12, cpu_alloc_s=100.0, mem_alloc_gibs=50.0, requests=1000.0)),
                   (instance, rows(instance, 12, start=T0 + pd.Timedelta(hours=1), cpu_alloc_s=300.0,
                                   mem_alloc_gibs=150.0)))
    cfg = config(committed_use_discount_request_based=0.17, committed_use_discount_instance_based=0.28)
    costs = {r.revision: r for r in service(view, cfg).revisions}
    assert costs["svc-00001-req"].cost_usd == pytest.approx(
        0.83 * (1200 * 0.000024 + 600 * 0.0000025) + 12000 * 0.4 / 1e6)
    assert costs["svc-00002-ins"].cost_usd == pytest.approx(0.72 * (3600 * 0.000018 + 1800 * 0.000002))
    flat = {r.revision: r for r in service(view, config(committed_use_discount=0.46)).revisions}
    assert flat["svc-00002-ins"].cost_usd == pytest.approx(0.54 * (3600 * 0.000018 + 1800 * 0.000002))


def test_project_overrides_replace_table_prices_flat_then_per_mode_and_carry_their_own_discount() -> None:
    rev = info(request_based=False)
    view = view_of((rev, rows(rev, 10, cpu_alloc_s=100.0, mem_alloc_gibs=100.0)))
    cfg = config(committed_use_discount=0.5, overrides={"proj": {
        "cpu_vcpu_second": 0.00001, "memory_gib_second": 0.000003,
        "instance_based": {"memory_gib_second": 0.000001}, "committed_use_discount": 0.1}})
    (revision,) = service(view, cfg).revisions
    assert revision.cost_usd == pytest.approx(0.9 * (1000 * 0.00001 + 1000 * 0.000001))
    other = info(project="elsewhere", request_based=False)
    other_view = view_of((other, rows(other, 10, cpu_alloc_s=100.0, mem_alloc_gibs=100.0)))
    (plain,) = service(other_view, cfg).revisions
    assert plain.cost_usd == pytest.approx(0.5 * (1000 * 0.000018 + 1000 * 0.000002))


def test_a_crosscheck_difference_over_5_percent_is_flagged() -> None:
    rev = info()
    agree = service(view_of((rev, rows(rev, 6, cpu_alloc_s=100.0, mem_alloc_gibs=51.0, billable_s=100.0))))
    assert not agree.crosscheck_flagged
    off = service(view_of((rev, rows(rev, 6, cpu_alloc_s=100.0, mem_alloc_gibs=50.0, billable_s=80.0))))
    assert off.revisions[0].crosscheck_difference == pytest.approx(0.25)
    assert off.crosscheck_flagged


def test_the_free_tier_is_prorated_to_the_window_and_shared_by_all_services() -> None:
    a, b = info(), info(region="europe-west2")
    day = 288  # one day of 5-minute steps
    views = [view_of((a, rows(a, day, cpu_alloc_s=25.0, mem_alloc_gibs=5.0, requests=10.0))),
             view_of((b, rows(b, day, cpu_alloc_s=75.0, mem_alloc_gibs=5.0, requests=10.0)))]
    before = [service(v) for v in views]
    after = cost.apply_free_tier(before, TABLE, window_seconds=86400.0)
    allowance = 180000 * 86400 / SECONDS_PER_MONTH  # vCPU-seconds for one day
    used = day * 100.0
    for old, new in zip(before, after, strict=True):
        assert new is not None
        (revision,) = old.revisions
        # CPU is partly covered; memory (2,880 GiB-s < 11,826) and requests entirely.
        expected = revision.cpu_usd * allowance / used + revision.memory_usd + revision.requests_usd
        assert new.free_tier_credit_usd == pytest.approx(expected)
        assert new.cost_usd == pytest.approx(old.cost_usd - expected)
    assert after[0] is not None
    assert after[1] is not None
    assert after[0].free_tier_credit_usd < after[1].free_tier_credit_usd  # b used more, at Tier 2 prices


# --- properties ------------------------------------------------------------------------------------------

amounts = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)


@settings(max_examples=25, deadline=None)
@given(cpu=amounts, mem=amounts, requests=amounts, billable=amounts, copies=st.integers(1, 4),
       request_based=st.booleans(), region=st.sampled_from(["us-central1", "europe-west2"]))
def test_cost_is_linear_in_time(cpu: float, mem: float, requests: float, billable: float, copies: int,
                                request_based: bool, region: str) -> None:
    rev = info(region=region, request_based=request_based, min_instances=1)
    columns: dict[str, Any] = {"cpu_alloc_s": cpu, "mem_alloc_gibs": mem, "requests": requests,
                               "billable_s": billable, "inst_active": 0.0, "inst_idle": 1.0}
    once = service(view_of((rev, rows(rev, 6, **columns))), config(bill_idle_min_instances=True))
    many = service(view_of((rev, rows(rev, 6 * copies, **columns))), config(bill_idle_min_instances=True))
    assert many.cost_usd == pytest.approx(copies * once.cost_usd, rel=1e-9, abs=1e-12)
    assert many.monthly_projection_usd == pytest.approx(once.monthly_projection_usd, rel=1e-9, abs=1e-12)


@settings(max_examples=25, deadline=None)
@given(cpu=amounts, mem=amounts, billable=amounts, request_based=st.booleans(),
       cud=st.floats(min_value=0.0, max_value=0.9))
def test_zero_requests_cost_no_request_fee(cpu: float, mem: float, billable: float, request_based: bool,
                                           cud: float) -> None:
    rev = info(request_based=request_based)
    result = service(view_of((rev, rows(rev, 6, cpu_alloc_s=cpu, mem_alloc_gibs=mem, billable_s=billable,
                                        requests=0.0))), config(committed_use_discount=cud))
    (revision,) = result.revisions
    assert revision.requests_usd == 0.0
    assert revision.cost_usd == pytest.approx(revision.cpu_usd + revision.memory_usd)


# --- excess and savings ---------------------------------------------------------------------------------

def _daily_load(steps: int) -> np.ndarray:
    hours = np.arange(steps) * STEP / 3600
    return 20.0 + 15.0 * np.sin(2 * np.pi * hours / 24)


def _instance_rows(rev: RevisionInfo, load: np.ndarray, *, per_instance: float,
                   start: pd.Timestamp) -> pd.DataFrame:
    instances = np.ceil(load / per_instance)
    return rows(rev, len(load), start=start, req_rate=load, requests=load * STEP, inst_active=instances,
                inst_idle=0.0, billable_s=instances * STEP, cpu_alloc_s=instances * STEP * rev.cpu_limit,
                mem_alloc_gibs=instances * STEP * rev.memory_limit_gib)


def _two_revisions(*, ratio: float) -> tuple[ServiceView, np.ndarray]:
    """Two days of a healthy revision, then two of one needing ``ratio`` × the instances per request."""
    good = info("svc-00001-good", request_based=False)
    start_bad = T0 + pd.Timedelta(days=2)
    bad = info("svc-00002-bad", request_based=False, created=start_bad)
    load = _daily_load(576)
    view = view_of((good, _instance_rows(good, load, per_instance=10.0, start=T0)),
                   (bad, _instance_rows(bad, load, per_instance=10.0 / ratio, start=start_bad)))
    return view, load


def test_excess_is_the_resources_beyond_the_previous_revision_for_the_same_load() -> None:
    view, load = _two_revisions(ratio=1.5)
    span = view.span("svc-00002-bad")
    excess = cost.excess_cost(view, span, span.first_seen, TABLE, config())
    assert excess is not None
    extra_instances = np.ceil(load / (10.0 / 1.5)) - np.ceil(load / 10.0)
    extra_seconds = float(extra_instances.sum()) * STEP
    assert excess.instance_seconds == pytest.approx(extra_seconds, rel=0.02)
    assert excess.vcpu_seconds == pytest.approx(extra_seconds * 1.0, rel=0.02)
    assert excess.gib_seconds == pytest.approx(extra_seconds * 0.5, rel=0.02)
    assert excess.window_usd == pytest.approx(extra_seconds * (0.000018 + 0.5 * 0.000002), rel=0.02)
    assert excess.per_month_usd == pytest.approx(excess.window_usd / 2 * SECONDS_PER_MONTH / 86400, rel=0.05)
    assert excess.reference == "revision svc-00001-good"
    evidence = cost.excess_evidence(excess)
    assert evidence["excess_instance_seconds"] == pytest.approx(extra_seconds, rel=0.02)


def test_instance_billed_excess_follows_the_busiest_quarter_hour_of_each_step() -> None:
    # Cloud Run keeps an instance until it has sat idle about 15 minutes, so under instance-based billing a
    # step's instances are what the busiest of it and the three steps before it needed. The healthy
    # revision's daily load had a spike of +40 requests/s every hour, the priced one's (1.5 x the
    # instances per request) every two hours: 3 of every 11 steps between the reference's spikes still
    # held a spike's instances, 3 of every 23 of the priced day's, so the reference's mean at a request
    # rate was more than the counterfactual needed there. On each step's own rate the excess read 14 %
    # of the true one; on the busiest rate of the step and the quarter hour before it, +0.6 %.
    def served(every: int, per_instance: float, rev: RevisionInfo,
               start: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
        load = _daily_load(576) + np.where(np.arange(576) % every == 0, 40.0, 0.0)
        busiest = pd.Series(load).rolling(4, min_periods=1).max().to_numpy()
        instances = np.ceil(busiest / per_instance)
        return rows(rev, len(load), start=start, req_rate=load, requests=load * STEP, inst_active=instances,
                    inst_idle=0.0, billable_s=instances * STEP, cpu_alloc_s=instances * STEP * rev.cpu_limit,
                    mem_alloc_gibs=instances * STEP * rev.memory_limit_gib), busiest
    good = info("svc-00001-good", request_based=False)
    start_bad = T0 + pd.Timedelta(days=2)
    bad = info("svc-00002-bad", request_based=False, created=start_bad)
    reference, _ = served(12, 10.0, good, T0)
    priced, busiest = served(24, 10.0 / 1.5, bad, start_bad)
    view = view_of((good, reference), (bad, priced))
    span = view.span("svc-00002-bad")
    excess = cost.excess_cost(view, span, span.first_seen, TABLE, config())
    assert excess is not None
    extra_seconds = float((np.ceil(busiest / (10.0 / 1.5)) - np.ceil(busiest / 10.0)).sum()) * STEP
    assert excess.instance_seconds == pytest.approx(extra_seconds, rel=0.02)


def test_the_counterfactual_is_the_mean_for_the_load_and_follows_the_slope_below_the_reference() -> None:
    load = np.repeat(np.linspace(10.0, 100.0, 10), 8)
    skew = np.tile([1.0, 1.0, 1.0, 5.0], 20)  # per-step use is skewed: the mean is twice the median
    model = cost.expected_for_load(load, 2.0 * load * skew)
    assert model is not None
    assert model.predict(np.asarray([50.0]))[0] == pytest.approx(2.0 * 50.0 * 2.0, rel=0.05)
    # Below the quietest load seen, as the quiet bins scale with load (here in proportion), never below zero.
    assert model.predict(np.asarray([5.0]))[0] == pytest.approx(2.0 * 5.0 * 2.0, rel=0.1)
    assert model.predict(np.asarray([-50.0]))[0] == 0.0
    # Above the busiest, in proportion to load.
    assert model.predict(np.asarray([200.0]))[0] == pytest.approx(2.0 * 200.0 * 2.0, rel=0.05)


def test_below_the_reference_the_counterfactual_scales_as_its_quiet_half_does() -> None:
    # Use that grows as load^0.9 (a little per-request overhead that thins out), seen at 100-210
    # requests/s; the two quietest bins read alike (the bins are made non-decreasing, so noise flattens
    # them). Along their slope, half the quietest load was priced at the quietest bin's level, +87 %
    # (a leak on such a night read a fraction of its excess); the quiet half's log-log slope, 6 % under.
    points = np.linspace(100.0, 210.0, 12)
    values = points**0.9
    values[1] = values[0]
    model = load_model.LoadModel(points, values, slope_below=True)
    assert model.predict(np.asarray([50.0]))[0] == pytest.approx(50.0**0.9, rel=0.1)
    assert model.predict(np.asarray([150.0]))[0] == pytest.approx(150.0**0.9, rel=0.01)  # inside: as before
    # Flat quiet bins (a min-instance floor) stay flat; steeper than proportional is held at proportional.
    flat = load_model.LoadModel(points, np.full(12, 7.0), slope_below=True)
    assert flat.predict(np.asarray([10.0]))[0] == pytest.approx(7.0, rel=1e-12)
    assert load_model.quiet_elasticity(points, points**2) == 1.0


def test_a_night_quieter_than_the_reference_saw_is_not_priced_as_excess_whole() -> None:
    # The reference's two quietest bins straddle an instance step (2 → 3 instances): followed down
    # along their slope, the expectation reaches zero at 57 % of the quietest load, and a
    # revision no worse than its reference, serving a quieter night, had the whole night as "excess"
    # (an incident of development draw 410102 read +178 %). Below the quietest bin the expectation is at least
    # that bin's level in proportion to load.
    good = info("svc-00001-good", request_based=False)
    night_at = T0 + pd.Timedelta(days=2)
    same = info("svc-00002-same", request_based=False, created=night_at)
    hours = np.arange(576) * STEP / 3600
    day = 40.0 + 22.0 * np.sin(2 * np.pi * hours / 24)  # 18 to 62 requests/s
    night = 8.0 + 3.0 * np.sin(2 * np.pi * hours[:144] / 12)  # 5 to 11, for 12 hours
    view = view_of((good, _instance_rows(good, day, per_instance=10.0, start=T0)),
                   (same, _instance_rows(same, night, per_instance=10.0, start=night_at)))
    model = cost.expected_for_load(day, np.ceil(day / 10.0) * STEP)
    assert model is not None
    quietest_load, quietest = float(model.load_points[0]), float(model.values[0])
    assert model.predict(np.asarray([8.0]))[0] >= quietest * 8.0 / quietest_load - 1e-9
    span = view.span("svc-00002-same")
    excess = cost.excess_cost(view, span, span.first_seen, TABLE, config())
    assert excess is not None
    served = float(np.ceil(night / 10.0).sum()) * STEP
    assert 0.0 <= excess.instance_seconds <= 0.5 * served  # was all of it


def test_steps_without_a_request_rate_are_left_out_of_the_excess() -> None:
    view, _ = _two_revisions(ratio=1.5)
    # a view's rows come without the service's names (the key says them); a frames table has them
    rows_ = view.rows.assign(project=view.key.project, region=view.key.region, service=view.key.service)
    rows_.loc[rows_.index[::7], "req_rate"] = np.nan  # regression: NaN load made every figure NaN
    start, end = window(view)
    frames = Frames(rows_, {(s.info.key, s.name): s.info for s in view.spans}, STEP, start.to_pydatetime(),
                    end.to_pydatetime(), [view.key])
    holey = build_view(frames, view.key)
    span = holey.span("svc-00002-bad")
    excess = cost.excess_cost(holey, span, span.first_seen, TABLE, config())
    assert excess is not None
    assert all(math.isfinite(v) for v in (excess.window_usd, excess.per_month_usd, excess.instance_seconds))
    assert excess.instance_seconds > 0


def test_a_predecessor_that_served_briefly_is_pooled_with_the_revisions_before_it() -> None:
    good = info("svc-00001-good", request_based=False)
    brief_at, bad_at = T0 + pd.Timedelta(days=2), T0 + pd.Timedelta(days=2, hours=6)
    brief = info("svc-00002-brief", request_based=False, created=brief_at)
    bad = info("svc-00003-bad", request_based=False, created=bad_at)
    load = _daily_load(576 + 72 + 576)
    view = view_of((good, _instance_rows(good, load[:576], per_instance=10.0, start=T0)),
                   (brief, _instance_rows(brief, load[576:648], per_instance=10.0, start=brief_at)),
                   (bad, _instance_rows(bad, load[648:], per_instance=10.0 / 1.5, start=bad_at)))
    span = view.span("svc-00003-bad")
    excess = cost.excess_cost(view, span, span.first_seen, TABLE, config())
    assert excess is not None
    assert excess.reference == "revisions svc-00001-good, svc-00002-brief"
    extra = float((np.ceil(load[648:] / (10.0 / 1.5)) - np.ceil(load[648:] / 10.0)).sum()) * STEP
    assert excess.instance_seconds == pytest.approx(extra, rel=0.03)


def _weekdays_then_a_weekend(per_instance: float = 10.0) -> ServiceView:
    """A reference that served six days: three busy (20-50 requests/s, two to five instances), then three
    quiet (2-6, one instance), as a weekday week and a weekend; then two busy days of a revision serving
    ``per_instance`` requests/s per instance (the reference: 10)."""
    good = info("svc-00001-good", request_based=False)
    after_at = T0 + pd.Timedelta(days=6)
    after = info("svc-00002-same", request_based=False, created=after_at)
    day = 288
    busy = 35.0 + 15.0 * np.sin(np.linspace(0, 6 * np.pi, 3 * day))
    quiet = 4.0 + 2.0 * np.sin(np.linspace(0, 6 * np.pi, 3 * day))
    return view_of((good, _instance_rows(good, np.concatenate([busy, quiet]), per_instance=10.0, start=T0)),
                   (after, _instance_rows(after, busy[:2 * day], per_instance=per_instance, start=after_at)))


def test_a_load_beyond_the_references_last_days_is_priced_from_every_day_it_served() -> None:
    # The detectors read the reference's last three days; priced from those alone, the revision had 40 %
    # of its instance time read as excess (its load is beyond anything those days saw). Its load is
    # outside their range, so the reference's whole record is what it is priced against.
    view = _weekdays_then_a_weekend()
    span = view.span("svc-00002-same")
    excess = cost.excess_cost(view, span, span.first_seen, TABLE, config())
    assert excess is not None
    assert excess.reference == "revision svc-00001-good"
    served = float(view.revision_rows(span.name)["inst_active"].sum()) * STEP
    assert abs(excess.instance_seconds) <= 0.03 * served


def test_a_load_beyond_the_references_last_days_is_judged_for_creep_against_every_day_it_served() -> None:
    # A revision needing 60 % more instances for the weekday traffic: against the weekend alone (one
    # instance at 6 requests/s, in proportion to load above it) it needed about as many as it ran.
    view = _weekdays_then_a_weekend(per_instance=10.0 / 1.6)
    span = view.span("svc-00002-same")
    found = detect_creep(view, span, AnalysisConfig().detection, reference=view.span("svc-00001-good"))
    assert found is not None
    assert found.reference == "revision svc-00001-good"
    assert found.excess_fraction == pytest.approx(0.6, abs=0.15)


def test_a_fix_saves_what_the_broken_revision_would_have_cost_for_its_load() -> None:
    bad = info("svc-00001-bad", request_based=False)
    start_fix = T0 + pd.Timedelta(days=2)
    fix = info("svc-00002-fix", request_based=False, created=start_fix)
    load = _daily_load(576)
    view = view_of((bad, _instance_rows(bad, load, per_instance=5.0, start=T0)),
                   (fix, _instance_rows(fix, load, per_instance=10.0, start=start_fix)))
    saved = cost.fix_savings(view, view.span("svc-00001-bad"), view.span("svc-00002-fix"), TABLE, config())
    assert saved is not None
    rate = 0.000018 + 0.5 * 0.000002
    warm = 45 * 60 // STEP  # the fix's first 45 minutes are warm-up
    expected = float((np.ceil(load / 5.0) - np.ceil(load / 10.0))[warm:].sum()) * STEP * rate
    per_month = expected / ((576 - warm) * STEP) * SECONDS_PER_MONTH
    assert saved.per_month_usd == pytest.approx(per_month, rel=0.05)
    assert saved.broken_usd_per_hour > saved.fixed_usd_per_hour


# --- against the simulator's ground truth ---------------------------------------------------------------

END = datetime(2026, 10, 9, tzinfo=UTC)
START = END - timedelta(days=4)


def _incident(region: str, *, request_based: bool, fixed: bool) -> sim.ServiceSpec:
    """The incident of docs/incident.md, small: a per-request leak deployed on day 2, maybe fixed on day 3."""
    common: dict[str, Any] = {"memory_limit_mib": 512, "cpu_limit": 1.0, "max_concurrency": 80,
                              "min_instances": 1, "max_instances": 20, "request_based_billing": request_based}
    revisions = [
        sim.RevisionSpec(name="router-00001-aaa", deployed_at=START - timedelta(days=3), **common),
        sim.RevisionSpec(name="router-00002-bad", deployed_at=START + timedelta(days=1, hours=15),
                         latency_factor=1.17, cpu_factor=2.0, leak_mib_per_1k_requests=0.2,
                         leak_cpu_vcpu_at_limit=0.6, anomalous=True, **common),
    ]
    if fixed:
        fix_at = START + timedelta(days=3, hours=2)
        revisions.append(sim.RevisionSpec(name="router-00003-fix", deployed_at=fix_at, **common))
    runtime = sim.RuntimeSpec(base_memory_mib=92, cache_memory_mib=26, warmup_minutes=12, gc_amplitude_mib=38,
                              working_set_mib_per_inflight=0.45, gc_live_fraction=0.25, base_latency_ms=1650,
                              latency_sigma=0.6, cpu_ms_per_request=19, idle_cpu_vcpu=0.015,
                              startup_seconds=1.2, recycle_per_day=0.08, thrash_cpu_vcpu=0.45)
    traffic = sim.TrafficSpec(peak_rps=58, night_fraction=0.18, peak_hour_utc=13.5, noise=0.09,
                              bursts_per_day=1.5)
    return sim.ServiceSpec(service="router", project="p", region=region, runtime=runtime, traffic=traffic,
                           revisions=tuple(revisions))


def _simulated(spec: sim.ServiceSpec) -> tuple[sim.SimulatedService, Analysis]:
    simulated = sim.simulate_service(spec, start=START, end=END, seed=11)
    with tempfile.TemporaryDirectory() as folder:
        manifest = sim.manifest_for([simulated], origin="test")
        write_snapshot(Path(folder), simulated.documents(), manifest=manifest)
        raw = read_snapshot(Path(folder))
    return simulated, analyze(raw)


@pytest.fixture(scope="module", params=[("europe-west2", True, False), ("europe-west1", False, True)],
                ids=["tier2-request-based", "tier1-instance-based-fixed"])
def incident(request: pytest.FixtureRequest) -> tuple[sim.SimulatedService, Analysis]:
    region, request_based, fixed = request.param
    return _simulated(_incident(region, request_based=request_based, fixed=fixed))


def _prices(simulated: sim.SimulatedService, revision: str) -> dict[str, float]:
    rev = next(r for r in simulated.spec.revisions if r.name == revision)
    mode = "request_based" if rev.request_based_billing else "instance_based"
    return TABLE.rates[(TABLE.tier_of(simulated.spec.region), mode)]


def true_cost(simulated: sim.SimulatedService) -> float:
    total = 0.0
    for name, truth in simulated.revisions.items():
        p = _prices(simulated, name)
        total += (truth.cpu_allocation_vcpu_seconds * p["cpu_vcpu_second"]
                  + truth.memory_allocation_gib_seconds * p["memory_gib_second"]
                  + truth.requests * p["requests_per_million"] / 1e6)
    return total


def test_window_cost_is_within_1_percent_of_the_true_cost(
        incident: tuple[sim.SimulatedService, Analysis]) -> None:
    simulated, analysis = incident
    (result,) = analysis.services
    assert result.cost is not None
    assert result.cost.cost_usd == pytest.approx(true_cost(simulated), rel=0.01)


def test_the_incident_revisions_excess_is_within_15_percent_of_the_truth(
        incident: tuple[sim.SimulatedService, Analysis]) -> None:
    simulated, analysis = incident
    (truth,) = simulated.anomalies
    p = _prices(simulated, truth.revision)
    true_excess = (truth.excess_cpu_allocation_vcpu_seconds * p["cpu_vcpu_second"]
                   + truth.excess_memory_allocation_gib_seconds * p["memory_gib_second"])
    findings = [f for f in analysis.findings if f.revision == truth.revision]
    assert findings, "the incident was not found"
    for finding in findings:
        assert finding.excess_cost_usd_window == pytest.approx(true_excess, rel=0.15)
        assert float(finding.evidence["excess_instance_seconds"]) == pytest.approx(
            truth.excess_billable_instance_seconds, rel=0.15)
        assert finding.excess_cost_usd_per_month > 0


def test_a_resolved_incident_reports_measured_savings(
        incident: tuple[sim.SimulatedService, Analysis]) -> None:
    simulated, analysis = incident
    resolved = [f for f in analysis.findings if f.resolved_by]
    if not any(r.name.endswith("-fix") for r in simulated.spec.revisions):
        assert resolved == []
        return
    assert resolved
    for finding in resolved:
        assert finding.resolved_by == "router-00003-fix"
        assert 0 < finding.savings_usd_per_month <= 2 * finding.excess_cost_usd_per_month
        assert "savings_measured_over_hours" in finding.evidence


def test_what_ifs_are_reported_per_service_in_the_json(
        incident: tuple[sim.SimulatedService, Analysis]) -> None:
    _, analysis = incident
    (result,) = analysis.services
    assert {w.kind for w in result.what_ifs} >= {WhatIfKind.BILLING_MODE, WhatIfKind.MIN_INSTANCES}
    (doc,) = report_json(analysis, generated_at=END)["services"]
    assert [w["kind"] for w in doc["what_ifs"]] == [w.kind.value for w in result.what_ifs]
    assert all(math.isfinite(w["savings_usd_per_month"]) for w in doc["what_ifs"])
    assert doc["idle_min_instance_usd_estimate"] is not None


def test_what_ifs_render_in_the_html_report(incident: tuple[sim.SimulatedService, Analysis]) -> None:
    _, analysis = incident
    html = render_report(analysis, generated_at=END)
    (result,) = analysis.services
    assert "<h3>What if…</h3>" in html
    for what_if in result.what_ifs:
        assert f"<th scope=\"row\">{what_if.change}</th>" in html


# --- what-ifs by hand ---------------------------------------------------------------------------------------

def _what_ifs(view: ServiceView, cfg: AnalysisConfig | None = None) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for w in service_what_ifs(view, TABLE, cfg or config()):
        found.setdefault(w.kind.value, []).append(w)
    return found


def test_switching_request_based_to_instance_based_bills_every_instance_at_instance_rates() -> None:
    rev = info(min_instances=0)
    frame = rows(rev, 24, cpu_alloc_s=120.0, mem_alloc_gibs=60.0, requests=900.0, inst_active=1.0,
                 inst_idle=1.0, req_rate=3.0, lat_p50=100.0, lat_p95=100.0)
    (switch,) = _what_ifs(view_of((rev, frame)), config(what_if={"basis_days": 7}))["billing_mode"]
    per_month = SECONDS_PER_MONTH / (24 * STEP)
    now = 24 * (120 * 0.000024 + 60 * 0.0000025 + 900 * 0.4 / 1e6) * per_month
    then = 24 * 2 * STEP * (0.000018 + 0.5 * 0.000002) * per_month
    assert switch.proposed == "instance-based"
    assert switch.current_usd_per_month == pytest.approx(now)
    assert switch.proposed_usd_per_month == pytest.approx(then)
    assert switch.savings_usd_per_month == pytest.approx(now - then)


def test_switching_instance_based_to_request_based_bills_the_time_with_a_request_in_flight() -> None:
    rev = info(request_based=False)
    frame = rows(rev, 24, billable_s=300.0, cpu_alloc_s=300.0, mem_alloc_gibs=150.0, requests=600.0,
                 req_rate=2.0, inst_active=1.0, inst_idle=0.0, lat_p50=100.0, lat_p95=100.0)
    (switch,) = _what_ifs(view_of((rev, frame)))["billing_mode"]
    # λL = 2/s × 0.1 s: busy 1 − e^−0.2 of each step, plus 50 ms rounding per busy period (λ·e^−λL per s).
    busy = STEP * (1 - math.exp(-0.2)) + 0.05 * 2.0 * STEP * math.exp(-0.2)
    per_step = busy * (0.000024 + 0.5 * 0.0000025) + 600 * 0.4 / 1e6
    assert switch.proposed_usd_per_month == pytest.approx(per_step * SECONDS_PER_MONTH / STEP)
    assert switch.proposed_usd_per_month < switch.current_usd_per_month


def test_min_instances_to_zero_saves_the_idle_floor() -> None:
    rev = info(min_instances=2)
    frame = rows(rev, 24, cpu_alloc_s=30.0, mem_alloc_gibs=15.0, inst_active=0.5, inst_idle=2.5)
    by_floor = {w.proposed: w for w in _what_ifs(view_of((rev, frame)))["min_instances"]}
    idle_per_month = 1.5 * (0.0000025 + 0.5 * 0.0000025) * SECONDS_PER_MONTH
    assert by_floor["0"].savings_usd_per_month == pytest.approx(idle_per_month)
    assert by_floor["1"].savings_usd_per_month == pytest.approx(idle_per_month * 1.0 / 1.5)
    none = info(min_instances=0)
    (one,) = _what_ifs(view_of((none, rows(none, 24, cpu_alloc_s=30.0, inst_active=0.25, inst_idle=0.0))))[
        "min_instances"]
    assert one.proposed == "1"
    assert one.savings_usd_per_month == pytest.approx(
        -0.75 * (0.0000025 + 0.5 * 0.0000025) * SECONDS_PER_MONTH)


def test_memory_is_right_sized_from_the_observed_p99_plus_headroom() -> None:
    rev = info(memory=2.0, request_based=False)
    p99 = np.full(24, 0.25)
    p99[15] = 0.30  # one busier step (after the warm-up) barely moves the 99th percentile
    frame = rows(rev, 24, cpu_alloc_s=300.0, mem_alloc_gibs=600.0, mem_p99=p99, inst_active=1.0,
                 inst_idle=0.0)
    (memory,) = _what_ifs(view_of((rev, frame)))["memory_limit"]
    peak = float(np.quantile(p99, 0.99)) * 2048
    proposed = math.ceil(peak * 1.3 / 128) * 128
    assert memory.proposed == f"{proposed} MiB"
    saved = 24 * 600 * 0.000002 * (1 - proposed / 2048) * SECONDS_PER_MONTH / (24 * STEP)
    assert memory.savings_usd_per_month == pytest.approx(saved)
    small = info(memory=0.5, request_based=False)
    near_limit = rows(small, 24, cpu_alloc_s=300.0, mem_alloc_gibs=150.0, mem_p99=0.95)
    (grow,) = _what_ifs(view_of((small, near_limit)))["memory_limit"]
    assert grow.proposed == "640 MiB"
    assert grow.savings_usd_per_month < 0


def test_a_views_cached_step_costs_never_outlive_the_config_they_were_priced_with() -> None:
    """The per-view cache was keyed on id(config): a freed config's id is reused by the next one, and
    its stale cost came back (issue 16: 6.64 instead of 21.43 about 2 runs in 7). Configs priced one
    after another on one view must each get their own cost."""
    rev = info()

    def fresh_view() -> ServiceView:
        return view_of((rev, rows(rev, 12, cpu_alloc_s=100.0, mem_alloc_gibs=50.0, requests=1000.0)))

    view = fresh_view()
    discounts = [float(d) for d in np.linspace(0.0, 0.5, 25)]  # each config is freed once priced
    priced = [service(view, config(committed_use_discount=d)).monthly_projection_usd for d in discounts]
    expected = [service(fresh_view(), config(committed_use_discount=d)).monthly_projection_usd for d in discounts]
    assert priced == pytest.approx(expected)


def test_min_instances_what_ifs_agree_with_each_other_when_one_instance_is_always_counted_active() -> None:
    """Issue 16: one instance counted active every step but busy half the time. Request-based billing
    bills the floor's instances at idle rates whenever they have no request in flight, so 2 → 0 saves
    more than 2 → 1, and 0 → 1 adds the idle half of the first instance (not $0.00)."""
    idle_rate = (0.0000025 + 0.5 * 0.0000025) * SECONDS_PER_MONTH / STEP  # one idle instance-step, a month
    two = info(min_instances=2)
    frame = rows(two, 24, cpu_alloc_s=150.0, mem_alloc_gibs=75.0, billable_s=150.0, inst_active=1.0,
                 inst_idle=1.0)
    by_floor = {w.proposed: w for w in _what_ifs(view_of((two, frame)))["min_instances"]}
    # busy 150 s / 300 s = 0.5 instances: the floor of 2 holds 1.5 idle instances, a floor of 1 holds 0.5
    assert by_floor["0"].savings_usd_per_month == pytest.approx(1.5 * STEP * idle_rate)
    assert by_floor["1"].savings_usd_per_month == pytest.approx(1.0 * STEP * idle_rate)
    none = info(min_instances=0)
    frame = rows(none, 24, cpu_alloc_s=150.0, mem_alloc_gibs=75.0, billable_s=150.0, inst_active=1.0,
                 inst_idle=0.0)
    (one,) = _what_ifs(view_of((none, frame)))["min_instances"]
    assert one.savings_usd_per_month == pytest.approx(-0.5 * STEP * idle_rate)


def test_a_reference_without_load_neither_sets_a_level_nor_is_extended() -> None:
    # A reference whose steps carry no load (``cost._cost_load``; or no steps at all) has no load range: the previous
    # revision's level and the other revisions' steps above its busiest load are not asked, and the
    # excess falls back to what the reference alone gives (before, min/max of no load raised).
    other = pd.DataFrame({"load": [5.0, 6.0, 7.0] * 40, "billable_q": 300.0, "vcpu_s": 300.0, "gib_s": 150.0,
                          "serving": "c"}, index=pd.date_range("2026-01-01", periods=120, freq="5min", tz="UTC"))
    for empty in (other.iloc[:0], other.assign(load=np.nan)):
        assert cost._level(empty, other, "billable_q", 300, 3.0) is None
        ref, joined = cost._extended(empty, other, other, [], 15, 300)
        assert ref is empty and joined == []


def test_the_previous_revisions_level_scales_the_counterfactual() -> None:
    # b used 10 % more per step than a's model predicts at b's own rates, inside a's range: its level is 1.1.
    index = pd.date_range("2026-01-01", periods=288, freq="5min", tz="UTC")
    load = np.tile(np.linspace(2.0, 20.0, 24), 12)
    a = pd.DataFrame({"load": load, "billable_q": 30.0 * load, "serving": "a"}, index=index)
    b = pd.DataFrame({"load": load[:100], "billable_q": 33.0 * load[:100], "serving": "b"}, index=index[:100])
    assert cost._level(a, b, "billable_q", 300, 6.0) == pytest.approx(1.1, rel=0.01)
    assert cost._level(a, b, "billable_q", 300, 9.0) is None  # 100 steps are 8.3 h: under 9 h inside the range


def _sides(ref: pd.DataFrame, mine: pd.DataFrame) -> cost._AgainstRange | None:
    """``mine``'s steps against ``ref``'s load range, its last day as ``excess_cost`` reads it."""
    last_day = np.asarray(mine.index >= mine.index[-1] - pd.Timedelta(hours=cost.RUN_RATE_HOURS))
    return cost._against_range(ref, mine, last_day)


def test_an_excess_beyond_the_reference_range_lies_between_none_and_its_share_inside() -> None:
    # The reference served 10-20 req/s. Of the anomaly's twelve hours (5-minute steps), eight are inside
    # that range, using 1.2 times the counterfactual; two quieter ones read 0.5 times it (an
    # extrapolation gone high: a saving) and two busier ones 2.0 times (gone low).
    steps = 144
    load = np.r_[np.full(96, 15.0), np.full(24, 5.0), np.full(24, 40.0)]
    index = pd.date_range("2026-01-05", periods=steps, freq="5min", tz="UTC")
    mine = pd.DataFrame({"load": load}, index=index)
    ref = pd.DataFrame({"load": np.linspace(10.0, 20.0, 50)})
    expected = np.full(steps, 100.0)
    used = np.r_[np.full(96, 120.0), np.full(24, 50.0), np.full(24, 200.0)]
    bounded = cost._bounded_beyond_range(_sides(ref, mine), expected, used, 300)
    assert bounded[:96] == pytest.approx(100.0)
    assert bounded[96:120] == pytest.approx(50.0)  # adds nothing there, not a saving
    assert bounded[120:] == pytest.approx(200.0 / 1.2)  # adds its share inside, no more
    # Fewer than BOUND_MIN_HOURS inside the range: nothing to bound by.
    few = cost._bounded_beyond_range(_sides(ref, mine.iloc[90:]), expected[90:], used[90:], 300)
    assert few == pytest.approx(expected[90:])
    # An anomaly that adds nothing inside the range is left to the extrapolation.
    level = cost._bounded_beyond_range(_sides(ref, mine), expected, np.r_[np.full(96, 100.0), used[96:]], 300)
    assert level == pytest.approx(expected)
