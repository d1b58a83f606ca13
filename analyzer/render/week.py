"""The record a run leaves of its window (findings and service costs), and what changed since the
previous week's: new, ongoing and resolved findings. Pure: storing and finding records is
``analyzer.delivery.history``'s job.

A finding is identified across runs by (project, region, service, kind, revision, container): the same
revision showing the same anomaly (in the same sidecar, if any) is the same problem, whatever its numbers
did.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from analyzer.analysis import Analysis
from analyzer.analysis.impact import KIND_ORDER, urgency_key
from analyzer.errors import DeliveryError
from analyzer.model import Impact
from analyzer.render.json_report import finding_json, impact_from_json
from analyzer.sources.restjson import format_time, parse_time

SCHEMA = "cloudrun-analyzer/history"
SCHEMA_VERSION = 1

FindingKey = tuple[str, ...]  # project, region, service, kind, revision[, sidecar container]


@dataclass(frozen=True, slots=True)
class FindingRecord:
    """A finding as stored: enough to say what it was, where, and what it cost."""

    project: str
    region: str
    service: str
    kind: str
    revision: str
    severity: str
    summary: str
    onset: str
    ongoing: bool
    resolved_by: str
    per_month_usd: float
    savings_usd_per_month: float
    time_to_limit_hours: float | None
    impact: Impact = field(default_factory=Impact)  # what it did to users (none in older records)
    container: str = ""  # the sidecar it is about ("": the service's; none in older records)

    @property
    def key(self) -> FindingKey:
        own = (self.project, self.region, self.service, self.kind, self.revision)
        return (*own, self.container) if self.container else own

    @property
    def onset_time(self) -> datetime:
        return parse_time(self.onset)

    @property
    def urgency_key(self) -> tuple[int, int, float, float]:
        return urgency_key(ongoing=self.ongoing, harming=self.impact.harming,
                           hours_to_limit=self.impact.hours_to_limit, per_month_usd=self.per_month_usd)

    @property
    def urgency(self) -> tuple[object, ...]:
        """Its place in the urgency order (``analysis.impact``), ties broken as the report's."""
        return (self.urgency_key, self.service, self.revision, KIND_ORDER.get(self.kind, 9), self.onset)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> FindingRecord:
        return cls(
            project=str(doc["project"]),
            region=str(doc["region"]),
            service=str(doc["service"]),
            kind=str(doc["kind"]),
            revision=str(doc["revision"]),
            severity=str(doc.get("severity", "warning")),
            summary=str(doc.get("summary", "")),
            onset=str(doc["onset"]),
            ongoing=bool(doc.get("ongoing", True)),
            resolved_by=str(doc.get("resolved_by") or ""),
            per_month_usd=float(doc.get("excess_cost_usd_per_month") or 0.0),
            savings_usd_per_month=float(doc.get("savings_usd_per_month") or 0.0),
            time_to_limit_hours=(
                float(doc["time_to_limit_hours"]) if doc.get("time_to_limit_hours") is not None else None
            ),
            impact=impact_from_json(doc.get("impact")),
            container=str(doc.get("container") or ""),
        )


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    project: str
    region: str
    service: str
    cost_usd: float | None
    monthly_projection_usd: float | None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.project, self.region, self.service)


