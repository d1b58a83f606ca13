"""Run every detector over one service and turn their evidence into Findings a person can act on:
onset, attributed revision, a confidence measured on the labelled suite (``calibration``), severity, a
likely cause, time to the memory limit, and dollars (per window and per month, and what a fixing
revision saved). ``detect_sidecar_leaks`` runs the memory part of it on one sidecar container's memory.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from itertools import pairwise

import numpy as np
import pandas as pd

from analyzer.analysis import calibration
from analyzer.analysis import cost as cost_model
from analyzer.analysis.creep import CreepEvidence, detect_creep
from analyzer.analysis.envelope import (
    Envelope,
    build_envelope,
    climbs_like,
    sequential_leak,
    young_enough,
)
from analyzer.analysis.memory import (
    BUCKETED,
    COLUMN,
    OOM_LEVEL,
    PEAK,
    TYPICAL,
    WORST,
    YOUNG_HOURS,
    LeakEvidence,
    detect_leak,
    hours_to_limit,
    long_troughs,
    rises_like_before,
    rises_like_later,
    signal_words,
    typical_memory,
)
from analyzer.analysis.regression import RegressionEvidence, cpu_held_in, detect_cpu, detect_latency
from analyzer.analysis.timeline import (
    RevisionSpan,
    ServiceView,
    between,
    hours_between,
    reference_span,
    seen_from_deploy,
    served_hours,
)
from analyzer.config import AnalysisConfig
from analyzer.model import Finding, FindingKind, FloatArray, Severity
from analyzer.prices import PriceTable

PER_REQUEST_LEAK = (
    "a per-request resource or connection leak: memory troughs climb, instances creep and CPU/latency rise "
    "right after one deploy (e.g. a new HTTP client or connection pool created per request; share one client "
    "with a tuned transport)"
)


@dataclass(slots=True)
class RevisionEvidence:
    """Everything the detectors found about one revision (kept for charts and the fix check)."""

    span: RevisionSpan
    reference: RevisionSpan | None = None  # what creep, regressions and the excess cost compared with
    leak: LeakEvidence | None = None
    creep: CreepEvidence | None = None
    latency: RegressionEvidence | None = None
    cpu: RegressionEvidence | None = None
    findings: list[Finding] = field(default_factory=list)
    container: str = ""  # the sidecar whose memory ``leak`` is about ("": the service's ingress container)
    # The regressions judged without a reference (every earlier revision had a finding, or none served
    # long enough): ``_judge_regressions_left_without_a_reference`` asks again once merges are done.
    unreferenced: tuple[FindingKind, ...] = ()
    # The previous revision, when it has no finding but served too briefly to be ``reference``: the excess
    # cost's counterfactual is set at its level (``cost.excess_cost``), what a rollback would return to.
    level_of: RevisionSpan | None = None


def detect_service(view: ServiceView, config: AnalysisConfig, table: PriceTable) -> list[RevisionEvidence]:
    detection = config.detection
    evidence: list[RevisionEvidence] = []
    flagged: set[str] = set()  # revisions with a finding (or a leak candidate): never a reference
    # Revisions with a finding: never a regression's reference. A leak candidate that no test confirmed
    # (memory climbing for a while, then not) says nothing about latency or CPU per request, and
    # skipping it can leave a revision with no reference at all, its regression unseen.
    with_findings: set[str] = set()
    for span in view.spans:
        # Creep is judged on days of serving, regressions on their compared hours.
        creep_reference = reference_span(view, span, flagged, detection.creep.reference_hours)
        latency_reference, latency = _regression(view, span, FindingKind.LATENCY_REGRESSION, config, with_findings)
        cpu_reference, cpu = _regression(view, span, FindingKind.CPU_REGRESSION, config, with_findings)
        item = RevisionEvidence(
            span,
            reference=creep_reference,
            leak=detect_leak(view, span, detection, flagged=flagged),
            creep=detect_creep(view, span, detection, reference=creep_reference),
            latency=latency,
            cpu=cpu,
            unreferenced=tuple(kind for kind, reference in ((FindingKind.LATENCY_REGRESSION, latency_reference),
                                                            (FindingKind.CPU_REGRESSION, cpu_reference))
                               if reference is None),
        )
        previous = _previous_without(view, span, flagged)
        if previous is not None and (creep_reference is None or previous.name != creep_reference.name):
            item.level_of = previous
        item.findings = _findings(view, item, config, table)
        if item.findings or item.leak is not None:
            flagged.add(span.name)
        if item.findings:
            with_findings.add(span.name)
        evidence.append(item)
    _warm_ups_seen_later(view, evidence, flagged, config, table)
    _sequential_leaks(view, evidence, flagged, config, table)
    _merge_carried_leaks(view, evidence, config)
    _judge_regressions_left_without_a_reference(view, evidence, config, table)
    _merge_carried_regressions(evidence)
    _leaks_that_came_with_a_carried_regression(evidence)
    _give_carried_leaks_their_symptoms(view, evidence, config)
    _give_carried_regressions_their_creep(evidence)
    _price_with_the_revisions_around_it(view, evidence, config, table)
    _mark_resolution(view, evidence)  # a resolved finding's assumed savings are its (final) excess
    _measure_savings(view, evidence, table, config)
    return evidence


def _price_with_the_revisions_around_it(view: ServiceView, evidence: list[RevisionEvidence], config: AnalysisConfig,
                                       table: PriceTable) -> None:
    """Once every revision is judged, a revision's excess is priced again (``cost.excess_cost``) with
    the clean revisions around it, those without a finding of their own or one they carried on:

    - where its load went above its reference's busiest step, the steps of those (before or after it)
      that served that load (``beyond``): on twenty-four development draws, found anomalies priced
      beyond ±20 % of the labelled excess 178 -> 170, within ±10 % 2,122 -> 2,126 of 2,450;
    - the next revision, when it ended the anomaly and served ``creep.reference_hours`` (as long as a
      reference must): its first days join the reference (``ended_by``). On fourteen development draws
      within ±10 % 1,315 -> 1,324 of 1,498 (beyond ±20 % 90 -> 88), on eighteen more 1,587 -> 1,596 of
      1,823 (117 -> 115), nearly all leaks fixed within days (docs/cost-model.md). A carrier is not
      clean: a revision that shipped the leak on, its findings moved to the one that introduced it,
      joined the reference as "the fix" and read a leak's excess 34-64 % low (three on fourteen draws).

    Its own findings get the new price; a finding moved in from a carrier keeps its own."""
    # Without a finding of its own, nor one it carried on (moved to the revision that introduced it).
    carriers = {f.evidence.get("carried_by") for item in evidence for f in item.findings}
    clean = [item.span for item in evidence if not item.findings and item.leak is None and not item.container
             and item.span.name not in carriers]
    judged = config.detection.creep.reference_hours
    for item, after in zip(evidence, [*evidence[1:], None], strict=True):
        span = item.span
        own = [f for f in item.findings if f.revision == span.name]
        if item.container or not own or "cost_now_usd_per_hour" not in own[0].evidence:
            continue
        # The revision that ended it, when it served long enough to be judged clean (as a reference must).
        ended_by = (after.span if after is not None and after.span in clean and served_hours(view, after.span) >= judged
                    else None)
        onsets = [pd.Timestamp(f.onset) for f in own]
        excess = cost_model.excess_cost(view, span, min([span.first_seen, *onsets]), table, config,
                                        reference=item.reference, healthy_until=min(onsets),
                                        level_of=item.level_of, beyond=clean, ended_by=ended_by)
        if excess is None or not excess.joined:
            continue
        for finding in own:
            finding.excess_cost_usd_window = round(excess.window_usd, 2)
            finding.excess_cost_usd_per_month = round(excess.per_month_usd, 2)
            finding.evidence.update(cost_model.excess_evidence(excess))


def _previous_without(view: ServiceView, span: RevisionSpan, excluded: Collection[str]) -> RevisionSpan | None:
    """The revision just before ``span``, unless ``excluded`` names it (it had a finding)."""
    previous = view.previous(span.name)
    return previous if previous is not None and previous.name not in excluded else None


def _regression(view: ServiceView, span: RevisionSpan, kind: FindingKind, config: AnalysisConfig,
                with_findings: set[str]) -> tuple[RevisionSpan | None, RegressionEvidence | None]:
    """``span``'s latency or CPU regression (``kind``), judged against its reference: the last earlier
    revision that served the compared hours without a finding (not one in ``with_findings``)."""
    detection = config.detection
    if kind is FindingKind.LATENCY_REGRESSION:
        reference = reference_span(view, span, with_findings, detection.latency.compare_hours)
        return reference, detect_latency(view, span, detection, reference=reference,
                                         previous=_previous_without(view, span, with_findings))
    reference = reference_span(view, span, with_findings, detection.cpu.compare_hours)
    return reference, detect_cpu(view, span, detection, default_cpu=config.pricing.default_cpu, reference=reference)


def _give_carried_regressions_their_creep(evidence: list[RevisionEvidence]) -> None:
    """A revision that carries on an earlier revision's latency or CPU regression (that finding says
    ``carried_by``) and shows instance creep against the revision before the regression, where the
    earlier one showed none (it served too briefly for creep, judged on days of serving, to show), shows
    the regression's instances: slower or costlier requests need more of them. The creep goes to the
    revision that introduced the regression, naming its carrier, as ``_give_carried_leaks_their_symptoms``
    does for a leak's. On five development draws (1,000 scenarios) this moved two creep findings from
    the carrier to the labelled revision, and changed no other finding."""
    for before, after in pairwise(evidence):
        if (not _regressions_carried_by(before, after)
                or any(f.kind is FindingKind.INSTANCE_CREEP for f in before.findings)
                or (after.reference is not None and after.reference.name == before.span.name)):
            continue
        for finding in [f for f in after.findings if f.kind is FindingKind.INSTANCE_CREEP]:
            _move_to_origin(finding, before, after,
                            f"With the regression of {before.span.name}, carried on by {after.span.name}")


def _regressions_carried_by(before: RevisionEvidence, after: RevisionEvidence) -> list[Finding]:
    """``before``'s latency and CPU regressions that ``after`` carries on (``_merge_carried_regressions``)."""
    return [f for f in before.findings if f.kind in (FindingKind.LATENCY_REGRESSION, FindingKind.CPU_REGRESSION)
            and f.evidence.get("carried_by") == after.span.name]


