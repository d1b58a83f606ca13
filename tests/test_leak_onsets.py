"""Leak onsets dated as the labelled suite scores them (the right revision, within 2 h), on services
taken from simulated scenarios (``tests/data/onsets``: one service's frames rows as ``bench/quick.py``
builds them, its revisions, and the label; each JSON names the draw it came from; a ``.history.csv.gz``
beside them holds the first hours of revisions deployed before the window, ``Frames.history``). Hand-made tables
(tests/synthetic.py) are too clean to show these cases: they come from bin minima of few points, a
worst instance read in bucket steps, and climbs that speed up with traffic."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analyzer.analysis import analyze_frames, memory, stats
from analyzer.config import AnalysisConfig
from analyzer.frames import KEY_COLUMNS, METRIC_COLUMNS, Frames
from analyzer.model import RevisionInfo, ServiceKey

DATA = Path(__file__).parent / "data" / "onsets"
KEY = ServiceKey("p", "us-central1", "svc")


def _frames(name: str) -> tuple[Frames, dict[str, str]]:
    meta = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    rows = pd.read_csv(DATA / f"{name}.csv.gz")
    rows["ts"] = pd.to_datetime(rows["ts"], utc=True)
    for column, value in zip(KEY_COLUMNS, (KEY.project, KEY.region, KEY.service), strict=False):
        rows[column] = value
    revisions = {
        (KEY, name): RevisionInfo(KEY.project, KEY.region, KEY.service, name,
                                  create_time=pd.Timestamp(info["create_time"]).to_pydatetime(),
                                  cpu_limit=info["cpu_limit"], memory_limit_gib=info["memory_limit_gib"],
                                  request_based_billing=info.get("request_based_billing"))
        for name, info in meta["revisions"].items()
    }
    start, end = (pd.Timestamp(t).to_pydatetime() for t in meta["window"])
    frames = Frames(rows[[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]], revisions, meta["step_seconds"], start, end, [KEY])
    early = DATA / f"{name}.history.csv.gz"  # the first hours of revisions deployed before the window, if any
    if early.exists():
        history = pd.read_csv(early)
        history["ts"] = pd.to_datetime(history["ts"], utc=True)
        for column, value in zip(KEY_COLUMNS, (KEY.project, KEY.region, KEY.service), strict=False):
            history[column] = value
        frames = replace(frames, history=history[[*KEY_COLUMNS, "ts", *METRIC_COLUMNS]])
    return frames, meta["leak"]


def _leak_onsets(name: str) -> tuple[list[tuple[str, float]], dict[str, str]]:
    """(revision, hours from the labelled onset) of each memory finding, and the label."""
    frames, label = _frames(name)
    analysis = analyze_frames(frames, AnalysisConfig())
    labelled = pd.Timestamp(label["onset"])
    return [(f.revision, float((pd.Timestamp(f.onset) - labelled) / pd.Timedelta(hours=1)))
            for f in analysis.findings if f.kind.value == "memory_baseline_rise"], label


@pytest.mark.parametrize("name", [
    # Deployed at 12:44: the first 2 h step of the clock's grid holds half an hour after the warm-up,
    # and a minimum of fewer points sits higher, so it read as a dip with the climb starting 4 h late.
    "leak_at_deploy_mid_grid_step",
    # The worst instance's climb (in bucket steps) bends 8 h in, but it was rising before the bend,
    # as the fleet's typical memory was from the deploy: the leak started with the deploy.
    "leak_climbing_from_deploy_bends_later",
    # A flag flipped a day after the deploy: the climb before it is a drift of a few tenths of a
    # percent, not a rise, so the onset stays at the flip.
    "leak_flag_flipped_a_day_later",
    # A leak of 24 % of the limit a day switched on 30 h after the deploy (693567-0082). The worst
    # instance's first segment ended 12 h in (a bucket's dip split it off) and the fleet's ran on a day
    # and a half past the flip across a reset: fitted there, no start after the deploy cleared the bar
    # and the flip was dated at the deploy, 31 h early. Every segment read, each its own level: dated at
    # the flip.
    "leak_flag_flipped_the_first_segments_too_short_or_across_a_reset",
    # A per-hour leak of 13 % of the limit a day switched on 28 h after the deploy (880548-0050). Its
    # troughs bend there by 4.4 log(n) in 2·log LR, under the 10 asked of a later start, and it was dated
    # at the deploy, 28 h early. The highest instance's memory held one bucket level for the 27 h before
    # the start, where the climb's pace run from the deploy would have lifted it four steps: dated at the
    # flip (memory._peak_flat_before).
    "leak_flag_flipped_its_troughs_bend_under_the_bar_its_peak_flat_to_the_flip",
    # A per-hour leak of 12 % of the limit a day switched on 17 h after the deploy (880548-0172): a
    # start there beats a climb from the deploy by 8.3 log(n), and the highest instance's memory moved
    # one bucket step in the 16 h before it, where the climb's pace would have lifted it 2.2 steps. Dated
    # at the flip; before, at the deploy, 18 h early.
    "leak_flag_flipped_sixteen_hours_in_its_peak_flat_by_a_step",
    # A per-request leak of 6 % of the limit a day from the deploy (528861-0028): its peak held within a
    # bucket step for 17 h, and its troughs bend there by 2.4 log(n) alone, under FLAT_PEAK_EVIDENCE:
    # dated at the deploy.
    "leak_at_deploy_its_peak_flat_its_troughs_hinge_by_chance_at_two_log_n",
    # A per-request leak of 8.5 % of the limit a day switched on 30 h after the deploy (146466-0157): the
    # troughs follow the day's traffic around the flip and their best start, 11 h early, beats a climb
    # from the deploy by 3.4 log(n), so it was dated at the deploy. The highest instance's memory held
    # one bucket level for 32 h and climbed a step at a time after: with the peak beside the troughs,
    # a start within 2 h of the flip beats it by 12 log(n) (memory._later_start_with_the_peak).
    "leak_flag_flipped_the_peak_shows_its_bend_the_troughs_hide",
    # A per-hour leak of 18 % of the limit a day begun before the window (314416-0078): 12 h in, the
    # instance at the top (0.72 of the limit) was replaced and the peak fell to 0.36, then climbed again.
    # With the peak beside the troughs, a start 35 h in beat a climb from the first bin by 12.6 log(n);
    # a peak that fell several steps before a start was a leak already on (_peak_fell_before): dated at
    # the first bin, its deploy.
    "leak_before_the_window_its_peak_fell_at_a_replacement_and_climbed_again",
    # A per-request leak of 5.5 % of the limit a day from the deploy (602260-0126), the data cut 48 h
    # after it: the peak, set by in-flight work, held one level for its first 10 h until the leak outgrew
    # it, and with the peak beside the troughs a start there beat a climb from the deploy by 34 log(n).
    # A flat stretch that short after a deploy is not read as a flip (PEAK_FLAT_HOURS): dated at the deploy.
    "leak_fixed_two_days_old_its_peak_flat_for_ten_hours_under_in_flight_work",
    # A leak of 15 % of the limit a day switched on 10.6 h after the deploy (900341-0051): the worst
    # instance's troughs held one level to 13:00 and climbed a bucket step every 4 h after, but their
    # best start beat a climb from the deploy by 8.8 log(n) alone, under the bar; with the peak beside
    # them, 15 log(n). A flat stretch under PEAK_FLAT_HOURS was refused, and it was dated at the
    # deploy, 10.6 h early. At the climb's own pace the peak would have risen 2.5 bucket steps by the
    # flip had it leaked from the deploy; it held flat: dated at the flip.
    "leak_flag_flipped_ten_hours_in_fast_its_peak_flat_to_the_flip",
    # A leak of 25 % of the limit a day rolled back after 16 h (900341-0050), too young for the trend
    # test: against the service's healthy revisions its typical troughs raised the sequential test's
    # alarm (ratio 15, bar 6.9), but they fell back over their last hours as instances were replaced,
    # and a stalled climb is a warm-up settling: not reported. Its peak set a new high a bucket step up
    # in those hours (0.66 -> 0.83 over the 13 h): the leak went on in the instance that lived longest.
    "leak_fixed_after_sixteen_hours_its_troughs_stalled_its_peak_climbing",
    # A per-hour leak of 5.4 % of the limit a day from the deploy (880548-0112), the data cut 24 h after
    # it: under a warm-up, its peak held within one and a half bucket steps for the first 12 h, and a
    # start there read as a flag flipped. A stretch that short after a deploy is not read as flat
    # (PEAK_FLAT_HOURS): dated at the deploy.
    "leak_at_deploy_a_day_old_its_peak_flat_under_a_warm_up",
    # A per-request leak of 4.7 % of the limit a day from the deploy (314416-0152): its troughs hint at a
    # start 15 h in (6.5 log(n)), and its peak moved one bucket step before it. At the climb's own pace
    # the peak would have risen under one step by then (PEAK_SHOWN_STEPS asks two), so its flat course
    # says nothing: dated at the deploy.
    "leak_fixed_slow_its_peak_one_step_up_before_its_troughs_hinge",
    # A per-request leak of 11 % of the limit a day from the deploy (314416-0042). Fresh instances and a
    # night's scale-in kept both troughs within 0.29-0.35 of the limit for 36 h, then they climbed: a
    # start there beat a climb from the deploy by 26 log(n), dated 37 h late. The highest instance's
    # memory had climbed four bucket steps by then (0.38 -> 0.46): the leak was on, dated at the deploy.
    "leak_from_the_deploy_its_troughs_flat_for_a_day_and_a_half_its_peak_climbing",
    # A flag flipped 27 h after the deploy, the data cut 6 h after it: too short a climb for the trend
    # test, and the revision had served long enough to count as healthy. The sequential test judges
    # it against the service's other revisions (not an envelope learned from itself), the drift's
    # start unknown (the ratio from the deploy on is diluted by 27 flat hours).
    "leak_flag_flipped_seen_six_hours_later",
    # A leak from its deploy (25 % of the limit a day) whose worst instance and typical memory each fit
    # a hinge 7-10 h in: each alone, and the rule that let one signal's start at the deploy overrule
    # the other's only without clear evidence of a later start, dated it 10 h late. One start shared
    # by both signals needs far more evidence than either hinge has.
    "leak_at_deploy_both_signals_bend_later",
    # The predecessor served 44 h in the window, too short to tell its load effect from a trend, so it
    # is adjusted with the load term learned from the service's other revisions: here only the leaking
    # one, whose climb and traffic both rise over its days. Learned about each revision's own means,
    # that climb taught a load slope that turned the predecessor's evening into a false leak, which then
    # hid this one; learned about each revision's own line in time, it teaches nothing false.
    "leak_teaches_no_load_term_to_its_predecessor",
    # Deployed a day and a half before the window, the worst instance at 87-95 % of the limit when the
    # data begin: an OOM kill 6 h in resets it, and the climb after the reset read as a start 10 h
    # into the data. A leak already at the limit began before the data, at the deploy.
    "leak_before_window_reset_by_an_oom_kill",
    # A per-request leak (7.8 % of the limit a day) whose oldest instances are replaced below the limit:
    # the climb after the last replacement spans 28 h and ends on a night's low traffic, flat over its
    # last third. Read over its last day it still climbs; it was not reported at all.
    "leak_reset_by_replacements_ends_on_a_night",
    # A leak of 32 % of the limit a day begun before the window: the oldest instance climbs to the limit
    # within hours of each OOM kill and sits there (GC thrash) until the next. Each climb's later half
    # is flat at the limit, which the levelling-off gate read as a warm-up; it was not reported.
    "leak_pinned_at_the_limit",
    # A leak from the deploy (12 % of the limit a day, with a latency and CPU regression). The
    # predecessor's typical memory had climbed a little over its last 20 h (significant, but not past
    # the plausibility gates: an unconfirmed candidate), and the rule that gave a leak confirmed from
    # the next deploy to such a predecessor reported it there, ten days before the leak began.
    "leak_not_given_to_a_predecessor_with_an_unconfirmed_climb",
    # A leak from the deploy carried on by the next revision two days later: one finding, on the
    # revision that introduced it. The revision before it served 15 h with an unconfirmed climb of its
    # typical memory, and took the leak from it the same way.
    "leak_carried_on_not_given_to_a_brief_predecessor",
    # A per-request leak (21 % of the limit a day) whose oldest instance reaches the limit every 40 h:
    # each OOM kill's drop is spread over two 2 h bins, each step inside the troughs' bucket-step noise,
    # so the troughs read as one bounded sawtooth, not significant; it was not reported at all. A drop
    # after the worst instance was at the limit is a reset (``memory._oom_resets``).
    "leak_cycling_through_oom_kills",
    # A per-request leak (30 % of the limit a day) switched on 10 h after a deploy at midnight: after the
    # switch its troughs climb with the morning's traffic, slowly at first, so in hours a climb from the
    # deploy fits about as well as one from the switch (6 log(n) apart, under the bar). Counted in
    # requests served per instance, the climb is a straight line from the switch (12 log(n)).
    "leak_per_request_switched_on_ten_hours_in",
    # A flag flipped 47 h after the deploy: the worst instance's trend is tested from where it starts to
    # climb, and that trend found a later start still (a slow first day). Its climb alone was then fitted
    # from the first bin, with the flat two days before it left out, and read as a climb from the deploy.
    "leak_flag_flipped_two_days_later_tested_from_its_start",
    # A slow leak (2.6 % of the limit a day) introduced by a revision that served 22 h and carried on by
    # the next one, where the trend test found it from the deploy. Its 22 h were too few for a leak of
    # its own, but against the service's healthy course after a deploy its fleet's troughs climbed at
    # the carrier's pace (log likelihood ratio 17 against a flat course): the leak is its.
    "leak_carried_from_a_revision_that_served_a_day",
    # A leak (6 % of the limit a day) and a latency regression shipped by a revision that served 6 h:
    # too few for its leak to show, while its latency did from the first hours. The next revision
    # carries the latency regression on (the same code) and the leak shows there from its deploy: the
    # leak came with the code that came before, and goes back to the revision that shipped it.
    "leak_introduced_with_a_regression_its_successor_carried_on",
    # Deployed a day before the window, a leak of 22 % of the limit a day cycling through OOM kills (13 in
    # five days): the worst instance's peaks hit 100 % again and again, but read in buckets its troughs
    # stop at 87 %, a step under the level a first climb to the limit was asked to reach (90 %), and the
    # daily resets leave the trend test nothing. Its first climb to a peak at the limit is the leak.
    "leak_cycling_through_oom_kills_its_troughs_a_bucket_under_the_reset_level",
    # Deployed a day before the window, a leak of 7 % of the limit a day (per request; the typical
    # instance flat, diluted by fresh ones): the worst instance's troughs climb 60 % -> 69 % in bucket
    # steps, then sit in the 69 % bucket for the last 15 h, so their later half reads as levelled off,
    # while its peaks climb from 79 % to 87 % over the same hours. The climb goes on.
    "leak_worst_troughs_held_in_one_bucket_while_its_peaks_climb",
    # A leak of 7 % of the limit a day on a revision that served 31 h: the worst instance's troughs, in
    # bucket steps, climb 19 % -> 26 % and then move by a step either way, which fits rise-then-flat (a
    # warm-up settling), while its peaks climb from 23 % to 36 % without a pause. The climb goes on.
    "leak_served_a_day_worst_troughs_rise_then_flat_in_buckets_peaks_climbing",
    # A leak of 36 % of the limit a day: the oldest instance reaches the limit 16 h after the deploy, is
    # OOM-killed, climbs there again, and from then on, with instances of every age replaced, hovers at
    # 83-95 % for six days, stepping down by less than a reset. The slope pooled over the revision is nil:
    # it was not reported at all (50 OOM kills). Its first climb, deploy to limit, is the leak.
    "leak_fills_the_limit_in_a_day_and_hovers_there",
    # A leak of 32 % of the limit a day switched on 12 h after the deploy. The oldest instance's troughs
    # move with load per instance by a few percent: fitted with that effect beside each start, the switch
    # beats a climb from the deploy by 12 log(n); without it, by 8, under the bar: dated at the deploy.
    "leak_switched_on_half_a_day_in_under_load_swings",
    # A flag flipped 46 h after the deploy: for two days the troughs followed each day's traffic (36 %
    # of the limit at night, 42 % at the daily peak). Without the load effect in the onset's fit, the
    # first morning after the flip read as more of that swing: dated 2 h late, just past the tolerance.
    "leak_flag_flipped_after_two_days_of_traffic_swings",
    # A leak from the deploy (6.6 % of the limit a day) on a revision replaced 18 h later by one that
    # carries it on, found there from its deploy (5.6 % a day, worst instance). The origin's own climb
    # (its typical memory, 9.8 % a day from the deploy) was held back as a young revision's possible
    # warm-up, and a candidate was never given the next revision's leak: it was reported on the carrier.
    # (The rule first written for it, a young candidate at the carrier's pace, is gone: the origin's climb
    # is now confirmed on its own, and the carrier's finding merges into it.)
    "leak_carried_from_a_young_revision_with_an_unconfirmed_climb",
    # The guard beside it: the revision before a slow leak's (2.3 % a day) served 23 h with a candidate
    # climb of 2.5 % a day, its warm-up's pace as much as a leak's. A candidate is not given the next
    # revision's leak, however alike the paces.
    "slow_warmup_candidate_not_given_the_next_revisions_leak",
    # What does give a candidate the next revision's leak: a leak from the deploy (5.9 % of the limit a day)
    # on a revision replaced after 22 h by one that carries it on, found there from its deploy. The origin's
    # own climb (its worst instance, 4.6 % a day) was only a candidate, but against the service's healthy
    # course after a deploy its fleet's troughs climbed at the carrier's pace (a log likelihood ratio of 111
    # against a bar of 6.9): the leak is the origin's, found at its deploy, not the carrier's a day late.
    "leak_carried_from_a_young_revision_whose_candidate_climbed_like_it",
    # A leak of 34 % of the limit a day from its deploy, after a routine deploy that served 12 h (its troughs
    # up 2 %, a warm-up). The leak's worst instance reaches the limit within a day and is OOM-killed 41
    # times: over three days its troughs cycle, and read as a pace of a few percent a day, the predecessor's
    # warm-up "climbed like it" and was given the leak, dated 12 h early. The carrier's pace is read up to
    # its first bin at the limit.
    "fast_leak_cycling_at_the_limit_not_given_to_a_warm_up_before_it",
    # A leak of 11 % of the limit a day: the oldest instance climbs from 33 % to 50 % over 32 h, every
    # instance is replaced at half the limit (a drop far from an OOM kill), and the troughs climb again
    # at the same pace for the 14 h left in the window. One day-long climb and one of half a day did not
    # show that the drop was a reset (two day-long climbs were asked): it was not reported at all.
    "leak_reset_by_replacements_climbs_again_for_half_a_day",
    # A leak of 6.6 % of the limit a day begun at a deploy three and a half days before the window; the
    # revision served 26 h in it, too few for its climb in bucket steps to pass, and the next one carried
    # the leak on, found there from its deploy (6.2 %/day). Its worst instance ended 18 % of the limit above
    # where the next revision's starts, as 6.2 %/day over 3.5 days predicts (22 %): the leak is its, begun
    # at its deploy. It was reported on the carrier.
    "leak_begun_days_before_the_window_carried_on_by_the_next_revision",
    # The guard beside it: a slow leak (2.8 %/day) from its deploy, after a predecessor deployed 3.5 days
    # before it ended whose worst instance sat a bucket step (5 %) above the leak's start, about half of
    # what 2.8 %/day over its age predicts. A healthy predecessor ends within a step of where the next one
    # starts: the leak stays on its revision.
    "slow_leak_not_given_to_a_healthy_predecessor_a_step_higher",
    # Guards of the sawtooth rule (a worst instance's day-long climb under level peaks is not a leak):
    # a leak whose worst instance's peaks climbed at 0.8 times its troughs' pace over days (3.8 % of the
    # limit a day; peaks need not keep the troughs' pace, only follow it) ...
    "leak_peaks_climb_slower_than_its_troughs",
    # ... and a fast leak (34 %/day) on a revision replaced after 13 h, whose peaks lagged its troughs
    # over those hours (a third of their pace): over hours, the peaks say nothing either way.
    "fast_leak_peaks_lag_over_its_first_hours",
    # The guard of the warm-up judged against later revisions: a slow leak (3.4 % of the limit a day) on a
    # young revision rose in its first hours no more than the next one's warm-up did. Only climbs of
    # 5 %/day or more are judged so; a slow leak is told from a warm-up by outlasting it.
    "slow_leak_young_revision_rises_like_a_later_warm_up",
    # A revision deployed 17 days before the window, seen for its last 26 h: its fleet's typical memory
    # dipped with the night's traffic and came back (a "climb" of 4.6 % a day), then a leak of 19 % a day
    # from the next deploy. Merged as carried on, the leak went to the glimpse, dated 17 days early; a
    # leak carried since that deploy would have put its troughs far above where they sat.
    "leak_not_carried_by_a_glimpse_of_mid_life_sitting_lower",
    # The same glimpse through the young-revision rule: a revision deployed four days before the window, seen
    # for its last 13 h, then a slow leak (2.4 % of the limit a day) from the next deploy, fixed 36 h later.
    # Its window hours read against the service's after-deploy course as though it had just been deployed
    # climbed at the leak's pace, and the leak went to it, dated four days early. Only a revision seen from
    # its deploy is read against that course.
    "leak_not_given_to_a_glimpse_of_mid_life_before_it",
    # An incident-like leak (12 % of the limit a day, per request): the oldest instance climbs from 35 % to
    # 55 % over 34 h, its peaks from 44 % to 63 %, and is replaced at half the limit (a drop of two bucket
    # steps, too small to split the troughs at); the younger ones after it sit at 46-50 % for the last
    # 20 h. Pooled over the revision the climb fades (p 0.06) and its later half reads as levelled off: it
    # was not reported. Its first climb, deploy to the oldest instance's top, lasted a day and passes alone.
    "leak_oldest_instance_climbs_a_day_and_a_half_until_replaced",
    # A flag flipped 21 h after the deploy (a leak of 18 % of the limit a day): on 2 h bins the worst
    # instance's troughs sit in one bucket and step up one (2 %) in the bin that holds the flip, the
    # typical one edges up with the evening's traffic, and the joint start landed 2.6 h early. Dated
    # between that start and the hourly troughs' (the sawtooth is short enough for them).
    "leak_flag_flipped_worst_instance_steps_a_bucket_before_the_flip",
    # A leak of 25 % of the limit a day begun at a deploy a day and a half before the window, its instances
    # OOM-killed and replaced over and over (57 kills): the revision, seen 2.9 days mid-cycle with its worst
    # instance at 72-100 % of the limit, has no climb of its own, and the next deploy carries the leak on
    # (found there from its deploy, 28 %/day from 32 %). Its pace over the first revision's age (4.6 days)
    # predicted a height of 129 % of the limit over the carrier's start, against the 64 % it sat at: not
    # "aged at the carrier's pace", and the leak went to the carrier. A leak's troughs go no higher than
    # the limit (68 % above that start).
    "leak_cycling_through_oom_kills_begun_before_the_window_carried_on",
    # The same shape at 13 % of the limit a day (6 OOM kills), the revision seen 1.9 days mid-cycle: its
    # worst instance had just been replaced at its end, 3 % above where the carrier's leak starts, though
    # its troughs had been 35 % above it (against a capped 48 %). A revision whose instances reach the
    # limit is as high as its troughs got, not where the cycle stood at its end.
    "leak_cycling_through_oom_kills_replaced_just_before_its_revisions_end",
    # A flag flipped 15 h after the deploy, the leak then cycling through OOM kills for eight days. On bins
    # aligned to the revision's first row its first kill dropped the worst trough 87 % -> 79 % of the limit
    # while another instance held the peak at 100 %: unsplit, the first segment ran through a day pinned at
    # the limit, and the climb was dated at the deploy.
    "leak_flag_flipped_first_oom_kill_under_a_peak_held_at_the_limit",
    # A leak of 12 % of the limit a day from a deploy replaced 9 h later, carried on for six days. Over its
    # 8 h after warm-up the worst instance stayed in one bucket of the distribution (50-55 % of the limit),
    # so the leak went to the carrier from its deploy; the fleet's typical memory had climbed 47 % -> 50 %.
    "leak_carried_from_a_9h_revision_whose_worst_instance_stayed_in_one_bucket",
    # A leak of 9 % of the limit a day fixed 18 h after its deploy. The worst instance climbed 44 % -> 52 %
    # in bucket steps; over its last 5.5 h (30-minute troughs) it stepped up once, early, then sat: read
    # as levelled off, the leak was only a candidate. Half its pace needs 11 h to climb one step.
    "leak_fixed_after_18h_its_worst_instance_a_bucket_step_up_then_level",
    # Leaks of 7.8 and 3.7 % of the limit a day from their deploys, each 32-36 h old at the end of the data:
    # the worst instance climbed from the deploy, but like an earlier revision's warm-up, so the trend test
    # kept it a candidate; the sequential test confirmed it on the fleet's typical troughs, which followed
    # the service's warm-up course for a day and bent 23 h after the deploy, where it dated the leak.
    "leak_at_deploy_worst_instance_climbs_while_the_fleet_follows_its_warm_up",
    "leak_at_deploy_fleet_troughs_bend_a_day_later_found_sequentially",
    # A flag flipped 17.5 h after the deploy (11 % of the limit a day), the data cut 12 h after the flip:
    # the sequential test dates it at its bend against the service's warm-up course; the trend test's
    # candidate, on the same typical troughs without that course, read them as climbing from the deploy
    # and must not date it there.
    "leak_flag_flipped_after_a_day_cut_12h_later_dated_by_the_fleet_against_its_warm_up",
    # A leak of 14 % of the limit a day, replaced after 20 h: its typical troughs climbed 10 % of the limit in
    # 10 h against the service's warm-up course, the sequential test's ratio reached 39 against a bar of 6.9,
    # then fresh instances pulled the fleet's troughs back over its last third. Read as a stalled climb, the
    # leak was lost; an alarm over STALL_OVERRULED_AT times its bar stands (at 8 times, it is lost again).
    "leak_at_deploy_alarm_far_above_its_bar_while_fresh_instances_pull_the_fleet_troughs_back",
    # Leaks from their deploys (24 and 8.5 % of the limit a day), the data cut 6 h after them: fresh instances
    # dilute the fleet's typical troughs (their sequential ratios 0.8 and 0.55 times the bar), while the oldest
    # instance climbs at the leak's full pace. The same test on the worst instance's troughs, against the
    # previous revision's worst troughs after its deploy, passes its bar (332 against 57, 20 against 9.2).
    # Before, they were found 9 h and 12 h after their deploys.
    "leak_found_six_hours_after_its_deploy_by_the_worst_instance",
    "leak_found_six_hours_after_its_deploy_by_the_worst_instance_2",
    # A per-hour leak of 21 %/day on a revision fixed after 46 h: its typical troughs climbed 19 % of the
    # limit in 13 h (the sequential test's ratio 46 against a bar of 6.9), then fell back as its instances
    # were replaced at the night's scale-in, and climbed again. Measured to its last hour, the climb's slope
    # fell under the size gate; it was found 9 h after its deploy and lost once the revision had ended.
    "leak_measured_to_its_alarms_peak_before_autoscaling_replaced_its_instances",
    # A per-request leak of 34 % of the limit a day from a deploy at a quiet hour (149585-0091): its 2 h
    # troughs held flat for two bins, then climbed with the morning's traffic, a start 3.9 h in on every
    # segment (12.8 log(n)); its hourly troughs show no later start. The two readings' mean dates it.
    "leak_at_deploy_at_a_quiet_hour_its_hourly_troughs_climbing_from_the_deploy",
    # A leak of 9 % of the limit a day from its deploy (402788-0004), after a revision seen for 47 h of its
    # mid-life whose 30 min troughs climbed within each GC cycle and fell back (12 segments), the whole
    # revision rising a little with its traffic: its cycles' pooled pace, 46 % of the limit a day, read as
    # that revision's own leak, which the next one carried on. A whole-revision rise under a quarter of the
    # pooled pace does not explain the splits (WHOLE_SHARE).
    "leak_at_deploy_after_a_mid_life_revision_whose_gc_cycles_read_as_a_climb",
    # Leaks of 7 and 8.9 % of the limit a day from their deploys, each replaced by a fix after 20 h
    # (693567-0121, 246384-0187): their instances turn over, so the worst troughs held within a bucket step
    # or two and neither trough test alarmed, while the worst instance's peaks climbed a bucket step every
    # six hours (0.63 -> 0.69, 0.60 -> 0.66 of the limit) where the previous revisions' peaks held one level.
    # The sequential test on the peaks, against the healthy revisions' peaks after their deploys, finds them.
    "leak_fixed_after_twenty_hours_its_troughs_flat_its_peaks_climbing",
    "leak_fixed_after_twenty_hours_its_peaks_climbing_a_step_every_few_hours",
    # Leaks of 10.6 and 9.5 % of the limit a day from their deploys (314416-0023, 685745-0103) whose troughs
    # bend 16-29 h in, well past the bar: the worst instance's peak had climbed three bucket steps and more
    # before that bend, at a steady load (0.46 -> 0.58, 0.35 -> 0.42 of the limit). In the first, that
    # instance was replaced and the peak fell back two steps before the bend, so the peak's level just
    # before it no longer showed the climb, and it was dated 29.7 h late; the second, 16.7 h late.
    "leak_at_deploy_its_peak_climbed_then_an_instance_replaced_before_a_later_bend",
    "leak_at_deploy_its_peak_climbed_three_steps_at_a_steady_load_before_a_later_bend",
    # A flag flipped 30 h after its deploy (407122-0053, 23 % of the limit a day): before the flip, the worst
    # instance's peak followed the afternoon's load per instance up five bucket steps and back (0.30 -> 0.38
    # as it went 7 -> 24 requests/s). Its high, read at the first bins' load, is no climb.
    "leak_flag_flipped_a_day_after_its_deploy_its_peak_up_and_back_with_the_load",
])
def test_the_leak_is_dated_within_two_hours_of_its_onset(name: str) -> None:
    found, label = _leak_onsets(name)
    [(revision, off_by)] = found
    assert revision == label["revision"]
    assert abs(off_by) <= 2.0, f"dated {off_by:+.1f} h from the labelled onset"


@pytest.mark.parametrize("name", [
    "leak_flag_flipped_its_troughs_bend_under_the_bar_its_peak_flat_to_the_flip",
    "leak_flag_flipped_sixteen_hours_in_its_peak_flat_by_a_step",
])
def test_a_flip_under_the_bar_whose_peak_held_flat_is_dated_by_the_troughs_alone(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flips whose troughs bend 4.4 and 8.3 log(n) at the flip, under ``ONSET_EVIDENCE``, their peak flat
    before it: the troughs' own reading takes that start (``memory._peak_flat_before``) with the reading
    that adds the peak switched off. That reading dates both flips too, so the fixtures above alone
    would not notice if the troughs' reading stopped taking them."""
    monkeypatch.setattr(memory, "_later_start_with_the_peak", lambda reading, climbs: None)
    found, label = _leak_onsets(name)
    [(revision, off_by)] = found
    assert revision == label["revision"]
    assert abs(off_by) <= 2.0, f"dated {off_by:+.1f} h from the labelled onset"


