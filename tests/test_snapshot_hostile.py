"""The snapshot reader against hostile directories: links out of the snapshot, special files, huge
or absurd files, and fields that must not be kept. Each bad file is one named Problem and the rest
of the snapshot is still analyzed."""

from __future__ import annotations

import copy
import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyzer.cli import cli
from analyzer.model import RawData
from analyzer.sources import redact, snapshot
from analyzer.sources.google_clients import build_clients
from analyzer.sources.live import LiveQuery, fetch_to_snapshot
from tests.fakes.fleet import FleetSpec, add_fleet, revision_body
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import start
from tests.hostile import write_hostile_snapshot
from tests.wire import revision


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    return write_hostile_snapshot(tmp_path / "snap")


def read(directory: Path) -> RawData:
    started = time.monotonic()
    data = snapshot.read_snapshot(directory)
    assert time.monotonic() - started < 30  # no file may hang the reader
    return data


def problem_about(data: RawData, path: Path) -> str:
    found = [p.message for p in data.problems if p.subject.startswith(str(path))]
    assert found, [p.subject for p in data.problems]
    return found[0]


def assert_rest_is_read(data: RawData, snap: Path) -> None:
    """Everything of the hostile snapshot's own files was read (one leaking revision, 4 series)."""
    assert len(data.series) == 4
    assert [r.revision for r in data.revisions] == ["hostile-00001-abc"]


def test_a_link_to_a_file_outside_the_snapshot_is_not_read(snap: Path, tmp_path: Path) -> None:
    """Regression: a link to a local JSON file put that file's content into the report."""
    outside = tmp_path / "elsewhere.json"
    outside.write_text(json.dumps({"revisions": [revision("secret-00001-abc", service="private-service")]}))
    link = snap / "revisions" / "zz.json"
    link.symlink_to(outside)
    data = read(snap)
    assert "outside the snapshot" in problem_about(data, link)
    assert "private-service" not in {r.service for r in data.revisions}
    assert_rest_is_read(data, snap)


def test_a_linked_subdirectory_outside_the_snapshot_is_not_read(tmp_path: Path) -> None:
    elsewhere = write_hostile_snapshot(tmp_path / "elsewhere")
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "timeSeries").symlink_to(elsewhere / "timeSeries")
    data = read(snap)
    assert data.series == []
    assert "outside the snapshot" in problem_about(data, snap / "timeSeries" / "hostile.json")


def test_a_link_inside_the_snapshot_is_read(snap: Path) -> None:
    (snap / "revisions" / "again.json").symlink_to(snap / "revisions" / "hostile.json")
    data = read(snap)
    assert data.problems == []
    assert len(data.revisions) == 2


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_link_to_a_device_is_not_read(snap: Path, device: str) -> None:
    """Regression: a link to /dev/zero was read until MemoryError (2.7 GB)."""
    link = snap / "timeSeries" / "zero.json"
    link.symlink_to(device)
    data = read(snap)
    assert "not read" in problem_about(data, link)
    assert_rest_is_read(data, snap)


def test_a_fifo_does_not_hang_the_reader(snap: Path) -> None:
    """Regression: a FIFO named *.json blocked the reader forever."""
    fifo = snap / "timeSeries" / "pipe.json"
    os.mkfifo(fifo)
    data = read(snap)
    assert "not a regular file" in problem_about(data, fifo)
    assert_rest_is_read(data, snap)


def test_a_directory_named_json_is_a_problem(snap: Path) -> None:
    folder = snap / "revisions" / "folder.json"
    folder.mkdir()
    data = read(snap)
    assert "not a regular file" in problem_about(data, folder)


