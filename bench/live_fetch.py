"""Benchmark the live query plan: API calls and wall time for fleets of 1, 50 and 500 services.

Each fleet is served by the fake Monitoring + Cloud Run APIs in a separate process
(``python -m tests.fakes --fleet N``) with a fixed latency added to every call, and read with
Google's real client libraries through the emulator variables, exactly like a live run::

    python bench/live_fetch.py                      # 1, 50, 500 services, 24 h, 100 ms per call
    python bench/live_fetch.py --services 1 50 --hours 6 --latency-ms 100 --concurrency 8

Calls are counted by the fake (every RPC it answered, pages included). The "per-service plan" column
is what one query per service and metric would need, computed, for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzer.sources.google_clients import build_clients  # noqa: E402
from analyzer.sources.live import DEFAULT_PLAN, LiveQuery, fetch_live  # noqa: E402
from tests.fakes.fleet import FleetSpec  # noqa: E402


@dataclass
class Result:
    services: int
    calls: dict[str, int]
    seconds: float
    cpu_seconds: float  # this process (client libraries, JSON conversion, parsing), all threads
    series: int
    points: int

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())


def run_one(services: int, *, hours: float, latency_ms: float, concurrency: int) -> Result:
    command = [sys.executable, "-m", "tests.fakes", "--fleet", str(services), "--hours", str(hours),
               "--latency-ms", str(latency_ms), "--project", "bench-project"]
    fake = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert fake.stdout is not None
        first = fake.stdout.readline().split()
        env = dict(item.split("=", 1) for item in first)
        clients = build_clients(env)
        start = datetime.fromtimestamp(FleetSpec.start, UTC)
        end = start + timedelta(hours=hours)
        query = LiveQuery(projects=("bench-project",), start=start, end=end, max_concurrency=concurrency)
        began, cpu = time.perf_counter(), time.process_time()
        data = fetch_live(query, clients=clients, now=end + timedelta(hours=1))
        seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
        clients.close()
        assert not data.problems, data.problems
    finally:
        fake.send_signal(signal.SIGTERM)
        out, _ = fake.communicate(timeout=60)
    calls = json.loads(out.strip().splitlines()[-1])["calls"]
    return Result(services, calls, seconds, cpu, len(data.series), sum(len(s.end_times) for s in data.series))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, nargs="+", default=[1, 50, 500])
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    os.environ.setdefault("NO_GCE_CHECK", "true")
    metrics = len(DEFAULT_PLAN)
    print(f"window {args.hours:g} h at 300 s alignment, {args.latency_ms:g} ms per call, "
          f"max concurrency {args.concurrency}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print()
    print("| services | ListTimeSeries | ListRevisions | ListServices | calls | per-service plan | "
          "series | points | wall time | client CPU |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for services in args.services:
        r = run_one(services, hours=args.hours, latency_ms=args.latency_ms, concurrency=args.concurrency)
        naive = services * (metrics + 1) + 1  # a query per service and metric, revisions per service
        print(f"| {services} | {r.calls.get('ListTimeSeries', 0)} | {r.calls.get('ListRevisions', 0)} | "
              f"{r.calls.get('ListServices', 0)} | {r.total_calls} | {naive} | {r.series} | {r.points} | "
              f"{r.seconds:.2f} s | {r.cpu_seconds:.2f} s |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