def test_a_flip_the_worst_instance_alone_shows_is_dated_at_the_flip_on_every_segment() -> None:
    """A per-hour leak switched on 37 h after the deploy: the worst instance's troughs bend there (in
    bucket steps), the fleet's typical memory hardly, so the two signals' first segments give a start
    after the deploy 2·log LR 24 (on either clock) against the 44 that ``ONSET_EVIDENCE`` asks at their
    80 troughs, and the leak was dated at the deploy, 37 h early (a strict miss, pinned here as one
    until the thirty-ninth session). Read once more on every segment of each signal, each with a level
    of its own (``memory._segmented_points``), the flip clears the same bar: dated within 2 h."""
    found, label = _leak_onsets("leak_flag_flipped_the_fleet_without_a_hinge")
    [(revision, off_by)] = found
    assert revision == label["revision"]
    assert abs(off_by) <= 2.0, f"dated {off_by:+.1f} h from the labelled onset"


def test_a_flip_after_a_short_first_segment_is_dated_near_the_flip() -> None:
    """A per-hour leak (36 % of the limit a day) switched on 37 h after the deploy. The worst instance's
    troughs (2 h bins, in bucket steps) dip one step in their fifth bin, which split a first segment of
    five bins off the climb; the onset is fitted on a signal's first segment only, one of five bins was
    left out as too short, and the fleet's typical memory alone (diluted, gain 9 against a bar of 35)
    dated the leak at the deploy, 37 h early. Fitted on the bins up to the end of the first segment long
    enough, the flip is clear (gain 65): dated 2.8 h early, still a strict miss (the worst instance's
    bucket steps pull the hinge back); the test pins that it is dated at the flip, not the deploy."""
    found, label = _leak_onsets("leak_flag_flipped_after_a_short_first_segment")
    [(revision, off_by)] = found
    assert revision == label["revision"]
    assert -4.0 < off_by < 0.0, f"dated {off_by:+.1f} h from the labelled onset"


