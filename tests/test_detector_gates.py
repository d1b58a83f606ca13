"""Each detector's gates at their boundaries, on hand-made tables (tests/synthetic.py): a case just
inside a default threshold and one just outside it, so that doubling or halving any default of the
``detection`` section fails at least one test (``python bench/mutate_thresholds.py`` checks this)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from analyzer.analysis import analyze_frames, envelope, memory, onset, stats
from analyzer.analysis.creep import detect_creep
from analyzer.analysis.memory import detect_leak
from analyzer.analysis.regression import RegressionEvidence, detect_cpu, detect_latency
from analyzer.analysis.timeline import build_view, reference_span
from analyzer.config import AnalysisConfig, DetectionConfig
from analyzer.model import FindingKind
from tests import synthetic as s

DEFAULTS = DetectionConfig()
A_DAY_BEFORE = s.Rev("a", 0.0)  # a healthy predecessor serving for three days


def _leak(revisions: list[s.Rev], *, until: float, **kw: float) -> bool:
    view = s.view(revisions, until=until, **kw)
    found = detect_leak(view, view.span("b"), DEFAULTS)
    return found is not None and found.confirmed


def _young_leak(per_day: float, age_hours: float, **kw: float) -> bool:
    """Revision b deployed after three healthy days, leaking ``per_day`` of the limit, seen at ``age_hours``."""
    return _leak([A_DAY_BEFORE, s.Rev("b", 72.0, memory=s.leak(per_day))], until=72.0 + age_hours, **kw)


# --- memory: slope, rise, duration, warm-up, bin width, significance ---------------------------------


def test_a_slow_leak_above_the_slope_floor_is_reported_and_one_below_is_not() -> None:
    assert _young_leak(0.03, 72.0)  # 3 % of the limit a day over three days (floor: 2 %)
    assert not _young_leak(0.014, 72.0)  # 1.4 %/day: below the floor, although clearly significant


def test_a_climb_must_rise_by_min_rise_in_total() -> None:
    assert _young_leak(0.05, 14.0)  # 5 %/day for 13 h after warm-up: 2.4 % of the limit (floor 2 %)
    assert not _young_leak(0.07, 7.5)  # 7 %/day for 6.5 h: 1.6 %


def test_a_young_leak_is_reported_once_it_has_climbed_for_min_duration_after_the_warm_up() -> None:
    # 30 %/day: 45 min of warm-up are skipped, then the climb must last 6 h (half-hour troughs)
    assert not _young_leak(0.3, 6.5)
    assert _young_leak(0.3, 7.0)
    assert _young_leak(0.3, 9.0)


def test_troughs_need_bins_longer_than_the_sawtooth() -> None:
    # A 90-minute GC sawtooth: half-hour or hourly bins would see its ramps, not its troughs, so a
    # young revision is not judged until the 2 h bins have enough points (12 h), and then it is.
    assert not _young_leak(0.3, 7.0, sawtooth_minutes=90.0)
    assert _young_leak(0.3, 13.0, sawtooth_minutes=90.0)


def test_a_leak_trend_needs_p_below_the_significance_level() -> None:
    # Seeded noise putting the trend test's p-value at 0.008 on day 3 of a 4 %/day leak.
    assert _young_leak(0.04, 14.0, seed=21, memory_noise=0.004)


# --- creep: excess fraction, excess instances, duration, reference ------------------------------------


def _creep(revisions: list[s.Rev], *, until: float, **kw: float) -> str | None:
    """The reference the creep of revision b was judged against, or None when there is no creep."""
    view = s.view(revisions, until=until, **kw)
    span = view.span("b")
    found = detect_creep(view, span, DEFAULTS,
                         reference=reference_span(view, span, set(), DEFAULTS.creep.reference_hours))
    return None if found is None else found.reference


def _more_instances(factor: float, *, peak_rps: float = 20.0, until: float = 96.0) -> str | None:
    revisions = [A_DAY_BEFORE, s.Rev("b", 48.0, instance_factor=s.step_up(factor))]
    return _creep(revisions, until=until, peak_rps=peak_rps, diurnal=0.0)


def test_creep_needs_the_excess_fraction() -> None:
    assert _more_instances(1.35) == "revision a"  # +35 % on 10 instances (floor +25 %)
    assert _more_instances(1.18) is None  # +18 %: 1.8 instances more, but not enough in proportion


def test_creep_needs_the_excess_in_instances() -> None:
    # 1.5 instances, +1.05 (floor 0.75), over 20 h: younger than WHOLE_REVISION_HOURS, so only the held
    # excess period's gate can report it.
    assert _more_instances(1.7, peak_rps=3.0, until=48.0 + 0.75 + 20.0) == "revision a"
    assert _more_instances(1.3, peak_rps=3.0) is None  # +30 %, but only 0.45 of an instance


def test_creep_needs_min_duration_hours() -> None:
    assert _more_instances(1.5, until=48.0 + 0.75 + 5.0) == "revision a"  # 5 h after warm-up (floor 4 h)
    assert _more_instances(1.5, until=48.0 + 0.75 + 3.0) is None  # 3 h


def test_creep_needs_the_excess_fraction_of_the_revision_taken_whole() -> None:
    # Revision b serves 48 h with +60 % instances over its last hours: over its last 12 h that lifts the
    # revision's mean by 15 % (not creep: a late excess is its cause's cost), over its last 24 h by 30 %.
    def late(hours: float) -> s.Rev:
        return s.Rev("b", 48.0, instance_factor=lambda age: np.where(age >= 48.0 - hours, 1.6, 1.0))

    assert _creep([A_DAY_BEFORE, late(12.0)], until=96.0, diurnal=0.0) is None
    assert _creep([A_DAY_BEFORE, late(24.0)], until=96.0, diurnal=0.0) == "revision a"


def _busy_hours_creep(extra: float, *, serves: float) -> str | None:
    """A small service (1-2 instances) whose revision b, deployed at 08:00 on day three, runs ``extra``
    times the instances its load needs until 20:00 each day (its busy half) and the same at night."""
    def busy(age: np.ndarray) -> np.ndarray:
        return np.where(age % 24.0 < 12.0, extra, 1.0)

    return _creep([A_DAY_BEFORE, s.Rev("b", 56.0, instance_factor=busy)], until=56.0 + serves, peak_rps=4.0)


def test_creep_of_a_revision_taken_whole_when_its_extra_instance_comes_and_goes_with_load() -> None:
    # +1.1-1.6 instances in its busy hours, none at night: over 46 h, 0.6 of an instance and +45 % on
    # average, but above 0.75 of an instance in only half its hours from any start (the held excess
    # period's gate asks 60 %).
    assert _busy_hours_creep(1.8, serves=46.0) == "revision a"
    # The same after 22 h: younger than WHOLE_REVISION_HOURS.
    assert _busy_hours_creep(1.8, serves=22.0) is None
    # +0.5-0.8 instances in its busy hours: +25 % or more, but 0.3 of an instance on average.
    assert _busy_hours_creep(1.4, serves=46.0) is None


def test_a_creep_finding_shows_the_means_its_price_sums() -> None:
    # b runs 40 % more instances than a for its load, and three times as many one hour in four (a burst of
    # cold starts): the finding's figures are means over its excess period, so its instance-hours are its
    # shown excess times its hours. Medians said +40 % for a revision that ran 80 % more on average.
    def bursty(age: np.ndarray) -> np.ndarray:
        return np.where(np.floor(age) % 4 == 0, 3.0, 1.4)

    view = s.view([A_DAY_BEFORE, s.Rev("b", 48.0, instance_factor=bursty)], until=96.0, diurnal=0.0)
    span = view.span("b")
    creep = detect_creep(view, span, DEFAULTS,
                         reference=reference_span(view, span, set(), DEFAULTS.creep.reference_hours))
    assert creep is not None
    assert creep.excess_fraction >= 0.7
    assert creep.excess_instance_hours == pytest.approx((creep.actual - creep.expected) * creep.hours, rel=0.02)


@pytest.mark.parametrize(("burst", "found"), [(2.2, True), (1.8, False)])
def test_creep_of_the_revision_taken_whole_reads_what_it_paid_for_not_its_hourly_medians(burst: float,
                                                                                        found: bool) -> None:
    # b runs the instances its load needs, and ``burst`` times as many for a quarter of each hour (scale-outs
    # that do not last): each hour's median excess is none, its mean +30 % (2.2) or +20 % (1.8), over 48 h.
    # The revision taken whole is judged on the means, against the 25 % gate.
    def bursts(age: np.ndarray) -> np.ndarray:
        return np.where(np.round(age * 60.0) % 60.0 < 15.0, burst, 1.0)

    view = s.view([A_DAY_BEFORE, s.Rev("b", 48.0, instance_factor=bursts)], until=96.0, diurnal=0.0)
    span = view.span("b")
    creep = detect_creep(view, span, DEFAULTS,
                         reference=reference_span(view, span, set(), DEFAULTS.creep.reference_hours))
    assert (creep is not None) is found
    if creep is not None:
        assert creep.excess_fraction == pytest.approx(0.3, abs=0.05)


def test_creep_is_judged_against_the_last_revision_that_served_reference_hours() -> None:
    # a0 served 30 h, then a only 16 h (less than reference_hours, 24 h): b's 50 % more instances are
    # judged against a0, and the finding says so.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 46.0, instance_factor=s.step_up(1.5))]
    assert _creep(revisions, until=94.0) == "revision a0"


# --- latency and CPU: increase, hours, compared span, significance ------------------------------------


def _regressions(revisions: list[s.Rev], *, until: float, **kw: float) -> tuple[float | None, float | None]:
    """The latency and CPU increases reported for revision b (None: not reported)."""
    view = s.view(revisions, until=until, **kw)
    span = view.span("b")
    latency = detect_latency(view, span, DEFAULTS,
                             reference=reference_span(view, span, set(), DEFAULTS.latency.compare_hours))
    cpu = detect_cpu(view, span, DEFAULTS, default_cpu=1.0,
                     reference=reference_span(view, span, set(), DEFAULTS.cpu.compare_hours))
    return (latency.increase if latency else None), (cpu.increase if cpu else None)


def _slower(latency: float, cpu: float, *, until: float = 96.0, hours: float = float("inf"),
            at: float = 48.0) -> tuple[bool, bool]:
    revisions = [A_DAY_BEFORE, s.Rev("b", at, latency_factor=s.step_up(latency, hours=hours),
                                    cpu_factor=s.step_up(cpu, hours=hours))]
    found = _regressions(revisions, until=until)
    return found[0] is not None, found[1] is not None


def test_regressions_need_the_minimum_increase() -> None:
    assert _slower(1.18, 1.22) == (True, True)  # latency +18 % (floor +12 %), CPU +22 % (floor +15 %)
    assert _slower(1.08, 1.11) == (False, False)


def test_regressions_need_min_hours_of_the_new_revision() -> None:
    # Deployed at noon, so its first hours see traffic the reference saw (deployed at midnight, its
    # first hours are quieter than most of the reference's: CPU then compares vCPUs in use, which the
    # quieter night hides).
    assert _slower(1.5, 1.5, until=60.0 + 0.75 + 3.5, at=60.0) == (True, True)  # 3.5 h after warm-up (floor 3 h)
    assert _slower(1.5, 1.5, until=60.0 + 0.75 + 2.5, at=60.0) == (False, False)


def test_a_slowdown_that_fades_within_the_compared_day_is_a_warm_up() -> None:
    # The later half of the compared 24 h decides: slow for 11 h, then normal, fades; slow for 30 h does not.
    assert _slower(1.5, 1.5, until=120.0, hours=11.0) == (False, False)
    assert _slower(1.5, 1.5, until=120.0, hours=30.0) == (True, True)


def _latency_after_a_short_revision(short: float, last: float) -> tuple[float | None, float | None]:
    """a serves 30 h, b 16 h (under compare_hours, so c's reference is a) at ``short`` times a's
    latency, c 50 h at ``last`` times it. c's latency increase reported: against a alone, and told of b."""
    view = s.view([s.Rev("a", 0.0), s.Rev("b", 30.0, latency_factor=s.step_up(short)),
                   s.Rev("c", 46.0, latency_factor=s.step_up(last))], until=96.0)
    span = view.span("c")
    reference = reference_span(view, span, set(), DEFAULTS.latency.compare_hours)
    assert reference is not None and reference.name == "a"
    alone = detect_latency(view, span, DEFAULTS, reference=reference)
    told = detect_latency(view, span, DEFAULTS, reference=reference, previous=view.span("b"))
    return (alone.increase if alone else None), (told.increase if told else None)


def test_a_latency_regression_is_a_step_against_the_revision_just_before_it() -> None:
    # Two routine deploys of +7 % each: c is 14.5 % slower than a (floor 12 %), but only 7 % slower than
    # b, which served too briefly to be the reference. Half the floor (6 %) against b is the step asked.
    alone, told = _latency_after_a_short_revision(1.07, 1.07 * 1.07)
    assert alone == pytest.approx(0.145, abs=0.02) and told == alone
    alone, told = _latency_after_a_short_revision(1.10, 1.10 * 1.04)  # +4 % on b: drift, not c's step
    assert alone is not None and told is None
    alone, told = _latency_after_a_short_revision(1.0, 1.15)  # b as fast as a: c's +15 % is its own
    assert alone == pytest.approx(0.15, abs=0.02) and told == alone


def _hour_of_day_spread(age: np.ndarray) -> np.ndarray:
    """Revision a: each hour of the day 0.9 ... 1.1 times the normal, so its hours have distinct ranks."""
    return np.asarray(0.9 + 0.2 * (np.floor(age) % 24) / 23)


@pytest.mark.parametrize(("hours", "low_hours", "reported"), [(5, 1, True), (7, 2, False)])
def test_regressions_need_p_below_the_significance_level(hours: int, low_hours: int, reported: bool) -> None:
    # b is 30 % slower and hungrier except in its first hours (0.95): against a's 24 distinct hourly
    # values, 5 hours with 1 low give a one-sided Mann-Whitney p of 0.0082, 7 hours with 2 low 0.0123.
    def factor(age: np.ndarray) -> np.ndarray:
        return np.where(age < low_hours, 0.95, 1.3)

    revisions = [s.Rev("a", 0.0, latency_factor=_hour_of_day_spread, cpu_factor=_hour_of_day_spread),
                 s.Rev("b", 48.0, latency_factor=factor, cpu_factor=factor)]
    latency, cpu = _regressions(revisions, until=48.0 + 0.75 + hours - 0.75, metric_noise=0.0, diurnal=0.0)
    assert (latency is not None, cpu is not None) == (reported, reported)
    if reported:
        assert latency == pytest.approx(0.3) and cpu == pytest.approx(0.3)


def _quieter_revision(background_after: float) -> tuple[RegressionEvidence | None, RegressionEvidence | None]:
    """a serves two days at 7-20 requests/s, b (deployed at 48 h) 12 h at a fifth of that, no hour of
    traffic in common. CPU is a fixed background (``0.3`` vCPU for a, ``background_after`` for b: timers,
    a poller) plus 0.02 CPU-s per request. Returns b's CPU finding, and its latency finding (none)."""
    frames = s.frames([s.Rev("a", 0.0), s.Rev("b", 48.0)], until=60.0)
    metrics = frames.metrics
    b = (metrics["revision"] == "b").to_numpy()
    metrics.loc[b, "req_rate"] *= 0.2
    metrics.loc[b, "requests"] *= 0.2
    rps = metrics["req_rate"].to_numpy()
    instances = np.maximum(rps / 2.0, 1.0)
    metrics["inst_active"] = instances
    metrics["cpu_mean"] = (np.where(b, background_after, 0.3) + 0.02 * rps) / instances
    view = build_view(frames, s.KEY)
    span = view.span("b")
    reference = reference_span(view, span, set(), DEFAULTS.cpu.compare_hours)
    return (detect_cpu(view, span, DEFAULTS, default_cpu=1.0, reference=reference),
            detect_latency(view, span, DEFAULTS, reference=reference))


def test_a_quieter_revision_is_not_costlier_for_spreading_the_same_background_cpu_over_fewer_requests() -> None:
    # Per request b reads 2-3x a (0.3 vCPU over 1.3-4 requests/s instead of 7-20): compared per request
    # on all hours, as before, that was a regression (5 of the 7 CPU false alarms of the negative
    # scenarios of 8 development draws; a young revision deployed into a quiet spell).
    cpu, latency = _quieter_revision(0.3)
    assert cpu is None and latency is None


def test_a_quieter_revision_that_uses_more_cpu_than_its_busier_reference_is_a_regression() -> None:
    # b's vCPUs (0.9 plus its requests' 0.02 x ~2.7/s) against a's (0.3 + 0.02 x ~13.3/s), median hours.
    cpu, _ = _quieter_revision(0.9)
    assert cpu is not None and cpu.metric == "vCPUs in use at lower traffic"
    assert cpu.increase == pytest.approx((0.9 + 0.02 * 0.2 * 13.3) / (0.3 + 0.02 * 13.3) - 1.0, rel=0.1)


def _after_traffic_grew(growth: float, latency: float) -> RegressionEvidence | None:
    """a serves 80 h, b (deployed at 80 h) three days at ``growth`` times a's traffic (requests,
    instances and CPU alike) and ``latency`` times its latency. b's latency finding."""
    frames = s.frames([s.Rev("a", 0.0), s.Rev("b", 80.0, latency_factor=s.step_up(latency))], until=152.0)
    b = (frames.metrics["revision"] == "b").to_numpy()
    for column in ("req_rate", "requests", "inst_active", "billable_s", "cpu_alloc_s", "mem_alloc_gibs"):
        frames.metrics.loc[b, column] *= growth
    view = build_view(frames, s.KEY)
    span = view.span("b")
    return detect_latency(view, span, DEFAULTS,
                          reference=reference_span(view, span, set(), DEFAULTS.latency.compare_hours))


def test_a_regression_after_traffic_grew_is_compared_on_more_hours_of_the_traffic_in_common() -> None:
    # At 2.3 times a's traffic, b's first day shares only its quiet hours with a's busy ones: 3 of b's
    # against 5 of a's, where a one-sided Mann-Whitney p cannot go under 0.018, however much slower b
    # is. Three days of each share 10 and 16 hours.
    found = _after_traffic_grew(2.3, 1.5)
    assert found is not None and found.increase == pytest.approx(0.5, abs=0.05) and found.p_value < 1e-4
    assert _after_traffic_grew(2.3, 1.08) is None  # the floor (+12 %) is still asked of them


def test_the_synthetic_table_is_what_the_tests_assume() -> None:
    view = s.view([A_DAY_BEFORE, s.Rev("b", 48.0)], until=60.0)
    assert [span.name for span in view.spans] == ["a", "b"]
    assert view.span("b").deploy_time == s.START + pd.Timedelta(hours=48)
    assert view.step_seconds == s.STEP


# --- onsets: dated from the data, not the deploy, when the excess starts later ---------------------------


def _ramp(start: float, per_hour: float, top: float) -> s.Curve:
    """1 for the revision's first ``start`` hours, then rising ``per_hour`` up to ``top``."""
    return lambda age: np.clip(1.0 + per_hour * (age - start), 1.0, top)


def _cpu_onset(cpu_factor: s.Curve) -> float:
    """Hours after b's deploy (at 48 h) of its CPU finding's onset."""
    view = s.view([A_DAY_BEFORE, s.Rev("b", 48.0, cpu_factor=cpu_factor)], until=120.0)
    span = view.span("b")
    found = detect_cpu(view, span, DEFAULTS, default_cpu=1.0,
                       reference=reference_span(view, span, set(), DEFAULTS.cpu.compare_hours))
    assert found is not None
    return float((found.onset - span.deploy_time) / pd.Timedelta(hours=1))


def _cpu_with_a_quiet_spell(b: s.Rev, start: float, end: float, *,
                            until: float) -> tuple[RegressionEvidence | None, pd.Timestamp]:
    """b's CPU finding (and b's deploy time) when b serves, from ``start`` to ``end`` hours after its deploy,
    a third of its traffic (requests and CPU alike, so its CPU per request stays what ``b`` says): a
    spell quieter than any hour of the reference."""
    frames = s.frames([A_DAY_BEFORE, b], until=until)
    ts = frames.metrics["ts"]
    quiet = ((frames.metrics["revision"] == "b") & (ts >= s.START + pd.Timedelta(hours=b.at + start))
             & (ts < s.START + pd.Timedelta(hours=b.at + end)))
    for column in ("req_rate", "requests", "cpu_mean"):
        frames.metrics.loc[quiet, column] *= 0.3
    view = build_view(frames, s.KEY)
    span = view.span("b")
    found = detect_cpu(view, span, DEFAULTS, default_cpu=1.0,
                       reference=reference_span(view, span, set(), DEFAULTS.cpu.compare_hours))
    return found, span.deploy_time


def test_three_hours_hold_a_margin_in_their_median_or_in_their_mean() -> None:
    # Creep dates its excess on the median of three hours, CPU on their mean (``onset``): one hour three
    # times the margin lifts a mean over it where two of three hours stay under.
    spike = np.array([0.0, 0.0, 3.0, 0.2, 0.2, 1.2, 1.2, 1.2])
    assert onset.held_start(spike, 1.0) == 4
    assert onset.held_start(spike, 1.0, mean=True) == 2
    assert not onset.ever_held(np.array([0.0, 3.0, 0.2, 0.0]), 1.0)
    assert onset.ever_held(np.array([0.0, 3.0, 0.2, 0.0]), 1.0, mean=True)
    # An extra instance two hours of three after a deploy: there from the start in their median, not in
    # what was paid over the three (their mean).
    assert onset.from_start(np.array([1.0, 1.0, 0.38, 0.0]), 0.82, 3)
    assert not onset.from_start(np.array([1.0, 1.0, 0.38, 0.0]), 0.82, 3, mean=True)


def test_extra_cpu_from_the_deploy_is_dated_at_the_deploy() -> None:
    assert _cpu_onset(s.step_up(1.3)) == 0.0


def test_extra_cpu_from_a_deploy_before_a_quiet_night_is_dated_at_the_deploy() -> None:
    # b's CPU per request is 1.3x from its deploy at 22:00; its first 5 h serve a third
    # of the traffic the reference ever saw (a quiet night). Expected CPU there follows the reference's
    # quietest bins down, so the night shows the extra CPU too; held flat at the quietest bin's CPU, it
    # read as "less CPU than expected" and the change point landed on the morning (5 h late).
    found, deployed = _cpu_with_a_quiet_spell(s.Rev("b", 70.0, cpu_factor=s.step_up(1.3)), 0.0, 5.0, until=142.0)
    assert found is not None and found.increase == pytest.approx(0.3, abs=0.03)
    assert found.onset == deployed


def test_extra_cpu_that_grows_hours_after_the_deploy_is_dated_where_it_reaches_the_margin() -> None:
    # A leak's GC work: CPU per request flat for 10 h, then +5 % an hour up to +60 %; it passes the
    # margin (+15 %) 3 h into the rise, i.e. 13 h after the deploy (the label's "realized" onset).
    assert _cpu_onset(_ramp(10.0, 0.05, 1.6)) == pytest.approx(13.0, abs=1.5)


def test_extra_cpu_that_grows_from_the_deploy_is_dated_where_it_reaches_the_margin() -> None:
    # A leak from the deploy: CPU per request +5 % an hour from the start, up to +60 %. Its first two
    # hours are below half the margin, so it was not "costlier from its deploy": it passes +15 % 3 h in,
    # where the label's realized onset is. Dated at the deploy (where the growth began) it was 3 h
    # early: a strict miss and a false alarm.
    assert _cpu_onset(_ramp(0.0, 0.05, 1.6)) == pytest.approx(3.0, abs=1.5)


def test_one_spiky_hour_after_the_deploy_does_not_date_a_growing_cpu_cost_at_the_deploy() -> None:
    # The leak of the test above, flat for 8 h, with b's second hour at +30 % (a quiet hour's small
    # expectation reads so against a load model): the mean of the first two hours held half the
    # margin and dated it at the deploy, 10 h early; two of the first three hours must.
    def spiky(age: np.ndarray) -> np.ndarray:
        return np.where((age >= 1.0) & (age < 2.0), 1.3, _ramp(8.0, 0.05, 1.6)(age))

    assert _cpu_onset(spiky) == pytest.approx(_cpu_onset(_ramp(8.0, 0.05, 1.6)), abs=0.5)
    assert _cpu_onset(spiky) == pytest.approx(11.0, abs=1.5)


def test_a_cpu_drift_that_reaches_the_margin_in_a_quiet_spell_is_dated_there() -> None:
    # b's CPU per request flat for 30 h, then +2 % an hour (a slow leak's GC work, past the first-day
    # comparison: the drift test finds it); it passes +15 % at 37.5 h, inside a quiet spell (34-44 h,
    # a third of the traffic the reference ever saw). Priced at the reference's flat quietest CPU, the
    # spell read as no extra CPU and the onset landed where traffic came back (44 h).
    found, deployed = _cpu_with_a_quiet_spell(s.Rev("b", 48.0, cpu_factor=_ramp(30.0, 0.02, 1.6)), 34.0, 44.0,
                                              until=144.0)
    assert found is not None and found.metric == "CPU seconds per request at matched traffic"
    assert (found.onset - deployed) / pd.Timedelta(hours=1) == pytest.approx(37.5, abs=1.5)


def test_extra_cpu_just_over_the_margin_from_the_deploy_is_dated_at_the_deploy() -> None:
    assert _cpu_onset(s.step_up(1.17)) == 0.0


def _creep_onset(instance_factor: s.Curve, *, peak_rps: float = 20.0) -> float:
    view = s.view([A_DAY_BEFORE, s.Rev("b", 48.0, instance_factor=instance_factor)], until=120.0, diurnal=0.0,
                  peak_rps=peak_rps)
    span = view.span("b")
    found = detect_creep(view, span, DEFAULTS,
                         reference=reference_span(view, span, set(), DEFAULTS.creep.reference_hours))
    assert found is not None
    return float((found.onset - span.deploy_time) / pd.Timedelta(hours=1))


def test_creep_from_the_deploy_is_dated_at_the_deploy() -> None:
    assert _creep_onset(s.step_up(1.5)) == 0.0


def test_creep_that_grows_after_the_deploy_is_dated_where_it_reaches_the_margin() -> None:
    # Instances per load flat for 12 h, then +4 % an hour up to +80 %: it passes the margin (+25 % of
    # 10 instances) about 6 h into the rise, 18 h after the deploy, not where its excess first holds
    # above 0.75 of an instance.
    assert _creep_onset(_ramp(12.0, 0.04, 1.8)) == pytest.approx(18.0, abs=1.5)


def test_a_small_services_growing_creep_is_dated_where_it_held_half_an_instance() -> None:
    # The same rise on a service that needs 2 instances: +0.08 of an instance an hour from 12 h after the
    # deploy. The quarter of its count is half an instance, which the three hours from 17 h hold (their
    # median); the detection gate's 0.75 of an instance, held from 20 h, is how large a creep must be to
    # be reported, not where it began.
    assert _creep_onset(_ramp(12.0, 0.04, 1.8), peak_rps=4.0) == pytest.approx(17.0, abs=1.0)


def test_creep_held_from_its_first_hours_is_dated_at_the_deploy_though_it_returns_larger() -> None:
    # +30 % from the deploy for 4 h, gone for 14 h (a quiet night where the extra instances idle
    # away), then +100 %: the cumulative excess's change point is the larger return, 18 h late; held at
    # the margin (+25 %) from its first hours, the creep began at the deploy, as its label says.
    assert _creep_onset(lambda age: np.where(age < 4.0, 1.3, np.where(age < 18.0, 1.0, 2.0))) == 0.0


def test_one_spiky_hour_does_not_date_a_growing_creep() -> None:
    # The same creep with one hour at +80 % two hours into its rise (a quiet hour whose expectation is
    # small reads so against a load model). A three-hour mean over the margin dated it there, 4 h early;
    # the margin must hold in two of three hours.
    def spiky(age: np.ndarray) -> np.ndarray:
        return np.where((age >= 14.0) & (age < 15.0), 1.8, _ramp(12.0, 0.04, 1.8)(age))

    assert _creep_onset(spiky) == pytest.approx(18.0, abs=1.5)


# --- references through the whole analysis ---------------------------------------------------------


def _analyze(revisions: list[s.Rev], *, until: float) -> list[tuple[str, str, str]]:
    """(kind, revision, what it was compared with or carried by) of every finding."""
    analysis = analyze_frames(s.frames(revisions, until=until), AnalysisConfig())
    return sorted((f.kind.value, f.revision, str(f.evidence.get("reference") or f.evidence.get("previous_revision")
                                                 or "") + "|" + str(f.evidence.get("carried_by", "")))
                  for f in analysis.findings)


def test_a_regression_after_a_short_lived_revision_is_compared_with_the_last_long_lived_one() -> None:
    # a served 6 h between a0 and b: b is compared with a0, and says so.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0), s.Rev("b", 54.0, latency_factor=s.step_up(1.4))]
    assert _analyze(revisions, until=100.0) == [("latency_regression", "b", "a0|")]


def test_a_regression_carried_by_the_next_deploy_is_one_finding_on_the_revision_that_introduced_it() -> None:
    # a is 40 % slower than a0; b ships the same code: b is judged against a0 (a has a finding), is just
    # as slow, and carries a's regression rather than being reported again. c fixes it.
    slow = s.step_up(1.4)
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0, latency_factor=slow), s.Rev("b", 80.0, latency_factor=slow),
                 s.Rev("c", 112.0)]
    analysis = analyze_frames(s.frames(revisions, until=150.0), AnalysisConfig())
    [finding] = analysis.findings
    assert (finding.kind.value, finding.revision) == ("latency_regression", "a")
    assert finding.evidence["previous_revision"] == "a0" and finding.evidence["carried_by"] == "b"
    assert finding.resolved_by == "c"


