"""The weekly digest of one analysis, as ``digest`` builds it from a report analyzed in batches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from analyzer.analysis import Analysis
from analyzer.render.digest import Digest
from analyzer.render.fleet_digest import fleet_digest
from analyzer.render.parts import FinishedReport, finish, render_part

GENERATED = datetime(2026, 11, 25, tzinfo=UTC)


def finished_of(analysis: Analysis, generated_at: datetime = GENERATED, *, charts: bool = True) -> FinishedReport:
    """``analysis`` as one batch's part, finished as the CLI finishes a batched run."""
    part = render_part(analysis, generated_at=generated_at, digest_charts=charts)
    return finish([part], generated_at=generated_at)


def digest_of(analysis: Analysis, *, generated_at: datetime, charts: bool = True, **options: Any) -> Digest:
    """The digest of ``analysis`` (``options``: ``fleet_digest``'s previous, config, max_html_bytes...)."""
    report = finished_of(analysis, generated_at, charts=charts)
    return fleet_digest(report.report, generated_at=generated_at, images=report.charts, **options)
