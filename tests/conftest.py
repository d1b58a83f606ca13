"""Shared fixtures: the demo is simulated once per test session."""

from __future__ import annotations

import os

import pytest

from analyzer.analysis import Analysis
from analyzer.model import RawData

# Never let a test reach for the GCE metadata server.
os.environ.setdefault("NO_GCE_CHECK", "true")


@pytest.fixture(scope="session")
def demo_raw() -> RawData:
    from analyzer.pipeline import load_demo

    return load_demo()


@pytest.fixture(scope="session")
def demo_analysis(demo_raw: RawData) -> Analysis:
    from analyzer.pipeline import analyze

    return analyze(demo_raw)