def test_a_file_over_the_size_cap_is_not_read(snap: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    big = snap / "timeSeries" / "big.json"
    big.write_text(json.dumps({"timeSeries": []}) + " " * 2048)
    monkeypatch.setattr(snapshot, "MAX_FILE_BYTES", 1024)
    data = snapshot.read_snapshot(snap)
    assert "larger than" in problem_about(data, big)


def _hostile_bodies(snap: Path) -> dict[str, str]:
    body = json.loads((snap / "timeSeries" / "hostile.json").read_text())
    many = copy.deepcopy(body)
    for series in many["timeSeries"]:  # another revision's series: a copy of the same ones would be duplicates
        series["resource"]["labels"]["revision_name"] += "-copy"
    options = many["timeSeries"][0]["points"][0]["value"]["distributionValue"]["bucketOptions"]
    options["linearBuckets"]["numFiniteBuckets"] = 3e9
    infinite = copy.deepcopy(body)
    infinite["timeSeries"][0]["points"][0]["value"]["distributionValue"]["mean"] = "INF"
    return {
        "3e9 buckets": json.dumps(many),
        "1e999": json.dumps(infinite).replace('"INF"', "1e999"),
        "NaN": json.dumps(infinite).replace('"INF"', "NaN"),
        "200k-deep nesting": "[" * 200_000 + "]" * 200_000,
        "5000-digit integer": '{"timeSeries": [], "unit": ' + "9" * 5000 + "}",
        "explicit bounds": json.dumps(
            {"timeSeries": [{**body["timeSeries"][0], "points": [
                {"interval": {"endTime": "2026-11-16T00:05:00Z"}, "value": {"distributionValue": {
                    "count": "1", "bucketOptions": {"explicitBuckets": {"bounds": list(range(100_000))}},
                    "bucketCounts": ["1"]}}}]}]}
        ),
    }


# case -> series of the bad file still read: the 3e9-bucket file is a copy of a good one (relabelled
# as another revision) whose other three series are fine (a malformed series is skipped on its own);
# any other bad file adds none.
HOSTILE_CASES = {"3e9 buckets": 3, "1e999": 0, "NaN": 0, "200k-deep nesting": 0, "5000-digit integer": 0,
                 "explicit bounds": 0}


@pytest.mark.parametrize("case", list(HOSTILE_CASES))
def test_a_hostile_file_is_one_problem_and_the_rest_is_analyzed(snap: Path, case: str) -> None:
    """Regression: each of these aborted the whole read (exit 70, or gigabytes for 3e9 buckets)."""
    clean = snapshot.read_snapshot(snap)
    bad = snap / "timeSeries" / "zz-bad.json"
    bad.write_text(_hostile_bodies(snap)[case])
    data = read(snap)
    assert problem_about(data, bad)
    assert len(data.series) == len(clean.series) + HOSTILE_CASES[case]
    assert data.revisions == clean.revisions


def test_the_report_still_shows_the_finding_beside_a_hostile_file(snap: Path) -> None:
    (snap / "timeSeries" / "zz-deep.json").write_text("[" * 200_000 + "]" * 200_000)
    (snap / "revisions" / "zz-digits.json").write_text('{"revisions": [' + "1" * 5000 + "]}")
    result = CliRunner().invoke(cli, ["report", "--snapshot", str(snap), "--format", "json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["findings"]
    assert {"zz-deep.json", "zz-digits.json"} <= {Path(p["subject"]).name for p in report["problems"]}


SECRET = "hunter2"


def secret_revision() -> dict[str, Any]:
    body = revision("svc-00001-abc", labels={"commit-sha": "abc123"},
                    annotations={"run.googleapis.com/cpu-throttling": "false"})
    container = body["containers"][0]
    container.update(
        env=[{"name": "DB_PASSWORD", "value": SECRET},
             {"name": "API_KEY", "valueSource": {"secretKeyRef": {"secret": "api-key", "version": "1"}}}],
        command=["/app", f"--password={SECRET}"],
        args=[f"--token={SECRET}"],
        volumeMounts=[{"name": "secrets", "mountPath": "/secrets"}],
    )
    body.update(serviceAccount="app@proj.iam.gserviceaccount.com",
                volumes=[{"name": "secrets", "secret": {"secret": SECRET}}],
                vpcAccess={"connector": SECRET}, encryptionKey=SECRET)
    return body


def test_only_the_fields_read_are_kept_of_a_revision() -> None:
    body = {"revisions": [secret_revision()], "nextPageToken": SECRET}
    kept = redact.keep_read_fields("revisions", body)
    assert SECRET not in json.dumps(kept)
    (rev,) = kept["revisions"]
    assert set(rev) == {"name", "createTime", "containers", "scaling", "maxInstanceRequestConcurrency",
                        "labels", "annotations"}
    assert set(rev["containers"][0]) == {"image", "resources", "ports"}
    snake = redact.keep_read_fields("revisions", [{"revisions": [{
        "name": rev["name"], "create_time": "2026-11-16T00:00:00Z",
        "containers": [{"image": "i", "env": [{"name": "X", "value": SECRET}]}],
        "max_instance_request_concurrency": 80}]}])
    assert SECRET not in json.dumps(snake)
    assert set(snake[0]["revisions"][0]) == {"name", "create_time", "containers", "max_instance_request_concurrency"}


def test_only_the_name_is_kept_of_a_service() -> None:
    service = {"name": "projects/proj/locations/europe-west1/services/svc",
               "template": {"containers": [{"env": [{"name": "DB_PASSWORD", "value": SECRET}]}]}}
    assert redact.keep_read_fields("services", service) == {"name": service["name"]}
    assert redact.keep_read_fields("services", {"services": [service]}) == {"services": [{"name": service["name"]}]}


def test_env_values_in_a_snapshot_are_ignored_and_never_written(tmp_path: Path) -> None:
    """Regression: fetch saved whole Revision bodies, DB_PASSWORD=hunter2 included."""
    body = {"revisions": [secret_revision()]}
    written = snapshot.write_snapshot(tmp_path, [("revisions", "r", body)])
    assert SECRET not in written[0].read_text()
    (tmp_path / "revisions" / "handmade.json").write_text(json.dumps(body))  # made by curl, say
    data = snapshot.read_snapshot(tmp_path)
    assert data.problems == []
    assert [r.revision for r in data.revisions] == ["svc-00001-abc"] * 2
    assert data.revisions[0] == data.revisions[1]
    assert data.revisions[0].request_based_billing is False


def test_fetch_through_the_real_clients_writes_no_env_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: ``fetch`` wrote the Revision and Service bodies whole, env values included; the
    snapshot still replays to the same revisions the live read gave."""
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monitoring, run = FakeMetricService(), FakeRun()
    server = start([monitoring, run])
    clients = build_clients({"MONITORING_EMULATOR_HOST": server.address, "RUN_EMULATOR_HOST": server.address})
    try:
        spec = FleetSpec(project="p1", services=2, hours=2)
        (service, _) = add_fleet(monitoring, run, spec)
        leaky = revision_body(spec, service, 9, spec.start)
        leaky["containers"][0].update(env=[{"name": "DB_PASSWORD", "value": SECRET}], args=[f"--token={SECRET}"])
        run.add_revision(leaky)
        run.add_service({"name": f"projects/p1/locations/{spec.region}/services/{service}",
                         "template": {"containers": [{"image": "i", "env": [{"name": "K", "value": SECRET}]}]}})
        start_time = datetime.fromtimestamp(spec.start, UTC)
        query = LiveQuery(projects=("p1",), start=start_time, end=start_time + timedelta(hours=2))
        live, written = fetch_to_snapshot(query, tmp_path, clients=clients, now=start_time + timedelta(hours=3))
    finally:
        clients.close()
        server.stop()
    assert {p.parent.name for p in written} == {"timeSeries", "revisions", "services"}
    assert not [p for p in written if SECRET in p.read_text()]
    assert SECRET not in (tmp_path / "manifest.json").read_text()
    replayed = snapshot.read_snapshot(tmp_path)
    assert sorted(replayed.revisions, key=lambda r: r.revision) == sorted(live.revisions, key=lambda r: r.revision)
    assert f"{service}-00009" in {r.revision for r in replayed.revisions}
