"""Batched runs: the same findings and dollars as one whole analysis, whatever the batching.

A report is read and analyzed in batches of services (``analyzer/batches.py``) so that memory
follows the batch; these tests pin that cutting the fleet into batches, spilling a snapshot to batch
files, reading batches live, or spreading them over worker processes changes nothing in the result.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from analyzer import batches
from analyzer.config import AnalysisConfig
from analyzer.model import ServiceKey
from analyzer.pipeline import analyze
from analyzer.render.json_report import report_json
from analyzer.simulate import demo_documents
from analyzer.sources.snapshot import write_snapshot
from tests.test_live import LATER, Google, fetch, google, query  # noqa: F401  (google: the fixture)

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _essence(report: dict[str, Any]) -> dict[str, Any]:
    """What must not change with batching: every finding and every service's dollars, by service."""
    findings = sorted(
        (f["service"], f["kind"], f["revision"], f["onset"], f.get("excess_cost_usd_per_month"))
        for f in report["findings"]
    )
    services = sorted(
        (s["service"], s.get("status"), s.get("cost", {}).get("cost_usd"),
         s.get("cost", {}).get("monthly_projection_usd"))
        for s in report["services"]
    )
    return {"findings": findings, "services": services}


def _batched(plan: batches.Plan, *, workers: int = 1) -> dict[str, Any]:
    from analyzer.render.parts import assemble_json

    try:
        run = batches.report_parts(plan, AnalysisConfig(), generated_at=NOW, workers=workers)
    finally:
        plan.close()
    return assemble_json(run.parts, generated_at=NOW)


@pytest.fixture(scope="module")
def demo_snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo-snapshot")
    documents, manifest = demo_documents()
    write_snapshot(directory, documents, manifest=manifest)
    return directory


@pytest.fixture(scope="module")
def whole_demo(demo_analysis: Any) -> dict[str, Any]:
    """The demo analyzed whole (the snapshot of the demo reads to the same RawData: test_live)."""
    return report_json(demo_analysis, generated_at=NOW)


def test_a_snapshot_spilled_to_batch_files_gives_the_whole_analysis(
    demo_snapshot: Path, whole_demo: dict[str, Any]
) -> None:
    whole = whole_demo
    plan = batches.plan_snapshot(demo_snapshot, batch_size=1)
    assert len(plan.batches) == 3
    assert sorted(k.service for b in plan.batches for k in b.keys) == sorted(s["service"] for s in whole["services"])
    assert _essence(_batched(plan)) == _essence(whole)
    assert whole["findings"], "the demo has findings: the comparison is not vacuous"


def test_snapshot_batches_follow_the_size_of_their_spills(
    demo_snapshot: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batches, "SNAPSHOT_BATCH_BYTES", 1)  # every service is over it: one a batch
    plan = batches.plan_snapshot(demo_snapshot)
    try:
        assert [len(b.keys) for b in plan.batches] == [1, 1, 1]
        assert all(b.spills for b in plan.batches)
    finally:
        plan.close()
    monkeypatch.setattr(batches, "SNAPSHOT_BATCH_BYTES", 2**40)
    plan = batches.plan_snapshot(demo_snapshot)
    plan.close()
    assert [len(b.keys) for b in plan.batches] == [3]


def test_batches_in_worker_processes_give_the_same_report(demo_raw: Any, whole_demo: dict[str, Any]) -> None:
    plan = batches.plan_raw(demo_raw, batch_size=2)
    assert len(plan.batches) == 2
    assert _essence(_batched(plan, workers=2)) == _essence(whole_demo)


def test_a_fleet_read_live_in_batches_gives_the_whole_read(google: Google) -> None:  # noqa: F811
    google.fleet(project="p1", services=7, leaking=[2, 5])
    whole = report_json(analyze(fetch(google, query())), generated_at=NOW)
    env = {"MONITORING_EMULATOR_HOST": google.server.address, "RUN_EMULATOR_HOST": google.server.address}
    plan = batches.plan_live(query(), env=env, now=LATER, batch_size=3)
    assert [len(b.keys) for b in plan.batches] == [3, 3, 1]
    assert _essence(_batched(plan)) == _essence(whole)
    assert len(whole["services"]) == 7


