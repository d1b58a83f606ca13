"""A service's own memory envelope, and a sequential test of a revision's troughs against it: leaks
reported hours after they start, and on revisions rolled back or fixed after a day or two.

Method, per service:

1. the envelope: how the typical instance's memory troughs move after a deploy, learned from the
   service's healthy revisions that served at least ``ENVELOPE_MIN_HOURS`` (never one with a finding
   or a leak candidate, nor the revision being judged): per revision, the hourly troughs relative to
   its level just after the warm-up, with the part explained by load per instance removed (one slope
   of troughs on load, each revision about its own means, pooled over those revisions), aligned by
   age; the envelope at an age is the median over revisions (the highest when there are fewer than
   three), fitted non-decreasing (``stats.nondecreasing``) and never below the start level, so one odd
   revision does not move it and a warm-up that rises and stays is not a leak. Only revisions seen
   from their deploy show that course; when every healthy revision was deployed before the window
   (seen mid-life, past its warm-up), the course is flat (a mid-life revision's first hours in the
   data are an arbitrary stretch of its day, not a course after a deploy) and a judged revision's
   first ``UNSEEN_WARMUP_HOURS`` are left out, since nothing in the data says how long this service
   takes to warm up;
2. the noise: the robust spread of those revisions' residuals around the envelope of the others (around
   their own level, for a flat course; around its own course smoothed over half a day, for the only one
   seen from its deploy), widened for their lag-1 autocorrelation;
3. a sequential test on a revision's residuals (its troughs less its start level, the load term and
   the envelope at its age), hour by hour from its warm-up: the log likelihood ratio of a drift of
   ``DRIFT_PER_DAY`` to ``FASTEST_DRIFT_PER_DAY`` of the limit per day against none, the level profiled
   out and the drift's start and pace unknown (the highest ratio over every start and pace, a
   generalized likelihood ratio, so a flag flipped a day after the deploy is not diluted by the flat day
   before it, nor a fast leak weighed as a slow one). It alarms when the ratio passes
   ``log(1 / ALPHA)`` (Ville's bound for a drift of known pace from the first bin; with the start and
   pace free it is a floor, not a bound), and at least ``HEALTHY_MARGIN`` times the highest ratio any
   healthy revision reached against the envelope of the others (the same statistic, so the bar follows
   this service's noise); a revision that ended (a later one took over) must hold the alarm for two
   hours, not raise it in its last hour alone (``_alarms_needed``);
4. an alarm is reported when the climb also passes the memory size gates (a slope of at least
   ``MIN_SLOPE_PER_DAY``; the configured ``min_rise``, as the fitted slope over the climb's hours),
   spans ``MIN_CLIMB_BINS`` hourly troughs, raised the alarm itself (for a revision that ended: a bin at
   the alarm level inside the climb and before its last hour) and
   still holds at the end of the data (``_stalled``: its last third does not fall, and either rises at
   half its pace or more or the climb as a whole does not level off), unless its alarm rose
   ``STALL_OVERRULED_AT`` times its bar: then a fall after the alarm's peak is fresh instances joining
   or old ones replaced, and the climb is measured up to that peak; the onset is the
   deploy, or a hinge where the residuals start to climb when that fits far better than a straight
   line;
5. when the typical instance's troughs raise no alarm, the same test on the worst instance's, for a
   leak from the deploy: its oldest instance climbs at the leak's full pace, while fresh instances dilute
   the fleet's typical troughs for the first day. (A climb that starts later, a flag flipped, lifts every
   instance at once and the fleet's troughs show it too: a worst-instance climb must start at the deploy.)
   Its envelope, noise and bar come from the same healthy revisions' worst troughs. It is read from the
   top bucket of a distribution, in steps of a few percent of the limit, and moves as the oldest instance
   is replaced, so its noise is at least what those steps add (``_quantization``), its false-alarm rate
   is set lower (``WORST_ALPHA``), and a climb that a single step to a new level fits as well as a line is
   not reported, nor one that rose no higher than shorter earlier revisions had at its age
   (``findings._sequential_leaks``). On four development draws, strong leaks found by +6 h after their
   onset went from 79 to 88 of 201, and no full-window finding changed (docs/detection-quality.md);
6. when neither trough signal raises an alarm, the same test, on the same terms as the worst instance's
   troughs, on the worst instance's peaks (``memory.PEAK``: the highest memory any instance reached in
   each bin), for a leak from the deploy whose instances turn over: scale-in, recycling and fresh
   instances keep even the worst troughs within a bucket step or two, while whichever instance lives
   longest lifts the peaks a step at a time (693567-0121: 7 % of the limit a day, fixed after 20 h, its
   worst troughs at 0.60-0.63 of the limit throughout, its peaks 0.63 -> 0.69 where the revisions before
   held one level). Read in bucket steps, a peak climbing at a few percent a day holds each level for
   hours, so a flat tail is a stall only where the climb's pace would have lifted it two steps over that
   tail; and a stall is never overruled by a high alarm (a deploy that lifts the peaks a few percent and
   holds them, a step to a new level, raises one). On eighteen development draws: memory TP 1,260 ->
   1,265, FP 103 -> 101 (strong leaks found 995 -> 999 of 1,064), no other finding moved; on data cut at
   onset + 6 h, 395 of 809 strong leaks found instead of 363; the negative cuts of eight draws unchanged
   (133 of 7,583 with a false leak) (docs/detection-quality.md, forty-fourth session).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
import pandas as pd

from analyzer.analysis import stats
from analyzer.analysis.memory import (
    BUCKETED,
    COLUMN,
    LEVEL_OFF_MIN_BINS,
    OOM_LEVEL,
    PEAK,
    TYPICAL,
    WORST,
    LeakEvidence,
    bucket_step,
    levels_off,
    peak_step,
    request_clock,
    troughs,
)
from analyzer.analysis.timeline import RevisionSpan, ServiceView, between, seen_from_deploy, served_hours
from analyzer.config import DetectionConfig
from analyzer.model import FloatArray

ENVELOPE_MIN_HOURS = 12.0  # a revision must have served this long to show the service's after-deploy course
ENVELOPE_HOURS = 72  # ages the envelope covers; older revisions are judged by the trend test alone
DRIFT_PER_DAY = 0.10  # the slowest drift the SPRT is tuned to find: a leak of 10 % of the limit a day
# The fastest pace it weighs a drift at: a faster one is weighed at this pace (its likelihood ratio over a
# few hours then does not reward a jump of the last bin or two as a very fast leak).
FASTEST_DRIFT_PER_DAY = 0.40
ALPHA = 1e-3  # the chance, per revision, of an alarm without a drift (if the noise model held)
# The same for the worst instance's troughs, which the noise model holds less well: they move in bucket steps
# and as the oldest instance is retired or replaced.
WORST_ALPHA = 1e-4
HEALTHY_MARGIN = 1.5  # the alarm is also at least this times the highest ratio a healthy revision reached
START_BINS = 2  # the revision's start level: the median of its first troughs
BIN_MINUTES = 60
MIN_SLOPE_PER_DAY = 0.05  # what the sequential test is for: leaks that fill the limit within weeks
MIN_RAMP_BINS = 3  # the fewest bins a drift is tested over
UNSEEN_WARMUP_HOURS = 3.0  # a warm-up no healthy revision showed: caches and JITs mostly fill in its first hours
MIN_CLIMB_BINS = 5  # the fewest hourly troughs a reported climb spans (4 h; a settling warm-up is shorter)
# A climb whose alarm rose this many times the bar (itself at least HEALTHY_MARGIN times the highest ratio a healthy
# revision of the service reached) stands though its tail stalls (``_stalled``): see ``sequential_leak``.
STALL_OVERRULED_AT = 4.0


@dataclass(frozen=True, slots=True)
class _Series:
    """One revision's troughs after its warm-up, at one bin width."""

    age: FloatArray  # hours since the first trough
    level: FloatArray  # trough, fraction of the limit
    load: FloatArray  # requests per instance
    stamps: pd.DatetimeIndex
    seen: bool = False  # its first trough follows its deploy's warm-up (``ServiceView.rows_from_deploy``)
    peak: FloatArray | None = None  # the worst instance's highest memory per bin, fraction of the limit