def test_the_onset_fit_in_blocks_equals_a_least_squares_fit_start_by_start() -> None:
    """``stats.ramp_fits`` (rising only, as the onset uses it) fits every start of the onset's
    five-minute grid in closed form, a block of starts at a time; each must equal a least-squares fit
    of level + pace · max(x − start, 0) made on its own (a falling pace held at zero: the flat fit),
    across the blocks' edges."""
    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(0.0, 200.0, 90))
    y = 0.3 + 0.002 * np.maximum(x - 80.0, 0.0) + rng.normal(0.0, 0.01, len(x))
    y[-20:] -= 0.2  # a fall at the end (a reset): the starts just before it fit a falling pace
    starts = np.arange(0.0, 200.0, 1.0 / 12.0)  # 2,400 starts, ten blocks
    got = stats.ramp_fits(x, y, starts, rising=True)[0]
    for i in range(len(starts)):
        design = np.column_stack([np.ones(len(x)), np.maximum(x - starts[i], 0.0)])
        coef, *_ = np.linalg.lstsq(design, y, rcond=None)
        want = ((design @ coef - y) ** 2).sum() if coef[1] > 0 else ((y - y.mean()) ** 2).sum()
        assert got[i] == pytest.approx(want, rel=1e-9, abs=1e-15), starts[i]


