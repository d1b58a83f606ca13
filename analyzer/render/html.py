"""The HTML report: one jinja Environment (autoescape on, StrictUndefined), formatting as filters,
all markup in ``templates/``.

Here: the filters, findings grouped by the revision that caused them (``incidents_of``: they share its
dollars) and the one-line headline. The page itself is assembled from per-batch parts in
``analyzer.render.parts``; ``render_report`` is its one-batch case.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache

import jinja2
import pandas as pd

from analyzer.analysis import Analysis, ServiceResult
from analyzer.analysis.impact import NEAR_LIMIT, SOON_HOURS, urgency, urgency_key
from analyzer.analysis.memory import OOM_LEVEL, LeakEvidence
from analyzer.analysis.timeline import ServiceView
from analyzer.model import Finding, FindingKind, Impact, RevisionInfo, ServiceKey, Severity
from analyzer.render.charts import PALETTE
from analyzer.render.links import revision_url, service_url
from analyzer.resources import templates_dir

KIND_NAMES = {
    FindingKind.MEMORY_BASELINE_RISE: "memory leak (rising baseline)",
    FindingKind.INSTANCE_CREEP: "instance creep",
    FindingKind.LATENCY_REGRESSION: "latency regression",
    FindingKind.CPU_REGRESSION: "CPU regression",
}
KIND_ORDER = {
    kind: rank for rank, kind in enumerate(KIND_NAMES)
}  # the incident's story: leak, creep, slower, CPU
SEVERITY_ORDER = {Severity.CRITICAL: 0, Severity.WARNING: 1, Severity.INFO: 2}
# Labels and annotations Cloud Run or its deploy tools set on every revision: not worth a reader's time.
COMMIT_KEYS = ("commit-sha", "commit_sha", "commit", "git-commit", "gcb-build-id")  # as RevisionInfo.commit
SYSTEM_METADATA = (
    "run.googleapis.com/",
    "serving.knative.dev/",
    "autoscaling.knative.dev/",
    "client.knative.dev/",
    "cloud.googleapis.com/",
    "goog-",
)


def usd(value: float | None, digits: int | None = None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    if digits is None:
        digits = 2 if abs(value) < 1000 else 0
    return f"${value:,.{digits}f}"


def estimate_usd(value: float | None) -> str:
    """A model estimate in dollars (a finding's excess, a fix's savings): "≈" and two significant
    figures, so it never reads as metered to the cent."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if value == 0:
        return usd(0.0)
    step = 10.0 ** (math.floor(math.log10(abs(value))) - 1)  # two significant figures, halves up
    rounded = math.copysign(math.floor(abs(value) / step + 0.5) * step, value)
    return "≈" + usd(rounded, 2 if abs(rounded) < 10 else 0)


def pct(value: float | None, digits: int = 0, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}%}" if signed else f"{value:.{digits}%}"


def num(value: float | None, digits: int = 1) -> str:
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def when(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M UTC") -> str:
    return value.strftime(fmt) if value else "unknown"


def duration(hours: float | None) -> str:
    if hours is None or not math.isfinite(hours):
        return "n/a"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.0f} h"
    return f"{hours / 24:.1f} days"


def figure(value: object) -> str:
    """An evidence value for reading: 5,686 rather than 5686.441166, 0.04569 rather than 0.045689."""
    if isinstance(value, bool) or not isinstance(value, float) or not math.isfinite(value):
        return str(value)
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def per_month(value: float | None) -> str:
    """Dollars per month, or "no added cost yet" where they round to nothing (a leak that has not
    added instances yet is not free: its harm is shown beside)."""
    if value is not None and math.isfinite(value) and abs(value) < 0.005:
        return "no added cost yet"
    return f"{estimate_usd(value)}/month"  # a model estimate (≈, two significant figures)


LATENCY_SHOWN = 0.05  # p95 latency added is worth a reader's time from this share of the old p95


def harm_words(impact: Impact) -> list[str]:
    """What a finding's revision does to users, in words, the harm now first (``analysis.impact``)."""
    words = []
    if impact.oom_kills:
        words.append(f"instances OOM-killed {plural(impact.oom_kills, 'time')}")
    elif impact.worst_memory_end is not None and impact.worst_memory_end >= NEAR_LIMIT:
        words.append(f"worst instance at {pct(impact.worst_memory_end)} of its memory limit")
    if impact.errors_rising:
        words.append(f"{impact.excess_errors:,.0f} more requests failed (5xx) than at the previous revision's rate "
                     f"({pct(impact.error_rate, 2)} against {pct(impact.baseline_error_rate, 2)})")
    if not impact.oom_kills and impact.hours_to_limit is not None and impact.hours_to_limit <= SOON_HOURS:
        words.append(f"memory limit in ~{duration(impact.hours_to_limit)}")
    added, before = impact.latency_added_ms_p95, impact.baseline_latency_ms_p95
    if added is not None and before and added >= LATENCY_SHOWN * before:
        words.append(f"p95 latency +{added:,.0f} ms ({added / before:+.0%})")
    return words