def test_creep_and_regressions_of_a_carried_leak_go_to_the_revision_that_introduced_it() -> None:
    # a leaks from its deploy (15 % of the limit a day); b ships the same leak a day and a half later,
    # and its instances grow with it (45 % more for its load; the leak fills memory and GC works). The
    # leak is a's, carried on by b; b's extra instances against a0 (a has a finding) are that leak's
    # cost, reported with it on a, not as a change b made.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0, memory=s.leak(0.15)),
                 s.Rev("b", 84.0, memory=s.leak(0.15), instance_factor=s.step_up(1.45))]
    assert _analyze(revisions, until=150.0) == [("instance_creep", "a", "revision a0|b"),
                                                ("memory_baseline_rise", "a", "|b")]


def test_a_carried_leaks_cpu_cost_is_dated_where_it_held_the_margin_in_the_revision_that_introduced_it() -> None:
    # a leaks (30 % of the limit a day) and its GC work grows 1.5 % an hour: it passes +15 % about 10 h
    # in. b ships the same code 18 h after a's deploy; its fresh instances start the GC cost again, and
    # its own hours reach the margin 9 h into b. The CPU regression goes to a (carried by b), dated
    # where a's own CPU held the margin, not where b's did (27 h after a's deploy).
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0, memory=s.leak(0.3), cpu_factor=_ramp(0.0, 0.015, 1.8)),
                 s.Rev("b", 66.0, memory=s.leak(0.3), cpu_factor=_ramp(0.0, 0.015, 1.8))]
    analysis = analyze_frames(s.frames(revisions, until=150.0), AnalysisConfig())
    cpu = next(f for f in analysis.findings if f.kind is FindingKind.CPU_REGRESSION)
    assert (cpu.revision, cpu.evidence["carried_by"]) == ("a", "b")
    assert cpu.deploy_time is not None
    assert 7.0 <= (cpu.onset - cpu.deploy_time).total_seconds() / 3600 <= 12.0