def test_the_onset_fit_with_load_equals_a_constrained_least_squares_fit_start_by_start() -> None:
    """``stats.rising_ramp_errors`` fits level + pace · max(x − start, 0) + effect · load with pace and
    effect held non-negative, every start in closed form; each must equal the best of the least-squares
    fits made on their own with each coefficient free or held at zero, keeping only fits whose free
    coefficients come out non-negative (the constrained optimum is one of them), across the blocks'
    edges, for climbs, falls and load effects of either sign."""
    rng = np.random.default_rng(11)
    x = np.sort(rng.uniform(0.0, 200.0, 90))
    load = 40.0 + 15.0 * np.sin(x / 24.0 * 2 * np.pi) + rng.normal(0.0, 3.0, len(x))
    starts = np.arange(0.0, 200.0, 1.0 / 12.0)
    cases = {
        "climb with a load effect": 0.3 + 0.002 * np.maximum(x - 80.0, 0.0) + 0.001 * load,
        "fall against load": 0.5 - 0.001 * np.maximum(x - 60.0, 0.0) - 0.002 * load,
        "climb then reset": np.where(x < 150.0, 0.3 + 0.003 * np.maximum(x - 40.0, 0.0), 0.2),
    }
    for name, clean in cases.items():
        y = clean + rng.normal(0.0, 0.01, len(x))
        got = stats.rising_ramp_errors(x, y, starts, load)
        for i, start in enumerate(starts):
            ramp = np.maximum(x - start, 0.0)
            best = float(((y - y.mean()) ** 2).sum())
            for columns in ([ramp], [load], [ramp, load]):
                design = np.column_stack([np.ones(len(x)), *columns])
                coef, *_ = np.linalg.lstsq(design, y, rcond=None)
                if (coef[1:] >= 0).all():
                    best = min(best, float(((design @ coef - y) ** 2).sum()))
            assert got[i] == pytest.approx(best, rel=1e-7, abs=1e-12), (name, start)


