"""Benchmark the scheduled job at fleet scale: services per second and peak memory (RSS) per task.

Serves a generated fleet (default 1,000 services, 7 days) from the fake Monitoring and Cloud Run
APIs of ``tests/fakes`` in this process, on loopback gRPC, with the data stored already aligned to
300 s (what Cloud Monitoring returns for the job's ALIGN_DELTA/ALIGN_MEAN queries at a 300 s period),
so the fake does little more than serialize. Each run is the job's real code path: ``cloudrun-analyzer
run`` as N separate task processes with ``CLOUD_RUN_TASK_INDEX``/``CLOUD_RUN_TASK_COUNT``, Google's
client libraries through the emulator variables, at most ``--parallel`` tasks at a time, the last
task merging the shards into the fleet report. Each task's CPU time comes from ``wait4``, its peak
RSS from its own ``VmHWM``, and its stages (fetch, proto→REST JSON, parse, frames, analysis, render,
merge) from timers wrapped around the job's own functions inside the task::

    python bench/fleet_scale.py          # 100x1, 1000x4:2, 1000x10:2, 2 tasks at a time, 7 days
    python bench/fleet_scale.py --run 1000x10 --parallel 2 --days 7 --json bench/out/fleet_scale.json

A run ``SxN`` analyzes a fleet of S services with N tasks and must end with one fleet report of S
services, merged by exactly one task, or the benchmark fails. ``SxN:K`` runs only tasks 0..K-1 of the
N: every task's share is about S/N services and tasks do not depend on each other until the merge,
so K tasks give the per-task figures of the full run for K/N of its cost (no merge, no makespan).
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START = datetime(2026, 1, 1, tzinfo=UTC)
REGION = "us-central1"
STEP = 300  # seconds: the job's alignment period, and the step the fake stores
TIMINGS = "FLEET_SCALE_TIMINGS"  # where a task writes its stage timings (set by the benchmark)

# The job's own functions timed inside each task: stage -> (module, attribute path).
STAGES: dict[str, tuple[str, str]] = {
    "list": ("analyzer.sources.inventory", "list_fleet"),
    "fetch": ("analyzer.sources.inventory", "fetch_live"),
    "to_json": ("analyzer.sources.live", "RestJson.page"),
    "parse": ("analyzer.sources.snapshot", "ingest"),
    "frames": ("analyzer.pipeline", "build"),
    "analysis": ("analyzer.pipeline", "analyze_frames"),
    "render_html": ("analyzer.render.html", "render_report"),
    "render_json": ("analyzer.render.json_report", "report_json"),
    "merge": ("analyzer.job", "Job.merge"),
}


# ---------------------------------------------------------------------------------------------
# Inside a task process


@dataclass
class Stage:
    calls: int = 0
    wall_s: float = 0.0
    thread_cpu_s: float = 0.0  # CPU of the calling thread only
    process_cpu_s: float = 0.0  # CPU of every thread while the call ran (meaningful for the main thread)


@dataclass
class Recorder:
    stages: dict[str, Stage] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    began: float = field(default_factory=time.perf_counter)
    rss_mib_at: dict[str, float] = field(default_factory=dict)

    def timed(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if name == "fetch":  # once per batch of services; the first is before any data
                from analyzer.batches import resident_mib

                self.rss_mib_at.setdefault("fetch start", resident_mib())
            wall, cpu, process = time.perf_counter(), time.thread_time(), time.process_time()
            try:
                return func(*args, **kwargs)
            finally:
                wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
                process = time.process_time() - process
                with self.lock:
                    stage = self.stages.setdefault(name, Stage())
                    stage.calls += 1
                    stage.wall_s += wall
                    stage.thread_cpu_s += cpu
                    stage.process_cpu_s += process
                if name == "fetch":
                    self.rss_mib_at["peak after fetch"] = _peak_mib()

        return wrapper

    def install(self) -> None:
        import importlib

        for name, (module_name, path) in STAGES.items():
            owner: Any = importlib.import_module(module_name)
            *parents, attribute = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, attribute, self.timed(name, getattr(owner, attribute)))

    def dump(self, path: str) -> None:
        body = {
            "wall_s": time.perf_counter() - self.began,
            "stages": {name: vars(stage) for name, stage in self.stages.items()},
            "rss_mib": {**self.rss_mib_at, "peak": _peak_mib()},
        }
        Path(path).write_text(json.dumps(body), encoding="utf-8")


def _peak_mib() -> float:
    """Peak RSS of this process's own address space (Linux ``VmHWM``).

    Not ``ru_maxrss``: a child inherits its parent's high-water mark across fork and exec, and the
    parent here holds the fake fleet (gigabytes), which would hide every task's own peak.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def task_main(argv: list[str]) -> None:
    """``cloudrun-analyzer`` with the stage timers installed; the timings go to $FLEET_SCALE_TIMINGS."""
    recorder = Recorder()
    recorder.install()
    atexit.register(recorder.dump, os.environ[TIMINGS])
    from analyzer.cli import cli

    cli.main(args=argv, prog_name="cloudrun-analyzer")


