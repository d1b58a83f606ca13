"""A fake Cloud Run Admin API v2: ``Revisions.ListRevisions`` and ``Services.ListServices``.

Resources are stored as REST JSON (what ``gcloud run revisions describe --format=json`` and the REST
API return) and served as protos. Parents follow the installed client's documented rules:

- ListRevisions ``projects/P/locations/L/services/S``: ``S = -`` lists every revision in L;
- ListServices ``projects/P/locations/L``;
- ``L = -`` is refused with INVALID_ARGUMENT for both (ListServicesRequest documents that the
  location "cannot be the '-' wildcard"; the analyzer lists per region, so it never needs it).

Paging uses ``page_size`` (default ``default_page_size``) and an opaque offset token.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from google.cloud import run_v2
from google.protobuf import json_format

from tests.fakes.server import Behaviour, abort, list_page, unary

RevisionPb: Any = run_v2.Revision.pb()
ServicePb: Any = run_v2.Service.pb()
REVISION = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)/revisions/([^/]+)$")
SERVICE = re.compile(r"^projects/([^/]+)/locations/([^/]+)/services/([^/]+)$")
LOCATION = re.compile(r"^projects/([^/]+)/locations/([^/]+)$")


class FakeRun:
    """Holds revisions and services; serves google.cloud.run.v2.Revisions and .Services."""

    def __init__(self, behaviour: Behaviour | None = None, *, default_page_size: int = 100) -> None:
        self.behaviour = behaviour or Behaviour()
        self.default_page_size = default_page_size
        self._revisions: dict[str, Any] = {}
        self._services: dict[str, Any] = {}
        self._lock = threading.Lock()

    # loading -----------------------------------------------------------------------------

    def add_revision(self, body: Mapping[str, Any]) -> None:
        message = json_format.ParseDict(body, RevisionPb(), ignore_unknown_fields=True)
        if not REVISION.match(message.name):
            raise ValueError(
                f"revision name {message.name!r} is not projects/P/locations/L/services/S/revisions/R"
            )
        with self._lock:
            self._revisions[message.name] = message

    def add_service(self, body: Mapping[str, Any]) -> None:
        message = json_format.ParseDict(body, ServicePb(), ignore_unknown_fields=True)
        if not SERVICE.match(message.name):
            raise ValueError(f"service name {message.name!r} is not projects/P/locations/L/services/S")
        with self._lock:
            self._services[message.name] = message

    def load_revisions(self, body: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """A ``revisions.list`` body (or a list of pages)."""
        for page in body if isinstance(body, Sequence) else [body]:
            for revision in page.get("revisions", []):
                self.add_revision(revision)

    def load_services(self, body: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> None:
        """A ``services.list`` body, a list of pages, or one Service resource."""
        for page in body if isinstance(body, Sequence) else [body]:
            if "services" in page:
                for service in page["services"]:
                    self.add_service(service)
            elif "name" in page:
                self.add_service(page)

    def revisions(self) -> list[Any]:
        """Every stored revision (protos), by name."""
        with self._lock:
            return [self._revisions[name] for name in sorted(self._revisions)]

    def services(self) -> list[Any]:
        with self._lock:
            return [self._services[name] for name in sorted(self._services)]

    # answering ---------------------------------------------------------------------------

    def _list_revisions(self, request: Any, context: grpc.ServicerContext) -> Any:
        match = SERVICE.match(request.parent)
        self.behaviour.enter("ListRevisions", match.group(1) if match else "", request.parent, context)
        if not match:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"parent {request.parent!r} is not projects/P/locations/L/services/S",
            )
        assert match is not None
        project, location, service = match.groups()
        if location == "-":
            abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, 'location must be a region, not the "-" wildcard'
            )
        with self._lock:
            found = sorted(
                (
                    r
                    for name, r in self._revisions.items()
                    if (m := REVISION.match(name))
                    and m.group(1) == project
                    and m.group(2) == location
                    and service in ("-", m.group(3))
                ),
                key=lambda r: r.name,
            )
            known = (
                service == "-"
                or f"projects/{project}/locations/{location}/services/{service}" in self._services
            )
        if not found and not known:
            abort(
                context,
                grpc.StatusCode.NOT_FOUND,
                f"Resource '{service}' of kind 'SERVICE' in region "
                f"'{location}' in project '{project}' does not exist.",
            )
        return list_page(found, request, run_v2.ListRevisionsResponse.pb()(), "revisions", context,
                        default_size=self.default_page_size)

    def _list_services(self, request: Any, context: grpc.ServicerContext) -> Any:
        match = LOCATION.match(request.parent)
        self.behaviour.enter("ListServices", match.group(1) if match else "", request.parent, context)
        if not match:
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"parent {request.parent!r} is not projects/P/locations/L",
            )
        assert match is not None
        project, location = match.groups()
        if location == "-":
            abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                'Location must be a valid Google Cloud region, and cannot be the "-" wildcard.',
            )
        with self._lock:
            found = sorted(
                (
                    s
                    for name, s in self._services.items()
                    if (m := SERVICE.match(name)) and m.group(1) == project and m.group(2) == location
                ),
                key=lambda s: s.name,
            )
        return list_page(found, request, run_v2.ListServicesResponse.pb()(), "services", context,
                    default_size=self.default_page_size)

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        return [
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Revisions",
                {
                    "ListRevisions": unary(self._list_revisions, run_v2.ListRevisionsRequest.pb()),
                },
            ),
            grpc.method_handlers_generic_handler(
                "google.cloud.run.v2.Services",
                {
                    "ListServices": unary(self._list_services, run_v2.ListServicesRequest.pb()),
                },
            ),
        ]
