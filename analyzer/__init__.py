"""cloudrun-analyzer: find the slow, expensive failures of Cloud Run services, name the deploy that
caused each one, and price it.

Data flows one way: sources (Google APIs, snapshots, demo) → frames → analysis → render → delivery.
"""

from __future__ import annotations

from analyzer.errors import AnalyzerError
from analyzer.model import Finding, FindingKind, Problem, RawData, Severity

__version__ = "0.1.0"

__all__ = ["AnalyzerError", "Finding", "FindingKind", "Problem", "RawData", "Severity", "__version__"]