def test_the_onset_fit_with_a_level_per_segment_equals_a_constrained_least_squares_fit_start_by_start() -> None:
    """With ``groups``, ``stats.rising_ramp_errors`` gives each run of points a level of its own (one
    indicator column per run) beside the shared pace after the start and the load's effect, both held
    non-negative: each start's error must equal the best of the constrained least-squares fits made on
    their own, for a climb reset twice (each reset one level lower) and for flat runs; a single group
    is the fit without groups."""
    rng = np.random.default_rng(12)
    x = np.sort(rng.uniform(0.0, 120.0, 70))
    load = 30.0 + 10.0 * np.sin(x / 24.0 * 2 * np.pi) + rng.normal(0.0, 2.0, len(x))
    groups = np.array([0, 20, 41, 55])
    label = np.repeat(np.arange(len(groups)), np.diff(np.append(groups, len(x))))
    levels = np.array([0.3, 0.25, 0.32, 0.2])[label]
    starts = np.arange(0.0, 120.0, 1.0 / 12.0)
    cases = {
        "climb reset at each run": levels + 0.004 * np.maximum(x - 30.0, 0.0) - 0.003 * (label > 1) * x
                                   + 0.001 * load,
        "flat runs": levels,
    }
    dummies = (label[:, None] == np.arange(len(groups))[None, :]).astype(np.float64)
    for name, clean in cases.items():
        y = clean + rng.normal(0.0, 0.01, len(x))
        got = stats.rising_ramp_errors(x, y, starts, load, groups)
        for i, start in enumerate(starts[::7]):
            ramp = np.maximum(x - start, 0.0)
            coef, *_ = np.linalg.lstsq(dummies, y, rcond=None)
            best = float(((dummies @ coef - y) ** 2).sum())
            for columns in ([ramp], [load], [ramp, load]):
                design = np.column_stack([dummies, *columns])
                coef, *_ = np.linalg.lstsq(design, y, rcond=None)
                if (coef[len(groups):] >= 0).all():
                    best = min(best, float(((design @ coef - y) ** 2).sum()))
            assert got[i * 7] == pytest.approx(best, rel=1e-7, abs=1e-12), (name, start)
        one = stats.rising_ramp_errors(x, y, starts, load, np.array([0]))
        assert one == pytest.approx(stats.rising_ramp_errors(x, y, starts, load), rel=1e-9, abs=1e-15)