@pytest.mark.parametrize(("slower", "found"), [
    (True, [("instance_creep", "a", "revision a0|b"), ("latency_regression", "a", "a0|b")]),
    (False, [("instance_creep", "b", "revision a0|")]),
])
def test_creep_beside_a_carried_regression_goes_to_the_revision_that_introduced_it(
        slower: bool, found: list[tuple[str, str, str]]) -> None:
    # a is 40 % slower than a0 and served 10 h, too few for its extra instances to show (here it had
    # none yet); b ships the same code, carries a's regression, and runs 45 % more instances for its
    # load than a0 did. Those instances are the slower requests', reported on a, carried on by b (as
    # the labelled suite has it: the revision that introduced the change). Without a's regression, b's
    # extra instances are its own.
    factor = s.step_up(1.4) if slower else s.step_up(1.0)
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0, latency_factor=factor),
                 s.Rev("b", 58.0, latency_factor=factor, instance_factor=s.step_up(1.45))]
    assert _analyze(revisions, until=150.0) == found


def test_a_leak_from_its_deploy_stays_with_its_revision_after_a_healthy_day_long_predecessor() -> None:
    # a served 30 h with flat troughs; b leaks from its deploy. a is young enough to have carried b's
    # leak unseen, but its troughs do not climb at b's pace against the service's course: b's leak.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 48.0), s.Rev("b", 78.0, memory=s.leak(0.15))]
    assert _analyze(revisions, until=150.0) == [("memory_baseline_rise", "b", "|")]