WARM_UP_PER_DAY = 0.05  # a young revision's climb this fast may be the warm-up later revisions show too


def _warm_ups_seen_later(view: ServiceView, evidence: list[RevisionEvidence], flagged: set[str],
                         config: AnalysisConfig, table: PriceTable) -> None:
    """A young revision's leak, confirmed with no earlier revision to show how the service warms up
    (the first deploy in the window, or earlier ones flagged), that rose no more than the next
    unflagged revisions did at the same age (``memory.rises_like_later``) was their warm-up: kept as an
    unconfirmed candidate. Only climbs of ``WARM_UP_PER_DAY`` or more: a slow leak's first day rises no
    more than a warm-up does, and is told from one by outlasting it. On fourteen development draws
    (2,800 scenarios) this cleaned four warm-ups (two of them on the first deploy in the window) and
    lost one weak leak; without the floor, three weak leaks of 2-3 % a day. The revision's other findings
    are made again without the leak (``_findings``): its excess and likely cause were the leak's."""
    for item in evidence:
        leak = item.leak
        if (leak is not None and leak.confirmed and leak.slope_per_day >= WARM_UP_PER_DAY
                and rises_like_later(view, item.span, config.detection, flagged, leak.signal)):
            item.leak = replace(leak, confirmed=False)
            item.findings = _findings(view, item, config, table)


