"""Rising memory baseline: the troughs of a revision's memory climb (a leak), as opposed to
warm-up, GC sawtooth, traffic-driven working set, or a deploy that steps to a new flat level.

Method, per revision and after its warm-up:

1. troughs: the minimum of fleet-typical memory (mean across instances) in each bin longer than the
   GC sawtooth, so the sawtooth's peaks and the working set of busy minutes drop out;
2. the troughs are adjusted for load per instance (a joint least-squares fit of time and load; under
   two days of data, where a day's traffic moves with time, a slope learned from the service's other
   revisions), so a busier fleet is not read as a leak;
3. resets (OOM kills, instance replacement) and level steps split the troughs into segments; the
   trend is measured *within* segments (pooled Theil–Sen slope and Mann–Kendall test with an
   autocorrelation-corrected variance), so a step to a new flat level has no slope and a leak that
   keeps being reset by OOM kills still has one;
4. a finding needs a significant slope above a floor (fraction of the limit per day), a total rise
   above a floor, and a climb lasting long enough; the onset is the deploy, or one start shared by
   both trough signals' flat-then-rising fits where that beats a climb from the deploy by far.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import cast

import numpy as np
import pandas as pd

from analyzer.analysis import stats
from analyzer.analysis.timeline import RevisionSpan, ServiceView, between, earlier_without
from analyzer.config import DetectionConfig, MemoryDetection
from analyzer.model import FloatArray, IntArray

TYPICAL, WORST = "typical instance", "worst instance"  # the two trough signals, as the report names them
PEAK = "worst instance's peaks"  # the highest memory of any instance: read by the sequential test only
BUCKETED = (WORST, PEAK)  # the signals read from the top bucket of the memory distribution, in steps
COLUMN = {TYPICAL: "trough", WORST: "worst", PEAK: "peak"}  # each signal's column in ``troughs``


def signal_words(signal: str) -> tuple[str, str]:
    """What of whose memory climbs, as the report says it: ("troughs", "typical instance"),
    ("troughs", "worst instance") or ("peaks", "worst instance")."""
    return ("peaks", WORST) if signal == PEAK else ("troughs", signal)


@dataclass(frozen=True, slots=True)
class LeakEvidence:
    revision: str
    onset: pd.Timestamp
    signal: str  # which signal climbs: TYPICAL (mean across instances) or WORST (max)
    slope_per_day: float  # fraction of the limit per day
    rise: float  # fraction of the limit over the climb
    p_value: float
    hours: float
    trough_start: float
    trough_end: float
    trough_high: float  # the highest trough (before any reset)
    peak_end: float  # worst instance at the end (mem_max)
    peak_max: float  # worst instance at any time (≈ 1.0 means OOM kills)
    segments: int
    onset_at_deploy: bool
    troughs: pd.Series  # the typical-instance troughs (for charts)
    fit_slope_per_hour: float
    # False for a significant climb that failed a plausibility gate (resets not explained, levelling
    # off): not reported on its own, but it tells where a leak confirmed in the next revision began.
    confirmed: bool = True
    against: str = ""  # what the climb was judged against, when not a flat line (the service's envelope)


def typical_memory(rows: pd.DataFrame) -> FloatArray:
    """Fleet-typical memory per row: the mean across instances, else the median."""
    typical = rows["mem_mean"].to_numpy(dtype=np.float64)
    return np.where(np.isnan(typical), rows["mem_p50"].to_numpy(dtype=np.float64), typical)


def troughs(rows: pd.DataFrame, bin_minutes: int, *, from_first: bool = False) -> pd.DataFrame:
    """Per bin: the lowest typical memory (mean across instances), the lowest worst-instance memory
    (max across instances), the mean load per instance, and the highest worst-instance memory.
    Indexed by bin start (bins aligned to the epoch, or with ``from_first`` to the first row); bins
    without memory data are left out."""
    typical = typical_memory(rows)
    worst = rows["mem_max"].to_numpy(dtype=np.float64)
    inst = rows["inst_active"].to_numpy(dtype=np.float64)
    load = rows["req_rate"].to_numpy(dtype=np.float64) / np.where(inst > 0, inst, np.nan)
    width = pd.Timedelta(minutes=bin_minutes).value
    stamps = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8
    origin = int(stamps.min()) if from_first and len(stamps) else 0
    starts, codes = _bins((stamps - origin) // width)
    n = len(starts)

    def reduce(values: FloatArray, how: np.ufunc, fill: float) -> FloatArray:
        out = np.full(n, fill)
        how.at(out, codes, np.where(np.isnan(values), fill, values))
        return np.where(out == fill, np.nan, out)

    finite = np.isfinite(load)
    load_sum = np.bincount(codes, weights=np.where(finite, load, 0.0), minlength=n)
    load_n = np.bincount(codes, weights=finite.astype(np.float64), minlength=n)
    columns = {
        "trough": reduce(typical, np.minimum, np.inf),
        "worst": reduce(worst, np.minimum, np.inf),
        "load": np.divide(load_sum, load_n, out=np.full(n, np.nan), where=load_n > 0),
        "peak": reduce(worst, np.maximum, -np.inf),
    }
    held = ~np.isnan(columns["trough"])  # bins without memory data left out (before the frame is built)
    if not held.all():
        columns = {name: values[held] for name, values in columns.items()}
        starts = starts[held]
    return pd.DataFrame(columns, index=pd.to_datetime(origin + starts * width, unit="ns", utc=True))


def _bins(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(numbers, return_inverse=True)``, without its sort when the rows come in time order
    (a revision's rows do)."""
    if len(numbers) and (numbers[1:] >= numbers[:-1]).all():
        new = np.r_[True, numbers[1:] != numbers[:-1]]
        return numbers[new], np.cumsum(new) - 1
    starts, codes = np.unique(numbers, return_inverse=True)
    return starts, codes.reshape(-1)


def trough_minutes(rows: pd.DataFrame, long_bins: pd.DataFrame, longest: int) -> int:
    """The shortest bin (30 or 60 min, else ``longest``) whose minimum is a real trough.

    A bin shorter than the GC sawtooth's period mostly sees part of one ramp, so its lowest point
    sits at one of its ends; a bin that spans a whole cycle has its lowest point anywhere inside.
    The slow trend (a leak) is taken out first, through the troughs of the longest bins
    (``long_bins``, from ``troughs(rows, longest)``), so that a clean steady climb is not mistaken for
    a ramp.
    """
    typical = typical_memory(rows)
    stamps = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8
    finite = np.isfinite(typical)
    typical, stamps = typical[finite], stamps[finite]
    if len(typical) < 24 or long_bins.empty:
        return longest
    centres = pd.DatetimeIndex(long_bins.index).as_unit("ns").asi8 + pd.Timedelta(minutes=longest).value // 2
    residual = typical - np.interp(stamps, centres, long_bins["trough"].to_numpy(dtype=np.float64))
    for minutes in (30, 60):
        if minutes >= longest:
            break
        _, first, counts = np.unique(stamps // pd.Timedelta(minutes=minutes).value, return_index=True,
                                     return_counts=True)
        full = counts >= 4
        if full.sum() < 12:
            break
        chunks = (residual[start:start + count] for start, count in zip(first[full], counts[full], strict=True))
        at_edge = [bool(values[0] <= values.min() or values[-1] <= values.min()) for values in chunks]
        if np.mean(at_edge) <= np.mean(2.0 / counts[full]) + 0.2:
            return minutes
    return longest


def _split_points(y: FloatArray, drop_floor: float, jump_floor: float) -> list[int]:
    """Indices where a new segment starts: resets and steps, judged against the troughs' own
    bin-to-bin noise around their typical change.

    A leak's troughs rise in many small steps and fall in a few large ones (an OOM kill or the
    replacement of old instances), so drops are split at a lower threshold than rises; a rise far
    above the typical change is a level step, not part of a climb.
    """
    if len(y) < 3:
        return []
    diffs = np.diff(y)
    typical = float(np.median(diffs))
    noise = 1.4826 * float(np.median(np.abs(diffs - typical)))
    deviation = diffs - typical
    drops = deviation < -max(3.0 * noise, drop_floor)
    jumps = deviation > max(6.0 * noise, jump_floor)
    return [int(i) + 1 for i in np.flatnonzero(drops | jumps)]


OOM_LEVEL = 0.97  # the worst instance at the limit (its top bucket at this share of it): OOM-killed or about to be


def _oom_resets(y: FloatArray, peak: FloatArray, drop_floor: float) -> list[int]:
    """Indices where a new segment starts after an OOM kill: the worst instance was at the limit in one
    of the two bins before, and its peak then fell with the troughs dropping by half ``drop_floor`` or
    more, or the troughs dropped by ``drop_floor`` or more whatever the peak did.
    Such a drop is often spread over two bins (the killed instance's replacement, then the next one), and
    each step alone stays inside the bin-to-bin noise that ``_split_points`` asks a reset to leave; a leak
    cycling through OOM kills then read as one bounded sawtooth. The peak need not fall when another
    instance is at the limit in the same bin: on bins aligned to a revision's first row, a flipped leak's
    first kill (the worst trough 87 % -> 79 % of the limit, the peak held at 100 %) went unsplit, its first
    segment ran on through a day pinned at the limit and the climb was dated at the deploy, 15 h before the
    flip (255300-0134). Seventeen development draws: two flips dated within 2 h that were not, nothing
    lost; delay and negative cuts on four draws identical."""
    if len(y) < 3:
        return []
    at_limit = np.nan_to_num(peak, nan=0.0) >= OOM_LEVEL
    fell = np.nan_to_num(peak[1:], nan=1.0) < np.nan_to_num(peak[:-1], nan=0.0)  # fell[i - 1]: into bin i
    i = np.arange(2, len(y))
    drop = y[i - 1] - y[i]
    resets = (at_limit[i - 2] | at_limit[i - 1]) & ((fell[i - 1] & (drop > drop_floor / 2)) | (drop > drop_floor))
    return [int(k) for k in i[resets]]


def _segments(n: int, splits: list[int], min_len: int) -> list[tuple[int, int]]:
    edges = [0, *splits, n]
    return [(a, b) for a, b in pairwise(edges) if b - a >= min_len]


LOAD_FIT_HOURS = 48.0  # a revision's own data separate its load effect from its trend over two days


