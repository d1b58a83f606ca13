"""What a revision is judged and priced against when the previous one served only briefly: its creep,
and the excess cost of its anomalies against the labelled excess (their share of the revision's last
day of cost, as ``bench/evaluate.py`` scores it), on services taken from simulated scenarios
(``tests/data/onsets``, loaded as ``tests/test_leak_onsets`` does)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from analyzer.analysis import analyze_frames
from analyzer.config import AnalysisConfig
from analyzer.model import Finding
from tests.test_leak_onsets import DATA, _frames


def _excess_shares(name: str) -> tuple[dict[str, float], float, str]:
    """Per finding kind on the labelled revision, its excess share (cost now against the counterfactual
    cost), the labelled share, and what the excess was priced against."""
    frames, _ = _frames(name)
    meta = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    label = meta["labels"][0]
    found = [f for f in analyze_frames(frames, AnalysisConfig()).findings if f.revision == label["revision"]]
    shares = {f.kind.value: (f.evidence["cost_now_usd_per_hour"] - f.evidence["cost_counterfactual_usd_per_hour"])
              / f.evidence["cost_now_usd_per_hour"] for f in found}
    return shares, label["excess_fraction_last_day"], str(found[0].evidence["cost_reference"])


@pytest.mark.parametrize("name", [
    # The previous revision served 12 h of the window (11 h after its warm-up), under half of
    # creep.reference_hours; the new one regressed at its deploy. Priced against its own first 24 h,
    # the anomaly was its own reference and the excess came out at 0.3 % instead of 54 %.
    "excess_predecessor_served_12h",
    # A Sunday priced against three weekdays: a third of its steps were quieter than any the reference
    # saw, where one instance still served every step. The quietest half of the reference's bins
    # reached the first step up (one instance to two, +40 %), so below them a night was priced at 60 %
    # of that one instance and the leak's excess read +54 % too high (20.5 % for a labelled 13.3 %);
    # the power is now fitted on the quietest third, flat on the one instance.
    "excess_quiet_night_below_the_reference_on_one_instance",
    # Inside the reference's range: cost per step climbs by whole instances within a few requests per
    # second, and twelve bins drew straight lines across those steps (-12.7 %); 24 bins, -8.7 %.
    "excess_instance_steps_within_the_reference_range",
    # The previous revision served 21 h, too briefly to be the reference, and used 4 % less per request
    # than the one before it (routine deploys move it a few percent either way). Priced against the older
    # revision alone, the latency regression's excess read 4.4 % of the cost for a labelled 8.0 %; at the
    # previous revision's level, 8.4 %.
    "excess_short_previous_revision_sets_the_level",
    # An incident whose last day ran at up to 37 req/s against a reference that served 6-17 req/s:
    # above its busiest step the load model grows in proportion to load, and with requests overlapping
    # on an instance the counterfactual came out high (excess 5.1 % of the cost for a labelled 17.2 %).
    # The fix that followed served 12-33 req/s without a finding; its steps above the reference's range,
    # at the reference's level, price it at 18.3 %.
    "excess_above_the_reference_range_from_a_revision_that_served_it",
    # A leak fixed 67 h after its deploy, its last day from Saturday to Sunday morning, after a predecessor
    # seen on weekdays (a Wednesday night to Thursday afternoon): against the predecessor alone the excess read
    # 0.2 % of the cost for a labelled 4.6 %; with the fix's first days joining the reference (the old
    # behaviour after the leak, as the predecessor is before it), 4.7 %.
    "excess_of_a_leak_fixed_priced_with_the_fix_that_ended_it",
    # An incident on an instance-billed service (every instance's whole life billed): Cloud Run keeps an
    # instance until it has sat idle about 15 minutes, so a step's instances follow the busiest load of the
    # quarter hour before it. Modelled on each step's own request rate, the previous revision's mean at
    # a rate (steps after a busier quarter hour among them) was more than the counterfactual needed there,
    # and the excess read 19.2 % of the cost for a labelled 22.8 %; on the busiest rate of the step and
    # the 15 minutes before it, 22.7 %.
    "excess_instance_billed_incident_priced_on_the_busiest_quarter_hour",
    # cart-00342 leaked from its deploy and cart-00343 carried the leak on 45 h later; the carrier's CPU
    # regression (the leak's GC work) went to cart-00342 with the price it had on the carrier's last day,
    # against the carrier's level: 23.3 % of the cost beside the leak's 12.8 %, for a labelled 12.6 %. It
    # takes the leak's price now: one excess per revision.
    "excess_of_a_carried_leaks_cpu_cost_priced_with_the_leak",
    # A leak priced against two earlier revisions that served 5.7-82 req/s: 27 % of its last day was
    # quieter or busier than that. Extrapolated there, the counterfactual read 4-10 % above what the
    # leaking revision used, and the excess came out at 3.6 % of the cost for a labelled 5.9 %. Beyond
    # the range, what it adds now lies between nothing and its share inside (+8 %): 5.7 %.
    "excess_beyond_the_reference_range_bounded_by_the_share_inside",
])
def test_the_excess_is_within_ten_percent_of_the_labelled_one(name: str) -> None:
    shares, labelled, reference = _excess_shares(name)
    assert shares
    for kind, share in shares.items():
        assert share / labelled - 1 == pytest.approx(0.0, abs=0.10), f"{kind}: {share:.4f} against {reference}"


def test_a_weekend_below_the_reference_range_is_not_priced_as_a_saving() -> None:
    # A CPU regression on an instance-billed service, its last day a weekend at 20-30 req/s against a
    # reference that served 42-150: 63 % of that day was quieter than any step the reference saw. There
    # the counterfactual, a power of load below the reference's quietest bin, came to 1.66 times the
    # instance time the revision used, so the regression read as a saving of 29 % of the cost (labelled:
    # +8.0 %). It now adds nothing beyond the range and what it adds inside (+4.8 %) within it.
    # Known loss: that is 2.4 % of the cost, short of the label by two thirds.
    shares, labelled, reference = _excess_shares("excess_of_a_weekend_below_the_reference_range_not_a_saving")
    assert set(shares) == {"cpu_regression"}, reference
    assert 0.015 < shares["cpu_regression"] < labelled / 2


def test_a_flag_flip_is_priced_against_its_own_hours_before_it() -> None:
    # A leak switched on 48 h after the deploy of a revision that then served 11 more days, after a
    # predecessor seen for 17 h two weeks before the revision's last day: priced against that predecessor,
    # the excess read 3.9 % of the last day's cost for a labelled 18.8 % (-79 %); against the revision's
    # own 48 h before the leak began (the old behaviour itself, at its own level), 16.1 % (-14 %).
    shares, labelled, reference = _excess_shares("excess_of_a_flag_flip_priced_against_its_own_hours_before")
    assert reference.startswith("inventory-00311-cps before ")
    for kind, share in shares.items():
        assert share / labelled - 1 == pytest.approx(0.0, abs=0.20), f"{kind}: {share:.4f} against {reference}"


def test_creep_after_a_briefly_serving_revision_is_judged_against_it() -> None:
    # The same service: 11 h of the previous revision, after its warm-up, are under half of
    # creep.reference_hours. Judged against its own first 24 h, the revision that needed 2.2 times the
    # instances from its deploy on showed no creep at all.
    creep, off_by = _creep_against_its_label("excess_predecessor_served_12h")
    assert creep.evidence["reference"] == "revision auth-00180-odg"
    assert abs(off_by) <= 2.0


def test_creep_that_grew_with_a_leak_its_first_hours_read_over_the_margin_is_dated_at_the_deploy() -> None:
    # A leak from the deploy: its instances grew from 2.9 over the expected count in the first hour to 10
    # a day later. Its first three hours after warm-up read 2.9, 2.5 and 2.4 instances over the load
    # model's expectation, 2.6 in their mean against a margin of 2.5 (a quarter of the mean count over
    # the revision's hours; against a quarter of the median count of its excess period, 1.5, it held
    # from the deploy on any reading), so the creep is dated at its deploy, 4.6 h before its label: a
    # known loss. The reference's load model expects 0.3-0.6 of an instance fewer at night than the
    # counterfactual run used, so those hours' real excess was 2.3 in their mean, under the margin.
    # On their median (2.47) it was dated 1.9 h after its label, but on fourteen development draws the
    # median of the first three hours dated four creeps 5.7-9.9 h off that their mean dates right
    # (docs/detection-quality.md).
    _, off_by = _creep_against_its_label("creep_growing_with_a_leak_dated_where_it_held_a_margin_of_the_mean_count")
    assert off_by == pytest.approx(-4.63, abs=0.1)


def test_creep_with_slower_requests_at_a_quiet_deploy_is_dated_at_the_deploy() -> None:
    # An incident-like deploy at a quiet hour: slower requests ran an extra instance most of each hour and
    # bursts of several (hourly medians of the excess +1.0-2.5 instances against a margin of 1.8, a quarter
    # of the revision's mean expected count). Dated on the medians, the creep held the margin only when
    # traffic came back, 8.6 h after the deploy; on hourly means, from the deploy, where the label is.
    _, off_by = _creep_against_its_label("creep_with_slower_requests_at_a_quiet_deploy_dated_on_hourly_means")
    assert abs(off_by) <= 2.0, off_by


def _creep_against_its_label(name: str) -> tuple[Finding, float]:
    """The fixture's one creep finding, on its labelled revision, and its onset's hours from the label's."""
    frames, _ = _frames(name)
    label = next(x for x in json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))["labels"]
                 if x["kind"] == "instance_creep")
    [creep] = [f for f in analyze_frames(frames, AnalysisConfig()).findings if f.kind.value == "instance_creep"]
    assert creep.revision == label["revision"]
    return creep, float((pd.Timestamp(creep.onset) - pd.Timestamp(label["onset"])) / pd.Timedelta(hours=1))