SIDECAR_COST = ("not priced on its own: a sidecar's memory costs nothing until it adds instances, which the "
                "revision's instance-creep finding prices")


def detect_sidecar_leaks(view: ServiceView, container: str, config: AnalysisConfig,
                         table: PriceTable) -> list[RevisionEvidence]:
    """The memory part of ``detect_service`` on one sidecar container: ``view`` is the service's, its
    memory columns the sidecar's (``analysis.sidecars``). Each revision's leak, warm-ups seen on the
    revisions after it, the sequential test of young revisions, leaks carried across deploys and their
    resolution, as for the ingress container; creep and regressions are the service's and found once,
    by ``detect_service``."""
    evidence: list[RevisionEvidence] = []
    flagged: set[str] = set()
    for span in view.spans:
        item = RevisionEvidence(span, container=container,
                                leak=detect_leak(view, span, config.detection, flagged=flagged))
        item.findings = _findings(view, item, config, table)
        if item.leak is not None:
            flagged.add(span.name)
        evidence.append(item)
    _warm_ups_seen_later(view, evidence, flagged, config, table)
    _sequential_leaks(view, evidence, flagged, config, table)
    _merge_carried_leaks(view, evidence, config)
    _mark_resolution(view, evidence)
    return evidence


def _sequential_leaks(view: ServiceView, evidence: list[RevisionEvidence], flagged: set[str],
                      config: AnalysisConfig, table: PriceTable) -> None:
    """Revisions the trend test did not confirm (too young, rolled back after a day or two, a flag
    flipped late in their life) are tested again, sequentially, against how this service's other
    healthy revisions behaved after their deploys: never against an envelope learned from their own
    data (a revision that served long enough to count as healthy may be the one that leaks). The
    typical instance's troughs first, then the worst instance's (``envelope``, point 5), then its peaks
    (point 6)."""
    healthy = [e.span for e in evidence if e.span.name not in flagged]
    envelopes: dict[tuple[str, ...], Envelope | None] = {}
    for item in evidence:
        if (item.leak is not None and item.leak.confirmed) or not young_enough(item.span, config.detection):
            continue
        others = [s for s in healthy if s.name != item.span.name]
        leak = None
        for signal in (TYPICAL, WORST, PEAK):
            key = (signal, *(s.name for s in others))
            if key not in envelopes:
                envelopes[key] = build_envelope(view, others, config.detection, signal)
            envelope = envelopes[key]
            if envelope is None:
                continue
            leak = sequential_leak(view, item.span, envelope, config.detection, candidate=item.leak)
            # The worst instance's envelopes hold only the healthy revisions that served 12 h. A climb no
            # higher than a shorter earlier revision's at the same age is this service's warm-up, as the
            # trend test reads a young revision (``memory.rises_like_before``).
            if leak is not None and signal in BUCKETED and rises_like_before(view, item.span, config.detection,
                                                                              flagged, signal):
                leak = None
            if leak is not None:
                break
        if leak is not None:
            item.leak = leak
            item.findings = _findings(view, item, config, table)


def _base(view: ServiceView, span: RevisionSpan, kind: FindingKind, onset: pd.Timestamp, summary: str) -> Finding:
    """A finding without its measured confidence yet (``calibration.apply`` sets it from the evidence)."""
    return Finding(
        kind=kind, project=view.key.project, region=view.key.region, service=view.key.service,
        revision=span.name, onset=onset.to_pydatetime(), severity=Severity.WARNING,
        confidence=0.0, summary=summary, attribution_confidence=0.0,
        deploy_time=span.deploy_time.to_pydatetime() if span.deploy_time_known else None,
    )


def _leak_finding(view: ServiceView, span: RevisionSpan, leak: LeakEvidence, container: str = "") -> Finding:
    """``container``: the sidecar whose memory it is (``span.info`` then holds that container's limits)."""
    limit = span.info.memory_limit_gib
    # Without the revision's limit (no Admin API data) the level is not known well enough to forecast.
    to_limit = hours_to_limit(leak) if limit else None
    climb = f"(from {leak.trough_start:.0%} to {leak.trough_high:.0%} over {leak.hours:.0f} h)"
    what, whose = signal_words(leak.signal)
    if container:
        size = f" {_size(limit)}" if limit else ""
        summary = (f"Sidecar {container} leaks: its memory {what} ({whose}) in {span.name} climb "
                   f"{leak.slope_per_day:.1%} of its{size} limit per day {climb}")
        at_limit, reaches = "it already reaches its limit", "in the worst instance it reaches its limit"
    else:
        summary = (f"Memory {what} ({whose}) of {span.name} climb {leak.slope_per_day:.1%} of the limit "
                   f"per day {climb}")
        at_limit, reaches = "instances already reach their limit", "the worst instance reaches its limit"
    if leak.peak_max >= OOM_LEVEL:
        summary += f"; {at_limit} ({leak.peak_max:.0%}) and {'instances ' if container else ''}are replaced (OOM kills)"
    elif to_limit is not None and to_limit < 24 * 14:
        summary += f"; {reaches} in about {_duration(to_limit)}"
    finding = _base(view, span, FindingKind.MEMORY_BASELINE_RISE, leak.onset, summary)
    finding.container = container
    finding.time_to_limit_hours = round(to_limit, 1) if to_limit is not None else None
    finding.evidence = {
        "signal": leak.signal,
        "trough_slope_pct_of_limit_per_day": round(leak.slope_per_day * 100, 2),
        "trough_start_pct_of_limit": round(leak.trough_start * 100, 1),
        "trough_end_pct_of_limit": round(leak.trough_end * 100, 1),
        "trough_highest_pct_of_limit": round(leak.trough_high * 100, 1),
        "worst_instance_highest_pct_of_limit": round(leak.peak_max * 100, 1) if math.isfinite(leak.peak_max) else "n/a",
        "worst_instance_end_pct_of_limit": round(leak.peak_end * 100, 1) if math.isfinite(leak.peak_end) else "n/a",
        "rise_pct_of_limit": round(leak.rise * 100, 1),
        "climb_hours": round(leak.hours, 1),
        "trend_p_value": float(f"{leak.p_value:.2g}"),
        "segments_between_resets": leak.segments,
        "memory_limit": f"{limit:g} GiB" if limit else "unknown",
    }
    if leak.against:
        finding.evidence["judged_against"] = leak.against
    if container:
        finding.evidence.update(container=container, excess_cost=SIDECAR_COST)
    return finding


