"""The benchmark fleet (``bench/fleet_scale.add_aligned_fleet``) plants leaks the report must find, so
that "findings unchanged" is measurable at fleet scale: read through Google's clients from the fakes
on loopback, batch by batch as ``report`` reads it, over the month the benchmarks use.
"""

from __future__ import annotations

import os
from datetime import timedelta

from analyzer.batches import load_batch, plan_live
from analyzer.config import AnalysisConfig
from analyzer.pipeline import analyze
from analyzer.sources.live import LiveQuery
from bench.fleet_scale import START, add_aligned_fleet, planted_leaks
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import start


def test_the_planted_leak_is_found_over_a_month() -> None:
    # Regression: the generator clipped the leaking instances at 99 % of the limit for the second half of
    # the month, without the OOM kill a real instance gets, and the report read the climb as levelled off.
    monitoring, run = FakeMetricService(), FakeRun()
    add_aligned_fleet(monitoring, run, project="p", services=2, days=30)
    server = start([monitoring, run])
    env = {**os.environ, "MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address,
           "NO_GCE_CHECK": "true"}
    end = START + timedelta(days=30)
    try:
        plan = plan_live(LiveQuery(projects=("p",), start=START, end=end), env=env, now=end + timedelta(hours=1))
        findings = [f for batch in plan.batches for f in analyze(load_batch(batch), AnalysisConfig()).findings]
    finally:
        server.stop()
    assert planted_leaks(2, project="p") == [("svc-0001", "svc-0001-00002")]
    assert [(f.kind.value, f.service, f.revision) for f in findings] == [
        ("memory_baseline_rise", "svc-0001", "svc-0001-00002")]
    assert findings[0].onset == START + timedelta(days=15)  # the leaking revision's deploy