@dataclass(slots=True)
class WindowRecord:
    """What one run found in its window."""

    window_start: datetime
    window_end: datetime
    generated_at: datetime
    findings: list[FindingRecord] = field(default_factory=list)
    services: list[ServiceRecord] = field(default_factory=list)
    report: str = ""  # where the full report of this window was stored, if it was
    raw_findings: list[dict[str, Any]] = field(default_factory=list)  # the JSON report's findings, as stored

    @property
    def total_cost_usd(self) -> float:
        return sum(s.cost_usd or 0.0 for s in self.services)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "window": {"start": format_time(self.window_start), "end": format_time(self.window_end)},
            "generated_at": format_time(self.generated_at),
            "report": self.report or None,
            "services": [
                {
                    "project": s.project,
                    "region": s.region,
                    "service": s.service,
                    "cost_usd": s.cost_usd,
                    "monthly_projection_usd": s.monthly_projection_usd,
                }
                for s in self.services
            ],
            "findings": self.raw_findings,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], *, source: str) -> WindowRecord:
        if doc.get("schema") != SCHEMA or doc.get("schema_version") != SCHEMA_VERSION:
            raise DeliveryError(
                f"{source} is not a {SCHEMA} v{SCHEMA_VERSION} record",
                hint="remove it from the store, or point store.url at this tool's own history",
            )
        try:
            raw = list(doc["findings"])
            return cls(
                window_start=parse_time(doc["window"]["start"]),
                window_end=parse_time(doc["window"]["end"]),
                generated_at=parse_time(doc["generated_at"]),
                findings=[FindingRecord.from_json(f) for f in raw],
                services=[
                    ServiceRecord(
                        str(s["project"]),
                        str(s["region"]),
                        str(s["service"]),
                        s.get("cost_usd"),
                        s.get("monthly_projection_usd"),
                    )
                    for s in doc["services"]
                ],
                report=str(doc.get("report") or ""),
                raw_findings=raw,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DeliveryError(
                f"{source} is damaged: {type(exc).__name__}: {exc}",
                hint="remove it from the store; the next run writes a fresh record",
            ) from exc


def record_from_analysis(analysis: Analysis, *, generated_at: datetime, report: str = "") -> WindowRecord:
    raw = [finding_json(f) for f in analysis.findings]
    services = [
        ServiceRecord(
            s.key.project,
            s.key.region,
            s.key.service,
            round(s.cost.cost_usd, 4) if s.cost else None,
            round(s.cost.monthly_projection_usd, 2) if s.cost else None,
        )
        for s in analysis.services
    ]
    return WindowRecord(
        analysis.window_start,
        analysis.window_end,
        generated_at,
        [FindingRecord.from_json(f) for f in raw],
        services,
        report,
        raw,
    )


class Change(enum.StrEnum):
    NEW = "new"
    ONGOING = "ongoing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class ChangedFinding:
    change: Change
    finding: FindingRecord  # this week's, or last week's when it is no longer seen
    note: str  # why it is in this group, in words




@dataclass(slots=True)
class RevisionChanges:
    """The findings of one revision that changed the same way this week (they share its dollars)."""

    change: Change
    changed: list[ChangedFinding]

    @property
    def first(self) -> FindingRecord:
        return self.changed[0].finding

    @property
    def per_month_usd(self) -> float:
        return max(c.finding.per_month_usd for c in self.changed)

    @property
    def impact(self) -> Impact:
        """What the revision does to users (its findings share it)."""
        return self.first.impact

    @property
    def onset(self) -> datetime:
        return min(c.finding.onset_time for c in self.changed)

    @property
    def notes(self) -> list[str]:
        return list(dict.fromkeys(c.note for c in self.changed))


@dataclass(slots=True)
class WeekChanges:
    new: list[ChangedFinding] = field(default_factory=list)
    ongoing: list[ChangedFinding] = field(default_factory=list)
    resolved: list[ChangedFinding] = field(default_factory=list)
    previous_end: datetime | None = None  # the window end of the record compared with, if any

    def all(self) -> list[ChangedFinding]:
        return [*self.new, *self.ongoing, *self.resolved]

    @staticmethod
    def by_revision(group: list[ChangedFinding]) -> list[RevisionChanges]:
        """One group's findings by revision, most urgent first (the digest shows them this way)."""
        revisions: dict[tuple[str, str, str, str], list[ChangedFinding]] = {}
        for c in group:
            f = c.finding
            revisions.setdefault((f.project, f.region, f.service, f.revision), []).append(c)
        items = []
        for members in revisions.values():
            members.sort(key=lambda c: c.finding.urgency)
            items.append(RevisionChanges(members[0].change, members))
        return sorted(items, key=lambda i: i.first.urgency)


def compare(current: list[FindingRecord], previous: WindowRecord | None) -> WeekChanges:
    """New, ongoing and resolved since ``previous`` (without one, every open finding is new)."""
    before = {f.key: f for f in previous.findings} if previous else {}
    now_keys = {f.key for f in current}
    changes = WeekChanges(previous_end=previous.window_end if previous else None)
    for f in current:
        last = before.get(f.key)
        if f.ongoing:
            if last is None:
                changes.new.append(ChangedFinding(Change.NEW, f, "first seen this week"))
            else:
                changes.ongoing.append(ChangedFinding(Change.ONGOING, f, f"open since {f.onset_time:%d %b}"))
        elif last is None:
            changes.resolved.append(
                ChangedFinding(Change.RESOLVED, f, f"appeared and was fixed by {f.resolved_by} this week")
            )
        elif last.ongoing:
            changes.resolved.append(ChangedFinding(Change.RESOLVED, f, f"fixed by {f.resolved_by} this week"))
        # resolved last week and still shown as resolved: already reported, not news
    for key, last in before.items():
        if last.ongoing and key not in now_keys:
            changes.resolved.append(ChangedFinding(Change.RESOLVED, last, "no longer seen this week"))
    for group in (changes.new, changes.ongoing, changes.resolved):
        group.sort(key=lambda c: c.finding.urgency)
    return changes