def _creep_finding(view: ServiceView, span: RevisionSpan, creep: CreepEvidence) -> Finding:
    summary = (f"{span.name} runs {creep.actual:.1f} instances where its load needs about {creep.expected:.1f} "
               f"(+{creep.excess_fraction:.0%}, judged against {creep.reference})")
    finding = _base(view, span, FindingKind.INSTANCE_CREEP, creep.onset, summary)
    finding.evidence = {
        "expected_instances": round(creep.expected, 2),
        "actual_instances": round(creep.actual, 2),
        "excess_pct": round(creep.excess_fraction * 100, 1),
        "excess_instance_hours": round(creep.excess_instance_hours, 1),
        "hours": creep.hours,
        "reference": creep.reference,
    }
    return finding


def _regression_finding(view: ServiceView, span: RevisionSpan, reg: RegressionEvidence) -> Finding:
    what = "slower" if reg.kind is FindingKind.LATENCY_REGRESSION else "more CPU-hungry"
    summary = (f"{span.name} is {what} than {reg.previous}: {reg.metric} {_figure(reg.before)} → {_figure(reg.after)} "
               f"(+{reg.increase:.0%})")
    evidence: dict[str, float | str] = {
        "metric": reg.metric, "before": round(reg.before, 6), "after": round(reg.after, 6),
        "increase_pct": round(reg.increase * 100, 1), "previous_revision": reg.previous,
        "p_value": float(f"{reg.p_value:.2g}"),
    }
    if math.isfinite(reg.low_traffic_after) and math.isfinite(reg.low_traffic_before):
        evidence["cpu_at_low_traffic_before_pct"] = round(reg.low_traffic_before * 100, 1)
        evidence["cpu_at_low_traffic_after_pct"] = round(reg.low_traffic_after * 100, 1)
        summary += f"; CPU at low traffic {reg.low_traffic_before:.0%} → {reg.low_traffic_after:.0%}"
    finding = _base(view, span, reg.kind, reg.onset, summary)
    finding.evidence = evidence
    return finding


def _findings(view: ServiceView, item: RevisionEvidence, config: AnalysisConfig, table: PriceTable) -> list[Finding]:
    span = item.span
    found: list[Finding] = []
    if item.leak and item.leak.confirmed:
        found.append(_leak_finding(view, span, item.leak, item.container))
    if item.creep:
        found.append(_creep_finding(view, span, item.creep))
    for reg in (item.latency, item.cpu):
        if reg:
            found.append(_regression_finding(view, span, reg))
    _price_and_explain(view, item, found, config, table)
    return found


def _price_and_explain(view: ServiceView, item: RevisionEvidence, found: list[Finding], config: AnalysisConfig,
                       table: PriceTable) -> None:
    """The revision's excess cost on each of its findings ``found``, their likely cause and confidence."""
    span = item.span
    kinds = {f.kind for f in found}
    leak_signature = FindingKind.MEMORY_BASELINE_RISE in kinds and (
        FindingKind.INSTANCE_CREEP in kinds or FindingKind.CPU_REGRESSION in kinds
        or FindingKind.LATENCY_REGRESSION in kinds)
    # One excess per revision, over all the time it served: its findings are symptoms of the change it
    # brought, and a detector's onset can lag the deploy by hours (healthy hours add about nothing).
    start = min([span.first_seen, *(pd.Timestamp(f.onset) for f in found)])
    # A sidecar's leak is not priced on its own (SIDECAR_COST): the revision's dollars are its creep's.
    priced = found and not item.container
    onset = min([pd.Timestamp(f.onset) for f in found], default=None)
    excess = (cost_model.excess_cost(view, span, start, table, config, reference=item.reference,
                                     healthy_until=onset, level_of=item.level_of)
              if priced else None)
    for finding in found:
        if leak_signature and (item.leak is None or item.leak.onset_at_deploy):
            finding.likely_cause = PER_REQUEST_LEAK
        if excess is not None:
            finding.excess_cost_usd_window = round(excess.window_usd, 2)
            finding.excess_cost_usd_per_month = round(excess.per_month_usd, 2)
            finding.evidence.update(cost_model.excess_evidence(excess))
        calibration.apply(finding)


