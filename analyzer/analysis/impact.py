"""What a finding does to users, beside what it costs; the severity that follows that harm; and the
one urgency order in which every list of findings is shown.

Method, per revision with findings (its findings share the result, as they share its dollars):

1. OOM-kill episodes: the worst instance (``mem_max``) reaches the limit and, within the hour after,
   the worst level falls well below what it was in the hour before (the oldest instance was killed
   and replaced); a GC sawtooth touching the top bucket and climbing straight back is not a reset;
2. requests that ended in 5xx while the revision served, against the rate of the revision before
   it: the excess counts as rising only when it is clearly more than chance (a Poisson margin) and
   a clear share above the old rate;
3. the typical p95 latency against the predecessor's, and the leak's time to the memory limit.

Severity is ``critical`` when an ongoing finding hurts users now (OOM kills, memory at ≥ 95 % of the
limit, 5xx above the predecessor's rate) or will within 24 h (time to the limit); ``warning``
otherwise. The urgency order: ongoing before resolved; then harm now; then harm soon (time to the
limit within two weeks, shortest first); then dollars per month, most first. Pure: frames in, plain
values out, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import pandas as pd

from analyzer.analysis.memory import OOM_LEVEL
from analyzer.analysis.timeline import ServiceView
from analyzer.model import Finding, FindingKind, Impact, Severity

NEAR_LIMIT = 0.95  # a worst instance at this share of its limit at the end is hurting users now
RESET_DROP = 0.10  # an OOM kill drops the worst level by at least this share of the limit
RESET_MINUTES = 60  # ... compared over this long before and after (longer than a GC cycle)
CRITICAL_HOURS = 24.0  # memory limit reached within this long: critical
SOON_HOURS = 14 * 24.0  # ... within this long: ranked as harm soon (the summary's own horizon)
MIN_BASELINE_REQUESTS = 1000  # fewer requests before the deploy give no error rate to compare with
ERROR_SIGMAS = 3.0  # the excess 5xx must exceed this many Poisson standard deviations of the expected
ERROR_RATIO = 1.5  # ... and the rate must be this many times the old one
MIN_EXCESS_ERRORS = 10  # ... and at least this many requests


def oom_kill_episodes(worst: pd.Series, step_seconds: int) -> int:
    """Resets of the worst instance from its limit (``worst``: ``mem_max`` indexed by time)."""
    values = worst.dropna().sort_index().to_numpy(dtype=np.float64)
    span = max(2, RESET_MINUTES * 60 // max(step_seconds, 1))
    episodes, last = 0, -span
    for i in np.flatnonzero(values >= OOM_LEVEL):
        before, after = values[max(0, i - span): i + 1], values[i + 1: i + 1 + span]
        if len(after) >= min(3, span) and after.max() <= before.max() - RESET_DROP and i - last >= span:
            episodes, last = episodes + 1, int(i)
    return episodes


def _errors(rows: pd.DataFrame, step_seconds: int) -> tuple[float, float]:
    """Requests served and how many ended in 5xx (``err_rate`` is 5xx per second)."""
    requests = float(rows["requests"].fillna(0.0).sum())
    errors = float((rows["err_rate"].fillna(0.0) * step_seconds).sum())
    return requests, errors


def _p95(rows: pd.DataFrame) -> float | None:
    """The typical p95 latency of the steps that served requests."""
    served = rows.loc[rows["requests"].fillna(0.0) > 0, "lat_p95"].dropna()
    return float(served.median()) if len(served) else None


def measure(view: ServiceView, revision: str, findings: Iterable[Finding]) -> Impact:
    """The harm ``revision`` did to users in the window (``findings``: its findings)."""
    rows = view.revision_rows(revision)
    step = view.step_seconds
    worst = rows.set_index("ts")["mem_max"].dropna().sort_index()
    end_hour = worst.loc[worst.index >= worst.index[-1] - pd.Timedelta(hours=1)] if len(worst) else worst
    requests, errors = _errors(rows, step)
    previous = view.previous(revision)
    before_rows = view.revision_rows(previous.name) if previous is not None else None
    base_requests, base_errors = _errors(before_rows, step) if before_rows is not None else (0.0, 0.0)
    base_rate = base_errors / base_requests if base_requests >= MIN_BASELINE_REQUESTS else None
    rate = errors / requests if requests > 0 else None
    expected = (base_rate or 0.0) * requests
    excess = max(0.0, errors - expected) if base_rate is not None else 0.0
    rising = (base_rate is not None and rate is not None and rate >= ERROR_RATIO * base_rate
              and excess >= max(MIN_EXCESS_ERRORS, ERROR_SIGMAS * math.sqrt(expected + 1.0)))
    mine, theirs = _p95(rows), _p95(before_rows) if before_rows is not None else None
    limits = [f.time_to_limit_hours for f in findings
              if f.kind is FindingKind.MEMORY_BASELINE_RISE and f.time_to_limit_hours is not None]
    kills = oom_kill_episodes(worst, step)
    worst_end = float(end_hour.max()) if len(end_hour) else None
    harming = kills > 0 or (worst_end is not None and worst_end >= NEAR_LIMIT) or rising
    return Impact(
        oom_kills=kills, worst_memory_end=worst_end, requests=requests, error_rate=rate,
        baseline_error_rate=base_rate, excess_errors=round(excess), errors_rising=bool(rising),
        latency_added_ms_p95=(mine - theirs) if mine is not None and theirs is not None else None,
        baseline_latency_ms_p95=theirs,
        hours_to_limit=min(limits) if limits else None, harming=bool(harming),
    )


def severity(*, ongoing: bool, impact: Impact) -> Severity:
    """The one severity rule: critical when an ongoing finding hurts users now or will within 24 h."""
    soon = impact.hours_to_limit is not None and impact.hours_to_limit < CRITICAL_HOURS
    return Severity.CRITICAL if ongoing and (impact.harming or soon) else Severity.WARNING


SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


def at_least(severity: Severity, threshold: Severity) -> bool:
    """``severity`` is as severe as ``threshold`` or more (``--fail-on``)."""
    return SEVERITY_RANK[severity] >= SEVERITY_RANK[threshold]


def urgency_key(*, ongoing: bool, harming: bool, hours_to_limit: float | None,
                per_month_usd: float) -> tuple[int, int, float, float]:
    """The sort key of the urgency order (smaller is more urgent), from plain values so that findings
    read back from JSON sort exactly as an analysis's do."""
    soon = hours_to_limit is not None and hours_to_limit <= SOON_HOURS
    tier = 0 if harming else 1 if soon else 2
    return (0 if ongoing else 1, tier, hours_to_limit if tier == 1 and hours_to_limit is not None else 0.0,
            -per_month_usd)


def urgency(finding: Finding) -> tuple[int, int, float, float]:
    return urgency_key(ongoing=finding.ongoing, harming=finding.impact.harming,
                       hours_to_limit=finding.impact.hours_to_limit,
                       per_month_usd=finding.excess_cost_usd_per_month)


KIND_ORDER = {kind.value: rank for rank, kind in enumerate(FindingKind)}  # the incident's story: leak first


def finding_order(finding: Finding) -> tuple[object, ...]:
    """The urgency order, with ties broken the same way everywhere (service, revision, kind)."""
    return (*urgency(finding), finding.service, finding.revision, KIND_ORDER[finding.kind.value], finding.onset)


def assess(view: ServiceView, findings: list[Finding]) -> None:
    """Measure the impact of each revision's findings and set their severity from it."""
    by_revision: dict[str, list[Finding]] = {}
    for finding in findings:
        by_revision.setdefault(finding.revision, []).append(finding)
    names = {s.name for s in view.spans}
    for revision, found in by_revision.items():
        impact = measure(view, revision, found) if revision in names else Impact()
        for finding in found:
            finding.impact = impact
            finding.severity = severity(ongoing=finding.ongoing, impact=impact)
