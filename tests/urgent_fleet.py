"""A fleet where a cheap memory leak is already OOM-killing instances while an expensive latency
regression costs far more dollars: both ongoing. Urgency puts the leak first everywhere.

Simulated (analyzer/simulate.py): ``leaky`` serves a few requests a second and its new revision leaks
9 MiB an hour into 512 MiB, so its instances reach the limit and are killed within the week, at
almost no extra cost under request-based billing; ``slow``'s new revision makes requests 60 % slower
at 150 requests a second and low concurrency, so it needs many more instances.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from analyzer import simulate as sim
from analyzer.analysis import Analysis
from analyzer.model import RawData
from analyzer.pipeline import analyze
from analyzer.sources.snapshot import ingest

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday
END = START + timedelta(days=6)
LEAK_REVISION, SLOW_REVISION = "leaky-00002-bbb", "slow-00002-bbb"


def _rev(name: str, at: datetime, **kw: Any) -> sim.RevisionSpec:
    return sim.RevisionSpec(name=name, deployed_at=at, image=f"img/{name}", commit_sha=name[-3:], **kw)


LEAKY = sim.ServiceSpec(
    service="leaky",
    revisions=(_rev("leaky-00001-aaa", START - timedelta(days=1)),
               _rev(LEAK_REVISION, START + timedelta(days=2, hours=9), leak_mib_per_hour=9.0, anomalous=True)),
    traffic=sim.TrafficSpec(peak_rps=3.0, noise=0.05),
)
SLOW = sim.ServiceSpec(
    service="slow",
    revisions=(_rev("slow-00001-aaa", START - timedelta(days=1), max_concurrency=10),
               _rev(SLOW_REVISION, START + timedelta(days=3, hours=9), latency_factor=1.6, max_concurrency=10,
                    anomalous=True)),
    traffic=sim.TrafficSpec(peak_rps=150.0, noise=0.05),
    runtime=sim.RuntimeSpec(base_latency_ms=400.0),
)


def simulate() -> list[sim.SimulatedService]:
    return [sim.simulate_service(spec, start=START, end=END, seed=seed, counterfactual=False)
            for spec, seed in ((LEAKY, 3), (SLOW, 4))]


def analyze_services(services: list[sim.SimulatedService]) -> Analysis:
    """The services' REST JSON through the snapshot reader, the frames and the whole analysis."""
    raw = RawData(origin="urgent fleet (simulated)")
    for sub, stem, body in sim.snapshot_documents(services):
        ingest(raw, sub, f"{sub}/{stem}.json", body)
    raw.window_start, raw.window_end = START, END
    return analyze(raw)
