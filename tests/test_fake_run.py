"""The fake Cloud Run Admin API v2 (Revisions, Services) driven by Google's real run_v2 clients."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from google.api_core import exceptions
from google.cloud import run_v2
from google.cloud.run_v2.services.revisions.transports import RevisionsGrpcTransport
from google.cloud.run_v2.services.services.transports import ServicesGrpcTransport

from tests.fakes.fleet import FleetSpec, revision_body
from tests.fakes.run import FakeRun
from tests.fakes.server import serving

SPEC = FleetSpec(project="p", region="us-central1")


@pytest.fixture(autouse=True)
def _no_metadata_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@pytest.fixture
def running() -> Iterator[tuple[FakeRun, grpc.Channel]]:
    run = FakeRun(default_page_size=3)
    for service in ("a", "b"):
        run.add_service({"name": f"projects/p/locations/us-central1/services/{service}"})
        for index in range(1, 4):
            run.add_revision(revision_body(SPEC, service, index, 1_767_225_600 + index))
    run.add_service({"name": "projects/p/locations/europe-west1/services/c"})
    run.add_revision(revision_body(FleetSpec(project="p", region="europe-west1"), "c", 1, 1_767_225_600))
    with serving(run) as server:
        channel = grpc.insecure_channel(server.address)
        yield run, channel
        channel.close()


def clients(channel: grpc.Channel) -> tuple[run_v2.RevisionsClient, run_v2.ServicesClient]:
    return (
        run_v2.RevisionsClient(transport=RevisionsGrpcTransport(channel=channel)),
        run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=channel)),
    )


def test_dash_lists_every_revision_of_a_region_across_pages(running: tuple[FakeRun, grpc.Channel]) -> None:
    run, channel = running
    revisions, _ = clients(channel)
    listed = list(revisions.list_revisions(parent="projects/p/locations/us-central1/services/-"))
    assert [r.name.rsplit("/", 1)[1] for r in listed] == [f"{s}-{i:05d}" for s in "ab" for i in range(1, 4)]
    assert run.behaviour.count("ListRevisions") == 2  # 6 revisions, 3 a page
    first = listed[0]
    assert first.containers[0].resources.limits["memory"] == "512Mi"
    assert first.containers[0].resources.cpu_idle is True
    assert first.scaling.min_instance_count == 1
    assert first.create_time.timestamp() == 1_767_225_601


def test_one_service_and_not_found(running: tuple[FakeRun, grpc.Channel]) -> None:
    _, channel = running
    revisions, _ = clients(channel)
    assert len(list(revisions.list_revisions(parent="projects/p/locations/us-central1/services/b"))) == 3
    with pytest.raises(exceptions.NotFound):
        list(revisions.list_revisions(parent="projects/p/locations/us-central1/services/zzz", retry=None))


def test_location_wildcard_is_refused_as_documented(running: tuple[FakeRun, grpc.Channel]) -> None:
    _, channel = running
    revisions, services = clients(channel)
    with pytest.raises(exceptions.InvalidArgument):
        services.list_services(parent="projects/p/locations/-", retry=None)
    with pytest.raises(exceptions.InvalidArgument):
        revisions.list_revisions(parent="projects/p/locations/-/services/-", retry=None)


def test_services_per_region(running: tuple[FakeRun, grpc.Channel]) -> None:
    _, channel = running
    _, services = clients(channel)
    assert [s.name for s in services.list_services(parent="projects/p/locations/europe-west1")] == [
        "projects/p/locations/europe-west1/services/c"
    ]
    assert len(list(services.list_services(parent="projects/p/locations/us-central1"))) == 2
    assert list(services.list_services(parent="projects/other/locations/us-central1")) == []