def _load_adjusted(hours: FloatArray, y: FloatArray, load: FloatArray, segs: list[tuple[int, int]],
                   learned: float | None = None) -> FloatArray:
    """Remove the part of the troughs explained by load per instance. Over less than
    ``LOAD_FIT_HOURS`` a day's traffic mostly rises or falls with time, and a fit of both cannot tell
    them apart: the slope ``learned`` from the service's other revisions (``service_load_slopes``,
    trough per unit of load) is taken when there is one; otherwise, and over longer spans, the load
    effect is fitted jointly with time (given 24 bins; with fewer, nothing is removed)."""
    if not np.isfinite(load).all() or np.nanstd(load) <= 0:
        return y
    if learned is not None and hours[-1] - hours[0] < LOAD_FIT_HOURS:
        return cast(FloatArray, y - max(learned, 0.0) * (load - load.mean()))
    if len(y) < 24:
        return y  # too few bins to tell a load effect from the trend
    columns = [hours, (load - load.mean()) / load.std()]
    for a, b in segs[1:]:
        indicator = np.zeros(len(y))
        indicator[a:b] = 1.0
        columns.append(indicator)
    design = np.column_stack([np.ones(len(y)), *columns])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    load_coef = float(coef[2])
    # Only remove a positive load effect (more in-flight work, more memory); never invent one.
    adjusted: FloatArray = y - max(load_coef, 0.0) * columns[1]
    return adjusted


def _pooled_trend(hours: FloatArray, y: FloatArray, segs: list[tuple[int, int]]) -> tuple[float, float, float]:
    """Within-segment Theil–Sen slope (per hour), Mann–Kendall p-value, effective sample size."""
    slopes: list[FloatArray] = []
    s_total = 0.0
    var_total = 0.0
    n_eff = 0.0
    for a, b in segs:
        x, v = hours[a:b], y[a:b]
        pairwise = stats.Pairwise.of(x, v)
        slopes.append(pairwise.slopes)
        trend = stats.mann_kendall(x, v, pairwise)
        n = len(v)
        s_total += float(np.sign(pairwise.dy).sum())
        factor = n / trend.n_effective
        var_total += n * (n - 1) * (2 * n + 5) / 18.0 * factor
        n_eff += trend.n_effective
    if not slopes or var_total <= 0:
        return 0.0, 1.0, 0.0
    slope = float(np.median(np.concatenate(slopes)))
    z = (s_total - 1.0) / math.sqrt(var_total) if s_total > 0 else 0.0
    return slope, 0.5 * math.erfc(z / math.sqrt(2.0)), n_eff


@dataclass(frozen=True, slots=True)
class _Gates:
    """What a climb must also show besides its slope, judged only when asked (``_SignalTrend``)."""

    keeps_climbing: bool  # not a warm-up or cache fill that levels off
    resets_explained: bool  # the splits are resets we believe (OOM kills), or the climb shows without them
    # Explained only by day-long climbs between resets well below the limit (``_climbs_between_resets``)
    resets_by_climbs: bool = False
    peaks_follow: bool = True  # the worst instance's peaks climb with its troughs (``_peaks_follow``)
    # The measured troughs rise too, by RAW_FOLLOWS of what the load-adjusted pace predicts or more
    measured_climb: bool = True


@dataclass(frozen=True, slots=True)
class _SignalTrend:
    name: str  # TYPICAL or WORST
    slope: float  # per hour, fraction of the limit
    p_value: float
    covered: float  # hours inside segments
    positions: np.ndarray  # which bins the signal had values for
    segments: list[tuple[int, int]]  # over ``positions``
    adjusted: FloatArray  # over ``positions``
    onset_offset: int  # where the climb starts, over ``positions``
    # The gates, judged on first use: most revisions' troughs are flat, their slope and p-value fail
    # the test already, and the halves, plateau and reset checks would be work thrown away.
    judge: Callable[[], _Gates] = field(repr=False, compare=False)
    _gates: _Gates | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def gates(self) -> _Gates:
        if self._gates is None:
            object.__setattr__(self, "_gates", self.judge())
        return cast(_Gates, self._gates)

    @property
    def keeps_climbing(self) -> bool:
        return self.gates.keeps_climbing

    @property
    def resets_explained(self) -> bool:
        return self.gates.resets_explained

    @property
    def resets_by_climbs(self) -> bool:
        return self.gates.resets_by_climbs

    @property
    def rise(self) -> float:
        return self.slope * self.covered

    def passes(self, cfg: MemoryDetection) -> bool:
        return (self.p_value <= cfg.significance and self.slope * 24 >= cfg.min_slope_per_day
                and self.rise >= cfg.min_rise and self.covered >= cfg.min_duration_hours
                and self.keeps_climbing and self.resets_explained and self.gates.peaks_follow
                and self.gates.measured_climb)


OOM_RESET_LEVEL = 0.9  # a drop from this close to the limit is an OOM kill (or the replacement it forces)


LEVEL_OFF_MIN_BINS = 6  # the fewest troughs a rise-then-flat is told from a straight climb on


def levels_off(hours: FloatArray, y: FloatArray) -> bool:
    """A rise followed by a plateau below the limit (warm-up, cache fill) fits a slope-then-flat
    model much better than a straight line, with the flat part covering at least 40 % of the time.
    A plateau at the limit is a leak pinned there by GC thrash, not a warm-up."""
    n = len(y)
    if n < LEVEL_OFF_MIN_BINS:
        return False
    reverse = stats.hinge(hours[-1] - hours[::-1], y[::-1], min_after=3)
    flat_share = (reverse.index + 1) / n
    linear = max(stats.linear_sse(hours, y), 1e-12)
    better = n * math.log(linear / max(reverse.sse, 1e-12)) > 2 * math.log(n)
    return bool(flat_share >= 0.4 and better and reverse.slope < 0 and reverse.level < OOM_RESET_LEVEL)


def _signal_trend(name: str, hours: FloatArray, y: FloatArray, load: FloatArray, peak: FloatArray,
                  cfg: MemoryDetection, drop_floor: float, jump_floor: float,
                  learned: float | None = None) -> _SignalTrend | None:
    positions = np.flatnonzero(np.isfinite(y))
    if len(positions) < 6:
        return None
    trend = _trend_over(name, positions, hours, y, load, peak, cfg, drop_floor, jump_floor, learned)
    if trend is None or trend.onset_offset == 0:
        return trend
    # The climb starts later than the data (a flag flipped, a slow start): test it from its start.
    later = positions[trend.onset_offset:]
    if len(later) < 6:
        return trend
    from_onset = _trend_over(name, later, hours, y, load, peak, cfg, drop_floor, jump_floor, learned)
    if from_onset is None or from_onset.p_value > trend.p_value:
        return trend
    before = positions[:trend.onset_offset]
    if _another_cycle(y[before], peak[before], from_onset.rise):
        return trend
    return from_onset


def _another_cycle(before: FloatArray, peak: FloatArray, rise: float) -> bool:
    """A climb from a later start is another cycle of a tall sawtooth, not a flag flipped, when the
    troughs before it (``before``, six or more) fell from their highest so far at least as far as it
    rises (``rise``), far from the limit (no peak at ``OOM_RESET_LEVEL``: a leak's OOM kills fall that
    far too). A flipped flag climbs from a flat stretch. A big GC sawtooth's worst instance climbed
    36 % -> 53 % of the limit over its last 14 h after three such climbs and falls (628144-0008, its
    revision deployed before the window): read from that climb's start, 26 %/day. On sixteen
    development draws (3,200 scenarios) this cleaned that negative and two false findings on leaking
    revisions read from a later cycle (one of them then found at its onset), and lost one weak leak
    (900927-0103, 4.6 %/day: its worst instance fell two bucket steps before its last climb), at the
    same delay on four draws."""
    if len(before) < 6 or (np.nan_to_num(peak, nan=0.0) >= OOM_RESET_LEVEL).any():
        return False
    return float(np.nanmax(np.fmax.accumulate(before) - before)) >= rise


def _trend_over(name: str, positions: np.ndarray, hours: FloatArray, y: FloatArray, load: FloatArray,
                peak: FloatArray, cfg: MemoryDetection, drop_floor: float, jump_floor: float,
                learned: float | None = None) -> _SignalTrend | None:
    hours, y, load, peak = hours[positions], y[positions], load[positions], peak[positions]
    splits = sorted(set(_split_points(y, drop_floor, jump_floor)) | set(_oom_resets(y, peak, drop_floor)))
    segs = _segments(len(y), splits, min_len=4)
    if not segs:
        return None
    adjusted = _load_adjusted(hours, y, load, segs, learned)
    slope, p_value, _ = _pooled_trend(hours, adjusted, segs)
    covered = float(sum(hours[b - 1] - hours[a] for a, b in segs))
    first_a, first_b = segs[0]
    onset = first_a + _onset_index(hours[first_a:first_b], adjusted[first_a:first_b], 3)
    return _SignalTrend(name, slope, p_value, covered, positions, segs, adjusted, onset,
                        partial(_gates, name, hours, y, adjusted, peak, splits, segs, slope, covered, cfg))


