"""Sharding: the pure share function, a share read in batches, and ``cloudrun-analyzer run`` as three
concurrent Cloud Run Jobs tasks (separate processes with CLOUD_RUN_TASK_INDEX/COUNT) reading a fake of
Google's APIs on loopback and writing to one store (a local directory, or the GCS emulator behind a
proxy that enforces ifGenerationMatch=0), with a real SMTP server on loopback."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from analyzer.model import RawData, ServiceKey
from analyzer.sharding import TaskSlot, shard_of, share
from analyzer.sources.live import DEFAULT_PLAN
from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import RunningServer, permission_denied, serving, start
from tests.gcs_preconditions import PreconditionProxy, enforcing

TASKS = 3
SERVICES = 8
WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T12:00:00Z"}


@pytest.mark.parametrize("seed", range(20))
def test_shares_are_disjoint_complete_and_deterministic(seed: int) -> None:
    rng = random.Random(seed)
    fleet = [
        ServiceKey(
            rng.choice(["p-one", "p-two"]),
            rng.choice(["us-central1", "europe-west1"]),
            f"svc-{rng.randrange(40)}",
        )
        for _ in range(rng.randrange(60))
    ]
    count = rng.randint(1, 12)
    shares = [share(fleet, TaskSlot(i, count)) for i in range(count)]
    assert {k for s in shares for k in s} == set(fleet)
    assert sum(len(s) for s in shares) == len(set(fleet))
    assert shares == [share(list(reversed(fleet)), TaskSlot(i, count)) for i in range(count)]


def test_adding_a_service_moves_only_that_service() -> None:
    fleet = [ServiceKey("p-one", "us-central1", f"svc-{i}") for i in range(50)]
    before = {k: shard_of(k, 7) for k in fleet}
    extra = ServiceKey("p-one", "us-central1", "new-one")
    assert {k: shard_of(k, 7) for k in [*fleet, extra] if k != extra} == before


def test_task_slot_from_env_rejects_nonsense() -> None:
    assert TaskSlot.from_env({}) == TaskSlot(0, 1)
    assert TaskSlot.from_env({"CLOUD_RUN_TASK_INDEX": "2", "CLOUD_RUN_TASK_COUNT": "3"}).name == "2-of-3"
    with pytest.raises(Exception, match="CLOUD_RUN_TASK_INDEX"):
        TaskSlot.from_env({"CLOUD_RUN_TASK_INDEX": "3", "CLOUD_RUN_TASK_COUNT": "3"})
    with pytest.raises(Exception, match="whole number"):
        TaskSlot.from_env({"CLOUD_RUN_TASK_COUNT": "many"})


def _fingerprint(raw: RawData) -> list[tuple[Any, ...]]:
    """Every series (identity, times, values or bucket counts) and revision, in a stable order."""
    series = [
        (
            s.metric,
            s.service,
            s.revision,
            sorted(s.metric_labels.items()),
            s.end_times.tolist(),
            (s.values if s.values is not None else s.histograms.counts).tolist(),  # type: ignore[union-attr]
        )
        for s in raw.series
    ]
    return sorted(series) + sorted((r.service, r.revision) for r in raw.revisions)


def test_a_share_read_in_batches_is_the_share_read_at_once_and_a_refusal_is_one_problem() -> None:
    from analyzer.sources.google_clients import build_clients
    from analyzer.sources.inventory import fetch_share

    monitoring, run = FakeMetricService(), FakeRun()
    add_fleet(monitoring, run, FleetSpec(services=5, hours=2, leaking=[1]))
    keys = [ServiceKey("demo-project", "us-central1", f"svc-{i:04d}") for i in range(5)]
    start_, end_ = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, 2, tzinfo=UTC)
    with serving(monitoring, run) as server:
        emulators = {"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address}
        clients = build_clients(emulators)
        try:

            def read(batch: int, **kwargs: Any) -> RawData:
                return fetch_share(
                    clients, keys, start=start_, end=end_, now=end_ + timedelta(days=1), batch=batch, **kwargs
                )

            whole = read(100)
            calls = monitoring.behaviour.count("ListTimeSeries")
            seen: list[tuple[int, int]] = []
            batched = read(2, progress=lambda done, total, _: seen.append((done, total)))
            assert monitoring.behaviour.count("ListTimeSeries") == 4 * calls  # 3 batches after 1
            assert whole.series
            assert not whole.problems
            assert not batched.problems
            assert _fingerprint(batched) == _fingerprint(whole)
            assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # one bar over all batches
            assert seen[-1][0] == seen[-1][1]

            monitoring.behaviour.inject(permission_denied("demo-project", times=None))
            refused = read(2)
            assert not refused.series
            assert [p.subject for p in refused.problems] == ["project demo-project region us-central1"]
            denied = monitoring.behaviour.count("ListTimeSeries", status="PERMISSION_DENIED")
            assert 0 < denied <= len(DEFAULT_PLAN)  # the first batch only: the others are not asked
        finally:
            clients.close()


# ---------------------------------------------------------------------------------------------
# Several processes against one store


@pytest.fixture(scope="module")
def google() -> Iterator[RunningServer]:
    monitoring, run = FakeMetricService(), FakeRun()
    add_fleet(monitoring, run, FleetSpec(services=SERVICES, hours=12, leaking=[1]))
    server = start([monitoring, run])
    yield server
    server.stop()


class Inbox:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


def write_config(path: Path, google: RunningServer, store: str, *, smtp_port: int | None = None) -> Path:
    config: dict[str, Any] = {
        "projects": ["demo-project"],
        "regions": ["us-central1"],
        "source": {"monitoring_emulator_host": google.address, "run_emulator_host": google.address},
        "window": WINDOW,
        "store": {"url": store},
    }
    if smtp_port is not None:
        config["digest"] = {"recipients": ["team@example.com"]}
        config["smtp"] = {
            "host": "127.0.0.1",
            "port": smtp_port,
            "security": "none",
            "sender": "analyzer@example.com",
            "username_env": None,
        }
    path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    return path


def run_tasks(config: Path, *args: str, env: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """``cloudrun-analyzer run`` as TASKS concurrent processes; their outcomes (stdout JSON), task order."""
    base = {**os.environ, **(env or {}), "CLOUD_RUN_TASK_COUNT": str(TASKS), "NO_GCE_CHECK": "true"}
    command = [
        sys.executable,
        "-c",
        "from analyzer.cli import main; main()",
        "run",
        "--config",
        str(config),
        *args,
    ]
    outcomes = []
    procs = []
    for index in range(TASKS):
        proc = subprocess.Popen(
            command,
            env={**base, "CLOUD_RUN_TASK_INDEX": str(index)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def test_three_tasks_one_local_store_one_report_one_digest_and_a_rerun_changes_nothing(
    tmp_path: Path, google: RunningServer, smtp: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp
    store = tmp_path / "store"
    config = write_config(tmp_path / "job.yaml", google, str(store), smtp_port=controller.port)
    outcomes = run_tasks(config, "--digest", "now")
    assert sum(o["share_services"] for o in outcomes) == SERVICES
    assert all(o["fleet_services"] == SERVICES for o in outcomes)
    assert [o["merged"] for o in outcomes].count("merged") == 1
    assert [o["digest"] for o in outcomes].count("sent") == 1
    assert len(inbox.messages) == 1
    run_dir = store / "reports" / "2026-01-01T12-00-00Z"
    report = json.loads((run_dir / "report.json").read_text())
    assert report["summary"]["services"] == SERVICES
    assert sorted(s["service"] for s in report["services"]) == [f"svc-{i:04d}" for i in range(SERVICES)]
    assert [s["name"] for s in report["shards"]] == ["0-of-3", "1-of-3", "2-of-3"]
    assert "<table>" in (run_dir / "report.html").read_text()
    assert len(list((store / "history").glob("*.json"))) == 1
    before = snapshot(store)

    again = run_tasks(config, "--digest", "now")
    assert {o["analyzed"] for o in again} == {"skipped"}
    assert {o["digest"] for o in again} == {"already sent"}
    assert len(inbox.messages) == 1
    assert snapshot(store) == before


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def gcs() -> Iterator[PreconditionProxy]:
    """gcp-storage-emulator behind a proxy that enforces ifGenerationMatch=0 (the emulator ignores it)."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="analyzer-reports")
    server.start()
    try:
        with enforcing(f"http://127.0.0.1:{port}") as proxy:
            yield proxy
    finally:
        server.stop()


