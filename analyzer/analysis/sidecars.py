"""Sidecar containers: each sidecar's memory checked for a leak on its own, apart from the service's.

The service is analyzed on its ingress container (``frames``). A sidecar (a collector, a proxy) can
leak on its own, and when it reaches its limit the whole instance is replaced. So, per sidecar that
reported memory (``Frames.sidecars``):

1. the service's view with its memory columns replaced by the sidecar's (a fraction of the sidecar's
   own limit) and each revision's limits by the sidecar's (``ContainerInfo``); instances, load, errors
   and deploys stay the service's, so warm-up, load adjustment and attribution work as they do for the
   ingress container;
2. the memory part of the detectors on it (``findings.detect_sidecar_leaks``: the same leak detector,
   sequential test, carried leaks and resolution), giving findings that name the container;
3. their harm and severity measured on that view (``impact.assess``: OOM kills and time to the
   sidecar's own limit; errors and latency are the revision's). They carry no dollars of their own
   (``findings.SIDECAR_COST``);
4. the fix check of a revision that ended such a leak (``fixcheck``), its memory the sidecar's.

Only sidecars with a finding are kept (their view feeds the report's chart of the sidecar), so a
fleet of healthy sidecars costs no memory after the analysis.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from analyzer.analysis.findings import RevisionEvidence, detect_sidecar_leaks
from analyzer.analysis.fixcheck import MEASURES, FixCheck, fix_checks
from analyzer.analysis.impact import assess
from analyzer.analysis.timeline import RevisionSpan, ServiceView
from analyzer.config import AnalysisConfig
from analyzer.frames import MEMORY_COLUMNS, Frames
from analyzer.model import Finding
from analyzer.prices import PriceTable


@dataclass(slots=True)
class SidecarResult:
    """One sidecar container of a service with a finding: its memory view and its leak evidence."""

    container: str
    view: ServiceView  # the service's view, memory columns and limits the sidecar's
    evidence: list[RevisionEvidence]
    fixes: list[FixCheck] = field(default_factory=list)  # revisions that ended its leak

    @property
    def findings(self) -> list[Finding]:
        return [f for e in self.evidence for f in e.findings]


def sidecar_view(frames: Frames, view: ServiceView, container: str) -> ServiceView:
    """``view`` with the memory of ``container`` (a sidecar) in place of the ingress container's."""
    memory = frames.sidecar_memory(view.key)
    memory = memory.loc[memory["container"] == container, ["revision", "ts", *MEMORY_COLUMNS]]
    aligned = view.rows[["revision", "ts"]].merge(memory, how="left", on=["revision", "ts"])
    rows = view.rows.copy()
    for column in MEMORY_COLUMNS:
        rows[column] = aligned[column].to_numpy(dtype="float64")
    spans = [_with_limits(span, container) for span in view.spans]
    return ServiceView(view.key, rows, view.totals, spans, view.step_seconds)


def _with_limits(span: RevisionSpan, container: str) -> RevisionSpan:
    """The span with its revision's limits those of ``container`` (unknown where it is not listed)."""
    own = next((c for c in span.info.containers if c.name == container), None)
    info = replace(span.info, cpu_limit=own.cpu_limit if own else None,
                   memory_limit_gib=own.memory_limit_gib if own else None)
    return replace(span, info=info)


def analyze_sidecars(frames: Frames, view: ServiceView, config: AnalysisConfig,
                     table: PriceTable) -> list[SidecarResult]:
    """The sidecars of ``view``'s service whose memory leaks, each with its findings."""
    memory = frames.sidecar_memory(view.key)
    results: list[SidecarResult] = []
    for container in sorted(set(memory["container"])) if len(memory) else []:
        mine = sidecar_view(frames, view, container)
        evidence = detect_sidecar_leaks(mine, container, config, table)
        found = [f for e in evidence for f in e.findings]
        if found:
            assess(mine, found)
            results.append(SidecarResult(container, mine, evidence, _fixes(mine, evidence, container, config, table)))
    return results


def _fixes(view: ServiceView, evidence: list[RevisionEvidence], container: str, config: AnalysisConfig,
           table: PriceTable) -> list[FixCheck]:
    if not any(f.resolved_by for e in evidence for f in e.findings):
        return []
    memory = MEASURES[0][1]  # the troughs of the view's memory: the sidecar's
    return [replace(check, container=container,
                    measures=tuple(replace(m, name=f"{m.name} of sidecar {container}") if m.name == memory else m
                                   for m in check.measures))
            for check in fix_checks(view, evidence, table, config)]