def _gates(name: str, hours: FloatArray, y: FloatArray, adjusted: FloatArray, peak: FloatArray,
           splits: list[int], segs: list[tuple[int, int]], slope: float, covered: float,
           cfg: MemoryDetection) -> _Gates:
    """``_trend_over``'s climb (over its positions): does it keep climbing, are its resets believed, and
    (the worst instance's) do its peaks climb with it?"""
    # A warm-up or cache fill rises and then levels off; a leak keeps climbing.
    later = [((a + b) // 2, b) for a, b in segs if b - (a + b) // 2 >= 3]
    # A later half pinned at the limit (the oldest instance at OOM_RESET_LEVEL or above most of it) has
    # levelled off because of the limit, GC thrash and OOM kills, not as a warm-up does: judged without it.
    pinned = np.nan_to_num(peak, nan=0.0) >= OOM_RESET_LEVEL
    free = [(a, b) for a, b in later if np.mean(pinned[a:b]) < 0.5]
    keeps = any(not halves or _pooled_trend(hours, adjusted, halves)[0] >= slope / 3 for halves in (later, free))
    # The worst instance's troughs read in bucket steps can sit in one bucket, levelled off to the eye,
    # while its peaks go on climbing: the climb has not stopped, unless the peaks level off too.
    peaks_on = name == WORST and bool(later) and _peaks_keep_climbing(hours, peak, segs, later, slope, covered)

    def levelled(values: FloatArray) -> int:
        return sum(b - a for a, b in segs if b - a >= LEVEL_OFF_MIN_BINS and levels_off(hours[a:b], values[a:b]))

    level_off = min(levelled(adjusted), levelled(np.nan_to_num(peak, nan=0.0))) if peaks_on else levelled(adjusted)
    keeps = (keeps or peaks_on) and level_off < 0.5 * sum(b - a for a, b in segs)
    # Splitting at drops removes the falls of any sawtooth, so a bounded sawtooth would look like a
    # climb. Trust the splits when most drops come from near the limit (OOM kills), or when the
    # climb shows over the whole revision without them, at ``WHOLE_SHARE`` of the pace they give or more.
    near_limit = np.nan_to_num(peak, nan=0.0) >= OOM_RESET_LEVEL
    drops = [i for i in splits if y[i] < y[i - 1]]
    explained = not drops or bool(np.mean([near_limit[max(0, i - 3): i + 1].any() for i in drops]) >= 0.5)
    if not explained:
        whole = stats.mann_kendall(hours, adjusted)
        explained = bool(whole.p_value <= 0.05 and whole.slope * 24 >= cfg.min_slope_per_day / 2
                         and whole.slope >= WHOLE_SHARE * slope)
    by_climbs = not explained and _climbs_between_resets(hours, adjusted, segs, cfg)
    follow = name != WORST or _peaks_follow(hours, peak, segs, slope, covered)
    # The climb is the troughs', not the load term's: less load per instance lowers the expected trough,
    # so flat troughs after a busy spell read as a climb once load-adjusted. A leak's own troughs climb
    # (a falling load slows that, it does not stop it).
    measured = slope <= 0 or _measured_share(hours, y, segs, slope) >= RAW_FOLLOWS
    return _Gates(keeps, explained or by_climbs, by_climbs, follow, measured)


def _peaks_keep_climbing(hours: FloatArray, peak: FloatArray, segs: list[tuple[int, int]],
                         later: list[tuple[int, int]], slope: float, covered: float) -> bool:
    """The worst instance's climb goes on although its troughs' later halves are flat, or fit
    rise-then-flat (``levels_off``): read in bucket steps (about 4 % of the limit at 70 %), a slow leak's
    worst troughs can sit in one bucket for a day while its peaks, the most it held in each bin, keep
    rising. Believed when the peaks climb over those later halves at a third of ``slope`` (as the troughs
    are asked to), over the whole climb at ``PEAKS_FOLLOW`` of it, and sit below ``RUNTIME_CAP`` (a
    runtime's cap holds them level; a warm-up's or a GC sawtooth's peaks level off with its troughs, and
    ``_gates`` asks that the peaks do not fit rise-then-flat themselves: a day's cache fill lifts both).
    Judged over a day-long climb (``covered``, ``LONG_CLIMB_HOURS``), as ``_peaks_follow`` is: over hours,
    one bucket step of the peaks is a climb, and a warm-up's last hours read as a leak (798808-0137 cut
    8 h after its deploy). On ten development draws (2,000 scenarios) this found two strong leaks more
    and one weak (one deployed before the window: the worst troughs at 69 % for the last 15 h, the peaks
    from 79 % to 87 %), no false one, and no false leak at the negative cuts of six draws."""
    if covered < LONG_CLIMB_HOURS:
        return False
    level = np.nan_to_num(peak, nan=0.0)
    return bool(np.median(level) < RUNTIME_CAP and _pooled_trend(hours, level, later)[0] >= slope / 3
                and _pooled_trend(hours, level, segs)[0] >= PEAKS_FOLLOW * slope)


def _measured_share(hours: FloatArray, y: FloatArray, segs: list[tuple[int, int]], slope: float) -> float:
    """How much of the rise ``slope`` predicts the measured troughs show: per segment, the median of its
    last three troughs less that of its first three (fewer in a short segment), summed, over what the
    slope predicts between the same troughs' hours. Ends, not a fitted slope: the worst instance is read
    in bucket steps, and a slow climb of a step or two has a pairwise-median slope of nil."""
    got = want = 0.0
    for a, b in segs:
        k = min(3, (b - a) // 2)
        if k:
            got += float(np.median(y[b - k:b]) - np.median(y[a:a + k]))
            want += slope * float(np.median(hours[b - k:b]) - np.median(hours[a:a + k]))
    return got / want if want > 0 else 1.0


# A load-adjusted climb is believed when the measured troughs rise by this share of what its pace predicts
# or more (``_measured_share``). On seven development draws (1,400 scenarios) it removed one false leak (a
# batch service's worst instance, flat at 57.5 % for 12 h after its batch, "climbing" 5.8 %/day once its
# load fell) and no true one; at 0.5 the same, but for one false leak read from the other signal.
RAW_FOLLOWS = 0.25
# A climb split at drops far from the limit is believed on the whole revision's own rise when that rise is
# this share of the pooled pace of its segments or more (``_gates``). A revision seen for 47 h of its
# mid-life, its 30 min troughs climbing within each GC cycle and falling back (12 segments) while the
# whole revision rose a little with its traffic, read as a leak of 46 % of the limit a day, and took the
# next revision's leak from it as carried on (402788-0004). On sixteen development draws nothing moved;
# on 402788 that leak was found on its revision.
WHOLE_SHARE = 0.25


LONG_CLIMB_HOURS = 24.0  # far longer than a GC cycle or a diurnal swing
FAST_CLIMB_PER_DAY = 0.05  # a climb between resets this fast may follow a day-long one after half a day


def _climbs_between_resets(hours: FloatArray, y: FloatArray, segs: list[tuple[int, int]],
                           cfg: MemoryDetection) -> bool:
    """Instances replaced before they reach the limit (platform recycling, scale-in of the oldest)
    reset a leak's troughs well below it. Such resets are believed when at least two stretches between
    them last a day or more, every such stretch climbs on its own, and together they cover most of the
    revision: a GC sawtooth or a daily load swing does not climb for a whole day, again and again. Or
    when one stretch climbs for a day and the others of half a day or more each climb at least
    ``FAST_CLIMB_PER_DAY``: the leak's climb resumed at its pace after the reset, cut short by the end of
    the data or the next deploy, where a tall, slow GC sawtooth's cycles climb a few percent a day."""
    lengths = [float(hours[b - 1] - hours[a]) for a, b in segs]

    def climb(least_hours: float, floor: float) -> bool:
        picked = [(a, b) for (a, b), length in zip(segs, lengths, strict=True) if length >= least_hours]
        if len(picked) < 2:
            return False  # one climb after one drop does not show that drops are resets
        for a, b in picked:
            trend = stats.mann_kendall(hours[a:b], y[a:b])
            if trend.p_value > 0.05 or trend.slope * 24 < floor:
                return False
        return sum(length for length in lengths if length >= least_hours) >= 0.5 * sum(lengths)

    if climb(LONG_CLIMB_HOURS, cfg.min_slope_per_day):
        return True
    return max(lengths, default=0.0) >= LONG_CLIMB_HOURS and climb(
        LONG_CLIMB_HOURS / 2, max(cfg.min_slope_per_day, FAST_CLIMB_PER_DAY))


PEAKS_FOLLOW = 0.5  # a leak lifts the worst instance's peaks at no less than this share of its troughs' pace
RUNTIME_CAP = 0.85  # peaks held here or higher may be a runtime's own memory cap: not judged


def _peaks_follow(hours: FloatArray, peak: FloatArray, segs: list[tuple[int, int]], slope: float,
                  covered: float) -> bool:
    """A leak grows the live set under the whole sawtooth: the worst instance's peaks (the most memory it
    held in each bin) climb with its troughs. A tall GC sawtooth whose collector runs at a fixed
    threshold holds its peaks level while the worst instance's troughs climb for a day or more (after a
    deploy the fresh instances' garbage grows in step, one long cycle), which the trend test reads as a
    leak. Judged over a day-long climb (``LONG_CLIMB_HOURS``; over hours, the peaks of a fast leak
    lag its troughs by chance), and not where the peaks sit at ``RUNTIME_CAP`` of the limit or higher: a
    runtime's own cap (GOMEMLIMIT, a JVM's maximum heap, often set at 90 % of the container's) holds the
    peaks there while a leak lifts the troughs towards it. ``covered``: the climb's hours inside its
    segments (``_SignalTrend.covered``)."""
    inside = np.concatenate([np.arange(a, b) for a, b in segs])
    peaks = peak[inside]
    if slope <= 0 or covered < LONG_CLIMB_HOURS or not np.isfinite(peaks).any():
        return True
    level = float(np.nanmedian(peaks))
    if level >= RUNTIME_CAP:
        return True
    return _pooled_trend(hours, np.nan_to_num(peak, nan=level), segs)[0] >= PEAKS_FOLLOW * slope


def _significant(trend: _SignalTrend, cfg: MemoryDetection) -> bool:
    return (trend.p_value <= cfg.significance and trend.slope * 24 >= cfg.min_slope_per_day
            and trend.rise >= cfg.min_rise and trend.covered >= cfg.min_duration_hours)


def _onset_index(hours: FloatArray, y: FloatArray, min_after: int) -> int:
    """Where the climb starts: a flat-then-rising hinge, kept only when it beats a straight line by
    more than its two extra parameters are worth (BIC); otherwise the climb starts with the data."""
    n = len(y)
    if n < 6:
        return 0
    fit = stats.hinge(hours, y, min_after=min_after)
    linear = max(stats.linear_sse(hours, y), 1e-12)
    if n * math.log(linear / max(fit.sse, 1e-12)) > 2 * math.log(n):
        return fit.index
    return 0


@dataclass(frozen=True, slots=True)
class _Reading:
    """Both trough signals of one revision at one bin width."""

    bins: pd.DataFrame
    minutes: int  # bin width
    hours: FloatArray
    typical: _SignalTrend | None
    worst: _SignalTrend | None

    @classmethod
    def of(cls, bins: pd.DataFrame, minutes: int, cfg: MemoryDetection,
           learned: Mapping[str, float] | None = None) -> _Reading | None:
        """Both signals over ``bins`` (from ``troughs(rows, minutes)``); None when too few. ``learned``:
        each signal's load slope from the service's other revisions (``service_load_slopes``)."""
        learned = learned or {}
        if len(bins) < max(6, math.ceil(cfg.min_duration_hours * 60 / minutes)):
            return None
        hours = ((bins.index - bins.index[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        load = bins["load"].to_numpy(dtype=np.float64)
        peak = bins["peak"].to_numpy(dtype=np.float64)
        typical = _signal_trend(TYPICAL, hours, bins["trough"].to_numpy(dtype=np.float64), load, peak,
                                cfg, 0.02, max(cfg.min_rise, 0.02), learned.get(TYPICAL))
        # The worst instance is the oldest one: its memory keeps climbing under a leak even where new
        # instances keep the fleet's typical level down. It is read from the distribution's top bucket,
        # so it moves in bucket-sized steps: only large drops (a reset) and large jumps split it.
        worst = _signal_trend(WORST, hours, bins["worst"].to_numpy(dtype=np.float64), load, peak, cfg,
                              0.05, 0.10, learned.get(WORST))
        return cls(bins, minutes, hours, typical, worst)

    def choose(self, cfg: MemoryDetection) -> _SignalTrend | None:
        found = self.choices(cfg)
        return found[0] if found else None

    def choices(self, cfg: MemoryDetection) -> list[_SignalTrend]:
        """The signals that show a leak, the worst instance first."""
        typical, worst = self.typical, self.worst
        # Day-long climbs of the oldest instance between drops far below the limit are a leak reset by
        # replacements only if the fleet climbs too: alone, they are a slow, tall GC sawtooth's cycles.
        found = [worst] if worst is not None and worst.passes(cfg) and (
            not worst.resets_by_climbs or self.agrees(TYPICAL, cfg)) else []
        if typical is not None and typical.passes(cfg) and (worst is None or (
                worst.slope >= typical.slope / 2
                and (worst.keeps_climbing or typical.covered >= 2 * cfg.min_duration_hours))):
            # Under a leak the oldest instance climbs too. Over a short span, a fleet rise whose oldest
            # instance levels off is new instances warming up; over a longer one, the top bucket's
            # coarse steps can look level, so the fleet's climb is trusted.
            found.append(typical)
        return found

    def hints(self, cfg: MemoryDetection) -> bool:
        """Some signal climbs, if not yet conclusively: worth a closer look."""
        return any(t is not None and t.p_value <= 0.05 and t.slope * 24 >= cfg.min_slope_per_day / 2
                   for t in (self.typical, self.worst))

    def signal(self, name: str) -> _SignalTrend | None:
        return self.typical if name == TYPICAL else self.worst

    def agrees(self, name: str, cfg: MemoryDetection) -> bool:
        trend = self.signal(name)
        return trend is not None and trend.p_value <= 0.05 and trend.slope * 24 >= cfg.min_slope_per_day / 2


SHORT_READING_BINS = 12  # fewer long bins than this cannot show a climb levelling off


def _holds_to_end(trend: _SignalTrend, reading: _Reading, cfg: MemoryDetection) -> bool:
    """The climb's last third still rises at half its overall pace, in the troughs as measured and
    as adjusted for load (a warm-up or cache fill has flattened by then), or the worst instance's peaks
    over it still rise at the climb's full pace, or the oldest instance is pinned near the limit. A
    significant climb of the worst instance is read over at least the hours half its pace takes to climb
    one bucket step (``_bucket_tail``) while the fleet's typical troughs hold to their end too.

    The peaks: a leak's troughs read at 30 or 60 minutes can stall over the last few hours by chance (a
    fresh instance, a quiet hour) while the oldest instance's peaks, the most it held in each bin, go on
    climbing; a warm-up's peaks level off with its troughs. On ten development draws, of the 40 fine
    readings this check held back (29 on revisions without a leak, mostly warm-ups), the peaks rose at the
    climb's pace over the tail on 3 strong leaks and one revision without a label, and at no warm-up."""
    a, b = trend.segments[-1]
    tail = max(6, (b - a) // 3)
    if b - a < tail:
        return trend.keeps_climbing
    if trend.name == WORST and trend.passes(cfg):
        longer = min(_bucket_tail(reading, trend), b - a)
        if longer > tail and _fleet_holds(reading, cfg):
            tail = longer
    if len(trend.segments) > 1:
        # A climb begun again after a reset (an OOM kill, the replacement of old instances) is read over
        # a day where it has one: a per-request leak grows with traffic, so a night's tail is flat
        # without the climb having levelled off (a warm-up's one climb is read over its last third).
        tail = max(tail, min(round(24 * 60 / reading.minutes), b - a))
    picked = trend.positions[b - tail:b]
    hours = reading.hours[picked]
    measured = reading.bins[COLUMN[trend.name]].to_numpy(dtype=np.float64)[picked]
    rising = all(stats.theil_sen(hours, values)[0] >= trend.slope / 2
                 for values in (measured, trend.adjusted[b - tail:b]))
    peaks = reading.bins["peak"].to_numpy(dtype=np.float64)[picked]
    known = np.isfinite(peaks)
    peaks_on = known.sum() >= 3 and stats.theil_sen(hours[known], peaks[known])[0] >= trend.slope
    oldest = reading.bins["worst"].to_numpy(dtype=np.float64)[picked]
    return bool(rising or peaks_on or np.nanmedian(oldest) >= OOM_RESET_LEVEL)


def _fleet_holds(reading: _Reading, cfg: MemoryDetection) -> bool:
    """The fleet's typical troughs, read as measured (not in bucket steps), still climb at their end
    (``_holds_to_end`` on their own pace): where the worst instance's steps cannot say whether its climb
    levelled off, the fleet's can say it did. (Of the eight false leaks the longer tail alone reported at
    report runs hours after a deploy on eight development draws, the fleet had levelled off in three.)"""
    typical = reading.typical
    return typical is not None and _holds_to_end(typical, reading, cfg)


def _bucket_tail(reading: _Reading, trend: _SignalTrend) -> int:
    """The bins it takes half the worst instance's climbing pace to lift it one bucket step at its
    level. Read from the top bucket, a steady climb over a shorter tail shows one step or none, so
    whether its last third "levelled off" depended on where the steps fell: a leak of 10 % of the limit a
    day read over 18 h in 30-minute bins held to its end at two of eight phases of the bucket grid
    (985119-0100: a 9 %/day leak fixed after 18 h, its last 5.5 h one step then flat, Theil-Sen 0, and
    not reported). Asked only of a climb significant on its own (a warm-up's flat hours weaken its test
    first) and while the fleet's troughs still climb (``_fleet_holds``). On twenty-one development draws
    nine leaks fixed after 13-23 h found, no finding lost or added (strong leaks 1,134 -> 1,139 of 1,232);
    strong leaks found by +9 / +12 / +18 h 662 / 796 / 887 -> 671 / 805 / 903 of 1,020 (twenty draws);
    false leaks at report runs after a deploy 73 -> 78 of 7,833 (eight draws; four are one data-gaps
    scenario's 26 h revision, its worst instance climbing 4.8 %/day, at four runs)."""
    values = reading.bins[COLUMN[trend.name]].to_numpy(dtype=np.float64)[trend.positions]
    level = float(np.nanmedian(values[-3:])) if np.isfinite(values[-3:]).any() else math.nan
    step = bucket_step(values) * level
    if not step > 0 or trend.slope <= 0:
        return 0
    return math.ceil(step / (trend.slope / 2) * 60.0 / reading.minutes)


YOUNG_HOURS = 36.0  # a revision this young may still be warming up
LOOKBACK = 5  # earlier revisions searched for one that lived as long as this one has


def _rises_like_before(view: ServiceView, span: RevisionSpan, mine: pd.DataFrame, signal: str,
                       config: DetectionConfig, flagged: Collection[str]) -> bool:
    """A young revision whose memory (the climbing signal) rose no more than an earlier revision's did
    at the same age, or rose only back up to the level an earlier revision sat at by that age (by its
    end, if it served less): the service warms up this way after its deploys (caches, JIT), and a new
    revision is judged against that, not against a flat line. Rises are compared with the last few
    earlier revisions that served at least half as long as this one has, levels with any of them (a
    shorter one's level at its end is lower than it would have reached). A leak rises
    further than the usual warm-up, and one that does not is reported once it outlasts it. ``mine``
    is this revision's ``troughs`` at the configured (long) width. Revisions named in ``flagged`` (with a
    finding or a leak candidate of their own) are never the yardstick: a leak they carried is not
    what this service does after a deploy."""
    earlier = earlier_without(view, span, flagged)
    return _rises_like(view, mine, signal, config, earlier[-LOOKBACK:])


def rises_like_before(view: ServiceView, span: RevisionSpan, config: DetectionConfig, flagged: Collection[str],
                      signal: str) -> bool:
    """``_rises_like_before`` on ``span``'s long troughs: for a climb another test found."""
    return _rises_like_before(view, span, long_troughs(view, span, config), signal, config, flagged)


def rises_like_later(view: ServiceView, span: RevisionSpan, config: DetectionConfig, flagged: Collection[str],
                     signal: str) -> bool:
    """``_rises_like_before`` against the next few revisions instead: what the service does after a
    deploy, seen after this one (for the first revision deployed in the window, the only yardstick
    there is). ``flagged``: revisions with a finding or a leak candidate, never the yardstick."""
    later = [new for new in view.spans[view.spans.index(span) + 1:] if new.name not in flagged]
    return _rises_like(view, long_troughs(view, span, config), signal, config, later[:LOOKBACK])


def _rises_like(view: ServiceView, mine: pd.DataFrame, signal: str, config: DetectionConfig,
                yardsticks: list[RevisionSpan]) -> bool:
    """A young revision's rise (``mine``: its long troughs) against each yardstick's at the same age.

    Levels are compared as held for two bins after the first two (``_held_high``), its and theirs: the
    highest this revision's troughs got against the higher of where the yardstick sat at this age and
    the highest it had held by then. A revision that never got above what the service's earlier
    revisions reached at its age did not leak, whatever its climb test read; a single bin is a bucket
    step or a busy hour, and a leak cycling through OOM kills ends low after its last reset, so neither
    its end alone nor one bin is its level. Before, the end was compared with the level at the same age
    only, and a revision whose troughs did not rise end to end not at all: on sixteen development draws
    (3,200 scenarios) this cleaned three warm-up negatives (798808-0068: typical troughs 27 % → 22 % →
    24 % of the limit, a climb of 7 %/day on two segments; 900927-0170 and 114769-0044: a worst
    instance wandering over three buckets, which the earlier revisions wandered over too), found one
    weak leak more and lost one (628144-0110, 2.8 %/day, within its predecessor's wander) at the same
    delay on four draws (``tests/test_warmup_negatives.py``)."""
    column = COLUMN[signal]
    if len(mine) < 3:
        return False
    age = (mine.index[-1] - mine.index[0]) / pd.Timedelta(hours=1)
    own = mine[column].to_numpy(dtype=np.float64)
    own_end = float(np.nanmedian(own[-2:]))
    own_rise = own_end - float(np.nanmedian(own[:2]))
    if age >= YOUNG_HOURS:
        return False
    own_level = max(own_end, _held_high(own[2:]))
    for yardstick in yardsticks:
        theirs = long_troughs(view, yardstick, config)
        if len(theirs) < 3:
            continue
        since = ((theirs.index - theirs.index[0]) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        # At this one's age, or at its own end if it served less (a warm-up only slows down later).
        reached = min(age, float(since[-1]))
        level = theirs[column].to_numpy(dtype=np.float64)
        same_age = (since >= reached - 2.0) & (since <= reached + 1.0)
        at_age = float(np.nanmedian(level[same_age]))
        held = level[2:][since[2:] <= reached + 1.0]
        got_to = max(at_age, _held_high(held)) if len(held) >= 2 else at_age
        # Climbed from a colder start back to no higher than the yardstick got by this age: a
        # warm-up, however steep, not a leak. For the worst instance, read from the top bucket in
        # steps, "no higher" is within half a step: the median of two troughs a step apart sits half a
        # step above the lower.
        step = bucket_step(np.concatenate([own, level])) if signal in BUCKETED else 0.0
        if own_level <= got_to * (1.0 + step / 2.0):
            return True
        if since[-1] < age / 2 or not own_rise > 0:
            continue  # too short-lived to show this service's warm-up (or no rise to compare)
        if at_age - np.nanmedian(level[:2]) >= 0.6 * own_rise:
            return True
    return False


def _held_high(levels: FloatArray) -> float:
    """The highest level held for two bins: the highest mean of two neighbouring troughs (else the
    highest trough; -inf without one)."""
    pairs = (levels[1:] + levels[:-1]) / 2.0
    for values in (pairs, levels):
        if np.isfinite(values).any():
            return float(np.nanmax(values))
    return -math.inf


def bucket_step(levels: FloatArray) -> float:
    """The relative step between the levels a signal read from a distribution's buckets takes (the
    median ratio of neighbouring distinct levels, less one): about 4.7 % for the worst instance under
    exponential buckets growing by 10^0.02. Measured, not assumed: the bucket layout is the metric's."""
    distinct = np.unique(levels[np.isfinite(levels) & (levels > 0)])
    if len(distinct) < 3:
        return 0.0
    return float(np.median(distinct[1:] / distinct[:-1])) - 1.0


def long_troughs(view: ServiceView, span: RevisionSpan, config: DetectionConfig) -> pd.DataFrame:
    """``troughs`` of ``span``'s rows after its warm-up at the configured (long) width, kept on the view:
    the revision's own leak test, the warm-up comparison of the revisions after it and the load term
    of the service's young revisions all read them. Callers must not modify the frame."""
    minutes = config.memory.trough_window_minutes
    key = ("long troughs", span.name, minutes, config.warmup_minutes)
    if key not in view.derived:
        rows = between(view.revision_rows(span.name), span.first_seen + pd.Timedelta(minutes=config.warmup_minutes))
        view.derived[key] = troughs(rows, minutes)
    return cast(pd.DataFrame, view.derived[key])


def detect_leak(view: ServiceView, span: RevisionSpan, config: DetectionConfig, *,
                flagged: Collection[str] = ()) -> LeakEvidence | None:
    """The leak evidence of ``span`` (confirmed, or a candidate that failed a gate), or None. ``flagged``
    names earlier revisions that had a finding or a leak candidate: they are not warm-up references."""
    cfg = config.memory
    rows = view.revision_rows(span.name)
    rows = between(rows, span.first_seen + pd.Timedelta(minutes=config.warmup_minutes))
    if np.isnan(typical_memory(rows)).all():  # neither the mean nor the median anywhere
        return None
    long_bins = long_troughs(view, span, config)
    young = len(rows) > 0 and (rows["ts"].iloc[-1] - rows["ts"].iloc[0]) / pd.Timedelta(hours=1) < LOAD_FIT_HOURS
    learned = service_load_slopes(view, span, config, flagged) if young else None
    coarse = _Reading.of(long_bins, cfg.trough_window_minutes, cfg, learned)
    chosen = coarse.choose(cfg) if coarse else None
    reading = coarse
    short = coarse is None or len(coarse.bins) < SHORT_READING_BINS
    fine: _Reading | None = None
    if short or (chosen is None and coarse is not None and coarse.hints(cfg)):
        # Bins as long as the slowest sawtooth need half a day before they can show anything. Where
        # this revision's sawtooth is short, shorter bins see hours more, both ways: a fast leak
        # sooner, and a cache fill flattening out that a handful of long bins still read as a climb.
        minutes = trough_minutes(rows, long_bins, cfg.trough_window_minutes)
        fine = (_Reading.of(troughs(rows, minutes), minutes, cfg, learned)
                if minutes < cfg.trough_window_minutes else None)
    if fine is not None and chosen is not None and short:
        seen = fine.signal(chosen.name)
        if seen is not None and not _holds_to_end(seen, fine, cfg):
            chosen = None  # levelled off: kept as an unconfirmed candidate
    elif fine is not None and chosen is None:
        for pick in fine.choices(cfg):
            if _holds_to_end(pick, fine, cfg) and (coarse is None or coarse.agrees(pick.name, cfg)):
                reading, chosen = fine, pick
                break
    if reading is None:
        return None
    if chosen is None and coarse is not None and reading is coarse:
        first = _first_climb_to_limit(view, span, coarse, config, flagged, learned)
        if first is None:
            first = _first_long_climb(view, span, coarse, config, flagged, learned)
        if first is not None:
            chosen = first
    if chosen is not None and _rises_like_before(view, span, long_bins, chosen.name, config, flagged):
        chosen = None  # what this service does after every deploy: kept as an unconfirmed candidate
    confirmed = chosen is not None
    if chosen is None:
        candidates = [t for t in (reading.worst, reading.typical) if t is not None and _significant(t, cfg)]
        if not candidates:
            return None
        chosen = min(candidates, key=lambda t: t.p_value)
    at_deploy_hours = max(2.0, config.warmup_minutes / 60 + 1.0)
    dated, signal = _dating(rows, reading, chosen, cfg, learned)
    start_hours = _onset_hours(dated, signal, cfg)
    bins = dated.bins
    if start_hours > at_deploy_hours:
        start_hours = _later_start_on_hourly_troughs(rows, long_bins, dated, chosen.name, start_hours, cfg, learned)
    onset_at_deploy = start_hours <= at_deploy_hours
    onset = span.deploy_time if onset_at_deploy else (bins.index[0] + pd.Timedelta(hours=start_hours)).round("min")
    # The levels and troughs shown are the chosen signal's: a finding on the worst instance reads
    # "climb 12 % a day (from 40 % to 60 %)" in its own troughs, not the typical instance's.
    levels = bins[COLUMN[chosen.name]]
    levels = levels[levels.notna()]
    y = levels.to_numpy(dtype=np.float64)
    return LeakEvidence(
        revision=span.name,
        onset=onset,
        signal=chosen.name,
        slope_per_day=chosen.slope * 24,
        rise=chosen.rise,
        p_value=chosen.p_value,
        hours=chosen.covered,
        trough_start=float(np.median(y[:3])),
        trough_end=float(np.median(y[-3:])),
        trough_high=float(np.max(y)),
        peak_end=_nanmax(bins["peak"].to_numpy()[-3:]),
        peak_max=_nanmax(bins["peak"].to_numpy()),
        segments=len(chosen.segments),
        onset_at_deploy=bool(onset_at_deploy),
        troughs=levels.astype(np.float64),
        fit_slope_per_hour=chosen.slope,
        confirmed=confirmed,
    )


def _first_climb_to_limit(view: ServiceView, span: RevisionSpan, reading: _Reading, config: DetectionConfig,
                          flagged: Collection[str], learned: Mapping[str, float] | None) -> _SignalTrend | None:
    """The worst instance's climb from the first bin to where it first reached the limit (its trough at
    ``OOM_RESET_LEVEL``, else its peak at ``OOM_LEVEL``: ``_limit_reached``), when that climb passes the
    trend test on its own and no earlier revision's worst instance ever reached it (a service that lives
    there is judged by the trend alone).

    A leak fast enough to fill the limit within a day or two leaves little climb for the trend test
    after that: the platform replaces instances of every age, so the oldest one hovers near the limit
    (its troughs at 83-95 %, stepping down by less than a reset) for the rest of the revision, and the
    slope pooled over all of it is nil. Its first climb, from the deploy to the limit, is the leak."""
    cfg = config.memory
    ends = [end for end in _limit_reached(reading.bins) if end >= 3]
    if not ends:
        return None
    earlier = earlier_without(view, span, flagged)
    if any(_limit_reached(long_troughs(view, old, config)) for old in earlier):
        return None
    for end in ends:
        trend = _worst_up_to(reading, end, cfg, learned)
        if trend is not None and trend.passes(cfg):
            return trend
    return None


def _worst_up_to(reading: _Reading, end: int, cfg: MemoryDetection,
                 learned: Mapping[str, float] | None) -> _SignalTrend | None:
    """The worst instance's trend over ``reading``'s bins from the first to ``end``, read on its own: a
    first climb (to the limit, or to where the oldest instance was replaced) tested alone."""
    climb = _Reading.of(reading.bins.iloc[:end + 1], reading.minutes, cfg, learned)
    return climb.worst if climb is not None else None


def _first_long_climb(view: ServiceView, span: RevisionSpan, reading: _Reading, config: DetectionConfig,
                      flagged: Collection[str], learned: Mapping[str, float] | None) -> _SignalTrend | None:
    """The worst instance's climb from the first bin to its highest trough, when that climb lasted a day
    or more (``LONG_CLIMB_HOURS``), passes the trend test on its own as one segment, and was ended by a
    drop: the troughs after it sit a bucket step or more below (the oldest instance replaced), not level
    at the top (a warm-up's plateau). Unless an earlier revision of the service (none in ``flagged``)
    climbed so too: then it is what this service does.

    A leak whose oldest instance is replaced well below the limit (platform recycling, scale-in of the
    oldest) leaves a drop too small to split the troughs at, and a flat or falling tail of younger
    instances after it: the slope pooled over the revision fades under the bar and its last half reads
    as levelled off (444163-0105: the worst instance 35 % -> 55 % of the limit over 34 h, 12 %/day, its
    peaks 44 % -> 63 %; replaced, then 46-50 % for 20 h; not reported). Asked of the climb itself
    (``covered``), not of the hours before its top: a later start found inside them (a night's hump of
    a tall GC sawtooth after a flat day) is hours long."""
    climb = _long_climb(reading, config.memory, learned)
    if climb is None:
        return None
    earlier = earlier_without(view, span, flagged)
    for old in earlier:
        theirs = _Reading.of(long_troughs(view, old, config), reading.minutes, config.memory, learned)
        if theirs is not None and _long_climb(theirs, config.memory, learned) is not None:
            return None
    return climb


def _long_climb(reading: _Reading, cfg: MemoryDetection, learned: Mapping[str, float] | None) -> _SignalTrend | None:
    """``_first_long_climb``'s test of one reading, without the look at earlier revisions: the worst
    instance's trend from the first bin to the last bin at its highest trough, or None."""
    worst = np.nan_to_num(reading.bins["worst"].to_numpy(dtype=np.float64), nan=0.0)
    top = float(worst.max(initial=0.0))
    end = int(np.flatnonzero(worst >= top)[-1]) if top > 0 else 0
    if end == 0 or end >= len(worst) - 1 or reading.hours[end] < LONG_CLIMB_HOURS:
        return None
    if np.median(worst[end + 1:]) > top / (1.0 + bucket_step(worst)) + 1e-9:
        return None  # level at the top after it: no drop
    trend = _worst_up_to(reading, end, cfg, learned)
    if (trend is not None and len(trend.segments) == 1 and trend.covered >= LONG_CLIMB_HOURS
            and trend.passes(cfg)):
        return trend
    return None


def _limit_reached(bins: pd.DataFrame) -> list[int]:
    """The bins where the worst instance first reached the limit, the surer sign first: its trough at
    ``OOM_RESET_LEVEL`` (it sat there), then its peak at ``OOM_LEVEL`` (it touched the limit: killed, or
    about to be). Read in buckets, a worst instance cycling through OOM kills can hold its troughs a step
    under ``OOM_RESET_LEVEL`` (87 %) while its peaks hit 100 % again and again (114769-0159: thirteen OOM
    kills, no leak reported)."""
    ends = []
    for column, level in (("worst", OOM_RESET_LEVEL), ("peak", OOM_LEVEL)):
        at = np.flatnonzero(np.nan_to_num(bins[column].to_numpy(dtype=np.float64), nan=0.0) >= level)
        if at.size:
            ends.append(int(at[0]))
    return ends


LEARN_MIN_BINS = 12  # a revision teaches the service's load term once it served this many long bins (a day)


def service_load_slopes(view: ServiceView, span: RevisionSpan, config: DetectionConfig,
                        flagged: Collection[str]) -> dict[str, float]:
    """Each trough signal's change per unit of load per instance, learned from the service's other
    revisions (not ``span``, none in ``flagged``) that served ``LEARN_MIN_BINS`` long bins or more:
    the least-squares slope of each revision's troughs on its load, both taken about that revision's
    own straight line in time (so revisions at different levels do not count as load, and neither does
    a leak of a later revision not judged yet, whose climb and traffic may both trend), pooled; only a
    positive slope is kept (more in-flight work, more memory). A signal no such revision shows is left
    out."""
    pooled: dict[str, list[tuple[FloatArray, FloatArray]]] = {TYPICAL: [], WORST: []}
    for other in view.spans:
        if other.name != span.name and other.name not in flagged:
            for name, pair in _load_pairs(view, other, config).items():
                pooled[name].append(pair)
    return {name: slope for name, pairs in pooled.items() if (slope := stats.pooled_slope(pairs)) is not None}


def _load_pairs(view: ServiceView, span: RevisionSpan,
                config: DetectionConfig) -> dict[str, tuple[FloatArray, FloatArray]]:
    """Per signal, ``span``'s load and troughs (long bins after its warm-up), each less its own
    least-squares line in time; none when it served fewer than ``LEARN_MIN_BINS`` bins. Kept on the
    view: every young revision of the service asks for them."""
    key = ("load pairs", span.name, config.memory.trough_window_minutes, config.warmup_minutes)
    if key not in view.derived:
        bins = long_troughs(view, span, config)
        load = bins["load"].to_numpy(dtype=np.float64)
        hours = ((pd.DatetimeIndex(bins.index) - span.first_seen) / pd.Timedelta(hours=1)).to_numpy(dtype=np.float64)
        pairs = {}
        for name in (TYPICAL, WORST):
            y = bins[COLUMN[name]].to_numpy(dtype=np.float64)
            keep = np.isfinite(y) & np.isfinite(load)
            if keep.sum() >= LEARN_MIN_BINS:
                pairs[name] = (stats.line_residuals(hours[keep], load[keep]),
                               stats.line_residuals(hours[keep], y[keep]))
        view.derived[key] = pairs
    return cast(dict[str, tuple[FloatArray, FloatArray]], view.derived[key])


def _dating(rows: pd.DataFrame, reading: _Reading, chosen: _SignalTrend, cfg: MemoryDetection,
            learned: Mapping[str, float] | None) -> tuple[_Reading, _SignalTrend]:
    """The reading whose bins start at the first row after the warm-up, for dating the onset: a bin
    of the epoch's grid that holds only the end of its step has fewer points, so its minimum sits
    higher, and the first one after a deploy reads as a dip followed by a later climb. The detection
    itself keeps the grid's bins (what was found does not change, only when it started)."""
    return _aligned(rows, reading.minutes, chosen.name, cfg, learned) or (reading, chosen)


def _aligned(rows: pd.DataFrame, minutes: int, name: str, cfg: MemoryDetection,
             learned: Mapping[str, float] | None) -> tuple[_Reading, _SignalTrend] | None:
    """The reading of ``minutes`` bins that start at the first row after the warm-up, and its signal
    ``name`` (None when either is missing): what onsets are dated on."""
    reading = _Reading.of(troughs(rows, minutes, from_first=True), minutes, cfg, learned)
    signal = reading.signal(name) if reading is not None else None
    return (reading, signal) if reading is not None and signal is not None else None


HOURLY_REDATING_HOURS = 6.0  # how far hourly troughs may move a later start found on longer bins


def _later_start_on_hourly_troughs(rows: pd.DataFrame, long_bins: pd.DataFrame, dated: _Reading, name: str,
                                   start_hours: float, cfg: MemoryDetection,
                                   learned: Mapping[str, float] | None) -> float:
    """A climb that starts after the deploy (a flag flipped later), found on bins longer than an hour:
    dated between that start and the one hourly troughs find, where the sawtooth lets an hour's minimum
    be a trough (``trough_minutes``) and the hourly fit's start lies within ``HOURLY_REDATING_HOURS``
    of it. The two readings err in different ways: 2 h bins read the worst instance in bucket steps,
    and a step in the bin before the flip put the start hours early; hourly troughs have twice the
    points around the flip but follow the day's traffic more, and on a service whose troughs swung 6 %
    of the limit a day they put it 2.9 h early alone. Their mean: on ten development draws strong flips
    dated within 2 h 37 -> 40 of 75, memory TP +3, FP -3 (hourly alone: the same counts, and the
    swinging service's onset fixture failed). The hourly fit's start may be its first bin, a climb from
    the deploy: a per-request leak from its deploy at a quiet hour, its 2 h troughs flat for two bins
    and then climbing with the morning's traffic, read as a start 3.9 h in, and hourly troughs as a
    climb from the deploy (149585-0091; their mean 2.0 h in). Until the forty-third session a first-bin
    start was passed over; taken, one strong leak more within 2 h on sixteen development draws and
    nothing else moved, nor on data cut 3-48 h after each onset (fourteen of them)."""
    if dated.minutes <= 60 or trough_minutes(rows, long_bins, cfg.trough_window_minutes) > 60:
        return start_hours
    aligned = _aligned(rows, 60, name, cfg, learned)
    if aligned is None:
        return start_hours
    hourly, signal = aligned
    hourly_start = _onset_hours(hourly, signal, cfg)
    moved = (hourly.bins.index[0] + pd.Timedelta(hours=hourly_start) - dated.bins.index[0]) / pd.Timedelta(hours=1)
    if abs(moved - start_hours) > HOURLY_REDATING_HOURS:
        return start_hours
    return (float(moved) + start_hours) / 2.0


ONSET_EVIDENCE = 10.0  # the later start must beat a climb from the first bin by this many log(n)


def _onset_hours(reading: _Reading, chosen: _SignalTrend, cfg: MemoryDetection) -> float:
    """Hours from the first bin to where the climb starts: one start shared by both trough signals
    (the chosen one, and the other when it agrees), each fitted flat-then-climbing with its own level,
    pace, noise and effect of load per instance (``stats.rising_ramp_errors``: more in-flight work
    holds more memory, so a first day's traffic lifts the troughs and lets them fall again, which a
    climb from the deploy would otherwise absorb; the worst instance can be a young instance for hours
    after a deploy, and the typical one's climb is diluted by fresh instances, so neither alone dates a
    leak well).

    The climb is fitted on two clocks, hours and requests served per instance (``request_clock``): a
    per-request leak grows with the traffic, so from its deploy it is a straight line in requests but a
    line that bends at each morning in hours, while a leak switched on later is flat, then climbing, on
    both. The start is the first bin unless a later one, on either clock, fits better than a climb from
    the first bin on either clock by ``ONSET_EVIDENCE`` · log(n) in 2·log likelihood ratio: BIC would
    ask log(n), but hourly troughs are autocorrelated, so a hinge beats a straight line by chance far
    more often than independent noise would let it. (A weaker bar, tried at 1-3 · log(n), dated leaks
    that began at their deploy hours late; see docs/detection-quality.md.) A worst instance already
    near the limit before the start means a leak that was under way when the data began: its first bin.

    Each signal is fitted on its first segment (``_climb_points``), and when that shows no later start,
    once more on every segment of its trend, each with a level of its own (``_segmented_points``), at
    the same bar. Asked in that order: on seven development draws the second reading dated two more
    flips within 2 h of their onset and moved no other finding across the 2 h line
    (docs/detection-quality.md, thirty-ninth session), but asked first it moved three flips the first
    segment dates right (onset fixtures) 5-15 h off. Either reading's later start is not taken when
    the worst instance's peak had already climbed to it (``_peak_climbed_before``: a leak from the
    deploy whose troughs hid it), and is taken under the bar, down to ``FLAT_PEAK_EVIDENCE``, when the
    peak held flat to it (``_peak_flat_before``). When neither reading shows a later start, a third
    fits the first segments again with the peak beside them (``_later_start_with_the_peak``)."""
    signals = [chosen]
    other = reading.signal(TYPICAL if chosen.name == WORST else WORST)
    if other is not None and reading.agrees(other.name, cfg):
        signals.append(other)
    first = float(reading.hours[0])
    climbs = [_climb_points(reading, signal) for signal in signals]
    if not _long_enough(climbs):
        return first
    start = _later_start(reading, climbs)
    if start is None:
        start = _later_start(reading, [_segmented_points(reading, signal) for signal in signals])
    if start is None:
        start = _later_start_with_the_peak(reading, climbs)
    return first if start is None or _at_limit_before(reading, start) else start


def _later_start(reading: _Reading, fits: list[_ClimbPoints]) -> float | None:
    """The start shared by the signals' climbs (``fits``: each signal's points) when one after the
    first bin beats a climb from the first bin by ``ONSET_EVIDENCE`` · log(n) on either clock
    (``_onset_hours``) and the peak had not climbed to it, or by ``FLAT_PEAK_EVIDENCE`` · log(n) and
    the peak held flat to it; else None."""
    fits = _long_enough(fits)
    best = _best_start(reading, fits)
    if best is None:
        return None
    start, gain = best
    if gain > ONSET_EVIDENCE:
        return None if _peak_climbed_before(reading, start) else start
    return start if gain > FLAT_PEAK_EVIDENCE and _peak_flat_before(reading, start, fits[0]) else None


def _later_start_with_the_peak(reading: _Reading, climbs: list[_ClimbPoints]) -> float | None:
    """The start shared by the signals' first segments and the peak over the same bins
    (``_peak_points``), when it beats a climb from the first bin by ``ONSET_EVIDENCE`` · log(n), comes
    ``PEAK_FLAT_HOURS`` or more after the first bin (or ``PEAK_SHORT_FLAT_HOURS`` or more, where the
    climb's own pace would have shown on the peak by then: ``_peak_would_have_shown``), and the peak
    neither climbed nor fell to it (else None): the onset's third reading. Before a flag flips every
    instance sits at the revision's own level, so the highest memory holds one bucket level for hours
    and climbs a step at a time from the flip, while the troughs follow the day's traffic around it
    and can hide the bend (146466-0157: troughs gaining 3.4 log(n) at their best start, 11 h early;
    with the peak, 12 log(n) within 2 h of the flip). A leak from its deploy can show the same shape in
    its first hours, the peak set by in-flight work until the leak outgrows it: on cut data three such
    leaks were dated 2.7-10 h after their deploys. The one dated 10 h late was slow (602260-0126: 5.5 %
    of the limit a day, its peak a step up every 12 h after that start), and a peak that holds flat for
    less than the time the climb takes to lift it says nothing. Fast flips 9-13 h after their deploys
    (15-30 % a day, 146466-0123, 900341-0051) were dated at the deploy while ``PEAK_FLAT_HOURS`` was
    asked of every start; with the pace asked under it, five more flips within 2 h on fourteen
    development draws, nothing else moved (docs/detection-quality.md, forty-second session). A peak
    that fell several steps before the start was an instance replaced under a leak already on
    (314416-0078, a leak from before the window; ``_peak_fell_before``). On eight development draws
    the reading dated two flips more within 2 h and moved nothing else (fortieth session)."""
    best = _best_start(reading, _long_enough([*climbs, _peak_points(reading, climbs[0])]))
    if best is None:
        return None
    start, gain = best
    flat = start - float(reading.hours[0])
    if gain <= ONSET_EVIDENCE or flat < PEAK_SHORT_FLAT_HOURS:
        return None
    if flat < PEAK_FLAT_HOURS and not _peak_would_have_shown(reading, start, climbs[0]):
        return None
    return None if _peak_climbed_before(reading, start) or _peak_fell_before(reading, start) else start


def _peak_points(reading: _Reading, climb: _ClimbPoints) -> _ClimbPoints:
    """The bins' peak (the highest memory of any instance) on the bins of ``climb``, as a signal."""
    column = reading.bins["peak"].to_numpy(dtype=np.float64)
    picked = np.flatnonzero(np.isin(reading.hours, climb.x))
    picked = picked[np.isfinite(column[picked])]
    return _points(reading, column, reading.bins["load"].to_numpy(dtype=np.float64), picked)


def _long_enough(fits: list[_ClimbPoints]) -> list[_ClimbPoints]:
    """The fits of ``MIN_ONSET_BINS`` points or more: a signal's start is fitted on no fewer."""
    return [fit for fit in fits if len(fit.y) >= MIN_ONSET_BINS]


def _best_start(reading: _Reading, fits: list[_ClimbPoints]) -> tuple[float, float] | None:
    """The start, on the onset's grid, shared by ``fits`` (each of ``MIN_ONSET_BINS`` points or more)
    that fits best on either clock, and by how much it beats a climb from the first bin, in log(n)
    of 2·log likelihood ratio (None without a fit)."""
    if not fits:
        return None
    first = float(reading.hours[0])
    starts = np.arange(first, max(float(fit.x[-3]) for fit in fits) + 1e-9, HINGE_STEP_HOURS)
    clock = request_clock(reading.bins["load"].to_numpy(dtype=np.float64), reading.minutes)

    def cost(on: Callable[[FloatArray], FloatArray]) -> FloatArray:
        """n·log(SSE/n) of every start, summed over the signals, with hours read on the clock ``on``."""
        return sum((len(fit.y) * np.log(np.maximum(
            stats.rising_ramp_errors(on(fit.x), fit.y, on(starts), fit.load, fit.groups), 1e-12) / len(fit.y))
            for fit in fits), np.zeros(len(starts)))

    either = np.minimum(cost(lambda hours: hours), cost(lambda hours: np.interp(hours, reading.hours, clock)))
    best = int(np.argmin(either))
    return float(starts[best]), float(either[0] - either[best]) / math.log(sum(len(fit.y) for fit in fits))


PEAK_CLIMB_STEPS = 3  # the worst instance's peak this many bucket steps up before a later start: the leak was on
PEAK_STEP_FLOOR = 0.045  # the relative step assumed where the peaks show no bucket layout (under Cloud Run's: 4.7 %)
PEAK_BINS = 3  # the bins whose median peak is compared, at the reading's start and before the later start


def _peak_climbed_before(reading: _Reading, hours: float) -> bool:
    """The highest memory of any instance (the bins' ``peak``), its load's effect taken out
    (``_peak_at_first_load``), held ``PEAK_CLIMB_STEPS`` bucket steps or more above the reading's first
    bins at some point before ``hours`` (running medians of ``PEAK_BINS``): a leak that was already on
    before the start its troughs show. Fresh instances dilute the typical troughs and a night's scale-in
    replaces the oldest, so a leak from the deploy can keep both troughs flat for a day or more, while the
    instance that lives longest carries its memory to a new high (314416-0042: a per-request leak of
    11 %/day whose troughs stayed within 0.29-0.35 of the limit for 36 h, dated 37 h after its deploy,
    while the peak climbed 0.38 -> 0.46). A flipped flag's peak stays where it was until the flip, give or
    take the day's load: two steps apart on a flat revision between a quiet night and a busy afternoon
    (989024-0006), so the guard asks three.

    The high so far, not the peak's level just before the start: that instance may have been replaced
    by then (314416-0023: a leak of 10.6 %/day from its deploy whose peak climbed 0.46 -> 0.58 in 22 h,
    fell back to 0.48-0.50 when its instance was replaced, and whose later bend, 29 h in, was taken for
    the start). And at the first bins' load: a peak that only followed a busier afternoon up and back
    (407122-0053, a flag flipped 30 h after its deploy, peak 0.30 -> 0.38 as the load per instance went
    7 -> 24 requests/s) is no leak. On twenty development draws (4,000 scenarios) four leaks that were on
    before such a bend (two strong from their deploys; two of 2-3 %/day, one from before the window) were
    dated at their onsets instead of 17-156 h late, and no finding moved the other way
    (docs/detection-quality.md, forty-fifth session)."""
    before, step = _peak_course(reading, hours)
    if len(before) < 2 * PEAK_BINS:
        return False
    adjusted = _peak_at_first_load(reading, hours, before)
    high = float(stats.running_median(adjusted, PEAK_BINS)[PEAK_BINS:].max())
    return bool(high / float(np.median(adjusted[:PEAK_BINS])) >= (1.0 + step) ** (PEAK_CLIMB_STEPS - 0.5))


def _peak_at_first_load(reading: _Reading, hours: float, before: FloatArray) -> FloatArray:
    """``before`` (the peak's course before ``hours``, ``_peak_course``) moved to the load per instance
    of the reading's first ``PEAK_BINS`` bins, by the slope of a straight line of peak on load fitted
    over all of ``before`` (none where it comes out negative, or the load does not vary): in-flight work
    holds memory, so a busier hour lifts the highest instance with it. A leak whose climb ran with a
    ramp of load loses some of its climb to that slope (246384-0106: a per-request leak whose traffic
    grew 54 -> 197 requests/s per instance over its first 14 h stays dated 27 h late)."""
    load = reading.bins["load"].to_numpy(dtype=np.float64)[_peak_bins_before(reading, hours)]
    known = np.isfinite(load)
    if known.sum() < 2 * PEAK_BINS or np.ptp(load[known]) <= 0:
        return before
    slope = max(float(np.polyfit(load[known], before[known], 1)[0]), 0.0)
    opening = load[:PEAK_BINS][known[:PEAK_BINS]]
    first = float(np.median(opening if len(opening) else load[known]))
    return before - slope * (np.where(known, load, first) - first)


FLAT_PEAK_EVIDENCE = 4.0  # a later start under ONSET_EVIDENCE still taken above this, where the peak held flat to it
PEAK_FLAT_STEPS = 1.5  # the widest the peak's course (medians of PEAK_BINS) before a start may span, in bucket steps
PEAK_SHOWN_STEPS = 2.0  # the fewest bucket steps the climb's own pace would have lifted the peak by the start
PEAK_FLAT_HOURS = 14.0  # the shortest flat stretch read: a deploy's first half-day can hold the peak flat over a leak
PEAK_SHORT_FLAT_HOURS = 6.0  # shorter, read by the peak beside the troughs where the climb's pace would have shown
PEAK_FALL_STEPS = 3  # the peak's course this many bucket steps under its high before a start: an instance replaced


def _peak_bins_before(reading: _Reading, hours: float) -> np.ndarray:
    """Which bins the peak's course before ``hours`` is read on: those before it with a peak (one
    definition, so that a column read beside the course lines up with it)."""
    peak = reading.bins["peak"].to_numpy(dtype=np.float64)
    return np.asarray((reading.hours < hours) & np.isfinite(peak), dtype=bool)


def _peak_course(reading: _Reading, hours: float) -> tuple[FloatArray, float]:
    """The bins' peak before ``hours`` (finite ones, ``_peak_bins_before``), and its bucket step
    (``peak_step`` of all the peaks)."""
    peak = reading.bins["peak"].to_numpy(dtype=np.float64)
    return peak[_peak_bins_before(reading, hours)], peak_step(peak)


def peak_step(peak: FloatArray) -> float:
    """The relative step between the levels the highest memory of any instance takes (``bucket_step``),
    at least ``PEAK_STEP_FLOOR``: what a step up of the peak is measured in."""
    return max(bucket_step(peak), PEAK_STEP_FLOOR)


def _peak_fell_before(reading: _Reading, hours: float) -> bool:
    """The peak's course before ``hours`` (its running median of ``PEAK_BINS``) fell ``PEAK_FALL_STEPS``
    bucket steps or more under its high so far: the instance that held it was replaced (an OOM kill, a
    scale-in), so whatever climbs after was on before."""
    before, step = _peak_course(reading, hours)
    if len(before) < PEAK_BINS:
        return False
    course = stats.running_median(before, PEAK_BINS)  # one bin's load spike left out
    return bool(np.log(np.maximum.accumulate(course) / course).max() >= PEAK_FALL_STEPS * math.log1p(step))


def _peak_flat_before(reading: _Reading, hours: float, fit: _ClimbPoints) -> bool:
    """The highest memory of any instance (the bins' ``peak``) held within ``PEAK_FLAT_STEPS`` bucket
    steps over the ``PEAK_FLAT_HOURS`` or more (and ``2 · PEAK_BINS`` bins or more) before ``hours``
    (its running median of ``PEAK_BINS``), where the climb's own pace after that start (``fit``'s
    troughs, on the run the start falls in), had it run from the first bin, would have lifted it
    ``PEAK_SHOWN_STEPS`` steps or more: a flag flipped at ``hours``, not a leak from the deploy. The
    instance that lives longest carries a leak from the deploy to new highs while fresh instances and a
    night's scale-in keep both troughs flat (``_peak_climbed_before``), so a flat peak is evidence for
    a later start wherever the leak was fast enough to have shown on it.

    On eight development draws (docs/detection-quality.md, fortieth session), a later start taken above
    ``FLAT_PEAK_EVIDENCE`` · log(n) with this test dated five strong flips more within 2 h of their flip
    (their best starts 4.3-8.8 log(n), against the 10 asked otherwise) and moved no finding that was
    right. Each part refuses leaks that were on before the start: without the pace, three leaks from
    their deploys (314416-0152: its peak would have climbed under one step by a start 15 h in);
    measured from the peak's first bins to its last ones instead of over its range, a leak from before
    the window whose peak fell at a reset and climbed again (314416-0078); over less than
    ``PEAK_FLAT_HOURS``, two leaks from their deploys cut 24 h after them, whose peaks held flat over
    their first 11-12 h under a warm-up (880548-0112, 314416-0019; the flip dated with the shortest
    flat stretch, 880548-0172, held 15.8 h)."""
    before, step = _peak_course(reading, hours)
    if len(before) < 2 * PEAK_BINS or hours - float(reading.hours[0]) < PEAK_FLAT_HOURS:
        return False
    course = stats.running_median(before, PEAK_BINS)  # one bin's load spike left out
    if math.log(float(course.max() / course.min())) >= PEAK_FLAT_STEPS * math.log1p(step):
        return False
    return _peak_would_have_shown(reading, hours, fit, (before, step))


def _peak_would_have_shown(reading: _Reading, hours: float, fit: _ClimbPoints,
                           course: tuple[FloatArray, float] | None = None) -> bool:
    """The climb's own pace after ``hours`` (``fit``'s troughs, on the run that point falls in), had it
    run from the first bin, would have lifted the peak before ``hours`` (its median) ``PEAK_SHOWN_STEPS``
    bucket steps or more: where it did not, a flat peak is no evidence of a later start. ``course``:
    ``_peak_course(reading, hours)``, where the caller has it."""
    before, step = course if course is not None else _peak_course(reading, hours)
    if not len(before):
        return False
    pace = _pace_after(fit, hours)
    shown = pace * (hours - float(reading.hours[0])) / float(np.median(before))
    return shown > 0 and math.log1p(shown) >= PEAK_SHOWN_STEPS * math.log1p(step)


def _pace_after(fit: _ClimbPoints, hours: float) -> float:
    """The straight-line pace (share of the limit per hour) of ``fit``'s troughs from ``hours`` to the
    end of the run that point falls in (0 with fewer than three points there)."""
    after = fit.x >= hours
    if not after.any():
        return 0.0
    if fit.groups is not None:
        run = np.searchsorted(fit.groups, np.arange(len(fit.x)), side="right")
        after &= run == run[int(np.argmax(after))]
    if int(after.sum()) < 3:
        return 0.0
    return float(np.polyfit(fit.x[after], fit.y[after], 1)[0])


def request_clock(load: FloatArray, minutes: int) -> FloatArray:
    """Requests served per instance from the first bin to each bin's start, given each bin's load per
    instance (requests per second; a bin without load adds none): the clock a per-request leak's live
    set grows on."""
    served = np.nan_to_num(load, nan=0.0) * minutes * 60.0
    return np.concatenate([[0.0], np.cumsum(served)[:-1]])


MIN_ONSET_BINS = 6  # the fewest bins a signal's climb start is fitted on
HINGE_STEP_HOURS = 1.0 / 12.0  # the onset's grid: a five-minute step, finer than the bins


@dataclass(frozen=True)
class _ClimbPoints:
    """The hours, measured troughs and load per instance a signal's start is fitted on, and where each
    run of points with a level of its own begins (``stats.rising_ramp_errors``'s ``groups``; None: one
    level)."""

    x: FloatArray
    y: FloatArray
    load: FloatArray
    groups: IntArray | None = None


def _climb_points(reading: _Reading, trend: _SignalTrend) -> _ClimbPoints:
    """The hours, measured troughs and load per instance a signal's start is fitted on: its first
    segment; for a trend tested from its own later start (a flag flipped after the deploy), every bin
    from the first to its last point, so the flat stretch before that start is in the fit too (also
    when that trend found a later start still: its climb alone, fitted from the first bin, would read
    as a climb from the deploy). The troughs are not load-adjusted here: the onset fits the load's
    effect jointly with each start (a slope of load taken against a straight line, or none under 24
    bins, leaves a first day's traffic hump in the troughs, which reads as a climb from the deploy)."""
    a, b = trend.segments[0]
    # A first segment too short to date anything (split off by a bucket's dip in the first hours): the
    # bins up to the end of the first one long enough, flat stretch and all.
    longer = False
    if b - a < MIN_ONSET_BINS:
        long_end = next((end for start, end in trend.segments if end - start >= MIN_ONSET_BINS), None)
        if long_end is not None:
            b, longer = long_end, True
    picked = trend.positions[a:b]
    column = reading.bins[COLUMN[trend.name]].to_numpy(dtype=np.float64)
    load = reading.bins["load"].to_numpy(dtype=np.float64)
    if int(picked[0]) != 0 or longer:
        picked = np.flatnonzero(np.isfinite(column[: int(picked[-1]) + 1]))
    return _points(reading, column, load, picked)


def _points(reading: _Reading, column: FloatArray, load: FloatArray, picked: np.ndarray,
            groups: IntArray | None = None) -> _ClimbPoints:
    """The bins ``picked`` of a signal's ``column``, a missing load filled with the median of the rest."""
    known = load[picked]
    fill = float(np.median(known[np.isfinite(known)])) if np.isfinite(known).any() else 0.0
    return _ClimbPoints(reading.hours[picked], column[picked], np.where(np.isfinite(known), known, fill), groups)


def _segmented_points(reading: _Reading, trend: _SignalTrend) -> _ClimbPoints:
    """Every segment of a signal's trend, each with a level of its own, the bins before its first
    position joining the first: the onset's second reading, when a signal's first segment shows no
    later start (``_onset_hours``). A leak's troughs fall at each reset (an OOM kill, the oldest
    instance replaced at a night's scale-in) and climb again. A first segment can end hours before a
    flag flips (the worst instance's bucket dips one step and splits it off), or run on over a reset
    too small to split it: fitted there, neither a start at the flip nor one at the deploy fits, and
    the flip was dated at the deploy (693567-0082: a leak of 24 % of the limit a day switched on 30 h
    after its deploy, the worst instance's first segment 12 h long, the fleet's a day and a half
    past the flip across a reset). One pace shared by the segments after the start, each its own
    level, reads such a climb as one."""
    column = reading.bins[COLUMN[trend.name]].to_numpy(dtype=np.float64)
    load = reading.bins["load"].to_numpy(dtype=np.float64)
    before = np.flatnonzero(np.isfinite(column[: int(trend.positions[0])]))
    runs = [trend.positions[a:b] for a, b in trend.segments]
    runs[0] = np.concatenate([before, runs[0]])
    groups = np.cumsum([0, *(len(run) for run in runs[:-1])]).astype(np.int64)
    return _points(reading, column, load, np.concatenate(runs), groups)


def _at_limit_before(reading: _Reading, hours: float) -> bool:
    """The worst instance was already near the limit (``OOM_RESET_LEVEL``) before ``hours``: the climb
    found after it follows a reset (an OOM kill) of a leak that was under way when the data began (a
    leak from before the window), so no flat stretch preceded it."""
    before = reading.hours < hours
    peak = reading.bins["peak"].to_numpy(dtype=np.float64)[before]
    return bool((np.nan_to_num(peak, nan=0.0) >= OOM_RESET_LEVEL).any())


def _nanmax(values: FloatArray) -> float:
    finite = values[np.isfinite(values)]
    return float(finite.max()) if finite.size else float("nan")


def hours_to_limit(evidence: LeakEvidence, *, limit: float = 1.0) -> float | None:
    """Hours until the worst instance reaches the limit at the fitted slope (None if no slope)."""
    if evidence.slope_per_day <= 0:
        return None
    level = evidence.peak_end if math.isfinite(evidence.peak_end) else evidence.trough_end
    return max(0.0, (limit - level) / (evidence.slope_per_day / 24))
