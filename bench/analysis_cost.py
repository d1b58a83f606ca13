"""Analysis CPU per service-month, stage by stage (frames, detectors, cost, the rest), and the planted
leaks found, on the generated fleet of ``fleet_scale.add_aligned_fleet``.

``make`` serves the fleet from the fake Monitoring and Cloud Run APIs on loopback and reads it batch by
batch exactly as ``report`` does (``batches.plan_live`` and ``load_batch``, Google's clients), pickling
each batch's RawData; ``run`` then times, in this one process, what a report's worker does with each
batch after reading it: frames, then the analysis with every detector, the cost model and the rest
timed on their own, then the batch's part of the report (``render_part`` with the whole fleet's
``report_layout``, so healthy services are compact, and its ``report_json``); time exclusive of the
stages nested in it; CPU time, not wall, so that other work on the machine does not count::

    python bench/analysis_cost.py make --fleet 100x30            # once: bench/out/analysis_cost/100x30/
    python bench/analysis_cost.py run --fleet 100x30             # the per-stage table, found/planted
    python bench/analysis_cost.py run --fleet 100x30 --dump /tmp/a.json   # every finding and cost, to diff
    python bench/analysis_cost.py dump 'bench/out/quick/s101-*.pkl' /tmp/q.json   # bench/quick.py's frames
    python bench/analysis_cost.py dump demo /tmp/demo.json                        # the bundled demo

``--dump`` and ``dump`` write what the analysis decided (findings with onsets, revisions, evidence and dollars;
every service's cost) so that a change meant to be numerically equivalent can be checked with ``diff``;
``run --dump X.json`` adds each batch's JSON report and writes the rendered service sections to X.html.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.fleet_scale import START, add_aligned_fleet, planted_leaks  # noqa: E402

OUT = ROOT / "bench" / "out" / "analysis_cost"

# What is timed, exclusive of what is nested in it: stage -> (module, attribute). Each detector is
# patched where findings.py looks it up; the cost model wherever it is called from.
STAGES: dict[str, tuple[str, str]] = {
    "frames": ("analyzer.pipeline", "build"),
    "view": ("analyzer.analysis", "build_view"),
    "leak": ("analyzer.analysis.findings", "detect_leak"),
    "creep": ("analyzer.analysis.findings", "detect_creep"),
    "latency": ("analyzer.analysis.findings", "detect_latency"),
    "cpu": ("analyzer.analysis.findings", "detect_cpu"),
    "sequential leak": ("analyzer.analysis.findings", "sequential_leak"),
    "envelope": ("analyzer.analysis.findings", "build_envelope"),
    "cost: service": ("analyzer.analysis", "service_cost"),
    "cost: excess": ("analyzer.analysis.cost", "excess_cost"),
    "fix checks": ("analyzer.analysis", "fix_checks"),
    "what-ifs": ("analyzer.analysis", "service_what_ifs"),
    "impact": ("analyzer.analysis", "assess"),
    "analysis (rest)": ("analyzer.pipeline", "analyze_frames"),
    "charts": ("analyzer.render.parts", "service_charts"),
    "sparkline": ("analyzer.render.parts", "sparkline"),
    "report_json": ("analyzer.render.parts", "report_json"),
    "render (rest)": ("analyzer.render.parts", "render_part"),
}
GROUPS = {
    "frames": ("frames",),
    "detectors": ("view", "leak", "creep", "latency", "cpu", "sequential leak", "envelope", "impact",
                  "analysis (rest)"),
    "cost": ("cost: service", "cost: excess", "fix checks", "what-ifs"),
}
# What a report's worker does after the analysis: the batch's part of the page (``render_part``, with
# the whole fleet's layout, so healthy services are compact) and its JSON report.
RENDER = ("charts", "sparkline", "report_json", "render (rest)")


class Timers:
    """CPU time of each stage, exclusive of the stages called inside it."""

    def __init__(self) -> None:
        self.cpu: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []  # [name, started, nested]

    def wrap(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame: list[Any] = [name, time.process_time(), 0.0]
            self.stack.append(frame)
            try:
                return func(*args, **kwargs)
            finally:
                self.stack.pop()
                spent = time.process_time() - frame[1]
                self.cpu[name] += spent - frame[2]
                if self.stack:
                    self.stack[-1][2] += spent

        return timed

    def install(self) -> None:
        import importlib

        for name, (module_name, attribute) in STAGES.items():
            module = importlib.import_module(module_name)
            setattr(module, attribute, self.wrap(name, getattr(module, attribute)))


def make(services: int, days: float) -> Path:
    """Read the fleet from the fakes batch by batch, as ``report`` does, into pickled RawData."""
    from analyzer.batches import load_batch, plan_live
    from analyzer.sources.live import LiveQuery
    from tests.fakes.monitoring import FakeMetricService
    from tests.fakes.run import FakeRun
    from tests.fakes.server import start

    out = OUT / f"{services}x{days:g}"
    out.mkdir(parents=True, exist_ok=True)
    monitoring, cloud_run = FakeMetricService(), FakeRun(default_page_size=1000)
    add_aligned_fleet(monitoring, cloud_run, project="bench", services=services, days=days)
    server = start([monitoring, cloud_run])
    env = {**os.environ, "MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address,
           "NO_GCE_CHECK": "true"}
    end = START + timedelta(days=days)
    try:
        query = LiveQuery(projects=("bench",), start=START, end=end)
        plan = plan_live(query, env=env, now=end + timedelta(hours=1))
        for batch in plan.batches:
            raw = load_batch(batch)
            with (out / f"batch-{batch.index:03d}.pkl").open("wb") as handle:
                pickle.dump(raw, handle, protocol=pickle.HIGHEST_PROTOCOL)
            print(f"batch {batch.index}: {len(batch.keys)} services, {len(raw.series)} series", flush=True)
    finally:
        server.stop()
    (out / "planted.json").write_text(json.dumps(planted_leaks(services)), encoding="utf-8")
    return out


def _fingerprint(analysis: Any) -> dict[str, Any]:
    """What the analysis decided, in a form ``diff`` can compare."""
    findings = [
        {"kind": f.kind.value, "service": f.service, "revision": f.revision, "onset": f.onset.isoformat(),
         "severity": f.severity.value, "confidence": f.confidence, "summary": f.summary,
         "excess_usd_window": f.excess_cost_usd_window, "excess_usd_month": f.excess_cost_usd_per_month,
         "evidence": {k: str(v) for k, v in f.evidence.items()}}
        for f in analysis.findings
    ]
    costs = {s.key.service: (round(s.cost.cost_usd, 2), round(s.cost.monthly_projection_usd, 2))
             for s in analysis.services if s.cost}
    fixes = {s.key.service: [repr(x) for x in s.fixes] for s in analysis.services if s.fixes}
    what_ifs = {s.key.service: [repr(w) for w in s.what_ifs] for s in analysis.services if s.what_ifs}
    return {"findings": findings, "costs": costs, "fixes": fixes, "what_ifs": what_ifs,
            "problems": [p.message for p in analysis.problems]}


def run(services: int, days: float, *, dump: Path | None, batches: int | None) -> None:
    from datetime import UTC, datetime

    from analyzer.config import AnalysisConfig
    from analyzer.pipeline import analyze
    from analyzer.render import parts

    directory = OUT / f"{services}x{days:g}"
    paths = sorted(glob.glob(str(directory / "batch-*.pkl")))[:batches]
    if not paths:
        raise SystemExit(f"no batches in {directory}: run `make --fleet {services}x{days:g}` first")
    timers = Timers()
    timers.install()
    render_part, report_layout = parts.render_part, parts.report_layout  # the timed one
    config = AnalysisConfig()
    fingerprints: list[dict[str, Any]] = []
    found: set[tuple[str, str]] = set()
    service_months = 0.0

    def load(path: str) -> Any:
        with open(path, "rb") as handle:
            return pickle.load(handle)

    # The fleet's layout, as ``report`` gives every part (more than 20 services: healthy ones compact).
    layout = report_layout(key for path in paths for key in load(path).services)
    generated_at = datetime(2026, 1, 1, tzinfo=UTC)
    render_part(analyze(load(paths[0]), config, allow_empty=True), generated_at=generated_at, layout=layout)
    timers.cpu.clear()  # the warm-up above compiled the templates once, as a worker does once
    sections: list[str] = []
    for path in paths:
        raw = load(path)
        analysis = analyze(raw, config, allow_empty=True)
        part = render_part(analysis, generated_at=generated_at, layout=layout)
        sections.extend(row.section for row in part.rows)
        service_months += len(analysis.services) * days / 30
        fingerprints.append({**_fingerprint(analysis), "report": part.report})
        found |= {(f.service, f.revision) for f in analysis.findings if f.kind.value == "memory_baseline_rise"}
    planted = [tuple(p) for p in json.loads((directory / "planted.json").read_text(encoding="utf-8"))]
    planted = [p for p in planted if any(p[0] in str(fp["costs"]) for fp in fingerprints)]
    findings = sum(len(fp["findings"]) for fp in fingerprints)
    print(f"{len(paths)} batches, {service_months:g} service-months, {findings} findings, {len(layout.anchors)} "
          f"services in the layout (compact healthy: {layout.compact_healthy}); planted leaks found "
          f"{sum(p in found for p in planted)}/{len(planted)}")
    print("| stage | CPU-s | CPU-s per service-month |")
    print("|---|---:|---:|")
    for group, stages in GROUPS.items():
        total = sum(timers.cpu[s] for s in stages)
        print(f"| **{group}** | {total:.1f} | **{total / service_months:.3f}** |")
        if len(stages) > 1:
            for stage in stages:
                print(f"| &nbsp; {stage} | {timers.cpu[stage]:.1f} | {timers.cpu[stage] / service_months:.3f} |")
    total = sum(timers.cpu[s] for stages in GROUPS.values() for s in stages)
    print(f"| **analysis (frames + detectors + cost)** | {total:.1f} | **{total / service_months:.3f}** |")
    for stage in RENDER:
        print(f"| &nbsp; {stage} | {timers.cpu[stage]:.1f} | {timers.cpu[stage] / service_months:.3f} |")
    rendered = sum(timers.cpu[s] for s in RENDER)
    print(f"| **render (render_part + report_json)** | {rendered:.1f} | **{rendered / service_months:.3f}** |")
    if dump:
        dump.write_text(json.dumps(fingerprints, indent=1, sort_keys=True, default=str), encoding="utf-8")
        dump.with_suffix(".html").write_text("\n".join(sections), encoding="utf-8")


def _dump_one(path: str) -> dict[str, Any]:
    from analyzer.analysis import analyze_frames
    from analyzer.config import AnalysisConfig
    from analyzer.pipeline import analyze, load_demo

    if path == "demo":
        return {"demo": _fingerprint(analyze(load_demo(), AnalysisConfig()))}
    with open(path, "rb") as handle:
        frames, _ = pickle.load(handle)
    return {os.path.basename(path): _fingerprint(analyze_frames(frames, AnalysisConfig()))}


def dump_frames(pattern: str, out: Path) -> None:
    """Fingerprint the analysis of pickled frames (``bench/quick.py make``) or of the demo."""
    from multiprocessing import Pool

    paths = ["demo"] if pattern == "demo" else sorted(glob.glob(pattern))
    with Pool(2) as pool:
        parts = pool.map(_dump_one, paths, chunksize=1)
    merged = {name: body for part in parts for name, body in part.items()}
    out.write_text(json.dumps(merged, indent=1, sort_keys=True), encoding="utf-8")
    print(f"{len(merged)} analyses, {sum(len(b['findings']) for b in merged.values())} findings -> {out}")


def main() -> int:
    if sys.argv[1:2] == ["dump"]:
        dump_frames(sys.argv[2], Path(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("make", "run", "dump"))
    parser.add_argument("--fleet", default="100x30", metavar="SxD", help="S services over D days")
    parser.add_argument("--dump", type=Path, help="run: write findings and costs here (JSON)")
    parser.add_argument("--batches", type=int, help="run: only the first N batches")
    args = parser.parse_args()
    services, days = (float(x) for x in args.fleet.split("x"))
    if args.command == "make":
        make(int(services), days)
    else:
        run(int(services), days, dump=args.dump, batches=args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