def test_a_fleet_read_in_batches_lists_each_region_once(google: Google) -> None:  # noqa: F811
    """Every batch used to list its whole region's revisions (``services/-``) and services again: calls
    and parsing that grew with the fleet times the batches. The plan lists each region once and hands
    each batch its own; the result is the whole read's."""
    google.fleet(project="p1", services=5)
    google.fleet(project="p1", region="europe-west1", services=4, names=[f"eu-{i}" for i in range(4)])
    whole = report_json(analyze(fetch(google, query())), generated_at=NOW)
    google.behaviour.reset()
    env = {"MONITORING_EMULATOR_HOST": google.server.address, "RUN_EMULATOR_HOST": google.server.address}
    plan = batches.plan_live(query(), env=env, now=LATER, batch_size=2)
    assert len(plan.batches) == 5
    assert [len(b.base.revisions) for b in plan.batches] == [4, 4, 4, 4, 2]  # 2 revisions a service
    assert _essence(_batched(plan, workers=2)) == _essence(whole)
    assert google.behaviour.count("ListRevisions") == 2  # once per region, not once per batch
    assert google.behaviour.count("ListServices") == 2
    assert len(whole["services"]) == 9


def test_services_without_metrics_are_listed_in_their_batch(demo_raw: Any) -> None:
    from dataclasses import replace

    from analyzer.model import ServiceKey

    extra = ServiceKey("demo-project", "us-central1", "quiet")
    raw = replace(demo_raw, services=[*demo_raw.services, extra], series=list(demo_raw.series))
    report = _batched(batches.plan_raw(raw, batch_size=1))
    statuses = {s["service"]: s.get("status") for s in report["services"]}
    assert statuses["quiet"] == "no data"


def test_a_job_task_reads_only_its_share_of_a_snapshot(
    demo_snapshot: Path, whole_demo: dict[str, Any], tmp_path: Path
) -> None:
    """A task of the scheduled job spills and batches its own services only (memory follows its share,
    not the snapshot), and the three shares together are the whole analysis."""
    from analyzer.config import load_config
    from analyzer.job import plan_share
    from analyzer.sharding import TaskSlot, share

    config_path = tmp_path / "job.yaml"
    config_path.write_text(
        f"projects: [demo-project]\nsource: {{kind: snapshot, snapshot: '{demo_snapshot}'}}\n"
        f"store: {{url: '{tmp_path / 'store'}'}}\n", encoding="utf-8")
    config = load_config(config_path)
    whole = batches.plan_snapshot(demo_snapshot)
    whole.close()
    every = sorted((k for b in whole.batches for k in b.keys), key=lambda k: k.service)
    findings, services = [], []
    for index in range(3):
        slot = TaskSlot(index, 3)
        fleet, mine, plan, _ = plan_share(config, slot, (NOW, NOW), now=NOW)
        try:
            assert fleet == 3 and plan.fleet == 3
            assert mine == share(every, slot)
            loaded = [batches.load_batch(b) for b in plan.batches]
            assert {ServiceKey(s.project, s.region, s.service) for raw in loaded for s in raw.series} == set(mine)
            assert {r.key for raw in loaded for r in raw.revisions} == set(mine)
            if mine:
                part = _essence(_batched(plan))
                findings += part["findings"]
                services += part["services"]
        finally:
            plan.close()
    assert sum(len(share(every, TaskSlot(i, 3))) for i in range(3)) == 3
    assert {"findings": sorted(findings), "services": sorted(services)} == _essence(whole_demo)


def test_a_finished_batch_hands_memory_back_only_once_the_worker_has_grown_past_the_bound(
        monkeypatch: pytest.MonkeyPatch) -> None:
    trims: list[int] = []

    class Libc:  # stands in for glibc, recording the call
        def malloc_trim(self, pad: int) -> int:
            trims.append(pad)
            return 1

    monkeypatch.setattr(batches, "_LIBC", Libc())
    # The bound against this test process's own size (a few hundred MiB alone, past 1 GiB after much of
    # the suite has run in it): below the bound, nothing is handed back.
    assert batches.resident_mib() > 0
    monkeypatch.setattr(batches, "TRIM_ABOVE_MIB", batches.resident_mib() * 2)
    batches.release_memory()
    assert trims == []  # the next batch reuses what this one freed, without faulting it in again
    monkeypatch.setattr(batches, "TRIM_ABOVE_MIB", batches.resident_mib() / 2)
    batches.release_memory()
    assert trims == [0]
