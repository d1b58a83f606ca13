"""Run the fake Monitoring + Cloud Run APIs as a process, for manual end-to-end runs and the benchmark.

    python -m tests.fakes --snapshot DIR [--port N] [--latency-ms MS]
    python -m tests.fakes --fleet 50 [--hours 24] [--leaking 3] [--port N] [--latency-ms MS]

Serves the snapshot's series as raw data (its timeSeries, revisions and services bodies) or a
synthetic fleet, prints ``MONITORING_EMULATOR_HOST=... RUN_EMULATOR_HOST=...`` on the first line of
stdout, and on SIGINT/SIGTERM prints the calls it answered as one JSON line and exits.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import Behaviour, start


def load_snapshot(directory: Path, monitoring: FakeMetricService, run: FakeRun) -> None:
    def bodies(sub: str) -> list[Any]:
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((directory / sub).glob("*.json"))]

    for body in bodies("timeSeries"):
        monitoring.load_response(body)
    for body in bodies("revisions"):
        run.load_revisions(body)
    for body in bodies("services"):
        run.load_services(body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--snapshot", type=Path, help="a snapshot directory (timeSeries/, revisions/, services/)"
    )
    source.add_argument("--fleet", type=int, help="serve a synthetic fleet of this many services")
    parser.add_argument("--project", default="demo-project", help="project of the synthetic fleet")
    parser.add_argument("--hours", type=float, default=6.0, help="hours of synthetic data")
    parser.add_argument(
        "--start", type=int, default=FleetSpec.start, help="epoch seconds where the fleet's data starts"
    )
    parser.add_argument("--leaking", type=int, action="append", default=[], help="index of a leaking service")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="latency added to every call")
    args = parser.parse_args(argv)

    behaviour = Behaviour(latency_s=args.latency_ms / 1000.0)
    monitoring, run = FakeMetricService(behaviour), FakeRun(behaviour)
    if args.snapshot is not None:
        if not (args.snapshot / "timeSeries").is_dir():
            parser.error(f"{args.snapshot} has no timeSeries/ directory: not a snapshot")
        load_snapshot(args.snapshot, monitoring, run)
    else:
        spec = FleetSpec(
            project=args.project,
            services=args.fleet,
            hours=args.hours,
            start=args.start,
            leaking=args.leaking,
        )
        add_fleet(monitoring, run, spec)
    server = start([monitoring, run], port=args.port)
    print(f"MONITORING_EMULATOR_HOST={server.address} RUN_EMULATOR_HOST={server.address}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()
    print(json.dumps({"calls": dict(behaviour.counts())}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