def test_three_concurrent_tasks_on_gcs_merge_once_and_mail_once(
    tmp_path: Path, google: RunningServer, gcs: PreconditionProxy, smtp: tuple[Controller, Inbox]
) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    controller, inbox = smtp
    env = {"STORAGE_EMULATOR_HOST": gcs.url}
    config = write_config(
        tmp_path / "job.yaml", google, "gs://analyzer-reports/cloudrun", smtp_port=controller.port
    )
    run = "cloudrun/reports/2026-01-01T12-00-00Z/"
    outcomes = run_tasks(config, "--digest", "skip", env=env)
    merged = [o for o in outcomes if o["merged"] == "merged"]
    assert len(merged) == 1
    assert merged[0]["report"] == f"gs://analyzer-reports/{run}report.html"
    assert all(o["missing_shards"] for o in outcomes if o["merged"] == "waiting")
    assert sum(o["share_services"] for o in outcomes) == SERVICES

    os.environ["STORAGE_EMULATOR_HOST"] = gcs.url
    try:
        bucket = storage.Client(project="test", credentials=AnonymousCredentials()).bucket("analyzer-reports")
        names = sorted(b.name for b in bucket.list_blobs())
        assert [n for n in names if n.startswith(run) and n.endswith(".json")] == [
            f"{run}report.json",
            f"{run}shards/0-of-3.json",
            f"{run}shards/1-of-3.json",
            f"{run}shards/2-of-3.json",
        ]
        assert sum(1 for n in names if n.startswith("cloudrun/history/")) == 1
        for name in ("report.json", "merge.claim"):  # as if the merging task died right after its shard
            bucket.blob(run + name).delete()
    finally:
        del os.environ["STORAGE_EMULATOR_HOST"]

    # Every task now finds all three shards and contends for the merge claim at the same instant.
    gcs.expect(run + "merge.claim", contenders=TASKS)
    retried = run_tasks(config, "--digest", "skip", env=env)
    assert {o["analyzed"] for o in retried} == {"reused"}
    assert sorted(o["merged"] for o in retried) == ["merged", "merged elsewhere", "merged elsewhere"]
    assert sorted(gcs.outcomes(run + "merge.claim")) == [200, 412, 412]

    # The digest job: every task finds the fleet report and contends for the week's digest claim.
    year, week, _ = datetime.now(UTC).isocalendar()
    digest_claim = f"cloudrun/digests/{year}-W{week:02d}/claim"
    gcs.expect(digest_claim, contenders=TASKS)
    mailed = run_tasks(config, "--digest", "now", env=env)
    assert {o["analyzed"] for o in mailed} == {"skipped"}
    assert sorted(o["digest"] for o in mailed) == ["sending elsewhere", "sending elsewhere", "sent"]
    assert sorted(gcs.outcomes(digest_claim)) == [200, 412, 412]
    assert len(inbox.messages) == 1