def _judge_regressions_left_without_a_reference(view: ServiceView, evidence: list[RevisionEvidence],
                                                config: AnalysisConfig, table: PriceTable) -> None:
    """Latency and CPU are judged against the last earlier revision without a finding, as the findings
    stood when the revision was judged. A finding dropped since (a glimpse of a mid-life revision's day:
    ``_merge_carried_leaks``) may have been all that barred the only earlier revision, and left the next
    one's regressions unjudged (444163-0132: +14 % p95 latency and +189 % CPU per request beside a leak of
    19 % a day, unreported). Those are judged now, against the revisions that end without a finding, and
    priced together with the revision's own findings (one excess per revision; a finding moved in from a
    carrier keeps its price)."""
    with_findings = {item.span.name for item in evidence if item.findings}
    for item in evidence:
        found: list[Finding] = []
        for kind in item.unreferenced:
            _, reg = _regression(view, item.span, kind, config, with_findings)
            if reg is None:
                continue
            if kind is FindingKind.LATENCY_REGRESSION:
                item.latency = reg
            else:
                item.cpu = reg
            found.append(_regression_finding(view, item.span, reg))
        item.unreferenced = ()
        if found:
            own = [f for f in item.findings if not f.evidence.get("carried_by")]
            item.findings.extend(found)
            _price_and_explain(view, item, [*own, *found], config, table)
            with_findings.add(item.span.name)


def _merge_carried_leaks(view: ServiceView, evidence: list[RevisionEvidence], config: AnalysisConfig) -> None:
    """A leak still climbing in the next revision was carried on by its deploy, not introduced by it:
    keep one finding, attributed to the revision that introduced it (confirmed on its own, or one that
    served too briefly to be judged: ``_carried_from_short_revision``, ``_carried_from_young_revision``).

    A revision whose climb was only a candidate (significant, but failing a plausibility gate: a
    warm-up that levels off, a climb too small) is not given the next revision's leak for that climb.
    On seven development draws (1,400 scenarios) that rule took the leak away from the revision that
    introduced it six times out of seven: a predecessor's warm-up or evening is a candidate far more often
    than a leak is carried, young or not. (A young revision's candidate climbing from its deploy at the
    carrier's pace was taken as the origin from dded832 to 2026-12-06; with ``_carried_from_young_revision``
    reading young revisions against the service's healthy course, it fired once on fourteen development
    draws, on a routine deploy's warm-up before a slow leak's deploy, and wrongly; its fixture passes
    without it.) A young revision with a candidate is given the leak as one without is: when, against the
    service's healthy course, its troughs climbed at the carrier's pace (``_carried_from_young_revision``).
    And a revision deployed before the window, seen mid-life without a confirmed leak, whose troughs at its
    end sit as far above where the next revision's leak starts as that leak's pace over its age predicts,
    introduced the leak before the data began (``_aged_at_the_carriers_pace``).

    A revision seen only for a glimpse of its mid-life (``_a_glimpse_of_mid_life``) keeps a leak of its
    own only when the next revision carries it on or its instances reached the limit: otherwise it is a
    candidate (on eleven development draws, 2,200 scenarios, 4 such findings were false, none true). And
    such a glimpse carries a confirmed leak of the next revision on only when it sits as high as that
    leak's pace since its deploy predicts (``_aged_at_the_carriers_pace``): a leak it had carried since its
    deploy days before the window would have taken it there, and a day's climb of a revision that sits
    lower is that day's shape (on eight development draws, 1,600 scenarios, three leaks were taken from
    the revisions that introduced them that way, with their onsets: 3 strict misses and 3 false findings
    fewer, no finding lost).

    Nor is a leak the next revision shows from its deploy at more than ``CARRIED_OWN_PACE_RATIO`` times the
    pace of the confirmed climb before it: a carried leak restarts from the service's usual level at each
    deploy at the same pace, so one that much faster is that deploy's own (985119-0057: a 13 h revision's
    typical memory climbed 5 %/day, the next one's 33 %/day from its deploy, and was read as carried; on
    nineteen development draws nothing else changed; at 2 times, two carried leaks were split)."""
    for before, after in pairwise(evidence):
        if _given_back_to_its_origin(view, evidence, before, after, config):
            continue
        if before.leak is None or after.leak is None or not after.leak.confirmed or not before.leak.confirmed:
            continue
        if _glimpsed(before) and not _aged_at_the_carriers_pace(view, before, after, config):
            continue
        if after.leak.onset_at_deploy and after.leak.slope_per_day > CARRIED_OWN_PACE_RATIO * before.leak.slope_per_day:
            continue  # a leak of its own from its deploy, far faster than the climb before it
        after.findings = [f for f in after.findings if f.kind is not FindingKind.MEMORY_BASELINE_RISE]
        for finding in before.findings:
            if finding.kind is FindingKind.MEMORY_BASELINE_RISE:
                finding.evidence["carried_by"] = after.span.name
    for item, _ in pairwise(evidence):  # every revision a later one replaced
        if item.leak is not None and _a_glimpse_of_mid_life(item):
            item.findings = [f for f in item.findings if f.kind is not FindingKind.MEMORY_BASELINE_RISE]
            item.leak = replace(item.leak, confirmed=False)


def _given_back_to_its_origin(view: ServiceView, evidence: list[RevisionEvidence], before: RevisionEvidence,
                              after: RevisionEvidence, config: AnalysisConfig) -> bool:
    """``after``'s leak, confirmed from its deploy, goes to ``before`` (and True) when ``before``, without a
    confirmed leak of its own, introduced it: without even a candidate, it served too briefly for one,
    climbing at that pace; or it was young and, against the service's healthy course, climbed at that pace
    (with or without a candidate of its own: the envelope, not the candidate, is the evidence); or it was
    deployed days before the window and sits as high as that pace over its age predicts. The three rules
    are asked only here, with that leak confirmed from its deploy at a positive pace and ``before``
    unconfirmed."""
    theirs = after.leak
    if (theirs is None or not theirs.confirmed or not theirs.onset_at_deploy or theirs.slope_per_day <= 0
            or (before.leak is not None and before.leak.confirmed)):
        return False
    if before.leak is None and _carried_from_short_revision(view, before, after, config):
        return True
    if _carried_from_young_revision(view, evidence, before, after, config):
        return True
    if _aged_at_the_carriers_pace(view, before, after, config):
        age = hours_between(before.span.deploy_time, before.span.last_seen) / 24
        _give_leak_back(before, after, f"replaced {age:.1f} days after its deploy, its memory as far up "
                                       "as this pace since then predicts")
        return True
    return False