def harm(impact: Impact) -> str:
    return "; ".join(harm_words(impact)) or "no harm to users measured"


def humanize(key: str) -> str:
    return key.replace("_", " ").replace(" pct", " %").replace(" usd", " $")


def kind_name(kind: FindingKind | str) -> str:
    return KIND_NAMES.get(FindingKind(kind), humanize(str(kind)))


def finding_name(kind: FindingKind | str, container: str = "") -> str:
    """``memory leak (rising baseline)``, or ``... in sidecar otel-collector`` for a sidecar's finding."""
    return kind_name(kind) + (f" in sidecar {container}" if container else "")


def first_upper(text: str) -> str:
    """``CPU regression`` stays as it is, ``memory leak`` becomes ``Memory leak``."""
    return text[:1].upper() + text[1:]


def plural(count: int, word: str, many: str = "") -> str:
    """``3 findings``, ``1 finding``."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def short_image(image: str) -> str:
    """An image reference short enough to read: the repository's last part and a short digest or tag."""
    name, _, digest = image.partition("@")
    tail = name.rsplit("/", 1)[-1]
    if digest:
        return f"{tail}@{digest.split(':', 1)[-1][:12]}"
    return tail


def _autoescape(name: str | None) -> bool:
    """Every template is escaped as HTML except the plain-text ones (``*.txt.j2``: the digest's text part)."""
    return not (name or "").endswith(".txt.j2")


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        autoescape=_autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        usd=usd,
        pct=pct,
        num=num,
        estimate_usd=estimate_usd,
        when=when,
        duration=duration,
        humanize=humanize,
        figure=figure,
        kind_name=kind_name,
        finding_name=lambda finding: finding_name(finding.kind, finding.container),
        first_upper=first_upper,
        plural=plural,
        short_image=short_image,
        per_month=per_month,
        harm=harm,
    )
    env.globals.update(revision_url=revision_url, service_url=service_url, palette=PALETTE)
    return env


@dataclass(slots=True)
class MemoryState:
    """What a leak means for the instances now: already at the limit, or how long until it."""

    at_limit: bool
    worst_pct: float  # highest worst-instance memory seen, fraction of the limit
    first_at_limit: datetime | None
    hours_to_limit: float | None
    limit_eta: datetime | None  # window end + hours to limit, when ongoing
    container: str = ""  # the sidecar whose memory it is ("": the service's ingress container)


@dataclass(slots=True)
class Incident:
    """The findings one revision introduced: they share its deploy, its dollars and usually one cause.

    Plain data (no frames), so a batch's incidents outlive its analysis (see ``analyzer.render.parts``).
    """

    key: ServiceKey
    revision: str
    info: RevisionInfo | None
    findings: list[Finding]
    memory: MemoryState | None = None
    metadata: list[tuple[str, str]] = field(default_factory=list)  # user labels and annotations

    @property
    def severity(self) -> Severity:
        return min((f.severity for f in self.findings), key=SEVERITY_ORDER.__getitem__)

    @property
    def ongoing(self) -> bool:
        return any(f.ongoing for f in self.findings)

    @property
    def impact(self) -> Impact:
        """What the revision does to users (its findings share it)."""
        return self.findings[0].impact

    @property
    def urgency(self) -> tuple[tuple[int, int, float, float], str, str]:
        """Its most urgent finding's place in the urgency order (``analysis.impact``)."""
        return (min(urgency(f) for f in self.findings), self.key.service, self.revision)

    @property
    def resolved_by(self) -> str:
        return next((f.resolved_by for f in self.findings if f.resolved_by), "")

    @property
    def per_month_usd(self) -> float:
        return max(f.excess_cost_usd_per_month for f in self.findings)

    @property
    def window_usd(self) -> float:
        return max(f.excess_cost_usd_window for f in self.findings)

    @property
    def savings_usd_per_month(self) -> float:
        return max(f.savings_usd_per_month for f in self.findings)

    @property
    def onset(self) -> datetime:
        return min(f.onset for f in self.findings)

    @property
    def deploy_time(self) -> datetime | None:
        return next((f.deploy_time for f in self.findings if f.deploy_time), None)

    @property
    def likely_cause(self) -> str:
        return next((f.likely_cause for f in self.findings if f.likely_cause), "")

    @property
    def anchor(self) -> str:
        return f"incident-{self.key.service}-{self.revision}"


def user_metadata(info: RevisionInfo | None) -> list[tuple[str, str]]:
    """Labels and annotations a person or a deploy pipeline set (ticket, note), not the platform's; the
    commit is shown on its own."""
    if info is None:
        return []
    items = {**info.labels, **info.annotations}
    return sorted(
        (k, v)
        for k, v in items.items()
        if v and not k.startswith(SYSTEM_METADATA) and not (k in COMMIT_KEYS and v == info.commit)
    )