# ---------------------------------------------------------------------------------------------
# The fleet, served by the fakes


LEAK_RESET_MINUTES = 8_000  # a leaking instance's life: from about 32 % of its limit to 99 %


def planted_leaks(services: int, project: str = "bench") -> list[tuple[str, str]]:
    """(service, revision) of every leak ``add_aligned_fleet`` plants: the second revision of every
    100th service (starting with the second)."""
    from tests.fakes.fleet import FleetSpec

    spec = FleetSpec(project=project, region=REGION, services=services)
    return [(spec.service_name(i), f"{spec.service_name(i)}-{2:05d}") for i in range(services) if _leaks(i, 1)]


def _leaks(service: int, revision: int) -> bool:
    return service % 100 == 1 and revision == 1


def add_aligned_fleet(monitoring: Any, run: Any, *, project: str, services: int, days: float,
                      distinct: int | None = None) -> int:
    """``services`` services with 2 revisions each (the second deployed mid-window) and every metric
    of the job's query plan as 300 s points; every 100th service leaks memory (``planted_leaks``).
    Returns the points. ``distinct``: only that many services' points are generated, the others
    serve the same arrays under their own names (the fake then holds a 1,000-service month in a few
    hundred MiB instead of tens of GiB; every service is still read, parsed and analyzed on its own)."""
    import numpy as np

    from tests.fakes.fleet import LATENCY_BUCKETS, UTILIZATION_BUCKETS, FleetSpec, _histograms, revision_body

    spec = FleetSpec(project=project, region=REGION, services=services)
    rng = np.random.default_rng(11)
    start = int(START.timestamp())
    ends = start + STEP * np.arange(1, int(days * 86_400 / STEP) + 1, dtype=np.int64)
    middle = start + int(days * 86_400 / 2)
    points = 0
    made: dict[tuple[int, int, bool], list[dict[str, Any]]] = {}
    for i in range(services):
        service = spec.service_name(i)
        run.add_service(
            {
                "name": f"projects/{project}/locations/{REGION}/services/{service}",
                "uri": f"https://{service}.run.app",
            }
        )
        for r, (deployed, until) in enumerate(((start - 86_400, middle), (middle, int(ends[-1])))):
            run.add_revision(revision_body(spec, service, r + 1, deployed))
            mask = (ends > max(deployed, start)) & (ends <= until)
            leaking = _leaks(i, r)
            template = (i % distinct if distinct else i, r, leaking)
            if template not in made:
                made[template] = _revision_series(len(ends[mask]), rng, leaking=leaking,
                                                  buckets=(UTILIZATION_BUCKETS, LATENCY_BUCKETS),
                                                  histograms=_histograms)
            points += _add_revision(monitoring, project, service, f"{service}-{r + 1:05d}", ends[mask],
                                    made[template] if distinct else made.pop(template))
    return points


def _add_revision(monitoring: Any, project: str, service: str, revision: str, ends: Any,
                  series: list[dict[str, Any]]) -> int:
    """One revision's series (``_revision_series``) served under its own labels."""
    resource_labels = {
        "project_id": project,
        "location": REGION,
        "service_name": service,
        "revision_name": revision,
        "configuration_name": service,
    }
    for s in series:
        fields = {k: v for k, v in s.items() if k != "metric"}
        monitoring.add_arrays(
            metric="run.googleapis.com/" + s["metric"],
            resource=resource_labels,
            ends=ends,
            starts=ends - STEP if s["kind"] == "DELTA" else ends,
            **fields,
        )
    return len(ends) * len(series)