CARRIED_OWN_PACE_RATIO = 3.0  # a leak from its deploy this many times faster than a confirmed climb before it
AGED_RISE_RATIO = (2 / 3, 2.0)  # its height over the carrier's start, against pace x age: within these
AGED_MIN_RISE = 0.05  # of the limit: more than a bucket step of the worst instance (about 5 %) or two


def _aged_at_the_carriers_pace(view: ServiceView, before: RevisionEvidence, after: RevisionEvidence,
                               config: AnalysisConfig) -> bool:
    """``before``, deployed before the window (its deploy time is the Admin API's, the data show its
    mid-life) and without a confirmed leak of its own, ended with its troughs above where ``after``'s
    leak, confirmed from its deploy, starts, by about what that leak's pace predicts over ``before``'s
    age: at least ``AGED_MIN_RISE`` and within ``AGED_RISE_RATIO`` of pace x days since its deploy. Each
    revision's instances start afresh at a deploy, so a leak carried on restarts from the service's usual
    level, while the revision that introduced it had climbed at that pace since its own deploy, days before
    the data began (too slowly, over the hours the window holds, for a finding of its own). A healthy
    predecessor ends where the next revision starts, within a bucket step. The ratio may reach two: the
    carrier's pace is read from its first days, which fresh instances dilute. The prediction goes no
    higher than the limit: there the oldest instance is OOM-killed and replaced, and the leak cycles (a
    25 %/day leak 4.6 days old sat 64 % above the carrier's start, not the 129 % its pace predicts); and
    a revision whose instances reached the limit is as high as its troughs ever got, not where the cycle
    stood at its end (a 13 %/day leak's worst instance had just been replaced: 3 % above the carrier's
    start at its end, 35 % at its highest)."""
    theirs = after.leak
    assert theirs is not None
    span = before.span
    if not span.deploy_time_known or seen_from_deploy(span):
        return False
    bins = long_troughs(view, span, config.detection)
    levels = bins[COLUMN[theirs.signal]].dropna()
    if len(levels) < 3:
        return False
    # Where its instances reached the limit (OOM-killed), the leak cycles, and its end is wherever the
    # cycle stood: its height is the highest its troughs reached.
    cycling = float(bins["peak"].max()) >= OOM_LEVEL
    risen = float(levels.max() if cycling else levels.iloc[-3:].median()) - theirs.trough_start
    predicted = min(theirs.slope_per_day * hours_between(span.deploy_time, levels.index[-1]) / 24,
                    1.0 - theirs.trough_start)
    low, high = AGED_RISE_RATIO
    return risen >= AGED_MIN_RISE and low * predicted <= risen <= high * predicted


def _glimpsed(item: RevisionEvidence) -> bool:
    """``item``'s revision, deployed before the window, served less than ``YOUNG_HOURS`` in it, and its
    climb never took its instances to the limit (OOM kills): the data hold an arbitrary day (or less) of
    its life, not its course after a deploy, and a climb over it cannot be told from that day's shape.
    (Asked only of revisions a later one replaced: one still serving at the window's end is judged on
    what the window holds, however short.)"""
    span, leak = item.span, item.leak
    if leak is None or leak.peak_max >= OOM_LEVEL:
        return False
    glimpsed = hours_between(span.first_seen, span.last_seen) < YOUNG_HOURS
    return span.deploy_time_known and not seen_from_deploy(span) and glimpsed


def _a_glimpse_of_mid_life(item: RevisionEvidence) -> bool:
    """``item`` is ``_glimpsed``: its confirmed leak stands only when the next revision carries it on (its
    finding says ``carried_by``)."""
    if item.leak is None or not item.leak.confirmed or not _glimpsed(item):
        return False
    return not any(f.evidence.get("carried_by") for f in item.findings if f.kind is FindingKind.MEMORY_BASELINE_RISE)


def _carried_from_short_revision(view: ServiceView, before: RevisionEvidence, after: RevisionEvidence,
                                 config: AnalysisConfig) -> bool:
    """A revision that served too briefly to be judged, whose worst instance or fleet's typical memory
    was already climbing at the pace the next revision's leak shows from its deploy, introduced that
    leak."""
    leak = after.leak
    assert leak is not None
    span = before.span
    served = hours_between(span.first_seen, span.last_seen)
    if served >= config.detection.memory.min_duration_hours * 2 or served < 1:
        return False
    rows = view.revision_rows(span.name)
    rows = between(rows, span.first_seen + pd.Timedelta(minutes=config.detection.warmup_minutes))
    # The worst instance is read from the distribution's top bucket, steps of 2-3 % of the limit at half
    # of it: over a few hours a leak of 12 %/day can stay inside one (944226-0109, 9 h), while the fleet's
    # typical memory shows it.
    stamps = pd.DatetimeIndex(rows["ts"])
    for name, memory in (("worst instance", rows["mem_max"].to_numpy(dtype=np.float64)),
                         ("memory", typical_memory(rows))):
        if _climbed_at(stamps, memory, leak.slope_per_day):
            _give_leak_back(before, after, f"served {served:.0f} h, its {name} already climbing")
            return True
    return False