@pytest.mark.parametrize(("predecessor", "found"), [(0.40, [("memory_baseline_rise", "b", "|")]), (0.88, [])])
def test_a_climb_to_the_limit_that_then_hovers_there_is_a_leak_unless_the_service_lives_there(
        predecessor: float, found: list[tuple[str, str, str]]) -> None:
    # b's memory climbs from 50 % to 88 % of the limit in 16 h (its oldest instance to 92 %) and stays
    # there for days, as a fast leak does once the platform replaces instances of every age: the slope
    # pooled over the revision is nil and the climb levels off, so only its first climb, from the deploy
    # to the limit, shows the leak. A predecessor whose oldest instance sat at the limit too (88 %) says
    # this service lives there: no finding.
    def fill(age: np.ndarray) -> np.ndarray:
        return np.minimum(0.50 + 0.38 * age / 16.0, 0.88)

    revisions = [s.Rev("a", 0.0, memory=lambda age: np.full(len(age), predecessor)), s.Rev("b", 72.0, memory=fill)]
    assert _analyze(revisions, until=200.0) == found


def test_a_predecessor_whose_memory_climb_was_not_confirmed_is_still_a_regressions_reference() -> None:
    # a's memory fills a cache for a day (+20 % of the limit, levelling off): a leak candidate that no
    # gate confirms, and no finding. b costs 30 % more CPU per request from its deploy; a is the only
    # earlier revision, so skipping it as "flagged" left b's regression with no reference at all.
    def fill(age: np.ndarray) -> np.ndarray:
        return 0.40 + 0.2 * (1.0 - np.exp(-age / 24.0))

    revisions = [s.Rev("a", 0.0, memory=fill), s.Rev("b", 72.0, cpu_factor=s.step_up(1.3))]
    view = s.view(revisions, until=144.0)
    candidate = detect_leak(view, view.span("a"), DEFAULTS)
    assert candidate is not None and not candidate.confirmed
    assert _analyze(revisions, until=144.0) == [("cpu_regression", "b", "a|")]