@pytest.mark.parametrize("name", ["leak_at_deploy_mid_grid_step", "leak_fills_the_limit_in_a_day_and_hovers_there",
                                  "leak_pinned_at_the_limit"])
def test_a_leak_found_in_the_worst_instance_is_told_in_its_troughs(name: str) -> None:
    """A leak found in the worst instance's troughs is told in them. Its levels were the typical
    instance's: "climb 38 % of the limit per day (from 40 % to 68 % over 32 h); instances already reach
    their limit", while the instance that climbed sat at 91 %, and the chart drew the typical troughs
    under the label "(worst instance)". Here the worst instance reached the limit and was OOM-killed:
    the highest trough told, in the evidence and in the summary, is at the limit."""
    frames, _ = _frames(name)
    [finding] = [f for f in analyze_frames(frames, AnalysisConfig()).findings
                 if f.kind.value == "memory_baseline_rise"]
    evidence = finding.evidence
    assert evidence["signal"] == "worst instance"
    assert "already reach their limit" in finding.summary
    assert evidence["trough_highest_pct_of_limit"] >= 90.0, evidence["trough_highest_pct_of_limit"]
    told = finding.summary.split("(from ", 1)[1].split(" over", 1)[0]
    assert told.endswith(("90%", "91%", "92%", "93%", "94%", "95%", "96%", "97%", "98%", "99%", "100%")), told