def _climbed_at(stamps: pd.DatetimeIndex, memory: FloatArray, slope_per_day: float) -> bool:
    """``memory`` (one value per step) rose from its first third to its last (medians) by at least half
    of what ``slope_per_day`` adds over the time between them."""
    known = np.isfinite(memory)
    values, stamps = memory[known], stamps[known]
    if len(values) < 6:
        return False
    hours = (stamps - stamps[0]) / pd.Timedelta(hours=1)
    third = max(2, len(values) // 3)
    climbed = float(np.median(values[-third:]) - np.median(values[:third]))
    expected = slope_per_day / 24 * float(hours[-1] - hours[0]) * 2 / 3
    return expected > 0 and climbed >= 0.5 * expected


def _carried_from_young_revision(view: ServiceView, evidence: list[RevisionEvidence], before: RevisionEvidence,
                                 after: RevisionEvidence, config: AnalysisConfig) -> bool:
    """A revision that served a day or two, too short for its own slow leak to show, whose fleet's
    troughs (against the service's healthy course after a deploy) climbed at the pace the next
    revision's leak shows from its deploy (``envelope.climbs_like``), introduced that leak. Asked also of
    a revision whose own climb was only a candidate (a young revision's climb is held back as a possible
    warm-up): the candidate alone gives it nothing (``_merge_carried_leaks``), the envelope test does. On
    thirty-six development draws (7,200 scenarios) that found two leaks on the revisions that introduced
    them (one strong; their carriers' findings were false), lost none and added no false finding. Only a
    revision seen from its deploy is young (``young_enough``): a glimpse of mid-life is given a leak by its
    height (``_aged_at_the_carriers_pace``)."""
    span = before.span
    if not young_enough(span, config.detection):
        return False
    healthy = [e.span for e in evidence
               if e.leak is None and not e.findings and e.span.name not in (span.name, after.span.name)]
    envelope = build_envelope(view, healthy, config.detection)
    if envelope is None or not climbs_like(view, span, after.span, envelope, config.detection):
        return False
    served = hours_between(span.first_seen, span.last_seen)
    _give_leak_back(before, after, f"served {served:.0f} h, its memory already climbing at this pace")
    return True


def _give_leak_back(before: RevisionEvidence, after: RevisionEvidence, why: str) -> None:
    """``after``'s leak finding, found from its deploy, goes to ``before``, which introduced it."""
    span = before.span
    for finding in [f for f in after.findings if f.kind is FindingKind.MEMORY_BASELINE_RISE]:
        finding.onset = span.deploy_time.to_pydatetime()
        _move_to_origin(finding, before, after,
                        f"Introduced by {span.name} ({why}) and carried on by {after.span.name}")


def _move_to_origin(finding: Finding, origin: RevisionEvidence, carrier: RevisionEvidence, prefix: str) -> None:
    """``carrier``'s ``finding`` goes to ``origin``, the revision that introduced it, naming the carrier."""
    carrier.findings.remove(finding)
    finding.revision = origin.span.name
    finding.deploy_time = origin.span.deploy_time.to_pydatetime() if origin.span.deploy_time_known else None
    finding.summary = f"{prefix}: {finding.summary}"
    finding.evidence["carried_by"] = carrier.span.name
    origin.findings.append(finding)


def _merge_carried_regressions(evidence: list[RevisionEvidence]) -> None:
    """A revision judged against an older reference because its predecessor had a finding (creep, a
    latency or CPU regression) and showing the same kind of finding carries that one on: one finding,
    on the revision that introduced it, which names the (first) carrier."""
    origin: dict[FindingKind, Finding] = {}  # per kind, the finding a run of carriers goes back to
    for before, after in pairwise(evidence):
        for finding in before.findings:
            origin[finding.kind] = finding
        if after.reference is None or after.reference.name == before.span.name:
            origin.clear()
            continue
        for finding in [f for f in after.findings if f.kind is not FindingKind.MEMORY_BASELINE_RISE]:
            first = origin.get(finding.kind)
            if first is not None and _has_kind(before, finding.kind):
                after.findings.remove(finding)
                first.evidence.setdefault("carried_by", after.span.name)


def _leaks_that_came_with_a_carried_regression(evidence: list[RevisionEvidence]) -> None:
    """``after``'s leak, confirmed from its deploy, goes to ``before`` when ``after`` carries on
    ``before``'s latency or CPU regression (``_merge_carried_regressions``: the same code shipped again)
    and ``before`` showed no confirmed leak of its own: the leak came with that code. A revision that
    served hours, or whose climb an instance's retirement cut short, shows no leak of its own, while its
    regression shows from the first hours. On ten development draws (2,000 scenarios) this gave five
    leaks back to the revisions that introduced them (served 6 h to 2 days; five strict misses and five
    false findings fewer) and moved no other."""
    for before, after in pairwise(evidence):
        theirs = after.leak
        if (theirs is None or not theirs.confirmed or not theirs.onset_at_deploy or theirs.slope_per_day <= 0
                or (before.leak is not None and before.leak.confirmed)
                or any(f.kind is FindingKind.MEMORY_BASELINE_RISE for f in before.findings)):
            continue
        if not any(f.kind is FindingKind.MEMORY_BASELINE_RISE and not f.evidence.get("carried_by")
                   for f in after.findings):
            continue  # after's leak was never a finding, or after introduced one that a later revision carried
        if carried := _regressions_carried_by(before, after):
            served = hours_between(before.span.first_seen, before.span.last_seen)
            what = " and ".join(sorted({"latency" if f.kind is FindingKind.LATENCY_REGRESSION else "CPU"
                                        for f in carried}))
            _give_leak_back(before, after, f"served {served:.0f} h; its {what} regression shipped on with the leak")


def _give_carried_leaks_their_symptoms(view: ServiceView, evidence: list[RevisionEvidence],
                                       config: AnalysisConfig) -> None:
    """A revision that carries on an earlier revision's leak (its memory finding says ``carried_by``)
    and shows creep, or a latency or CPU regression, against the revision before the leak shows the
    leak's cost, not a change of its own: more instances and GC work as its memory fills. Such a finding
    goes to the revision that introduced the leak, naming its carrier, as the leak does; a kind that
    revision already has is not reported twice.

    It takes the leak's price, as the revision's own findings share one excess (``_price_and_explain``):
    priced on the carrier's last day, against the carrier's level, the same leak's GC work read +23 % of
    the cost beside its memory finding's +13 % (601841-0153, labelled +12.6 %)."""
    for before, after in pairwise(evidence):
        leak = next((f for f in before.findings
                     if f.kind is FindingKind.MEMORY_BASELINE_RISE and f.evidence.get("carried_by") == after.span.name),
                    None)
        if leak is None:
            continue
        for finding in [f for f in after.findings if f.kind is not FindingKind.MEMORY_BASELINE_RISE]:
            if any(f.kind is finding.kind for f in before.findings):
                after.findings.remove(finding)
            else:
                _move_to_origin(finding, before, after,
                                f"With the leak of {before.span.name}, carried on by {after.span.name}")
                _same_price(finding, leak)
                if finding.kind is FindingKind.CPU_REGRESSION and after.cpu is not None:
                    _date_in_origin(view, finding, before.span, view.span(after.cpu.previous), config)


def _same_price(finding: Finding, priced: Finding) -> None:
    """``finding`` takes ``priced``'s excess (its dollars and what they were priced against), when it has one."""
    if "cost_now_usd_per_hour" not in priced.evidence:
        return
    finding.excess_cost_usd_window = priced.excess_cost_usd_window
    finding.excess_cost_usd_per_month = priced.excess_cost_usd_per_month
    finding.evidence.update({key: priced.evidence[key] for key in cost_model.EXCESS_EVIDENCE if key in priced.evidence})


def _date_in_origin(view: ServiceView, finding: Finding, origin: RevisionSpan, reference: RevisionSpan,
                    config: AnalysisConfig) -> None:
    """A carried CPU regression is dated where the origin's own CPU first held the margin against the
    same reference (``regression.cpu_held_in``), when it did before the carrier's onset: the GC cost of
    the leak grew in the origin, and the carrier's fresh instances reach it again only hours later. On
    ten development draws this dated three carried regressions right (a day or two early before; CPU
    strict TP +3, FP -3) and moved no other."""
    held = cpu_held_in(view, origin, reference, config.detection, config.pricing.default_cpu)
    if held is not None and held.to_pydatetime() < finding.onset:
        finding.onset = held.to_pydatetime()


def _has_kind(item: RevisionEvidence, kind: FindingKind) -> bool:
    """The revision shows ``kind``: a finding of it, or the detector's evidence of a finding carried on."""
    detected = {FindingKind.MEMORY_BASELINE_RISE: item.leak, FindingKind.INSTANCE_CREEP: item.creep,
                FindingKind.LATENCY_REGRESSION: item.latency, FindingKind.CPU_REGRESSION: item.cpu}[kind]
    return detected is not None or any(f.kind is kind for f in item.findings)


def _mark_resolution(view: ServiceView, evidence: list[RevisionEvidence]) -> None:
    """A finding is resolved when a later revision without the same kind of finding took over, or when
    traffic went back (a rollback) to an earlier revision without it; the summary says which."""
    last = view.spans[-1].name if view.spans else ""
    serving = view.totals["serving"].dropna() if len(view.totals) else pd.Series(dtype=object)
    serving_now = str(serving.iloc[-1]) if len(serving) else ""
    names = [e.span.name for e in evidence]
    for index, item in enumerate(evidence):
        for finding in item.findings:
            later = [e for e in evidence[index + 1:] if not _has_kind(e, finding.kind)]
            if item.span.name != last and later:
                finding.resolved_by = later[0].span.name
                ended = f"it ended when {finding.resolved_by} took over"
            elif serving_now in names[:index] and not _has_kind(evidence[names.index(serving_now)], finding.kind):
                finding.resolved_by = serving_now
                ended = f"the rollback to {serving_now} ended it"
            else:
                continue
            finding.ongoing = False
            finding.savings_usd_per_month = finding.excess_cost_usd_per_month
            finding.summary += f"; {ended}"


def _measure_savings(view: ServiceView, evidence: list[RevisionEvidence], table: PriceTable,
                     config: AnalysisConfig) -> None:
    """Replace the assumed savings of resolved findings by what the fixing revision measurably saves."""
    measured: dict[tuple[str, str], cost_model.FixSavings | None] = {}
    for item in evidence:
        for finding in item.findings:
            if not finding.resolved_by:
                continue
            pair = (item.span.name, finding.resolved_by)
            if pair not in measured:
                fixed = view.span(finding.resolved_by)
                measured[pair] = cost_model.fix_savings(view, item.span, fixed, table, config)
            savings = measured[pair]
            if savings is not None:
                finding.savings_usd_per_month = round(max(savings.per_month_usd, 0.0), 2)
                finding.evidence["savings_measured_over_hours"] = round(savings.hours, 1)


def _duration(hours: float) -> str:
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.1f} days"


def _size(gib: float) -> str:
    return f"{gib * 1024:.0f} MiB" if gib < 1 else f"{gib:g} GiB"


def _figure(value: float) -> str:
    """A measured value as a person writes it: 4,560 rather than 4.56e+03, 0.0201 for small ones."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"

