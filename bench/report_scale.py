"""Benchmark ``cloudrun-analyzer report`` at fleet size against the receive floor, in the same run.

Serves a generated fleet (``fleet_scale.add_aligned_fleet``: 2 revisions a service, every metric of the
query plan already aligned to 300 s) from the fake Monitoring and Cloud Run APIs in this process, on
loopback gRPC. Then, each as a child process measured by ``wait4`` (CPU of the child and of every
worker it waited for) and its own ``VmHWM`` (peak RSS; its largest worker's from ``RUSAGE_CHILDREN``,
an upper bound that includes the main process's image copied when the worker was forked):

- **report**: ``cloudrun-analyzer report --project … --workers W --out … --json …`` exactly as a user
  runs it with the emulator variables (list the fleet, fetch each batch with Google's clients, parse,
  frames, detectors, cost, render the HTML and JSON);
- **floor**: the same ListTimeSeries, ListRevisions and ListServices calls the report's batches make,
  through the same clients, every page received and dropped. What receiving the bytes costs.
- **parse** (first, unless ``--parse-points 0``): the first batches' ListTimeSeries pages (up to N
  points) received through Google's client, then parsed by the exact per-point reader and by the
  column reader (``columnar.Page``: the message serialized back to bytes, then decoded); and the same
  pages received as wire bytes (``sources/rawpages.py``, what the report does) and decoded once
  (``columnar.Page.from_wire``); every reader checked equal to the exact one. CPU per point of each.

::

    python bench/report_scale.py --fleet 100x7 --fleet 100x30          # services x days
    python bench/report_scale.py --fleet 1000x7 --workers 2
    python bench/report_scale.py --fleet 1000x30 --workers 2 --distinct 100   # a month of 1,000 services
    python bench/report_scale.py --fleet 200x30 --workers 2 --distinct 50 --parse-points 0 --repeat 3

The fake's own CPU (serializing the answers) is in this process and counted in neither figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet_scale import START, add_aligned_fleet, planted_leaks  # noqa: E402


@dataclass
class Measure:
    wall_s: float
    cpu_s: float  # the child's and every worker's it waited for (the floor: its calls alone, no start-up)
    peak_mib: float  # the child's own (VmHWM: wait4's figure would count this process's image copied at fork)
    worker_peak_mib: float  # the largest worker's
    output: str
    report: dict[str, Any]  # the child's own last line


def _measured(command: list[str], env: dict[str, str]) -> Measure:
    began = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    streams: dict[str, bytes] = {}

    def drain(name: str, stream: IO[bytes]) -> None:
        streams[name] = stream.read()

    readers = [threading.Thread(target=drain, args=pair) for pair in (("out", child.stdout), ("err", child.stderr))]
    for reader in readers:
        reader.start()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - began
    for reader in readers:
        reader.join()
    code = os.waitstatus_to_exitcode(status)
    child.returncode = code
    if code != 0:
        raise SystemExit(f"{command[:3]} exited {code}: {streams['err'].decode()[-3000:]}")
    report = json.loads(streams["out"].decode().strip().splitlines()[-1])
    return Measure(wall, report.get("floor_cpu_s", usage.ru_utime + usage.ru_stime), report["peak_mib"],
                   report.get("worker_peak_mib", 0.0), streams["err"].decode(), report)


def child_main(argv: list[str]) -> None:
    """Inside a measured child: ``report ARGS`` runs the CLI; ``floor ARGS`` replays the calls."""
    import resource

    mode, rest = argv[0], argv[1:]
    if mode == "report":
        from analyzer.cli import cli

        try:
            cli.main(args=rest, prog_name="cloudrun-analyzer", standalone_mode=False)
        finally:
            own, workers = (resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
            print(json.dumps({"worker_peak_mib": workers.ru_maxrss / 1024, "peak_mib": _own_peak_mib(),
                              "main_cpu_s": own.ru_utime + own.ru_stime,
                              "workers_cpu_s": workers.ru_utime + workers.ru_stime}), flush=True)
        return
    if mode == "parse":
        print(json.dumps({**parse_only(rest), "worker_peak_mib": 0.0, "peak_mib": _own_peak_mib()}), flush=True)
        return
    began = time.process_time()
    floor(rest)
    print(json.dumps({"worker_peak_mib": 0.0, "floor_cpu_s": time.process_time() - began,
                      "peak_mib": _own_peak_mib()}), flush=True)


def _own_peak_mib() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def floor(argv: list[str]) -> None:
    """Every call of the report (listing the fleet, each region's revisions and services once, each
    batch's metric pages), through Google's clients, pages received and dropped."""
    from datetime import UTC, datetime

    from google.cloud import run_v2

    from analyzer.batches import LiveBatch, plan_listed, services_per_batch
    from analyzer.sources.google_clients import build_clients
    from analyzer.sources.inventory import list_fleet
    from analyzer.sources.live import LiveQuery, effective_window, time_series_requests

    project, start, end, now = argv[0], *(datetime.fromisoformat(a).astimezone(UTC) for a in argv[1:4])
    query = LiveQuery(projects=(project,), start=start, end=end)
    clients = build_clients(dict(os.environ))
    window = effective_window(query, now)
    # plan_live's listing, without its reading of the revisions (done below, received and dropped)
    keys = list_fleet(clients, projects=(project,), regions=None, services=None, window=window).services
    size = services_per_batch((window[1] - window[0]).total_seconds() / 86_400)
    plan = plan_listed(keys, size=size, live=LiveBatch(env={}, start=window[0], end=window[1]), origin="floor")
    for region in sorted({k.region for batch in plan.batches for k in batch.keys}):
        location = f"projects/{project}/locations/{region}"
        for _ in clients.revisions.list_revisions(
            request=run_v2.ListRevisionsRequest(parent=f"{location}/services/-", page_size=1000)
        ).pages:
            pass
        for _ in clients.services.list_services(
            request=run_v2.ListServicesRequest(parent=location, page_size=1000)
        ).pages:
            pass
    for batch in plan.batches:
        names = tuple(k.service for k in batch.keys)
        one = LiveQuery(projects=(project,), start=start, end=end, region=batch.keys[0].region, services=names)
        for _, _, request in time_series_requests(one, project, plan.window):  # type: ignore[arg-type]
            for _ in clients.monitoring.list_time_series(request=request).pages:
                pass
    clients.close()


def parse_only(argv: list[str]) -> dict[str, float]:
    """Parse-only micro-benchmark: the first batches' ListTimeSeries pages (up to ``argv[4]`` points),
    each received through Google's client, then parsed by the exact per-point reader
    (``columnar.parse_time_series``) and by the column reader (``columnar.Page``): CPU per point of
    each, and of receiving. Both readers' results are checked equal."""
    from datetime import UTC, datetime

    from analyzer.batches import plan_live
    from analyzer.sources import columnar
    from analyzer.sources.google_clients import build_clients
    from analyzer.sources.live import LiveQuery, time_series_requests
    from tests.test_columnar import same_parse

    project, start, end, now = argv[0], *(datetime.fromisoformat(a).astimezone(UTC) for a in argv[1:4])
    limit = int(argv[4])
    query = LiveQuery(projects=(project,), start=start, end=end)
    plan = plan_live(query, env=dict(os.environ), now=now)
    clients = build_clients(dict(os.environ))
    pages, receive = [], 0.0
    points = 0
    for batch in plan.batches:
        names = tuple(k.service for k in batch.keys)
        one = LiveQuery(projects=(project,), start=start, end=end, region=batch.keys[0].region, services=names)
        for _, _, request in time_series_requests(one, project, plan.window):  # type: ignore[arg-type]
            began = time.process_time()
            for page in clients.monitoring.list_time_series(request=request).pages:
                receive += time.process_time() - began
                message = type(page).pb(page)
                pages.append(message)
                points += sum(len(ts.points) for ts in message.time_series)
                began = time.process_time()
        if points >= limit:
            break
    began = time.process_time()
    wire_receive, wire_s, wire = _wire_pages(plan, query, clients, len(pages))
    clients.close()
    exact = [[columnar.parse_time_series(ts, source="s") for ts in page.time_series] for page in pages]
    exact_s = time.process_time() - began
    began = time.process_time()
    columns = []
    for page in pages:
        reader = columnar.Page(page)
        columns.append([reader.parse(i, source="s") for i in reader.indices])
    columns_s = time.process_time() - began
    for read in (columns, wire):
        for a, b in zip(exact, read, strict=True):
            for x, y in zip(a, b, strict=True):
                same_parse(x, y)
    return {"parse_points": points, "receive_s": receive, "exact_s": exact_s, "columns_s": columns_s,
            "wire_receive_s": wire_receive, "wire_s": wire_s}


def _wire_pages(plan: Any, query: Any, clients: Any, count: int) -> tuple[float, float, list[Any]]:
    """The first ``count`` pages again, as the report reads them: wire bytes over the client's channel
    (CPU of receiving), each decoded once by ``columnar.Page.from_wire`` (CPU of decoding); and the
    series read."""
    from google.api_core import gapic_v1

    from analyzer.sources import columnar, rawpages
    from analyzer.sources.live import LiveQuery, time_series_requests

    method = rawpages.method_for(clients.monitoring)
    assert method is not None
    receive = decode = 0.0
    read: list[Any] = []
    for batch in plan.batches:
        names = tuple(k.service for k in batch.keys)
        one = LiveQuery(projects=query.projects, start=query.start, end=query.end, region=batch.keys[0].region,
                        services=names)
        for _, _, request in time_series_requests(one, query.projects[0], plan.window):
            metadata = (gapic_v1.routing_header.to_grpc_metadata((("name", request.name),)),)  # type: ignore[no-untyped-call]
            while len(read) < count:
                began = time.process_time()
                data = method(request, retry=None, timeout=120.0, metadata=metadata)
                receive += time.process_time() - began
                began = time.process_time()
                page = columnar.Page.from_wire(data)
                read.append([page.parse(i, source="s") for i in page.indices])
                decode += time.process_time() - began
                if not page.next_page_token:
                    break
                request.page_token = page.next_page_token
        if len(read) >= count:
            break
    return receive, decode, read


def run_fleet(services: int, days: float, *, workers: int, keep: Path | None, parse_points: int,
              distinct: int | None = None, repeat: int = 1) -> dict[str, Any]:
    """One fleet served once; the floor and the report measured ``repeat`` times, alternately (a shared
    or virtual machine's speed drifts by 10 % and more between runs: the ratio of a floor and the report
    right after it holds better than either figure). The pair with the median ratio gives the headline
    figures; every pair's ratio is in ``cpu_ratios``."""
    from tests.fakes.monitoring import FakeMetricService
    from tests.fakes.run import FakeRun
    from tests.fakes.server import start

    began = time.perf_counter()
    monitoring, cloud_run = FakeMetricService(), FakeRun(default_page_size=1000)
    points = add_aligned_fleet(monitoring, cloud_run, project="bench", services=services, days=days,
                               distinct=distinct)
    generated = time.perf_counter() - began
    server = start([monitoring, cloud_run])
    env = {**os.environ, "MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address,
           "NO_GCE_CHECK": "true", "PYTHONPATH": str(ROOT)}
    end = START + timedelta(days=days)
    now = end + timedelta(hours=1)
    window = ["--start", START.isoformat(), "--end", end.isoformat()]
    out = keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    me = [sys.executable, str(Path(__file__).resolve()), "child"]
    try:
        times = [START.isoformat(), end.isoformat(), now.isoformat()]
        parse_m = _measured([*me, "parse", "bench", *times, str(parse_points)], env) if parse_points else None
        pairs = []
        for _ in range(max(1, repeat)):
            floor_run = _measured([*me, "floor", "bench", *times], env)
            report_run = _measured([*me, "report", "report", "--project", "bench", *window, "--workers",
                                    str(workers), "--out", str(out / "report.html"), "--json",
                                    str(out / "report.json"), "--format", "json"], env)
            pairs.append((report_run, floor_run))
        ratio = [r.cpu_s / f.cpu_s if f.cpu_s else float("nan") for r, f in pairs]
        report_m, floor_m = pairs[sorted(range(len(pairs)), key=ratio.__getitem__)[len(pairs) // 2]]
        html_mib = (out / "report.html").stat().st_size / 2**20
        found = json.loads((out / "report.json").read_text())
    finally:
        server.stop()
    return {
        "services": services, "days": days, "points": points, "generated_s": round(generated, 1),
        "workers": workers, "floor_cpu_s": floor_m.cpu_s, "floor_wall_s": floor_m.wall_s,
        "report_cpu_s": report_m.cpu_s, "report_wall_s": report_m.wall_s,
        "main_cpu_s": report_m.report.get("main_cpu_s"), "workers_cpu_s": report_m.report.get("workers_cpu_s"),
        "peak_mib": report_m.peak_mib,
        "worker_peak_mib": report_m.worker_peak_mib, "html_mib": html_mib,
        "services_reported": len(found["services"]), "findings": len(found["findings"]),
        "planted_found": _planted_found(found["findings"], services), "planted": len(planted_leaks(services)),
        "cpu_ratio": report_m.cpu_s / floor_m.cpu_s if floor_m.cpu_s else float("nan"),
        "cpu_ratios": ratio,
        "cpu_s_per_service_month": report_m.cpu_s / (services * days / 30),
        **_per_point(parse_m.report if parse_m else {}),
    }


def _per_point(parse: dict[str, Any]) -> dict[str, Any]:
    """µs per point of receiving a page, of the exact reader and of the column reader."""
    points = parse.get("parse_points", 0)
    if not points:
        return {}
    return {"parse_points": points, **{f"{name}_us_per_point": parse[f"{name}_s"] / points * 1e6
                                       for name in ("receive", "exact", "columns", "wire_receive", "wire")}}


def _planted_found(findings: list[dict[str, Any]], services: int) -> int:
    """How many of the leaks the fleet generator planted the report found (as memory findings)."""
    found = {(f.get("service"), f.get("revision")) for f in findings if f.get("kind") == "memory_baseline_rise"}
    return sum(leak in found for leak in planted_leaks(services, project="bench"))


def main() -> int:
    if sys.argv[1:2] == ["child"]:
        child_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fleet", action="append", metavar="SxD", help="S services over D days (repeatable)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--parse-points", type=int, default=1_000_000, metavar="N",
                        help="parse-only micro-benchmark on the first batches' pages, up to N points (0: skip)")
    parser.add_argument("--distinct", type=int, default=None, metavar="K",
                        help="generate only K services' points and serve them under every name (the fake "
                             "holds 1,000 x 30 days in a few hundred MiB; each service is still read and "
                             "analyzed on its own)")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="measure the floor and the report K times, alternately (the pair with the median "
                             "ratio is shown, every pair's ratio after it): this machine's speed drifts")
    args = parser.parse_args()
    fleets = [tuple(float(x) for x in f.split("x")) for f in (args.fleet or ["100x7"])]
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, --workers {args.workers}", flush=True)
    print("| services × days | points | report wall | report CPU | floor CPU | CPU ÷ floor | CPU-s per "
          "service-month | peak RSS (main + largest worker) | HTML | findings | planted leaks found |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    results = []
    for services, days in fleets:
        r = run_fleet(int(services), days, workers=args.workers, keep=None, parse_points=args.parse_points,
                      distinct=args.distinct, repeat=args.repeat)
        results.append(r)
        print(f"| {r['services']} × {r['days']:g} | {r['points']:,} | {r['report_wall_s']:.0f} s | "
              f"{r['report_cpu_s']:.0f} s | {r['floor_cpu_s']:.1f} s | {r['cpu_ratio']:.1f}× | "
              f"{r['cpu_s_per_service_month']:.2f} | {r['peak_mib']:.0f} + {r['worker_peak_mib']:.0f} MiB | "
              f"{r['html_mib']:.1f} MiB | {r['findings']} | {r['planted_found']}/{r['planted']} |", flush=True)
        if len(r["cpu_ratios"]) > 1:
            print(f"  CPU ÷ floor, each pair in order: {', '.join(f'{x:.2f}×' for x in r['cpu_ratios'])}", flush=True)
    if any("parse_points" in r for r in results):
        print("\nParse only (CPU µs per point; the first batches' pages). Receive: through Google's client (the "
              "floor); receive bytes: the same pages as wire bytes over its channel (what the report does). "
              "Column reader: the client's messages serialized and decoded; wire reader: the bytes decoded "
              "once. Totals ÷ the floor:\n")
        print("| services × days | points parsed | receive (floor) | exact reader | column reader | receive bytes "
              "| wire reader | client + columns ÷ floor | bytes + wire reader ÷ floor |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            if "parse_points" in r:
                receive, columns = r["receive_us_per_point"], r["columns_us_per_point"]
                raw, wire = r["wire_receive_us_per_point"], r["wire_us_per_point"]
                print(f"| {r['services']} × {r['days']:g} | {r['parse_points']:,} | {receive:.2f} | "
                      f"{r['exact_us_per_point']:.2f} | {columns:.3f} | {raw:.3f} | {wire:.3f} | "
                      f"{(receive + columns) / receive:.2f}× | {(raw + wire) / receive:.2f}× |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