def test_regressions_are_judged_against_a_glimpse_whose_day_was_no_leak() -> None:
    """The other half of the glimpse above: while cart-00382's day read as a leak, it was no reference for
    the next revision's latency and CPU, and no other revision was, so a 19 %/day leak's slower, costlier
    requests went unreported. Once that finding is dropped they are judged against it, and priced with
    the revision's other findings (one excess per revision)."""
    frames, _ = _frames("leak_not_carried_by_a_glimpse_of_mid_life_sitting_lower")
    found = {f.kind.value: f for f in analyze_frames(frames, AnalysisConfig()).findings}
    assert set(found) == {"memory_baseline_rise", "instance_creep", "latency_regression", "cpu_regression"}
    assert {f.revision for f in found.values()} == {"cart-00383-b2b"}
    for kind in ("latency_regression", "cpu_regression"):
        assert found[kind].evidence["previous_revision"] == "cart-00382-ckg"
        assert found[kind].excess_cost_usd_per_month == found["memory_baseline_rise"].excess_cost_usd_per_month


def test_a_leak_far_faster_than_the_confirmed_climb_before_it_is_the_deploys_own() -> None:
    # geo-00267 served 13 h and its typical memory climbed 5 %/day (a weak climb of its own, confirmed);
    # geo-00268 leaked 33 %/day from its deploy. A carried leak restarts at each deploy at the same pace:
    # this one was read as carried from geo-00267, and its finding went there, 13 h before its onset.
    name = "leak_from_its_deploy_far_faster_than_the_weak_climb_before_it_is_its_own"
    found, label = _leak_onsets(name)
    mine = [off_by for revision, off_by in found if revision == label["revision"]]
    assert mine and abs(mine[0]) <= 2.0, found