# --- the sequential test against the service's envelope ------------------------------------------------


def _memory_findings(revisions: list[s.Rev], *, until: float) -> list[tuple[str, str, str]]:
    analysis = analyze_frames(s.frames(revisions, until=until), AnalysisConfig())
    return [(f.revision, str(f.evidence.get("judged_against", "")), f.summary) for f in analysis.findings
            if f.kind.value == "memory_baseline_rise"]


def test_a_fast_leak_is_reported_six_hours_after_its_deploy_against_the_services_envelope() -> None:
    # 20 %/day from the deploy; a0 and a are healthy and served 30 h and 42 h: by +6 h the trend test
    # has too few troughs, the sequential test against a0 and a has enough.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 72.0, memory=s.leak(0.2))]
    [(revision, against, _)] = _memory_findings(revisions, until=78.0)
    assert revision == "b" and "a0, a" in against


def test_a_warm_up_like_the_healthy_revisions_is_not_a_leak() -> None:
    # Every revision fills a cache of 8 % of the limit over its first 6 h: b's climb is the envelope's.
    def warm(age: np.ndarray) -> np.ndarray:
        return np.asarray(0.40 + 0.08 * np.clip(age / 6.0, 0.0, 1.0))

    revisions = [s.Rev("a0", 0.0, memory=warm), s.Rev("a", 30.0, memory=warm), s.Rev("b", 72.0, memory=warm)]
    for until in (76.0, 78.0, 84.0):
        assert _memory_findings(revisions, until=until) == []


def test_a_leak_of_fifteen_percent_a_day_is_reported_six_hours_after_its_deploy() -> None:
    # Its six hourly troughs after the warm-up climb 2.5 % of the limit by the fitted slope over their
    # 5 h; the medians of the first and last two, an hour inside each end, 1.95 %, short of min_rise (2 %).
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 72.0, memory=s.leak(0.15))]
    [(revision, _, _)] = _memory_findings(revisions, until=78.0)
    assert revision == "b"


def test_a_per_request_leak_deployed_at_midnight_is_dated_at_its_deploy_on_the_request_clock() -> None:
    # One instance whose traffic swings ±90 % over the day, and b leaks a fixed amount per request from
    # its deploy at midnight: its troughs barely move through the night and climb with the morning's
    # traffic. In hours that is flat-then-climbing (a hinge 6 h in); in requests served, a straight line
    # from the deploy.
    def per_request(age: np.ndarray) -> np.ndarray:
        hours = np.arange(0.0, 48.0, 1.0 / 12.0)
        load = 1.0 + 0.9 * np.sin(2 * np.pi * (72.0 + hours - 8.0) / 24.0)
        served = np.concatenate([[0.0], np.cumsum(load)[:-1]]) / 12.0
        return np.asarray(0.40 + 0.2 / 24.0 * np.interp(age, hours, served))

    view = s.view([s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 72.0, memory=per_request)], until=84.0,
                  diurnal=0.9, per_instance_rps=1000.0)
    learned = envelope.build_envelope(view, [view.span("a0"), view.span("a")], DEFAULTS)
    assert learned is not None
    leak = envelope.sequential_leak(view, view.span("b"), learned, DEFAULTS)
    assert leak is not None and leak.onset == view.span("b").deploy_time


