"""Shared fixtures: the demo is simulated once per test session."""

from __future__ import annotations

import os

import pytest

from analyzer.analysis import Analysis
from analyzer.model import RawData
from analyzer.simulate import SimulatedService

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


@pytest.fixture(scope="session")
def urgent_services() -> list[SimulatedService]:
    """tests/urgent_fleet.py: a cheap OOM-killing leak and an expensive latency regression, both ongoing."""
    from tests.urgent_fleet import simulate

    return simulate()


@pytest.fixture(scope="session")
def urgent_analysis(urgent_services: list[SimulatedService]) -> Analysis:
    from tests.urgent_fleet import analyze_services

    return analyze_services(urgent_services)
