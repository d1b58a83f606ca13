"""Negative scenarios stay clean: services taken from simulated scenarios without an anomaly
(``tests/data/onsets``, loaded as ``tests/test_leak_onsets`` does), on which an earlier version of the
memory or creep detector reported a finding."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from analyzer.analysis import analyze_frames, memory
from analyzer.config import AnalysisConfig
from analyzer.frames import KEY_COLUMNS, MEMORY_COLUMNS, SIDECAR_COLUMNS, Frames
from analyzer.model import ContainerInfo
from tests.test_leak_onsets import _frames


@pytest.mark.parametrize("name", [
    # Deploys every few hours, each followed by a cache fill. A 7 h revision's worst instance climbed
    # from 44 % to 52 % of the limit, steeply (46 %/day), but only back to where the revision before
    # it sat at the same age: a warm-up from a colder start, not a leak.
    "warmup_back_to_usual_level",
    # A tall GC sawtooth whose collections come hours apart at night: the worst instance climbs for a
    # day between two collections, twice, well below the limit, while the fleet's typical memory has no
    # trend at all. Drops far from the limit are believed to be resets only when the fleet climbs too.
    "big_sawtooth_worst_instance_climbs_between_collections",
    # Tall GC sawtooths whose collector runs at a fixed threshold: after a deploy the fresh instances'
    # garbage grows in step, and the worst instance's troughs climbed for 78 h (48 % -> 69 % of the limit,
    # 3.5 %/day) and 34 h (50 % -> 60 %, 5.8 %/day), while its peaks stayed level (0.2-0.4 times the
    # troughs' pace, at 63-76 % of the limit). A leak lifts the peaks with the troughs.
    "big_sawtooth_peaks_level_under_climbing_troughs",
    "big_sawtooth_peaks_level_over_a_day_and_a_half",
    # The first revision deployed in the window (its predecessor 13 days before it): its worst instance
    # climbed 60 % -> 66 % of the limit over its 20 h (10.5 %/day), with no earlier revision seen from its
    # deploy to show the service's warm-up. The next revisions, each seen from its deploy, rose as much at
    # the same age: their warm-up, found after it.
    "warmup_first_deploy_of_the_window_like_the_next_ones",
    # A one-instance service whose working set follows its traffic, deployed at midnight and replaced a
    # day later: its troughs fall through the night and climb through the day (worst instance 24 % to
    # 32 %). A day's traffic rises with time, so the revision's own data cannot tell load from a trend;
    # the load term learned from the service's revisions that served a day or more takes it out.
    "warmup_day_traffic_on_a_young_revision",
    # Deploys every 8-14 h, each followed by a cache fill. A 10 h revision's worst instance climbed from
    # 38 % to 50-55 % of the limit (41 %/day); an earlier revision sat at 52.5 % by its end, 8 h in. The worst
    # instance is read from the top bucket in steps of about 5 %: the median of its last two troughs,
    # 52.55 %, half a step between 50.1 % and 55 %, is that same level, not a climb past it.
    "warmup_back_to_usual_level_a_bucket_step_above",
    # A tall GC sawtooth. The revision serving when the window began, deployed ten days before it, was
    # replaced 26 h in: its typical troughs rose 36 % -> 42 % of the limit over those hours (the
    # sawtooth's slow cycles), a climb of 4 %/day for the trend test. A day of a revision's mid-life is
    # an arbitrary day of it, not its course after a deploy; the next revision did not carry it on.
    "sawtooth_glimpsed_mid_life_for_a_day",
    # The guard beside leak_reset_by_replacements_climbs_again_for_half_a_day: a slow GC sawtooth whose
    # worst instance climbs for more than a day, drops far below the limit and climbs again for half a
    # day, at 2-3 % of the limit a day. A second climb of half a day is believed only at 5 %/day or more.
    "slow_sawtooth_climbs_again_for_half_a_day_after_a_drop",
    # A batch service: a revision's worst instance sat at 57.5 % of the limit for the 12 h after its
    # batch (one bucket step above its first trough), while its load per instance fell. Load-adjusted, those
    # flat troughs climbed 5.8 %/day; measured, not at all. A leak's measured troughs climb too.
    "batch_spikes_flat_troughs_after_the_batch",
    # The guard of a day-long first climb ended by a drop: a tall GC sawtooth whose worst instance sits at
    # 35-38 % of the limit through its first day and humps to 50 % each night. From the deploy to the first
    # hump's top is 24 h, but the climb inside them starts at the evening (a later start, 10 h long): a
    # first climb is believed when the climb itself lasted a day.
    "big_sawtooth_worst_instance_humps_each_night_after_a_flat_day",
    # A tall GC sawtooth on a revision deployed before the window: its worst instance climbed 32 % -> 53 %
    # of the limit and fell back three times, then climbed 32 % -> 53 % over its last 14 h. Read from
    # that climb's start, 26 %/day; it is one more cycle, not a flag flipped (a flip climbs from a flat
    # stretch).
    "big_sawtooth_worst_instance_climbs_again_after_three_cycles",
    # Deploys every half day, each followed by a cache fill. A 14 h revision's typical troughs ran 27 % →
    # 22 % → 24 % of the limit: on two segments a climb of 7 %/day for the trend test, but they never got
    # above where the revisions before it sat at the same age (25 %): no leak.
    "warmup_troughs_end_below_their_start_at_the_usual_level",
    # Deploys every 10-20 h, each followed by a cache fill. A 20 h revision's worst instance wandered
    # 46 % → 60 % of the limit over three bucket steps (7 %/day), holding 59 % at most: no higher than the
    # revisions before it had held by the same age (60 %; 55 % where the last one ended): their wander.
    "warmup_worst_instance_wanders_over_buckets_like_the_revisions_before",
    # Deploys every 4-11 h, each followed by a cache fill. A 5 h revision's typical trough rose 6 % of the
    # limit in its last hour before the next revision took over: the sequential test's alarm from that
    # hour alone, never seen again, is the hour's, not a drift.
    "warmup_an_ended_revisions_last_hour_jumps",
    # A 57 h revision replaced by the next (a slower one, a latency regression): its typical troughs bumped
    # 2.6 % of the limit at 13 h and fell back, then climbed 3 % over its last 6 h. The sequential test's
    # ratio passed the alarm at the bump and again in the last hour only: the climb reported must have
    # raised the alarm before that hour.
    "an_ended_revisions_last_hours_climb_after_an_alarm_it_had_dropped",
    # Five hours after a deploy the worst instance's troughs sat at one level for three hours, then two
    # bucket steps up (40 % -> 44 % of the limit) for two: the sequential test on the worst instance read it
    # as a drift of 22 %/day (ratio 18.6 against a bar of 9.2). One step to a level it holds fits as well
    # as a line: a step, not a drift.
    "worst_instance_one_bucket_step_hours_after_a_deploy",
    # A revision a day old whose worst instance climbed 5 % of the limit over its last 6 h (the day's traffic
    # lifting one instance), flat before: against the previous revision's worst troughs a ratio of 25.6 where
    # 13.5 is asked, from a start 18 h after the deploy. The worst instance is read for a leak from the deploy;
    # a climb that starts later lifts every instance at once, and the fleet's troughs would show it too.
    "worst_instance_climbs_in_the_last_hours_of_a_revisions_first_day",
    # Deploys every few hours, each followed by a cache fill. Five hours after a deploy the worst instance had
    # climbed from 53 % to 58 % of the limit (ratio 12.7 against 9.2): past the one revision that served the
    # 12 h an envelope asks (a warm-up of 2 %), but no higher than the shorter revisions before it had at the
    # same age. The trend test reads a young revision against those (``memory.rises_like_before``); the worst
    # instance's sequential finding is read so too.
    "worst_instance_warms_up_as_far_as_shorter_revisions_before_it",
])
def test_no_leak_is_reported(name: str) -> None:
    frames, _ = _frames(name)
    found = [(f.revision, f.summary) for f in analyze_frames(frames, AnalysisConfig()).findings
             if f.kind.value == "memory_baseline_rise"]
    assert found == []


def test_a_stalled_climb_whose_alarm_stayed_under_four_times_its_bar_is_no_leak() -> None:
    # A revision after a leaking one (no leak of its own): its typical troughs climbed 3 % of the limit and
    # stalled; the sequential test's ratio reached 22 against a bar of 6.9 (3.2 times). The stall stands
    # under STALL_OVERRULED_AT times the bar (at twice, this was reported as a leak).
    frames, _ = _frames("sequential_alarm_three_times_its_bar_on_a_revision_whose_climb_stalled")
    found = [f.summary for f in analyze_frames(frames, AnalysisConfig()).findings
             if f.kind.value == "memory_baseline_rise" and f.revision == "chat-00036-uhq"]
    assert found == []


def test_the_newcomers_instances_at_a_takeover_are_no_creep_of_the_revision_it_replaces() -> None:
    # Deploys every few hours. A 7 h revision's last serving step counted the next revision's 27 cold
    # instances with its own idle ones (after a burst of traffic): read as a creep of +26 % of the
    # revision taken whole (the gate: 25 %). Without the newcomer's step, nothing.
    frames, _ = _frames("warmup_creep_newcomers_instances_in_the_last_step_of_a_short_revision")
    found = [(f.kind.value, f.revision, f.summary) for f in analyze_frames(frames, AnalysisConfig()).findings]
    assert found == []


def test_a_warm_up_revisions_idle_instances_after_a_busy_quarter_hour_are_no_creep() -> None:
    # A small service deploying every day or so (1-2 instances). auth-00244 held an extra instance
    # after its busy minutes: judged against its predecessor's count at each step's own request rate,
    # +56 % of the revision taken whole; judged at the busiest rate of the quarter hour before each
    # step (what an idle instance is kept for), nothing.
    frames, _ = _frames("warmup_no_creep_on_the_busiest_quarter_hour")
    found = [(f.revision, f.summary) for f in analyze_frames(frames, AnalysisConfig()).findings
             if f.kind.value == "instance_creep"]
    assert found == []


def test_a_glimpse_of_mid_life_is_judged_as_it_is_when_nothing_replaced_it() -> None:
    """The rule above is about a revision a later one replaced: the same hours, with the later revisions
    left out of the data (the revision serving to the end of what the window holds), are judged on
    what they show, a climb reported as before."""
    frames, _ = _frames("sawtooth_glimpsed_mid_life_for_a_day")
    first = "reports-00177-ie5"
    alone = replace(frames, metrics=frames.metrics[frames.metrics["revision"] == first],
                    revisions={k: v for k, v in frames.revisions.items() if k[1] == first})
    found = [f.revision for f in analyze_frames(alone, AnalysisConfig()).findings
             if f.kind.value == "memory_baseline_rise"]
    assert found == [first]


def _as_sidecar(frames: Frames, container: str) -> Frames:
    """``frames`` with its memory moved to a sidecar ``container`` of the same limit, the ingress
    container's memory flat at 30 % of its limit: the sidecar's course is then judged on its own."""
    sidecars = frames.metrics[[*KEY_COLUMNS, "ts", *MEMORY_COLUMNS]].assign(container=container)[SIDECAR_COLUMNS]
    metrics = frames.metrics.assign(**dict.fromkeys(MEMORY_COLUMNS, 0.3))
    revisions = {key: replace(info, containers=(
        ContainerInfo("app", True, info.cpu_limit, info.memory_limit_gib),
        ContainerInfo(container, False, info.cpu_limit, info.memory_limit_gib)))
        for key, info in frames.revisions.items()}
    return replace(frames, metrics=metrics, revisions=revisions, sidecars=sidecars.reset_index(drop=True))


def test_a_sidecars_first_deploy_is_judged_against_the_warm_ups_after_it() -> None:
    """A sidecar's memory is judged as the service's is: the first revision of the window whose
    climb the next revisions showed too at the same age is their warm-up, in a sidecar as well (the
    same pass, ``findings._warm_ups_seen_later``). Its leaks are still found: the same course made
    steeper by a leak of 20 % of the limit a day on that revision is reported on the sidecar."""
    frames, _ = _frames("warmup_first_deploy_of_the_window_like_the_next_ones")
    assert [f.revision for f in analyze_frames(_as_sidecar(frames, "proxy"), AnalysisConfig()).findings] == []
    first = min((info for info in frames.revisions.values() if info.create_time >= frames.window_start),
                key=lambda info: info.create_time).revision  # the first deployed in the window
    rows = frames.metrics
    mine = (rows["revision"] == first).to_numpy()
    days = (rows["ts"] - rows.loc[mine, "ts"].min()).dt.total_seconds().to_numpy() / 86_400
    leaking = rows.assign(**{column: np.where(mine, rows[column] + 0.2 * days, rows[column])
                             for column in MEMORY_COLUMNS})
    found = analyze_frames(_as_sidecar(replace(frames, metrics=leaking), "proxy"), AnalysisConfig()).findings
    assert [(f.container, f.revision) for f in found if f.kind.value == "memory_baseline_rise"] == [("proxy", first)]


@pytest.mark.parametrize(("share", "believed"), [(0.3, True), (0.2, False)])
def test_a_load_adjusted_climb_is_believed_when_the_measured_troughs_climb_too(share: float,
                                                                               believed: bool) -> None:
    # 12 two-hour troughs climbing 6 %/day once load-adjusted; measured, at ``share`` of that pace.
    # memory.RAW_FOLLOWS (0.25) sits between: doubled or halved, one of the two fails.
    hours = np.arange(12) * 2.0
    adjusted = 0.5 + 0.0025 * hours
    measured = 0.5 + share * 0.0025 * hours
    gates = memory._gates(memory.TYPICAL, hours, measured, adjusted, np.full(12, 0.6), [], [(0, 12)], 0.0025,
                          22.0, AnalysisConfig().detection.memory)
    assert gates.measured_climb is believed