def test_one_healthy_revisions_hour_to_hour_scatter_is_no_course() -> None:
    # a's troughs scatter by 1.2 % of the limit from hour to hour about a flat level. Its course is fitted
    # non-decreasing: held at its highest so far, that scatter alone made a course of 3.6 % within a day.
    offsets = 0.012 * np.random.default_rng(5).standard_normal(200)

    def scatter(age: np.ndarray) -> np.ndarray:
        return np.asarray(0.40 + offsets[np.clip(age.astype(int), 0, 199)])

    view = s.view([s.Rev("a0", -24.0), s.Rev("a", 0.0, memory=scatter), s.Rev("b", 40.0)], until=50.0)
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None and learned.settle_hours == 0.0
    assert float(learned.expected(np.asarray([24.0]))[0]) <= 0.012


def test_the_course_is_the_least_squares_non_decreasing_fit() -> None:
    fitted = stats.nondecreasing(np.asarray([0.0, 0.02, 0.01, 0.03, 0.0, 0.05]))
    assert np.allclose(fitted, [0.0, 0.015, 0.015, 0.015, 0.015, 0.05])


def test_the_best_single_step_is_the_least_squares_two_level_fit_split_by_split() -> None:
    y = np.random.default_rng(11).standard_normal(9)
    by_split = [((y[:k] - y[:k].mean()) ** 2).sum() + ((y[k:] - y[k:].mean()) ** 2).sum() for k in range(1, 9)]
    assert np.isclose(stats.step_sse(y), min(by_split))
    assert stats.step_sse(np.asarray([0.0, 0.0, 0.0, 0.04, 0.04])) == 0.0


@pytest.mark.parametrize(("step", "stalled"), [(0.0, True), (0.0095, True), (0.0105, False)])
def test_a_climb_read_in_bucket_steps_is_not_judged_stalled_on_a_tail_too_short_to_climb_two_steps(
        step: float, stalled: bool) -> None:
    # 0.1 of the limit a day for 10 h, then flat for 8: rise-then-flat, a stall. Its last third (6 bins, 5 h) at
    # that pace would have risen 0.02: read in bucket steps of up to half that, still a stall; in larger steps
    # (the worst instance's peaks), one level held that long says nothing either way.
    age = np.arange(18.0)
    climb = 0.1 / 24 * np.minimum(age, 10.0)
    assert envelope._stalled(age, climb, 0.1 / 24, step) is stalled


@pytest.mark.parametrize(("after", "ended"), [("a", "the rollback to a ended it"), ("c", "it ended when c took over")])
def test_a_leaking_revision_rolled_back_or_fixed_after_fourteen_hours_gets_its_finding(after: str, ended: str) -> None:
    # b leaks 15 %/day and serves 14 h; then traffic goes back to a (a rollback) or to a new revision c.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 72.0, memory=s.leak(0.15)), s.Rev(after, 86.0)]
    [(revision, _, summary)] = _memory_findings(revisions, until=110.0)
    assert revision == "b" and summary.endswith(ended)


@pytest.mark.parametrize(("change", "passes"), [
    ({}, True),
    ({"p_value": 0.007}, True), ({"p_value": 0.015}, False),  # significance 0.01
    ({"slope": 0.03 / 24, "covered": 48.0}, True), ({"slope": 0.015 / 24, "covered": 48.0}, False),  # 2 %/day
    ({"covered": 4.5}, False),  # min_duration_hours 6 h (the 8 %/day climb has risen 1.5 % in 4.5 h)
    ({"slope": 0.2 / 24, "covered": 4.5}, False), ({"slope": 0.2 / 24, "covered": 8.0}, True),
    ({"slope": 0.025 / 24, "covered": 20.0}, True), ({"slope": 0.025 / 24, "covered": 16.0}, False),  # min_rise 2 %
])
def test_the_leak_gate_at_each_threshold(change: dict[str, float], passes: bool) -> None:
    # The gate itself, on a climb past every threshold (8 %/day over 24 h at p 0.001) but the one changed.
    fields = {"slope": 0.08 / 24, "p_value": 0.001, "covered": 24.0, **change}
    trend = memory._SignalTrend(memory.TYPICAL, positions=np.arange(12), segments=[(0, 12)], adjusted=np.zeros(12),
                                onset_offset=0, judge=lambda: memory._Gates(True, True), **fields)
    assert trend.passes(DEFAULTS.memory) is passes


def _series(level: np.ndarray, load: np.ndarray) -> envelope._Series:
    age = np.arange(len(level), dtype=np.float64)
    stamps = pd.date_range("2026-01-01", periods=len(level), freq="h", tz="UTC")
    return envelope._Series(age, level, load, stamps)


def test_the_load_term_is_read_from_levels_not_from_hour_to_hour_changes() -> None:
    # Two healthy revisions whose troughs follow their daily load (0.05 % of the limit per request per
    # instance), the load per instance read with the jitter of instances coming and going (±15 a
    # reading). From hour-to-hour changes the jitter swamps the slow daily swing and the slope reads
    # about a tenth of the truth (0.00005); from the levels, about four fifths of it (the jitter's own
    # dilution, var(swing) / var(swing + jitter)).
    rng = np.random.default_rng(3)
    series = []
    for base in (0.40, 0.46):
        hours = np.arange(48.0)
        true_load = 100.0 + 40.0 * np.sin(2 * np.pi * hours / 24.0)
        seen = true_load + 15.0 * rng.standard_normal(len(hours))
        series.append(_series(base + 0.0005 * true_load + 0.002 * rng.standard_normal(len(hours)), seen))
    assert 0.0003 <= envelope._load_slope(series) <= 0.0006


def test_a_load_that_lowers_memory_is_no_load_term() -> None:
    load = 100.0 + 40.0 * np.sin(np.arange(48.0) / 4.0)
    assert envelope._load_slope([_series(0.5 - 0.0005 * load, load), _series(0.4 - 0.0005 * load, load)]) == 0.0


@pytest.mark.parametrize(("until", "reported"), [(76.0, False), (77.0, True)])
def test_a_sequential_finding_needs_five_hourly_troughs_of_climb(until: float, reported: bool) -> None:
    # 40 %/day from the deploy at 72 h against two healthy revisions; the warm-up ends at 72:45, so the
    # hourly troughs from 72 h to 76 h are 4 (a climb too short to tell from a warm-up still settling,
    # MIN_CLIMB_BINS 5) and to 77 h are 5.
    revisions = [s.Rev("a0", 0.0), s.Rev("a", 30.0), s.Rev("b", 72.0, memory=s.leak(0.4))]
    assert bool(_memory_findings(revisions, until=until)) is reported


def test_a_warm_up_is_not_judged_against_a_revision_seen_only_mid_life() -> None:
    # a was deployed a day before the window, so the data never show its first hours; b fills a cache
    # of 8 % of the limit over its first 6 h. Against a's flat mid-life troughs the fill looks like a
    # drift; nothing says how long this service warms up, so the sequential test leaves out b's first
    # 3 h (UNSEEN_WARMUP_HOURS) and judges the rest, which levels off.
    def warm(age: np.ndarray) -> np.ndarray:
        return np.asarray(0.40 + 0.08 * np.clip(age / 6.0, 0.0, 1.0))

    revisions = [s.Rev("a", -24.0, memory=warm), s.Rev("b", 30.0, memory=warm)]
    for until in (36.0, 37.0, 38.0, 40.0, 44.0, 48.0):
        assert _memory_findings(revisions, until=until) == [], until