@pytest.mark.parametrize("name", [
    # embeddings-00210's leak flipped on at 15:52 and its GC cost held +15 % CPU per request from
    # 20:45; at 18:00-19:00 traffic doubled and a new instance started each hour, whose start-up burst
    # read +28 % against request rate alone: dated at 17:00, 3.8 h early.
    "cpu_of_a_leak_dated_past_a_scale_out_that_started_instances",
    # inventory-00182's leak flipped on the day after its deploy (05:49, GC cost at once); the
    # afternoon before it, traffic at its lowest (52-71 requests an hour), instances starting as it
    # rose read +20-30 % for hours: dated there, 17 h early.
    "cpu_of_a_leak_dated_past_an_afternoon_of_instance_starts",
    # geo-00177's GC cost grew by 1-4 points an hour; its hours read +10.0, +10.1, +15.0, +14.0 and
    # +22.2 % against the reference's drivers from 07:00, against the +15 % margin. Two of three hours
    # held it only from 10:00, 2.4 h after its label; their mean holds it from 09:00.
    "cpu_of_a_leak_dated_on_the_mean_of_three_hours_not_their_median",
    # gateway-00201's leak drove its GC cost to +17.8 % of CPU per request over its 5 days (labelled).
    # Its quieter hours (1,600-3,000 requests an hour) ran below the reference's quietest bin (about
    # 4,200: its 36 h held one quieter hour), where the drift test's expectation stays flat at that bin's
    # CPU and read them 0.56-0.9 of what they used; the revision taken whole read +8.7 %, under the +15 %
    # margin: not found. Against the CPU's drivers (requests, instance starts, running instances), +17 %.
    "cpu_of_a_leak_sized_on_its_drivers_past_its_quiet_hours",
])
def test_a_leaks_cpu_cost_is_dated_where_it_held_the_margin_not_where_instances_started(name: str) -> None:
    _assert_found_once_within_two_hours(name, "cpu_regression")


def _assert_found_once_within_two_hours(name: str, kind: str) -> None:
    """The fixture's one finding of ``kind`` is on its label's revision, dated within 2 h of its onset."""
    frames, _ = _frames(name)
    label = next(x for x in json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))["labels"]
                 if x["kind"] == kind)
    found = [f for f in analyze_frames(frames, AnalysisConfig()).findings if f.kind.value == kind]
    assert [f.revision for f in found] == [label["revision"]]
    off_by = (pd.Timestamp(found[0].onset) - pd.Timestamp(label["onset"])) / pd.Timedelta(hours=1)
    assert abs(off_by) <= 2.0, off_by


@pytest.mark.parametrize("name", [
    # auth-00274 (1-2 instances) runs an extra instance in its busy hours and none at night, from its
    # deploy (a latency regression): +43 % over its 66 h, 0.56 of an instance on average, but above
    # 0.75 of one in half its hours, so no excess period held the detection gate. Creep of the revision
    # taken whole (``creep.WHOLE_REVISION_HOURS``).
    "creep_of_a_small_service_whose_extra_instance_comes_with_the_busy_hours",
    # geo-00295's slower requests (from 10:49) needed 4-5 more instances from 15:30, when its traffic
    # rose. Judged at each step's own request rate, the expectation mixed quieter and busier quarter
    # hours and the excess held its margin from 18:00 only: dated 2.5 h late.
    "creep_at_a_latency_regression_dated_on_the_busiest_quarter_hour",
    # The incident's shape (a per-request leak; cart-00238): 3.3 instances more than its load needed
    # (12.9), +25.4 % by its label, most of it in the scale-outs of its busy hours. Read on hourly medians
    # the revision taken whole ran +24.8 %, under the 25 % gate, and its creep went unreported; on the
    # means of its steps, what it paid for, +25.2 %: a margin case, on the right side of it now.
    "creep_of_the_incident_whose_bursts_the_hourly_medians_read_under_the_gate",
    # webhooks-00072 ran 4.0, 2.3 and 2.5 instances more than its load needed in its first three hours
    # after warm-up, against a margin of 2.58: their mean (2.94) held it, as its label does from the
    # deploy; their median (2.47) did not, and the creep was dated 8.6 h after its deploy: the hours
    # between read under the margin against an expectation held at 7 instances while the load fell.
    "creep_from_the_deploy_its_first_hour_the_largest_dated_on_the_mean_of_three",
    # media-00364 ran one extra instance in its first two hours, 0.4 in the third and none for the
    # night, then one from 02:00, growing: the median of its first three hours (1.0) held the margin
    # (0.82), their mean (0.79) did not. Dated at the deploy it was 5.7 h before its labelled onset.
    "creep_an_extra_instance_two_hours_of_three_after_the_deploy_dated_where_it_held",
])
def test_creep_is_found_on_its_revision_within_two_hours_of_its_onset(name: str) -> None:
    _assert_found_once_within_two_hours(name, "instance_creep")