def _revision_series(
    n: int,
    rng: Any,
    *,
    leaking: bool,
    buckets: tuple[dict[str, Any], dict[str, Any]],
    histograms: Callable[..., Any],
) -> list[dict[str, Any]]:
    """One revision's ten series of ``n`` points, as Monitoring answers the job's queries at a 300 s
    alignment (metric, kind, value type, labels and the values or distributions)."""
    import numpy as np

    instances, per_point = 3, STEP // 60  # a 300 s delta merges five 60 s samples
    minutes = (per_point * np.arange(n))[:, None]
    # A leak climbs 0.008 % of the limit a minute (11.5 %/day) until its instances reach the limit and are
    # OOM-killed and replaced, every LEAK_RESET_MINUTES: memory never sits at the limit for days (a leak
    # clipped there instead reads as a climb that levelled off, and was missed over 30 days).
    leak = 0.00008 * (minutes % LEAK_RESET_MINUTES) if leaking else 0.0
    memory = 0.30 + 0.05 * rng.random((n, instances * per_point)) + leak
    utilization, latency_buckets = buckets
    series: list[dict[str, Any]] = [
        {
            "metric": "container/memory/utilizations",
            "kind": "DELTA",
            "value_type": "DISTRIBUTION",
            "metric_labels": {"container_name": "app"},
            "dists": histograms(np.clip(memory, 0, 0.99), utilization),
        },
        {
            "metric": "container/cpu/utilizations",
            "kind": "DELTA",
            "value_type": "DISTRIBUTION",
            "metric_labels": {"container_name": "app"},
            "dists": histograms(0.20 + 0.10 * rng.random((n, instances * per_point)), utilization),
        },
        {
            "metric": "request_latencies",
            "kind": "DELTA",
            "value_type": "DISTRIBUTION",
            "metric_labels": {"response_code_class": "2xx", "response_code": "200"},
            "dists": histograms(
                40.0 * np.exp(0.3 * rng.standard_normal((n, 8 * per_point))), latency_buckets
            ),
        },
    ]
    for code_class, mean in (("2xx", 120.0), ("5xx", 1.0)):
        series.append(
            {
                "metric": "request_count",
                "kind": "DELTA",
                "value_type": "INT64",
                "metric_labels": {"response_code_class": code_class, "response_code": code_class[0] + "00"},
                "values": rng.poisson(mean * per_point, n).astype(np.float64),
            }
        )
    for state, count in (("active", instances - 1.0), ("idle", 1.0)):
        series.append(
            {
                "metric": "container/instance_count",
                "kind": "GAUGE",
                "value_type": "INT64",
                "metric_labels": {"state": state, "container_name": "app"},
                "values": np.full(n, count),
            }
        )
    for metric, per_instance in (
        ("container/billable_instance_time", 60.0),
        ("container/cpu/allocation_time", 60.0),
        ("container/memory/allocation_time", 30.0),
    ):
        series.append(
            {
                "metric": metric,
                "kind": "DELTA",
                "value_type": "DOUBLE",
                "values": np.full(n, per_instance * instances * per_point),
            }
        )
    return series


# ---------------------------------------------------------------------------------------------
# Runs