@pytest.mark.parametrize(("until", "reported"), [(37.0, False), (38.0, True)])
def test_a_leak_after_a_revision_seen_only_mid_life_is_judged_after_the_unseen_warm_up(
        until: float, reported: bool) -> None:
    # The same service, b leaking 30 %/day from its deploy at 30 h: its hourly troughs start with the
    # bin at 30 h (the warm-up ends at 30:45), the sequential test leaves out those before 33 h
    # (UNSEEN_WARMUP_HOURS 3), and the 5 it needs (33 h to 37 h) are complete at 38 h. The finding is
    # dated at the deploy.
    view = s.view([s.Rev("a", -24.0), s.Rev("b", 30.0, memory=s.leak(0.3))], until=until)
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None and learned.settle_hours == envelope.UNSEEN_WARMUP_HOURS
    leak = envelope.sequential_leak(view, view.span("b"), learned, DEFAULTS)
    assert (leak is not None) is reported
    if leak is not None:
        assert leak.onset == view.span("b").deploy_time and "(a)" in leak.against


def test_a_revision_seen_only_mid_life_teaches_a_flat_course_and_its_own_spread() -> None:
    # a's troughs swing 3 % of the limit over its day, out of step with its load. Its first hours in
    # the window are wherever that day was when the window began, not a course after a deploy: the
    # course is flat, and the swing is a's noise (its spread about its own level). Held at their
    # highest, a's first hours made a course rising 3.5 % of the limit within a day.
    def swing(age: np.ndarray) -> np.ndarray:
        return np.asarray(0.40 + 0.03 * np.sin(2 * np.pi * (age - 26.0) / 24.0))

    view = s.view([s.Rev("a", -24.0, memory=swing), s.Rev("b", 30.0)], until=40.0, per_instance_rps=1000.0)
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None and not learned.rise.any()
    assert learned.noise >= 0.03


def test_a_revision_seen_from_its_deploy_teaches_the_course_and_no_hours_are_left_out() -> None:
    # a0 was deployed before the window, a inside it (seen from its deploy, 18 h): the course is a's.
    view = s.view([s.Rev("a0", -24.0), s.Rev("a", 12.0), s.Rev("b", 30.0)], until=40.0)
    learned = envelope.build_envelope(view, [view.span("a0"), view.span("a")], DEFAULTS)
    assert learned is not None and learned.settle_hours == 0.0


def _warm(age: np.ndarray) -> np.ndarray:
    """A cache of 8 % of the limit filled over the first 6 h after each deploy."""
    return np.asarray(0.40 + 0.08 * np.clip(age / 6.0, 0.0, 1.0))


def test_the_first_hours_of_a_revision_deployed_before_the_window_teach_the_course_when_a_source_read_them() -> None:
    # a was deployed a day before the window, and its first hours were read from before it
    # (Frames.history): the course is a's warm-up, and no hours of a judged revision are left out.
    view = s.view([s.Rev("a", -24.0, memory=_warm), s.Rev("b", 30.0)], until=40.0, history=True)
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None and learned.settle_hours == 0.0
    assert 0.06 <= float(learned.expected(np.asarray([12.0]))[0]) <= 0.10
    # Without them (the same data, the history left out), a is seen only mid-life: a flat course.
    flat = envelope.build_envelope(s.view([s.Rev("a", -24.0, memory=_warm), s.Rev("b", 30.0)], until=40.0),
                                   [view.span("a")], DEFAULTS)
    assert flat is not None and flat.settle_hours == envelope.UNSEEN_WARMUP_HOURS and not flat.rise.any()


def test_history_that_does_not_reach_back_to_the_deploy_is_no_course() -> None:
    # Rows before the window that begin hours after a's deploy are mid-life rows too.
    view = s.view([s.Rev("a", -24.0, memory=_warm), s.Rev("b", 30.0)], until=40.0, history=True)
    view.history = view.history.loc[(view.history["ts"] >= s.START - pd.Timedelta(hours=20)).to_numpy()]
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None and learned.settle_hours == envelope.UNSEEN_WARMUP_HOURS


@pytest.mark.parametrize(("until", "history", "reported"), [(35.0, True, True), (34.0, True, False),
                                                            (35.0, False, False), (37.0, False, False)])
def test_a_leak_after_a_revision_whose_first_hours_were_read_is_judged_from_its_warm_up(
        until: float, history: bool, reported: bool) -> None:
    # b leaks 30 %/day from its deploy at 30 h; a was deployed before the window. With a's first hours
    # read, nothing is left out: b's hourly troughs from 30 h to 34 h (MIN_CLIMB_BINS 5) are complete at
    # 35 h. Without them the sequential test leaves out b's first 3 h and needs until 38 h.
    view = s.view([s.Rev("a", -24.0), s.Rev("b", 30.0, memory=s.leak(0.3))], until=until, history=history)
    learned = envelope.build_envelope(view, [view.span("a")], DEFAULTS)
    assert learned is not None
    leak = envelope.sequential_leak(view, view.span("b"), learned, DEFAULTS)
    assert (leak is not None) is reported
    if leak is not None:
        assert leak.onset == view.span("b").deploy_time


def test_a_warm_up_like_the_one_read_before_the_window_is_not_a_leak() -> None:
    # Every revision fills its cache over 6 h, and a's fill was read from before the window: b's fill,
    # judged from its warm-up with nothing left out, is the envelope's course.
    revisions = [s.Rev("a", -24.0, memory=_warm), s.Rev("b", 30.0, memory=_warm)]
    for until in (35.0, 36.0, 38.0, 40.0, 44.0, 48.0):
        analysis = analyze_frames(s.frames(revisions, until=until, history=True), AnalysisConfig())
        assert [f for f in analysis.findings if f.kind.value == "memory_baseline_rise"] == [], until


def test_rows_before_the_window_are_neither_priced_nor_judged() -> None:
    # a leaked hard in its first hours, all before the window; in the window it is flat and served alone.
    revisions = [s.Rev("a", -30.0, memory=lambda age: np.asarray(0.30 + 0.3 * np.clip(age / 24.0, 0.0, 1.0)))]
    frames = s.frames(revisions, until=48.0, history=True)
    assert len(frames.history) and (frames.history["ts"] < s.START).all() and (frames.metrics["ts"] >= s.START).all()
    with_history = analyze_frames(frames, AnalysisConfig())
    without = analyze_frames(dataclasses.replace(frames, history=frames.history.iloc[:0]), AnalysisConfig())
    assert with_history.findings == without.findings == []
    costs = [[(r.cost.cost_usd, r.cost.window_hours) for r in a.services] for a in (with_history, without)]
    assert costs[0] == costs[1] and costs[0][0][1] == 48.0


STEADY = 0.006 * np.arange(12.0)  # twelve hourly troughs of a climb of 14 % of the limit a day


@pytest.mark.parametrize(("last_three", "stalled"), [
    # Its last three hours rise at a sixth of its pace, the climb as a whole no rise-then-flat: a leak's
    # quiet hours, still reported (read on the last third alone, a report run lost it)
    ((0.052, 0.053, 0.054), False),
    # they fall: a bump that is over
    ((0.046, 0.042, 0.040), True),
    # they go on at its pace
    ((0.054, 0.060, 0.066), False),
])
def test_a_sequential_climb_has_stalled_when_its_last_third_falls(last_three: tuple[float, ...],
                                                                   stalled: bool) -> None:
    climb = np.r_[STEADY[:9], last_three]
    assert envelope._stalled(np.arange(12.0), climb, 0.006) is stalled