def memory_state(
    view: ServiceView, leak: LeakEvidence, finding: Finding, window_end: datetime
) -> MemoryState:
    """``view``: the one the leak was found in (a sidecar's own, for a sidecar's leak)."""
    rows = view.revision_rows(leak.revision)
    at_limit_rows = rows.loc[rows["mem_max"] >= OOM_LEVEL, "ts"]
    worst = float(rows["mem_max"].max()) if rows["mem_max"].notna().any() else float("nan")
    first = pd.Timestamp(at_limit_rows.min()).to_pydatetime() if len(at_limit_rows) else None
    hours = finding.time_to_limit_hours
    eta = (
        window_end + timedelta(hours=hours)
        if hours is not None and finding.ongoing and first is None
        else None
    )
    return MemoryState(first is not None, worst, first, hours, eta, finding.container)


def _leak_of(result: ServiceResult, finding: Finding) -> tuple[ServiceView, LeakEvidence] | None:
    """The confirmed leak behind a memory finding on its revision, and the view it was found in."""
    sources = [(result.view, result.evidence)] if not finding.container else [
        (s.view, s.evidence) for s in result.sidecars if s.container == finding.container]
    for view, evidence in sources:
        for item in evidence:
            if item.span.name == finding.revision and item.leak is not None and item.leak.confirmed:
                return view, item.leak
    return None


def incidents_of(result: ServiceResult, window_end: datetime) -> list[Incident]:
    """The service's findings grouped by revision, most urgent first."""
    names = {s.name for s in result.view.spans}
    groups: dict[str, list[Finding]] = {}
    for finding in result.findings:
        groups.setdefault(finding.revision, []).append(finding)
    incidents: list[Incident] = []
    for revision, found in groups.items():
        info = result.view.span(revision).info if revision in names else None
        found.sort(
            key=lambda f: (SEVERITY_ORDER[f.severity], -f.excess_cost_usd_per_month, KIND_ORDER[f.kind])
        )
        incident = Incident(result.key, revision, info, found, metadata=user_metadata(info))
        # The ingress container's leak if it has one, else a sidecar's.
        memory = min((f for f in found if f.kind is FindingKind.MEMORY_BASELINE_RISE),
                     key=lambda f: (f.container != "", f.container), default=None)
        leak = _leak_of(result, memory) if memory is not None else None
        if leak is not None and memory is not None:
            incident.memory = memory_state(*leak, memory, window_end)
        incidents.append(incident)
    return sorted(incidents, key=lambda i: i.urgency)


@dataclass(frozen=True, slots=True)
class HeadlineItem:
    """One revision with findings, as the headline sees it (from an analysis or a stored report)."""

    service: str
    revision: str
    kinds: tuple[str, ...]  # its finding kinds, most important first
    ongoing: bool
    per_month_usd: float
    savings_usd_per_month: float = 0.0
    impact: Impact = field(default_factory=Impact)  # what it does to users (its findings share it)
    containers: tuple[str, ...] = ()  # the sidecar each of ``kinds`` is about ("": the service's own)

    @property
    def urgency(self) -> tuple[tuple[int, int, float, float], str, str]:
        return (urgency_key(ongoing=self.ongoing, harming=self.impact.harming,
                            hours_to_limit=self.impact.hours_to_limit, per_month_usd=self.per_month_usd),
                self.service, self.revision)


def headline_of(items: Sequence[HeadlineItem], *, at_risk: float) -> str:
    """One sentence: the most urgent ongoing revision (``analysis.impact``'s order), what it does to
    users and what it costs, or that nothing is ongoing. The HTML report, the service digest and the
    fleet digest all say it this way."""
    ongoing = [i for i in items if i.ongoing]
    if ongoing:
        top = min(ongoing, key=lambda i: i.urgency)
        containers = (*top.containers, *[""] * len(top.kinds))
        names = [finding_name(k, c) for k, c in zip(top.kinds, containers, strict=False)]
        what = " and ".join(dict.fromkeys(names[:2]))
        text = ", ".join([f"{top.service}: {what} since {top.revision}", *harm_words(top.impact)[:2],
                          per_month(top.per_month_usd)])
        others = len(ongoing) - 1
        return text + (
            f" (+{plural(others, 'more revision')}, {usd(at_risk)}/month at risk in all)" if others else ""
        )
    if items:
        saved = sum(i.savings_usd_per_month for i in items)
        return f"Nothing ongoing; {plural(len(items), 'revision')} with findings already fixed" + (
            f", saving {usd(saved)}/month" if saved else ""
        )
    return "Nothing ongoing: no leaks, creep or regressions found"


def headline(incidents: Iterable[Incident], *, at_risk: float) -> str:
    """The headline of an analysis's incidents (see ``headline_of``)."""
    items = [
        HeadlineItem(i.key.service, i.revision, tuple(f.kind.value for f in i.findings), i.ongoing,
                     i.per_month_usd, i.savings_usd_per_month, i.impact, tuple(f.container for f in i.findings))
        for i in incidents
    ]
    return headline_of(items, at_risk=at_risk)


def render_report(analysis: Analysis, *, generated_at: datetime) -> str:
    """The HTML report of one analysis: the one-part case of ``parts.assemble_report``."""
    from analyzer.render.parts import assemble_report, render_part

    return assemble_report([render_part(analysis, generated_at=generated_at)], generated_at=generated_at)