@dataclass
class TaskResult:
    index: int
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    outcome: dict[str, Any]
    timings: dict[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """``services`` split over ``tasks``, of which the first ``ran`` are run (all: a full run)."""

    services: int
    tasks: int
    ran: int

    @classmethod
    def parse(cls, text: str) -> RunSpec:
        """``SxN`` (every task) or ``SxN:K`` (only the first K tasks: per-task figures, no merge)."""
        shape, _, ran = text.lower().partition(":")
        services, _, tasks = shape.partition("x")
        spec = cls(int(services), int(tasks), int(ran or tasks))
        if not 1 <= spec.ran <= spec.tasks or spec.services < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: want SxN or SxN:K with 1 <= K <= N")
        return spec

    @property
    def label(self) -> str:
        sampled = "" if self.ran == self.tasks else f" (tasks 0–{self.ran - 1} run)"
        return f"{self.services} × {self.tasks}{sampled}"


@dataclass
class RunResult:
    spec: RunSpec
    parallel: int
    makespan_s: float
    fake_cpu_s: float
    results: list[TaskResult]
    findings: int | None = None  # of the fleet report (full runs)

    @property
    def analyzed(self) -> int:
        return sum(int(r.outcome["share_services"]) for r in self.results)

    @property
    def merged_by(self) -> list[int]:
        return [r.index for r in self.results if r.outcome.get("merged") == "merged"]


def write_config(path: Path, *, project: str, address: str, store: Path, days: float) -> None:
    end = START + timedelta(days=days)
    config = {
        "projects": [project],
        "regions": [REGION],
        "source": {"monitoring_emulator_host": address, "run_emulator_host": address},
        "window": {
            "start": START.isoformat().replace("+00:00", "Z"),
            "end": end.isoformat().replace("+00:00", "Z"),
        },
        "store": {"url": str(store)},
    }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML


def run_tasks(
    config: Path, work: Path, *, tasks: int, ran: int, parallel: int
) -> tuple[float, list[TaskResult]]:
    """Tasks 0..ran-1 of the job's ``tasks`` as processes, at most ``parallel`` at once;
    (makespan, results by index)."""
    import subprocess

    waiting = list(range(ran))
    running: dict[int, tuple[int, float, subprocess.Popen[bytes]]] = {}
    results: list[TaskResult] = []
    began = time.perf_counter()
    while waiting or running:
        while waiting and len(running) < parallel:
            index = waiting.pop(0)
            env = {
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "NO_GCE_CHECK": "true",
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(tasks),
                "CLOUD_RUN_EXECUTION": f"bench-{work.name}",
                TIMINGS: str(work / f"timings-{index}.json"),
            }
            with open(work / f"stdout-{index}", "wb") as out, open(work / f"stderr-{index}", "wb") as err:
                proc = subprocess.Popen(
                    [sys.executable, str(Path(__file__).resolve()), "task", "run", "--config", str(config)],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=err,
                )
            running[proc.pid] = (index, time.perf_counter(), proc)
        pid, status, usage = os.wait4(-1, 0)
        index, started, proc = running.pop(pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(
                f"task {index} failed ({proc.returncode}):\n{(work / f'stderr-{index}').read_text()}"
            )
        outcome = json.loads((work / f"stdout-{index}").read_text().strip().splitlines()[-1])
        timings = json.loads((work / f"timings-{index}.json").read_text())
        cpu_s = usage.ru_utime + usage.ru_stime
        wall_s = time.perf_counter() - started
        results.append(TaskResult(index, wall_s, cpu_s, timings["rss_mib"]["peak"], outcome, timings))
    return time.perf_counter() - began, sorted(results, key=lambda r: r.index)


def bench_run(spec: RunSpec, *, parallel: int, address: str, days: float, work: Path) -> RunResult:
    """One run: every task (then one fleet report, merged once, is checked) or the first ``spec.ran``."""
    work.mkdir(parents=True)
    config = work / "job.json"
    store = work / "store"
    write_config(config, project=project_of(spec.services), address=address, store=store, days=days)
    fake_cpu = time.process_time()
    makespan, results = run_tasks(
        config, work, tasks=spec.tasks, ran=spec.ran, parallel=min(parallel, spec.ran)
    )
    fake_cpu = time.process_time() - fake_cpu
    run = RunResult(spec, min(parallel, spec.ran), makespan, fake_cpu, results)
    if spec.ran < spec.tasks:
        assert {r.outcome["merged"] for r in results} == {"waiting"}
        return run
    reports = list(store.glob("reports/*/report.json"))
    assert len(reports) == 1, reports
    report = json.loads(reports[0].read_text())
    run.findings = int(report["summary"]["findings"])
    assert report["summary"]["services"] == spec.services, report["summary"]
    assert sum(r.outcome["share_services"] for r in results) == spec.services
    assert len(run.merged_by) == 1, [r.outcome["merged"] for r in results]
    return run


def project_of(services: int) -> str:
    return f"bench-fleet-{services}"


# ---------------------------------------------------------------------------------------------
# Report


def _stage(result: TaskResult, name: str, measure: str = "wall_s") -> float:
    return float(result.timings["stages"].get(name, {}).get(measure, 0.0))


def summary_rows(runs: list[RunResult]) -> Iterator[str]:
    """Per task: share, wall, CPU, services per second, peak RSS; per run: makespan on this machine."""
    yield (
        "| services × tasks | services per task | task wall (median / max) | task CPU (median / max) "
        "| services/s per task (wall / CPU) | peak RSS per task (median / max) "
        "| run makespan here, services/s | fake API CPU |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|"
    for run in runs:
        walls = [r.wall_s for r in run.results]
        cpus = [r.cpu_s for r in run.results]
        rss = [r.peak_rss_mib for r in run.results]
        shares = [int(r.outcome["share_services"]) for r in run.results]
        makespan = (
            f"{run.makespan_s:.0f} s, {run.spec.services / run.makespan_s:.2f}"
            if run.spec.ran == run.spec.tasks
            else f"not run ({run.spec.ran} of {run.spec.tasks} tasks)"
        )
        yield (
            f"| {run.spec.label}, {run.parallel} at a time | {min(shares)}–{max(shares)} "
            f"| {statistics.median(walls):.0f} / {max(walls):.0f} s "
            f"| {statistics.median(cpus):.0f} / {max(cpus):.0f} s "
            f"| {run.analyzed / sum(walls):.2f} / {run.analyzed / sum(cpus):.2f} "
            f"| {statistics.median(rss):.0f} / {max(rss):.0f} MiB | {makespan} | {run.fake_cpu_s:.0f} s |"
        )


def stage_rows(runs: list[RunResult]) -> Iterator[str]:
    """Where the tasks' CPU went, summed over a run's tasks, and per service in brackets."""
    yield (
        "| services × tasks | task CPU | fetch: proto→REST JSON | fetch: parse | fetch: gRPC and the rest "
        "| frames | analysis | render HTML + JSON | merge (one task) | startup, listing, store "
        "| fetch wall | RSS at first fetch / after fetch / peak (largest task) |"
    )
    yield "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for run in runs:
        cpu = {name: sum(_stage(r, name, "thread_cpu_s") for r in run.results) for name in STAGES}
        fetch = sum(_stage(r, "fetch", "process_cpu_s") for r in run.results)
        total = sum(r.cpu_s for r in run.results)
        render = cpu["render_html"] + cpu["render_json"]
        parts = [
            cpu["to_json"],
            cpu["parse"],
            max(fetch - cpu["to_json"] - cpu["parse"], 0.0),
            cpu["frames"],
            cpu["analysis"],
            render,
            cpu["merge"],
        ]
        rest = total - fetch - sum(parts[3:])
        rss = max(run.results, key=lambda r: r.peak_rss_mib).timings["rss_mib"]
        cells = " | ".join(f"{s:.1f} s ({1000 * s / run.analyzed:.0f} ms)" for s in [total, *parts, rest])
        fetch_wall = sum(_stage(r, "fetch") for r in run.results)
        memory = f"{rss.get('fetch start', 0):.0f} / {rss.get('peak after fetch', 0):.0f} / {rss['peak']:.0f}"
        yield f"| {run.spec.label} | {cells} | {fetch_wall:.1f} s | {memory} MiB |"


def main() -> int:
    if sys.argv[1:2] == ["task"]:
        task_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--run",
        type=RunSpec.parse,
        action="append",
        metavar="SxN[:K]",
        help="S services over N tasks, of which the first K run (default all); repeatable; "
        "default 100x1 1000x4:2 1000x10:2",
    )
    parser.add_argument("--parallel", type=int, default=2, help="tasks running at once (default 2)")
    parser.add_argument("--days", type=float, default=7.0, help="window length (default 7)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--keep", action="store_true", help="keep the stores and task logs")
    args = parser.parse_args()
    runs: list[RunSpec] = args.run or [RunSpec(100, 1, 1), RunSpec(1000, 4, 2), RunSpec(1000, 10, 2)]
    os.environ.setdefault("NO_GCE_CHECK", "true")
    sys.path.insert(0, str(ROOT))

    from tests.fakes.monitoring import FakeMetricService
    from tests.fakes.run import FakeRun
    from tests.fakes.server import start

    began = time.perf_counter()
    monitoring, cloud_run = FakeMetricService(), FakeRun(default_page_size=1000)
    points = 0
    for services in sorted({r.services for r in runs}):
        points += add_aligned_fleet(
            monitoring, cloud_run, project=project_of(services), services=services, days=args.days
        )
    server = start([monitoring, cloud_run])
    fleets = ", ".join(str(s) for s in sorted({r.services for r in runs}))
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; fleets of "
        f"{fleets} services, {args.days:g} days at {STEP} s: "
        f"{points:,} points served, generated in {time.perf_counter() - began:.0f} s, "
        f"fake holds {_peak_mib():,.0f} MiB",
        flush=True,
    )
    results: list[RunResult] = []
    work = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    try:
        for spec in runs:
            result = bench_run(
                spec,
                parallel=args.parallel,
                address=server.address,
                days=args.days,
                work=work / f"{spec.services}x{spec.tasks}-{spec.ran}",
            )
            results.append(result)
            merged = (
                f"merged by task {result.merged_by[0]}, {result.findings} findings"
                if result.findings is not None
                else "not merged (not every task ran)"
            )
            print(f"{spec.label}: {result.makespan_s:.1f} s, {merged}", flush=True)
    finally:
        server.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    print()
    print("\n".join(summary_rows(results)))
    print()
    print("\n".join(stage_rows(results)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                [{**asdict(r), "services_analyzed": r.analyzed} for r in results],
                indent=1,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