def test_a_sequential_climb_that_levels_off_has_stalled() -> None:
    # 1 % of the limit an hour for 6 h, then flat for 6 (a warm-up settling, a step to a new level): its
    # last third barely moves and the climb fits rise-then-flat far better than a line.
    age = np.arange(12.0)
    settled = np.r_[0.01 * age[:6], 0.05 + np.asarray([0.001, -0.001, 0.0005, -0.0005, 0.001, 0.0])]
    assert envelope._stalled(age, settled, 0.004)


def test_a_fast_leak_is_weighed_at_its_own_pace_up_to_the_fastest(monkeypatch: pytest.MonkeyPatch) -> None:
    # Five hourly troughs climbing 35 % of the limit a day, the service's hourly noise 1.18 %: weighed at
    # its own pace the ratio passes log(1/ALPHA); weighed at no more than 20 % a day (a cap half as high)
    # it does not yet, nor at the slowest pace alone (the test before the pace was profiled).
    age = np.arange(5.0)
    ramp = 0.35 / 24.0 * age
    bar = np.log(1.0 / envelope.ALPHA)
    assert envelope.drift_llr(ramp, age, 0.0118)[-1] > bar
    monkeypatch.setattr(envelope, "FASTEST_DRIFT_PER_DAY", envelope.DRIFT_PER_DAY)
    assert envelope.drift_llr(ramp, age, 0.0118)[-1] < bar


def test_a_jump_of_the_last_trough_is_not_weighed_as_a_leak_faster_than_the_fastest() -> None:
    # Five flat hourly troughs, then one 5 % of the limit higher (a spike, a partial last bin), noise
    # 1.065 %: at most 40 % a day the ratio stays under log(1/ALPHA); a cap twice as high passes it.
    age = np.arange(6.0)
    jump = np.asarray([0.0, 0.0, 0.0, 0.0, 0.0, 0.05])
    assert envelope.drift_llr(jump, age, 0.01065)[-1] < np.log(1.0 / envelope.ALPHA)


def test_a_lone_revisions_noise_is_its_scatter_not_how_far_below_its_highest_it_sat() -> None:
    # The only healthy revision seen from its deploy: its troughs overshoot by 6 % of the limit in their
    # first 6 h (a warm-up), settle 4 % lower by 24 h and stay there, with an hour-to-hour scatter of 0.3 %.
    # Measured against its course held at its highest, it sat 4 % under it for two days; about its own
    # course over half a day, its residuals are its scatter (and the hours around the bend).
    rng = np.random.default_rng(3)
    age = np.arange(96.0)
    shape = np.where(age < 6, 0.01 * age, np.maximum(0.06 - 0.04 * (age - 6) / 18, 0.02))
    relative = shape + rng.normal(0.0, 0.003, len(age))
    # The noise the sequential test weighs residuals by (their spread, widened for autocorrelation):
    # 0.0076 about its own course against 0.022 under its highest.
    lone = envelope._noise([envelope._lone_residual(relative, 60)])
    held = envelope._noise([relative - np.maximum.accumulate(relative)])
    assert lone < 0.01 < 0.015 < held


@pytest.mark.parametrize(("peak_pace", "holds"), [(0.006, True), (0.0, False)])
def test_a_climb_whose_troughs_stall_at_the_end_holds_while_the_oldest_instances_peaks_climb(
        peak_pace: float, holds: bool) -> None:
    # 30-minute bins over 12 h: the worst instance's troughs climb 0.5 % of the limit an hour for 9 h and
    # sit level for the last 3 (a fresh instance, a quiet hour), which alone reads as a warm-up levelling
    # off. Its peaks, climbing on at the troughs' pace or faster, say the climb goes on; level peaks do not.
    hours = np.arange(24) * 0.5
    worst = 0.40 + 0.005 * np.minimum(hours, 9.0)
    bins = pd.DataFrame({"trough": worst - 0.05, "worst": worst, "load": 10.0, "peak": 0.55 + peak_pace * hours},
                        index=pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(hours, unit="h"))
    reading = memory._Reading.of(bins, 30, DetectionConfig().memory)
    assert reading is not None and reading.worst is not None
    assert memory._holds_to_end(reading.worst, reading, DetectionConfig().memory) is holds


def _top_bucket(values: np.ndarray) -> np.ndarray:
    """``values`` as the worst instance reads them: the lower edge of their exponential bucket (10^0.02)."""
    return np.asarray(10 ** (0.02 * np.floor(np.log10(values) / 0.02)), dtype=np.float64)


def _worst_in_buckets(true_worst: np.ndarray, typical: np.ndarray | None = None) -> memory._Reading:
    """30-minute bins whose worst instance is ``true_worst`` read in bucket steps, and whose typical
    instance sits 6 % of the limit under it (or at ``typical``), read as measured."""
    hours = np.arange(len(true_worst)) * 0.5
    fleet = true_worst - 0.06 if typical is None else typical
    bins = pd.DataFrame({"trough": fleet, "worst": _top_bucket(true_worst), "load": 10.0, "peak": 0.62},
                        index=pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(hours, unit="h"))
    reading = memory._Reading.of(bins, 30, DetectionConfig().memory)
    assert reading is not None and reading.worst is not None
    return reading


@pytest.mark.parametrize("start", [0.400, 0.404, 0.408, 0.412, 0.416, 0.420, 0.424, 0.428])
def test_a_steady_climb_read_in_bucket_steps_holds_to_its_end_wherever_the_steps_fall(start: float) -> None:
    # 18 h of 30-minute bins, the worst instance climbing 10 % of the limit a day from 40-43 %, read in
    # bucket steps of 4.7 % (2 % of the limit): its last 6 h show one step or none. Judged on them alone,
    # the same leak held to its end at two of these eight phases of the grid; over the hours half its
    # pace takes to climb one step, at all of them. Its peaks are level (they do not vouch for it).
    reading = _worst_in_buckets(start + 0.10 / 24 * np.arange(36) * 0.5)
    cfg = DetectionConfig().memory
    assert reading.worst is not None and reading.worst.passes(cfg)
    assert memory._holds_to_end(reading.worst, reading, cfg)


def test_a_bucket_step_climb_is_read_over_a_longer_tail_only_while_the_fleet_climbs_too() -> None:
    # The same climb (the phase whose last 6 h sit in one bucket), the fleet's typical troughs level from
    # its 12th hour: the worst instance's steps cannot say whether it levelled off, and the fleet says
    # it did.
    hours = np.arange(36) * 0.5
    reading = _worst_in_buckets(0.408 + 0.10 / 24 * hours, typical=0.35 + 0.10 / 24 * np.minimum(hours, 12.0))
    cfg = DetectionConfig().memory
    assert reading.worst is not None and reading.worst.passes(cfg)
    assert not memory._holds_to_end(reading.worst, reading, cfg)


def test_a_fast_bucket_step_climb_that_stopped_hours_ago_does_not_hold_to_its_end() -> None:
    # A cache filled at 30 % of the limit a day for 12 h, then 6 h in one bucket: significant over the
    # whole, and half its pace climbs a bucket step in 5 h, fewer than its last third (6 h), which is flat.
    # The tail is lengthened only as far as the steps need, not over the climb before it (the fleet's
    # typical troughs still climbing slowly, so the longer tail is allowed).
    hours = np.arange(36) * 0.5
    reading = _worst_in_buckets(0.40 + 0.30 / 24 * np.minimum(hours, 12.0), typical=0.30 + 0.05 / 24 * hours)
    cfg = DetectionConfig().memory
    assert reading.worst is not None and reading.worst.passes(cfg)
    assert reading.typical is not None and memory._holds_to_end(reading.typical, reading, cfg)
    assert not memory._holds_to_end(reading.worst, reading, cfg)