@dataclass(frozen=True, slots=True)
class Envelope:
    ages: FloatArray  # hours since the warm-up ended, one per bin
    rise: FloatArray  # the healthy course relative to the start level
    load_slope: float  # trough change per unit of load per instance
    noise: float  # robust spread of the residuals around the envelope, widened for autocorrelation
    alarm: float  # the log likelihood ratio that alarms
    minutes: int  # bin width
    revisions: tuple[str, ...]  # what it was learned from
    # Hours of a judged revision's troughs left out before its start level: 0 when the course was
    # learned from revisions seen from their deploy, else UNSEEN_WARMUP_HOURS (the course is then
    # flat, and says nothing of this service's warm-up).
    settle_hours: float = 0.0
    signal: str = TYPICAL  # whose troughs: the typical instance's, or the worst instance's

    def expected(self, age: FloatArray) -> FloatArray:
        """The healthy rise at these ages (held at its last value beyond the ages seen)."""
        return np.interp(age, self.ages, self.rise)

    def residual(self, series: _Series) -> FloatArray:
        """A judged revision's troughs less its start level, the load term and the healthy rise at their age."""
        return _relative(series, self.load_slope) - self.expected(series.age)


def _series(view: ServiceView, span: RevisionSpan, config: DetectionConfig, minutes: int, *,
            history: bool = False, signal: str = TYPICAL) -> _Series | None:
    """``span``'s troughs of ``signal`` after its warm-up (None when some bin has none: the worst
    instance comes from the distribution, which a source may not give). With ``history``, from its
    deploy when a source read the first hours of a revision deployed before the window
    (``ServiceView.rows_from_deploy``): what a healthy revision teaches the envelope. A judged revision
    is read from the window only, as the trend test reads it (its first hours against a course the
    service may not have shown are not judged)."""
    bins, seen = _troughs(view, span, config, minutes, history)
    if bins is None or len(bins) < START_BINS + 2:
        return None
    stamps = pd.DatetimeIndex(bins.index)
    age = ((stamps - stamps[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
    load = bins["load"].to_numpy(dtype=np.float64)
    load = np.where(np.isfinite(load), load, np.nanmedian(load) if np.isfinite(load).any() else 0.0)
    level = bins[COLUMN[signal]].to_numpy(dtype=np.float64)
    if not np.isfinite(level).all():
        return None
    return _Series(age, level, load, stamps, seen,
                   bins["peak"].to_numpy(dtype=np.float64))


def _troughs(view: ServiceView, span: RevisionSpan, config: DetectionConfig, minutes: int,
             history: bool) -> tuple[pd.DataFrame | None, bool]:
    """``_series``' bins (None without memory data) and whether they start at the deploy, kept in the
    view: both signals' series, and every judged revision's envelope, read the same bins."""
    key = ("envelope troughs", span.name, minutes, history, config.warmup_minutes)
    if key not in view.derived:
        if history:
            rows, first, seen = view.rows_from_deploy(span)
        else:
            rows, first, seen = view.revision_rows(span.name), span.first_seen, seen_from_deploy(span)
        rows = between(rows, first + pd.Timedelta(minutes=config.warmup_minutes))
        if rows["mem_mean"].notna().sum() + rows["mem_p50"].notna().sum() == 0:
            view.derived[key] = (None, seen)
        else:
            view.derived[key] = (troughs(rows, minutes), seen)
    return cast(tuple[pd.DataFrame | None, bool], view.derived[key])


def _settled(series: _Series, hours: float) -> _Series | None:
    """``series`` from ``hours`` after its first trough on, its ages counted from there."""
    keep = series.age >= hours
    if keep.sum() < START_BINS + 2:
        return None
    age = series.age[keep]
    peak = series.peak[keep] if series.peak is not None else None
    return _Series(age - age[0], series.level[keep], series.load[keep], series.stamps[keep], series.seen, peak)


def _relative(series: _Series, load_slope: float) -> FloatArray:
    adjusted = series.level - load_slope * (series.load - np.median(series.load[:START_BINS]))
    return adjusted - float(np.median(adjusted[:START_BINS]))


def _course(series: list[_Series], load_slope: float, ages: FloatArray) -> FloatArray:
    curves = np.full((len(series), len(ages)), np.nan)
    for i, one in enumerate(series):
        inside = ages <= one.age[-1]
        curves[i, inside] = np.interp(ages[inside], one.age, _relative(one, load_slope))
    counts = np.isfinite(curves).sum(axis=0)
    known = counts > 0
    middle = np.full(len(ages), np.nan)
    seen = curves[:, known]
    middle[known] = np.where(counts[known] >= 3, np.nanmedian(seen, axis=0), np.nanmax(seen, axis=0))
    if not known.any():
        return np.zeros(len(ages))
    # Beyond the oldest healthy revision its last value holds (a leak must climb past it). Non-decreasing:
    # a warm-up rises and stays. Fitted (pooled where it dips), not held at the highest value reached so
    # far: with one or two healthy revisions that running maximum climbed on their hour-to-hour scatter
    # alone (2-4 % of the limit within a day on a flat service), which a young leak then had to climb
    # past before it counted. Never below the start level: a healthy revision that sat lower after its
    # first hours says nothing of where a judged one should go.
    fitted = np.maximum(stats.nondecreasing(middle[known]), 0.0)
    held: FloatArray = np.interp(ages, ages[known], fitted)
    return held


def _load_slope(series: list[_Series]) -> float:
    """Trough change per unit of load per instance: a least-squares slope of each revision's troughs on
    its load, both taken about that revision's own means (so revisions at different levels do not
    count as load), pooled over revisions; only a positive effect is kept (more in-flight work, more
    memory). Not from hour-to-hour changes: load per instance moves from one hour to the next mostly
    by chance (an instance added or retired), which pulls a slope from changes towards zero, and a
    service whose working set follows its daily traffic then reads its own day as noise."""
    pairs = []
    for one in series:
        keep = np.isfinite(one.level) & np.isfinite(one.load)
        if keep.sum() >= 4:
            pairs.append((one.load[keep] - one.load[keep].mean(), one.level[keep] - one.level[keep].mean()))
    if sum(len(x) for x, _ in pairs) < 6:
        return 0.0
    return stats.pooled_slope(pairs) or 0.0


def drift_llr(residual: FloatArray, age: FloatArray, noise: float) -> FloatArray:
    """Per bin, the log likelihood ratio of a drift against none on the residuals up to that bin, the
    drift's start unknown (the highest ratio over every start that leaves ``MIN_RAMP_BINS`` after it; the
    level profiled out): a leak from the deploy starts at the first bin, one switched on hours later (a
    flag flipped) at a later one, and the level before it then counts as the level the drift left. The
    drift's pace is profiled too, between ``DRIFT_PER_DAY`` and ``FASTEST_DRIFT_PER_DAY``: weighed at
    the slowest pace only, a leak of 25 % a day took an hour or two longer to pass the bar (with hourly
    troughs that noisy, an hour is a third of the wait); above the fastest, a jump of the last bins would
    read as a leak. The healthy revisions' own highest ratio, which sets the alarm with it
    (``HEALTHY_MARGIN``), is the same statistic, so the freer fit raises the bar where it finds more
    in healthy data."""
    drift = DRIFT_PER_DAY / 24.0
    n = len(residual)
    out = np.zeros(n)
    if noise <= 0 or n < MIN_RAMP_BINS:
        return out
    # The ramp from start k over the first m bins is max(age - age[k], 0); its sums (and with the
    # residuals) come from prefix sums, so every (end, start) pair costs O(1): O(n²) in all.
    def prefix(values: FloatArray) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(values)])

    s_r, s_a, s_ar, s_aa = prefix(residual), prefix(age), prefix(age * residual), prefix(age * age)
    ends = np.arange(MIN_RAMP_BINS, n + 1)[:, None]
    starts = np.arange(n)[None, :]
    a_k, width = age[starts], ends - starts
    sum_x = s_a[ends] - s_a[starts] - a_k * width
    sum_xr = s_ar[ends] - s_ar[starts] - a_k * (s_r[ends] - s_r[starts])
    sum_xx = s_aa[ends] - s_aa[starts] - 2 * a_k * (s_a[ends] - s_a[starts]) + a_k**2 * width
    # centred over the m bins (the level profiled out)
    cross = sum_xr - sum_x / ends * s_r[ends]
    spread = sum_xx - sum_x**2 / ends
    # the drift profiled too, between DRIFT_PER_DAY and FASTEST_DRIFT_PER_DAY (cross / spread is its
    # least-squares pace): a fast leak is not weighed as a slow one
    pace = np.clip(cross / np.maximum(spread, 1e-18), drift, FASTEST_DRIFT_PER_DAY / 24.0)
    ratios = (pace * cross - pace**2 * spread / 2.0) / noise**2
    ratios[starts > ends - MIN_RAMP_BINS] = -np.inf
    out[MIN_RAMP_BINS - 1:] = ratios.max(axis=1)
    return out


def _noise(residuals: list[FloatArray]) -> float:
    """Robust spread of the residual levels, widened by sqrt((1 + r) / (1 - r)) for their lag-1
    autocorrelation r: neighbouring hours move together, so they are worth fewer independent looks."""
    pooled = np.concatenate(residuals) if residuals else np.zeros(0)
    if pooled.size < 6:
        return 0.0
    spread = 1.4826 * float(np.median(np.abs(pooled - np.median(pooled))))
    pairs = [(r[1:] - r.mean(), r[:-1] - r.mean()) for r in residuals if len(r) > 2]
    num = sum(float(a @ b) for a, b in pairs)
    den = sum(float(a @ a) for a, _ in pairs)
    lag1 = min(max(num / den, 0.0), 0.9) if den > 0 else 0.0
    return spread * math.sqrt((1 + lag1) / (1 - lag1))


LONE_SMOOTH_HOURS = 12.0  # the course a lone revision's scatter is measured about: its own, over half a day


def _lone_residual(relative: FloatArray, minutes: int) -> FloatArray:
    """The troughs of the only healthy revision seen from its deploy about its own course, a centred
    running median over ``LONE_SMOOTH_HOURS``: how far its hours stray from where it was going. Against
    its course held at its highest (what a judged revision meets) it sat below whatever it had once
    reached, a warm-up's overshoot or a busy first day, for the rest of its life: a spread of days,
    which with the hours' autocorrelation made the noise 20 times its hour-to-hour scatter (401076-0129:
    0.076 of the limit against 0.003), and a young revision's leak waited a day to pass the bar."""
    bins = round(LONE_SMOOTH_HOURS * 60.0 / minutes) | 1
    return relative - stats.running_median(relative, bins)


def build_envelope(view: ServiceView, healthy: list[RevisionSpan], config: DetectionConfig,
                   signal: str = TYPICAL) -> Envelope | None:
    """The envelope from ``healthy`` (revisions without a finding or a leak candidate), or None when
    none of them served ``ENVELOPE_MIN_HOURS``. The course comes from the revisions seen from their
    deploy (in the window, or before it when a source read the first hours of one deployed before it:
    ``ServiceView.rows_from_deploy``); when none was, their first hours in the data are not their
    first hours after a deploy: the course is flat and the noise their troughs' spread about
    their own level. (Their first hours held at their highest, as a course, would be the day's swing
    from whatever hour the window began at, which a leak's first day had to climb past.) Against a flat
    course a warm-up longer than ``warmup_minutes`` would read as a leak: judged revisions then skip
    their first ``UNSEEN_WARMUP_HOURS`` (``settle_hours``)."""
    spans = [s for s in healthy if served_hours(view, s) >= ENVELOPE_MIN_HOURS]
    # Hourly troughs: noisier than 2 h ones under a slow sawtooth, which the noise and the healthy
    # revisions' own CUSUM (the alarm level) then absorb, but hours sooner.
    minutes = min(BIN_MINUTES, config.memory.trough_window_minutes)
    found = [(s.name, one, one.seen) for s in spans
             if (one := _series(view, s, config, minutes, history=True, signal=signal)) is not None]
    if not found:
        return None
    series = [one for _, one, _ in found]
    fresh = [one for _, one, seen in found if seen]
    load_slope = _load_slope(series)
    ages = np.arange(0.0, ENVELOPE_HOURS + 1e-9, minutes / 60.0)
    rise = _course(fresh, load_slope, ages) if fresh else np.zeros(len(ages))
    # Each healthy revision against the envelope of the others (its own when alone): how far off a
    # revision without a leak gets, and how high its ratio climbs.
    residuals = []
    for _, one, seen in found:
        relative = _relative(one, load_slope)
        if not fresh:  # every one seen mid-life: the flat course, each at its own level
            residuals.append(relative - float(np.median(relative)))
        elif not seen:  # seen mid-life beside revisions seen from their deploy: past its warm-up
            residuals.append(relative)
        elif others := [s for s in fresh if s is not one]:
            residuals.append(relative - np.interp(one.age, ages, _course(others, load_slope, ages)))
        else:  # the only one seen from its deploy: about its own course, smoothed (``_lone_residual``)
            residuals.append(_lone_residual(relative, minutes))
    noise = max(_noise(residuals), 1e-4)
    if signal in BUCKETED:
        noise = max(noise, _quantization(series))
    # Over the ages a revision is judged at (the test stops at ENVELOPE_HOURS), which also keeps the
    # cost of a month-long healthy revision to that of three days.
    highest = max(float(drift_llr(r[tested], one.age[tested], noise).max(initial=0.0))
                  for r, one in zip(residuals, series, strict=True)
                  if (tested := one.age <= ENVELOPE_HOURS).any())
    alarm = max(math.log(1.0 / (WORST_ALPHA if signal in BUCKETED else ALPHA)), HEALTHY_MARGIN * highest)
    return Envelope(ages, rise, load_slope, noise, alarm, minutes, tuple(name for name, _, _ in found),
                    settle_hours=0.0 if fresh else UNSEEN_WARMUP_HOURS, signal=signal)


def _quantization(series: list[_Series]) -> float:
    """The spread that reading the worst instance in bucket steps alone adds (a uniform error over one
    step, ``memory.bucket_step``, at the healthy revisions' median level): the floor of its noise. Its
    troughs can sit in one bucket for most of a healthy revision's hours, so their robust spread is
    near zero and a single step of a judged revision would read as a drift."""
    levels = np.concatenate([one.level for one in series])
    return bucket_step(levels) * float(np.median(levels)) / math.sqrt(12.0)


def _climb_start(series: _Series, residual: FloatArray, minutes: int) -> int:
    """The bin where the climb starts: 0 (the deploy), unless a flat-then-rising hinge beats a straight
    line by more than its extra parameters are worth (BIC), the line on either clock, hours or requests
    served per instance (``memory.request_clock``), as the trend test dates a leak: a per-request leak
    from its deploy is a straight line in requests but bends with the morning's traffic in hours, and
    a hinge in hours then beat the line from the deploy (on twenty development draws, strong leaks
    found by +9 / +12 / +18 h 658 / 793 / 883 -> 662 / 796 / 887 of 1,020, no full-window finding
    and no false leak at a negative cut changed)."""
    n = len(residual)
    if n < 8:
        return 0
    fit = stats.hinge(series.age, residual, min_after=4)
    served = request_clock(series.load, minutes)
    linear = max(min(stats.linear_sse(series.age, residual), stats.linear_sse(served, residual)), 1e-12)
    return fit.index if n * math.log(linear / max(fit.sse, 1e-12)) > 2 * math.log(n) else 0


def _stalled(age: FloatArray, climb: FloatArray, pace: float, step: float = 0.0) -> bool:
    """The climb has stopped by the end of the data (a bump, a warm-up settling, a step to a new
    level): its last third falls, or rises at less than half ``pace`` and the climb as a whole fits
    rise-then-flat far better than a straight line (``memory.levels_off``). The last third alone is
    three or four hourly troughs on the day after a deploy: a leak's typical troughs stall over such a
    stretch by chance (a fresh instance, a quiet hour), and a report run then lost a leak that the run
    an hour before had. On four development draws (delay and negative cuts of 401076, 444163, 114769,
    900927) asking levels_off too found 5 more strong leaks by +6 h and 5 more by +12 h, with no false
    leak at any negative cut and no full-window finding changed on ten draws; levels_off alone (a
    slowly rising tail passing) let a healthy revision's last-hours bump through. A climb of fewer than
    ``LEVEL_OFF_MIN_BINS`` troughs is judged on its tail alone: a cache filled over 3 h and flat for 2
    cannot show rise-then-flat yet. ``step``: for a signal read in bucket steps of that size (the worst
    instance's peaks), a tail too short for ``pace`` to lift it two steps is not judged: it holds one level
    whether or not the climb goes on."""
    tail = max(3, len(climb) // 3)
    if step > 0 and pace * float(age[-1] - age[-tail]) < 2.0 * step:
        return False
    tail_slope = stats.theil_sen(age[-tail:], climb[-tail:])[0]
    judged = len(climb) >= LEVEL_OFF_MIN_BINS  # fewer troughs cannot show rise-then-flat: the tail alone
    return bool(tail_slope < 0 or (tail_slope < pace / 2 and (not judged or levels_off(age, climb))))


def _peak_kept_climbing(view: ServiceView, span: RevisionSpan, stamps: pd.DatetimeIndex) -> bool:
    """The highest memory any instance of ``span`` reached (``mem_max``) set a new high in the last third
    of the climb's bins (``stamps``, as ``_stalled`` reads them) after its first bin, a bucket step or
    more above its high over the climb before: the typical troughs stalled as instances were replaced or
    fresh ones joined, while the instance that lived longest carried the leak on. A warm-up settling or a
    bump holds its peak, or lets it fall; one still filling as the last third began sets its new high in
    that third's first bin, then holds it (counted from the last third's start, a cache filled over 6 h
    was reported 8 h after its deploy: ``test_a_warm_up_is_not_judged_against_a_revision_seen_only_mid_life``).

    900341-0050, a leak of 25 % of the limit a day rolled back after 16 h: its typical troughs climbed
    0.54 -> 0.61 of the limit in 10 h and fell back to 0.56-0.61 as its instances were replaced (ratio 15
    against a bar of 6.9, under the 4 times that overrules a stall), while its peak climbed 0.66 -> 0.83
    in 13 h, a bucket step every two or three hours, and it was not reported. On fourteen development
    draws, memory TP +2 (one strong leak), no false finding; on data cut at onset + 6 h, 309 of 704
    strong leaks found instead of 302 (docs/detection-quality.md, forty-second session)."""
    if len(stamps) < 3:
        return False
    rows = view.revision_rows(span.name)
    ts = pd.DatetimeIndex(rows["ts"])
    peak = rows["mem_max"].to_numpy(dtype=np.float64)
    # The new high set after the last third's first bin: a warm-up still filling as that third began
    # sets one there, then holds it.
    cut = stamps[-max(3, len(stamps) // 3) + 1]
    before = peak[(ts >= stamps[0]) & (ts < cut) & np.isfinite(peak)]
    after = peak[(ts >= cut) & np.isfinite(peak)]
    if not len(before) or not len(after):
        return False
    return bool(after.max() >= before.max() * (1.0 + peak_step(peak)) * 0.999)  # a bucket's bounds are not exact steps


def young_enough(span: RevisionSpan, config: DetectionConfig) -> bool:
    """``span`` may be judged against the envelope (the service's course after a deploy): its data start
    at its deploy, and it served no longer than the envelope covers after its warm-up (``sequential_leak``
    checks its troughs' ages exactly). A revision deployed before the window is seen mid-life, however few
    hours the window holds of it: read from the window's first hour as though just deployed, its day can
    climb at any pace against the course (628144-0191: a glimpse of 13 h was given the next revision's
    leak, dated four days early; on thirty-seven development draws nothing else moved, the sequential
    test's findings included)."""
    if span.deploy_time_known and not seen_from_deploy(span):
        return False
    served = (span.last_seen - span.first_seen) / pd.Timedelta(hours=1) - config.warmup_minutes / 60.0
    return served <= ENVELOPE_HOURS + 1.0


def _alarms_needed(view: ServiceView, span: RevisionSpan) -> int:
    """The hours at the alarm level a leak needs: one for a revision still serving at the end of the data
    (its last hour is the latest word, and a report run then should not wait), two for one that ended (a
    later one took over and the data went on): its whole life is in the data, and an alarm raised by its
    last hour alone, never seen again, is that hour's (a busy hour, the changeover), not a drift. On
    sixteen development draws (3,200 scenarios) this cleaned two warm-up negatives (830341-0067: a 5 h
    revision's typical trough up 6 % of the limit in its last hour; 260500-0035) and changed no other
    finding, nor any delay or negative cut on four draws; asked of every revision, strong leaks found
    by +6 h on those four fell from 51 to 36."""
    return 2 if span.last_seen < view.totals.index[-1] else 1


def sequential_leak(view: ServiceView, span: RevisionSpan, envelope: Envelope, config: DetectionConfig, *,
                    candidate: LeakEvidence | None = None) -> LeakEvidence | None:
    """A leak found by the SPRT of ``span``'s troughs against the service's envelope, or None.
    ``candidate``: the trend test's unconfirmed leak on ``span``, if any (its onset may date this one:
    ``_dating_candidate``)."""
    series = _series(view, span, config, envelope.minutes, signal=envelope.signal)
    if series is None or series.age[-1] > ENVELOPE_HOURS:
        return None
    if envelope.settle_hours > 0:
        series = _settled(series, envelope.settle_hours)
        if series is None:
            return None
    residual = envelope.residual(series)
    ratio = drift_llr(residual, series.age, envelope.noise)
    needed = _alarms_needed(view, span)
    if (ratio >= envelope.alarm).sum() < needed:
        return None
    cfg = config.memory
    start = _climb_start(series, residual, envelope.minutes)
    # The worst instance (its troughs, its peaks) is read for a leak from the deploy, whose oldest instance climbs
    # undiluted: a climb that starts later (a flag flipped) lifts every instance at once, and the fleet's troughs
    # show it as well.
    if envelope.signal in BUCKETED and start > 0:
        return None
    age, climb = series.age[start:], residual[start:]
    if len(climb) < MIN_CLIMB_BINS:
        return None
    # A revision that ended: the climb reported must have raised the alarm before its last hour, not an
    # earlier stretch that fell back (260500-0198: a bump at 13 h, then a climb in its last 6 h whose
    # alarm came with its last hour only).
    if needed > 1 and not (ratio[start:-1] >= envelope.alarm).any():
        return None
    overruled = (envelope.settle_hours == 0 and envelope.signal != PEAK
                 and float(ratio[start:].max()) >= STALL_OVERRULED_AT * envelope.alarm)
    # An alarm that far above its bar, fallen back after its peak: the typical troughs dropped as instances
    # were replaced (a night's scale-in, platform recycling), as a leak's do well below the limit, and the
    # climb is measured up to where its alarm peaked. Over every hour to the end the drops flatten its slope
    # under the size gate: a leak reported 9 h after its deploy was gone from the report once its revision
    # had ended (511085-0139: 19 % of the limit in 13 h, ratio 46 against 6.9, then its instances replaced;
    # on seven development draws one strong leak more, nothing else moved, docs/detection-quality.md).
    highest = int(np.argmax(ratio[start:]))
    if overruled and MIN_CLIMB_BINS <= highest + 1 < len(climb):
        age, climb = age[:highest + 1], climb[:highest + 1]
    trend = stats.mann_kendall(age, climb)
    rise = float(np.median(climb[-2:]) - np.median(climb[:2]))
    slope_floor = max(cfg.min_slope_per_day, MIN_SLOPE_PER_DAY)
    # The size gate on the fitted climb over its hours: the medians of its first and last two troughs
    # sit an hour inside each end, so six hourly troughs of a 10 %/day leak read 1.7 % of the limit
    # against the 2 % asked, and a leak at that pace waited 8-9 h to be reported however clear it was.
    fitted_rise = trend.slope * float(age[-1] - age[0])
    if trend.slope * 24 < slope_floor or fitted_rise < cfg.min_rise:
        return None
    # A stalled tail is a warm-up settling or a bump, unless the climb raised the alarm STALL_OVERRULED_AT times
    # its bar against a course the service's healthy revisions showed after their deploys: then the stall is the
    # typical trough falling as fresh instances join (a morning's scale-out, a fix's changeover), as a leak's
    # does. (Against revisions seen only mid-life, ``settle_hours``, no course says how long a warm-up runs, and
    # a cache fill past the hours left out is a climb of any ratio.) On 34 development draws the stall dropped 9
    # alarms: 5 strong leaks (ratios 19-156 against bars of 6.9) and 4 revisions without one (at most 3.2 times
    # their bars); overruled, 3 leaks more found (the others were found otherwise or dated off) and none false.
    if envelope.signal in BUCKETED and stats.step_sse(climb) <= stats.linear_sse(age, climb):
        return None  # one bucket step (or two at once) to a level it holds: a step, not a drift
    step = peak_step(series.level) * float(np.median(series.level)) if envelope.signal == PEAK else 0.0
    stalled = _stalled(age, climb, trend.slope, step) and not _peak_kept_climbing(view, span, series.stamps[start:])
    if stalled and not overruled:
        return None
    warm_end = series.stamps[0]
    onset_stamp = pd.Timestamp(series.stamps[start])
    onset_at_deploy = (onset_stamp - warm_end) / pd.Timedelta(hours=1) <= max(1.0, envelope.minutes / 60.0)
    onset = span.deploy_time if onset_at_deploy else onset_stamp
    dating = _dating_candidate(candidate)
    if dating is not None:
        onset, onset_at_deploy = dating.onset, dating.onset_at_deploy
    rows = view.revision_rows(span.name)
    peak = rows["mem_max"].to_numpy(dtype=np.float64)
    peak_max = float(np.nanmax(peak)) if np.isfinite(peak).any() else math.nan
    tail_peak = peak[-max(1, len(peak) // 10):]
    peak_end = float(np.nanmax(tail_peak)) if np.isfinite(tail_peak).any() else math.nan
    levels = series.level
    return LeakEvidence(
        revision=span.name,
        onset=onset,
        signal=envelope.signal,
        slope_per_day=trend.slope * 24,
        rise=rise,
        p_value=trend.p_value,
        hours=float(age[-1] - age[0]),
        trough_start=float(np.median(levels[:START_BINS])),
        trough_end=float(np.median(levels[-START_BINS:])),
        trough_high=float(np.max(levels)),
        peak_end=peak_end,
        peak_max=peak_max,
        segments=1,
        onset_at_deploy=bool(onset_at_deploy),
        troughs=pd.Series(levels, index=series.stamps),
        fit_slope_per_hour=trend.slope,
        confirmed=True,
        against=f"this service's healthy revisions after their deploys ({', '.join(envelope.revisions)})",
    )


def _dating_candidate(candidate: LeakEvidence | None) -> LeakEvidence | None:
    """The trend test's candidate on the same revision when a sequential finding takes its onset from it:
    when that candidate rests on the worst instance. The sequential test reads the fleet's typical troughs
    against the envelope, and under a leak from the deploy fresh instances dilute them: they can follow
    the service's usual warm-up course for the first day, and their hinge then dates the leak up to a day
    late (715771-0136, 304301-0170: 23 h), where the worst instance climbed from the deploy and the trend
    test, dating on both signals and two clocks against its stricter bar, put it there. A candidate on the
    typical troughs reads what the sequential test read, less well (without the envelope's warm-up), and
    does not date it. On twenty-four development draws: memory TP +6, FP -6 (five strong leaks), strong
    leaks found by +12 / +18 / +24 h 805 / 903 / 951 -> 807 / 907 / 954 of 1,020; but two fast flag flips
    (28 and 36 %/day), whose worst instance the candidate still read as climbing from the deploy 6-9 h
    after the flip, are now dated at the deploy there (by +6 / +9 h 412 / 671 -> 411 / 669). Asked of
    every candidate, three more such flips were lost (docs/detection-quality.md)."""
    return candidate if candidate is not None and candidate.signal == WORST else None


def climbs_like(view: ServiceView, earlier: RevisionSpan, later: RevisionSpan, envelope: Envelope,
                config: DetectionConfig) -> bool:
    """``earlier``'s troughs, against the service's envelope, climb at the pace ``later``'s do from its
    deploy, far more likely than not at all: the log likelihood ratio of that known drift (its level
    profiled out) against none reaches ``log(1 / ALPHA)``. For a revision that served too briefly for
    its own leak to show: the next revision's leak, found from its deploy, tells the pace to look for,
    read up to the bin where its worst instance first reached the limit (``OOM_LEVEL``): after that its
    oldest instances are OOM-killed and replaced and its troughs cycle, and over three days a 34 %/day
    leak read as a few percent a day, which a predecessor's 12 h warm-up matched (507647-0046; on fourteen
    development draws nothing else moved).
    """
    series = [_series(view, span, config, envelope.minutes) for span in (earlier, later)]
    if envelope.settle_hours > 0:
        series = [None if one is None else _settled(one, envelope.settle_hours) for one in series]
    before, after = series
    if before is None or after is None or len(before.age) < MIN_CLIMB_BINS:
        return False
    tested = after.age <= ENVELOPE_HOURS
    if after.peak is not None and (at_limit := np.flatnonzero(np.nan_to_num(after.peak) >= OOM_LEVEL)).size:
        tested &= np.arange(len(after.age)) <= at_limit[0]
    if tested.sum() < MIN_CLIMB_BINS:
        return False
    pace = stats.theil_sen(after.age[tested], envelope.residual(after)[tested])[0]
    if pace <= 0:
        return False
    residual = envelope.residual(before)
    flat = float(((residual - residual.mean()) ** 2).sum())
    drifting = residual - pace * before.age
    climbing = float(((drifting - drifting.mean()) ** 2).sum())
    return (flat - climbing) / (2 * envelope.noise**2) >= math.log(1.0 / ALPHA)
