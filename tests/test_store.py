"""The history store: a local directory, and a GCS bucket through the real google-cloud-storage client
against gcp-storage-emulator running in this process (behind the proxy that answers like Cloud Storage,
tests/gcs_preconditions.py). Both keep the same contract, and the bucket store needs no more than
roles/storage.objectUser (tests/gcs_iam.py enforces Cloud Storage's IAM)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from analyzer.delivery.history import PREFIX, load_record, previous_record, record_key, save_record
from analyzer.delivery.store import LocalStore
from analyzer.errors import ConfigError, DeliveryError
from analyzer.render.week import WindowRecord
from analyzer.store import Store, check_key, open_store, split_gcs_url
from tests.gcs_iam import BucketIam
from tests.gcs_preconditions import enforcing

BUCKET = "history-bucket"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def backend() -> Iterator[str]:
    """gcp-storage-emulator in this process, with one bucket; yields its http://host:port."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def emulator(backend: str) -> Iterator[str]:
    """The emulator behind the proxy that answers like Cloud Storage; yields the proxy's URL."""
    with enforcing(backend) as proxy:
        yield proxy.url


JOB_ACCOUNT = "serviceAccount:analyzer-job@shop-prod.iam.gserviceaccount.com"


@pytest.fixture
def iam(backend: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[BucketIam]:
    """The emulator behind Cloud Storage's IAM: every request comes from the job's account."""
    policy = BucketIam(caller=JOB_ACCOUNT)
    with enforcing(backend, policy) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        yield policy


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    if request.param == "local":
        return open_store(str(tmp_path / "history"))
    host = request.getfixturevalue("emulator")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    return open_store(f"gs://{BUCKET}/{request.node.name.replace('[', '-').rstrip(']')}")


def test_read_write_list_delete(store: Store) -> None:
    assert store.read("history/a.json") is None
    store.write("history/a.json", b'{"a": 1}', content_type="application/json")
    store.write("reports/2026-11-23/report.html", b"<html></html>", content_type="text/html")
    assert store.read("history/a.json") == b'{"a": 1}'
    store.write("history/a.json", b'{"a": 2}')
    assert store.read("history/a.json") == b'{"a": 2}'
    assert store.list("history/") == ["history/a.json"]
    assert store.list() == ["history/a.json", "reports/2026-11-23/report.html"]
    store.delete("history/a.json")
    store.delete("history/never-there.json")
    assert store.read("history/a.json") is None
    assert store.list("history/") == []


def test_create_is_conditional(store: Store) -> None:
    assert store.create("sent/w1.json", b"first") is True
    assert store.create("sent/w1.json", b"second") is False
    assert store.read("sent/w1.json") == b"first"


def test_location_names_the_object(store: Store) -> None:
    where = store.location("history/x.json")
    assert where.endswith("history/x.json")
    assert where.startswith("gs://" if store.url.startswith("gs://") else "/")


def test_history_records_round_trip_and_last_week_is_found(store: Store, demo_record: WindowRecord) -> None:
    assert save_record(store, demo_record) is True
    assert save_record(store, demo_record) is False  # a retry keeps the first record of its window
    loaded = load_record(store, record_key(demo_record.window_end))
    assert loaded is not None
    assert [f.key for f in loaded.findings] == [f.key for f in demo_record.findings]
    assert loaded.total_cost_usd == pytest.approx(demo_record.total_cost_usd)
    assert store.list(PREFIX) == [record_key(demo_record.window_end)]
    week_later = datetime(2026, 11, 30, tzinfo=UTC)
    found = previous_record(store, week_later)
    assert found is not None
    assert found.window_end == demo_record.window_end
    assert previous_record(store, datetime(2026, 11, 24, tzinfo=UTC)) is None  # one day later is not last week


def test_a_damaged_record_names_the_object_and_the_fix(store: Store) -> None:
    store.write("history/2026-11-16T00-00-00Z.json", b"{not json")
    with pytest.raises(DeliveryError, match=r"2026-11-16T00-00-00Z\.json") as failure:
        previous_record(store, datetime(2026, 11, 23, tzinfo=UTC))
    assert "remove it" in failure.value.hint
    store.write("history/2026-11-16T00-00-00Z.json", json.dumps({"schema": "someone-else"}).encode())
    with pytest.raises(DeliveryError, match="not a cloudrun-analyzer/history"):
        previous_record(store, datetime(2026, 11, 23, tzinfo=UTC))


@pytest.fixture(scope="module")
def demo_record(demo_analysis: object) -> WindowRecord:
    from analyzer.analysis import Analysis
    from analyzer.render.week import record_from_analysis

    assert isinstance(demo_analysis, Analysis)
    return record_from_analysis(
        demo_analysis,
        generated_at=datetime(2026, 11, 23, 6, tzinfo=UTC),
        report="reports/2026-11-23/report.html",
    )


def test_local_writes_are_atomic_and_creates_exclusive_across_threads(tmp_path: Path) -> None:
    store = LocalStore(tmp_path)
    wins: list[bool] = []
    threads = [
        threading.Thread(target=lambda i=i: wins.append(store.create("claim", str(i).encode()))) for i in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert wins.count(True) == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(LocalStore.TEMP_PREFIX)], "temporary files left"


def test_keys_cannot_escape_the_store(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "inner")
    for bad in ("../outside", "/etc/passwd", "a//b", "a/./b", "", "a\\b"):
        with pytest.raises(ValueError, match="invalid store key"):
            store.write(bad, b"x")
    assert check_key("history/2026-11-23T00-00-00Z.json")


def test_gcs_urls() -> None:
    assert split_gcs_url("gs://bucket") == ("bucket", "")
    assert split_gcs_url("gs://bucket/a/b/") == ("bucket", "a/b/")
    with pytest.raises(ConfigError):
        split_gcs_url("gs:///x")


def test_a_missing_bucket_says_to_create_it(emulator: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator)
    store = open_store("gs://no-such-bucket/prefix")
    with pytest.raises(DeliveryError) as failure:
        store.write("history/x.json", b"{}")
    assert "gcloud storage buckets create gs://no-such-bucket" in failure.value.hint
    with pytest.raises(DeliveryError):
        store.read("history/x.json")  # an absent bucket is not an absent object


def test_object_roles_alone_read_write_and_find_absent_objects(iam: BucketIam, request: pytest.FixtureRequest) -> None:
    """Regression: reading a missing object asked for the bucket (storage.buckets.get), which no
    object role grants, so the job's first read failed on Google with the documented role."""
    iam.grant(BUCKET, JOB_ACCOUNT, "roles/storage.objectUser")
    store = open_store(f"gs://{BUCKET}/{request.node.name}")
    assert store.read("reports/2026-01-08/report.json") is None
    store.write("history/a.json", b"1")
    store.write("history/a.json", b"2")  # replacing needs storage.objects.delete too
    assert store.read("history/a.json") == b"2"
    assert store.create("digests/W1/claim", b"me") is True
    assert store.create("digests/W1/claim", b"you") is False
    assert store.list("history/") == ["history/a.json"]
    store.delete("history/a.json")
    store.delete("history/a.json")
    # google-cloud-storage >= 3.x also fetches bucket metadata in a background thread for its traces
    # and shrugs off the 403; nothing the store itself asks for is refused.
    assert {permission for permission, _ in iam.denied} <= {"storage.buckets.get"}


def test_the_double_refuses_bucket_metadata_to_object_roles(iam: BucketIam) -> None:
    """What real Cloud Storage does, so the test above can fail: object roles get no bucket GET."""
    from google.api_core.exceptions import Forbidden
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    iam.grant(BUCKET, JOB_ACCOUNT, "roles/storage.objectAdmin")
    client = storage.Client(project="test", credentials=AnonymousCredentials())
    with pytest.raises(Forbidden, match=r"storage\.buckets\.get"):
        client.bucket(BUCKET).exists()
    assert iam.denied == [("storage.buckets.get", BUCKET)]
    client.close()


def test_without_a_role_the_error_names_the_role_to_grant(iam: BucketIam) -> None:
    store = open_store(f"gs://{BUCKET}/no-role")
    with pytest.raises(DeliveryError, match="permission denied") as failure:
        store.read("history/x.json")
    assert "roles/storage.objectUser" in failure.value.hint
    assert f"gs://{BUCKET}" in failure.value.hint
    iam.grant(BUCKET, JOB_ACCOUNT, "roles/storage.objectViewer")
    assert store.read("history/x.json") is None
    with pytest.raises(DeliveryError, match=r"storage\.objects\.create"):
        store.write("history/x.json", b"{}")
