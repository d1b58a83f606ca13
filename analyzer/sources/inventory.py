"""The fleet's inventory (which services exist, before any metric is read) and one task's share, read live.

A sharded job must know every service before it fetches, so that each task reads only its own share.
``list_fleet`` lists them per (project, region) with the Cloud Run Admin API's ListServices, or, when the
regions are ``all`` (the Admin API refuses the ``-`` wildcard for locations), with one cheap HEADERS
query per project on ``container/instance_count`` grouped by region and service, which names every
service that ran in the window. ``fetch_share`` then reads a share through ``live.fetch_live``, one
query set per (project, region) and batch of ``FETCH_BATCH`` services, and joins the results;
``restrict`` cuts a snapshot or the demo down to a share instead.

Why batches: ``fetch_live`` holds every response of one call as REST JSON until the call ends, about
30 MiB per service-week at a 300 s alignment (bench/fleet_scale.py), so a task's peak memory would
grow with its share. Reading ``FETCH_BATCH`` services at a time caps it; the parsed series kept
between batches are about 2 MiB per service-week. The price is a few more calls: the metric queries
of each batch, and the region's revision and service listings once per batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from google.api_core import exceptions as api_exceptions
from google.cloud import monitoring_v3

from analyzer.errors import AnalyzerError, ApiDisabledError, CredentialsError, PermissionDeniedError
from analyzer.model import HISTORY_HOURS, Problem, RawData, RevisionInfo, ServiceKey
from analyzer.sources import restjson
from analyzer.sources.duplicates import drop_duplicate_series
from analyzer.sources.google_clients import GoogleClients
from analyzer.sources.live import METRIC_PREFIX, LiveQuery, Progress, fetch_admin, fetch_live, map_error

FETCH_BATCH = 25  # services read by one fetch_live call (see the module docstring)
DISCOVERY_METRIC = "container/instance_count"
DISCOVERY_GROUP_BY = (
    "resource.labels.project_id",
    "resource.labels.location",
    "resource.labels.service_name",
)


@dataclass(slots=True)
class Inventory:
    """Every service found, and what could not be listed."""

    services: list[ServiceKey] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    errors: list[AnalyzerError] = field(default_factory=list)  # behind the problems: raised when nothing listed


def _wanted(names: Sequence[str] | None, service: str) -> bool:
    return names is None or service in names


def _list_region(
    clients: GoogleClients, project: str, region: str, names: Sequence[str] | None
) -> list[ServiceKey]:
    parent = f"projects/{project}/locations/{region}"
    found = []
    for service in clients.services.list_services(parent=parent, timeout=60.0):
        _, located, name = restjson.service_identity({"name": service.name})
        if _wanted(names, name):
            found.append(ServiceKey(project, located or region, name))
    return found


def _discover(
    clients: GoogleClients, project: str, window: tuple[datetime, datetime], names: Sequence[str] | None
) -> list[ServiceKey]:
    request = monitoring_v3.ListTimeSeriesRequest(
        name=f"projects/{project}",
        filter=f'metric.type = "{METRIC_PREFIX}{DISCOVERY_METRIC}" AND resource.type = "cloud_run_revision"',
        interval=monitoring_v3.TimeInterval(start_time=window[0], end_time=window[1]),
        aggregation=monitoring_v3.Aggregation(
            alignment_period={"seconds": 3600},
            per_series_aligner=monitoring_v3.Aggregation.Aligner.ALIGN_MAX,
            cross_series_reducer=monitoring_v3.Aggregation.Reducer.REDUCE_MAX,
            group_by_fields=list(DISCOVERY_GROUP_BY),
        ),
        view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.HEADERS,
    )
    found = set()
    for series in clients.monitoring.list_time_series(request=request, timeout=120.0):
        labels = series.resource.labels
        key = ServiceKey(
            labels.get("project_id", project), labels.get("location", ""), labels.get("service_name", "")
        )
        if key.region and key.service and _wanted(names, key.service):
            found.add(key)
    return sorted(found, key=lambda k: (k.project, k.region, k.service))


def list_fleet(
    clients: GoogleClients,
    *,
    projects: Sequence[str],
    regions: Sequence[str] | None,
    services: Sequence[str] | None,
    window: tuple[datetime, datetime],
) -> Inventory:
    """Every service of ``projects`` in ``regions`` (every region when None), optionally only ``services``.

    A project or region that cannot be listed becomes a Problem naming the fix; missing credentials
    are raised, since then nothing at all can be listed.
    """
    inventory = Inventory()
    for project in projects:
        places: Iterable[str | None] = regions if regions is not None else [None]
        for region in places:
            api, what = (
                ("run", f"services in {region}") if region else ("monitoring", "services with metrics")
            )
            try:
                if region is None:
                    inventory.services.extend(_discover(clients, project, window, services))
                else:
                    inventory.services.extend(_list_region(clients, project, region, services))
            except (api_exceptions.GoogleAPICallError, api_exceptions.RetryError) as exc:
                error = map_error(exc, api=api, project=project, what=what)
                if isinstance(error, CredentialsError):
                    raise error from exc
                inventory.errors.append(error)
                inventory.problems.append(
                    Problem(f"project {project}", f"{error.message}: not listed", error.hint)
                )
    inventory.services = sorted(set(inventory.services), key=lambda k: (k.project, k.region, k.service))
    return inventory


def fetch_share(
    clients: GoogleClients,
    share: Sequence[ServiceKey],
    *,
    start: datetime,
    end: datetime,
    progress: Progress | None = None,
    now: datetime | None = None,
    batch: int = FETCH_BATCH,
    admin: bool = True,
    revisions: Sequence[RevisionInfo] = (),
    history_hours: int = HISTORY_HOURS,
) -> RawData:
    """Read the metrics, revisions and services of ``share``: one live query set per (project, region)
    and batch of at most ``batch`` services. ``admin`` False: only the metrics (the caller listed the
    revisions and services already, ``live.fetch_admin``, and passes the ``revisions``: they tell each
    batch which revisions served at the window's start, whose first hours it reads too)."""
    data = RawData(origin="live " + ", ".join(sorted({f"projects/{k.project}" for k in share})))
    ordered = sorted(share, key=lambda k: (k.project, k.region, k.service))
    places = [
        (project, region, tuple(k.service for k in members))
        for (project, region), members in groupby(ordered, key=lambda k: (k.project, k.region))
    ]
    overall = _Overall(progress, batches=sum(-(-len(names) // batch) for _, _, names in places))
    listed: dict[ServiceKey, list[RevisionInfo]] = {}
    for revision in revisions:
        listed.setdefault(revision.key, []).append(revision)
    for project, region, names in places:
        for first in range(0, len(names), batch):
            chunk = names[first : first + batch]
            query = LiveQuery(
                projects=(project,), start=start, end=end, region=region, services=chunk, admin=admin,
                history_hours=history_hours,
            )
            known = [r for name in chunk for r in listed.get(ServiceKey(project, region, name), [])]
            try:
                part = fetch_live(query, clients=clients, progress=overall.batch(), now=now, revisions=known)
            except CredentialsError:
                raise
            except AnalyzerError as exc:  # these services could not be read at all: say so, go on
                # a refused project or API refuses every batch: one Problem for all of them
                refused = isinstance(exc, PermissionDeniedError | ApiDisabledError)
                unread = names[first:] if refused else chunk
                where = f"project {project} region {region}"
                if len(unread) < len(names):
                    where += f" ({len(unread)} of {len(names)} services: {unread[0]} to {unread[-1]})"
                data.problems.append(Problem(where, exc.message, exc.hint))
                if refused:
                    break
                continue
            join(data, part)
    return data


@dataclass(slots=True)
class _Overall:
    """One progress bar over every batch: each fetch_live counts its own calls from zero."""

    progress: Progress | None
    batches: int
    started: int = 0
    base: int = 0  # calls of the batches already done
    current: int = 0  # the current batch's total so far

    def batch(self) -> Progress | None:
        if self.progress is None:
            return None
        self.base, self.current, self.started = self.base + self.current, 0, self.started + 1
        return self.update

    def update(self, done: int, total: int, what: str) -> None:
        assert self.progress is not None
        self.current = total
        left = max(self.batches - self.started, 0)
        self.progress(self.base + done, self.base + total * (left + 1), what)


def list_revisions(clients: GoogleClients, keys: Iterable[ServiceKey], *, start: datetime, end: datetime) -> RawData:
    """The revisions and services of every (project, region) that ``keys`` live in, each listed once
    for a whole fleet (the batches then read only their metrics: ``fetch_share(admin=False)``)."""
    places = sorted({(k.project, k.region) for k in keys})
    if not places:
        return RawData()
    query = LiveQuery(projects=tuple(sorted({project for project, _ in places})), start=start, end=end)
    return fetch_admin(query, places, clients=clients)


def join(into: RawData, part: RawData) -> None:
    """Add ``part`` to ``into`` (same window): series, revisions, services and problems; series that
    ``into`` already holds (a scoping project's batch returns its members' series) are counted once."""
    into.series.extend(part.series)
    into.revisions.extend(part.revisions)
    into.services.extend(part.services)
    into.service_infos.extend(part.service_infos)
    into.problems.extend(part.problems)
    drop_duplicate_series(into)
    into.window_start = into.window_start or part.window_start
    into.window_end = into.window_end or part.window_end


def services_of(raw: RawData) -> list[ServiceKey]:
    """Every service a snapshot or the demo knows: listed, with revisions, or with metrics."""
    keys = set(raw.services) | {r.key for r in raw.revisions}
    keys |= {ServiceKey(s.project, s.region, s.service) for s in raw.series}
    return sorted(keys, key=lambda k: (k.project, k.region, k.service))


def restrict(raw: RawData, keep: Iterable[ServiceKey]) -> RawData:
    """``raw`` cut down to the services in ``keep`` (problems not tied to a service are kept)."""
    wanted = set(keep)
    names = {str(k) for k in services_of(raw)}
    return RawData(
        series=[s for s in raw.series if ServiceKey(s.project, s.region, s.service) in wanted],
        revisions=[r for r in raw.revisions if r.key in wanted],
        services=[k for k in raw.services if k in wanted],
        service_infos=[s for s in raw.service_infos if s.key in wanted],
        problems=[p for p in raw.problems if p.subject not in names or p.subject in {str(k) for k in wanted}],
        window_start=raw.window_start,
        window_end=raw.window_end,
        origin=raw.origin,
    )
