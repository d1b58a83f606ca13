"""Fleet-size runs in batches: which services go together, how a batch's data is read, and running
the batches over worker processes so that memory follows the batch, not the fleet.

1. **Plan.** A live read first lists the fleet (``inventory.list_fleet``: one cheap query per project)
   and cuts it into batches of services; a snapshot is read once, file by file, and each series is
   spilled to its batch's file on disk (services are spread over batches by a stable hash); the demo
   is one batch.
   The snapshot's own files are by metric, not by service, hence the spill.
2. **Read and analyze a batch** in a worker: fetch (live, with the worker's own clients) or load the
   spill (snapshot), build frames, run the analysis, and hand the result to ``summarize``, which keeps
   only what the final report needs (``render.parts.render_part``). The frames die with the batch.
3. **Collect** the summaries in plan order, whatever order the workers finish in, so the output does not
   depend on timing.

Problems met while planning (a file that cannot be read, a project that cannot be listed) travel with
the first batch, so they are reported exactly once.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import pickle
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Generic, TypeVar

from analyzer.analysis import Analysis
from analyzer.config import AnalysisConfig
from analyzer.errors import NoDataError
from analyzer.model import HISTORY_HOURS, Problem, RawData, RawSeries, ServiceKey

T = TypeVar("T")
Summarize = Callable[[Analysis], T]
BatchProgress = Callable[[int, int, str], None]  # (batches done, batches, label)

BATCH_SERVICE_DAYS = 350  # service-days read and analyzed together (50 services over 7 days)
SNAPSHOT_BATCH_BYTES = 256 * 2**20  # spilled (pickled) series arrays read back by one batch


WHOLE_FLEET = 10**9  # one batch: what must see every service at once


def services_per_batch(days: float, config: AnalysisConfig | None = None) -> int:
    """How many services one batch holds for a window of ``days``: memory grows with service-days.
    The free tier is one allowance per billing account, shared by every service analyzed together, so
    with ``pricing.apply_free_tier`` the fleet is one batch (docs/performance.md)."""
    if config is not None and config.pricing.apply_free_tier:
        return WHOLE_FLEET
    return max(1, int(BATCH_SERVICE_DAYS // max(days, 1.0)))


@dataclass(slots=True)
class Batch:
    """One batch's input, small enough to send to a worker process: what to read, not the data."""

    index: int
    keys: list[ServiceKey]
    base: RawData  # revisions, services, problems and window of the batch (no series yet)
    spills: list[Path] = field(default_factory=list)  # snapshot series: files of pickled lists of RawSeries
    live: LiveBatch | None = None


@dataclass(frozen=True, slots=True)
class LiveBatch:
    """How a worker reads its batch live: the emulator variables and the window."""

    env: dict[str, str]
    start: datetime
    end: datetime
    now: datetime | None = None
    listed: bool = False  # revisions and services came with the batch (listed once for the fleet)
    history_hours: int = HISTORY_HOURS  # first hours read of revisions deployed before the window (LiveQuery's)


@dataclass(slots=True)
class Plan:
    """Every batch of a run, and the scratch directory that holds their spills."""

    batches: list[Batch]
    origin: str
    window: tuple[datetime | None, datetime | None] = (None, None)
    scratch: tempfile.TemporaryDirectory[str] | None = None
    services: int = 0
    fleet: int = 0  # services in the whole input, when the plan holds only a share of them

    def close(self) -> None:
        if self.scratch is not None:
            self.scratch.cleanup()


# ---------------------------------------------------------------------------------------------
# Planning


def plan_raw(raw: RawData, *, batch_size: int) -> Plan:
    """A source already read whole (the demo, a small snapshot): batches of ``batch_size`` services."""
    from analyzer.sources.inventory import restrict, services_of

    keys = services_of(raw)
    groups = [keys[i : i + batch_size] for i in range(0, len(keys), batch_size)] or [[]]
    batches = []
    for index, group in enumerate(groups):
        part = restrict(raw, group) if len(groups) > 1 else raw
        if index and len(groups) > 1:
            part.problems = [p for p in part.problems if p.subject in {str(k) for k in group}]
        batches.append(Batch(index, group, part))
    return Plan(batches, raw.origin, (raw.window_start, raw.window_end), services=len(keys), fleet=len(keys))


def plan_snapshot(directory: Path, *, batch_size: int | None = None,
                  keep: Callable[[ServiceKey], bool] | None = None) -> Plan:
    """Read a snapshot once, file by file, spilling each service's series to its own file on disk;
    then group services (in name order) into batches of ``batch_size``, or, by default, of about
    ``SNAPSHOT_BATCH_BYTES`` of spilled arrays. Revisions, services and problems stay in memory.
    ``keep``: only the services it accepts are spilled and planned (a job task's share); the others'
    series are dropped as they are read, and so are problems that name them."""
    from analyzer.sources import snapshot

    files = snapshot.check_directory(directory)
    scratch = tempfile.TemporaryDirectory(prefix="cloudrun-analyzer-")
    spills: dict[ServiceKey, Path] = {}
    seen: set[ServiceKey] = set()  # services left to other shares
    meta = RawData(origin=f"snapshot {directory}")
    snapshot.read_manifest(directory, meta)
    for path in files:
        part = RawData()
        snapshot.read_file(part, path, directory)
        meta.revisions.extend(part.revisions)
        meta.services.extend(part.services)
        meta.service_infos.extend(part.service_infos)
        meta.problems.extend(part.problems)
        by_service: dict[ServiceKey, list[RawSeries]] = {}
        for s in part.series:
            by_service.setdefault(ServiceKey(s.project, s.region, s.service), []).append(s)
        for key, found in by_service.items():
            if keep is not None and not keep(key):
                seen.add(key)
                continue
            spill = spills.setdefault(key, Path(scratch.name) / f"service-{len(spills):06d}.pickle")
            with spill.open("ab") as handle:
                pickle.dump(found, handle, protocol=pickle.HIGHEST_PROTOCOL)
    every = set(spills) | seen | {r.key for r in meta.revisions} | set(meta.services)
    keys = sorted(every if keep is None else filter(keep, every), key=lambda k: (k.project, k.region, k.service))
    if keep is not None:
        others = {str(k) for k in every} - {str(k) for k in keys}
        meta.problems = [p for p in meta.problems if p.subject not in others]
    sizes = [_size(spills[k]) if k in spills else 0 for k in keys]
    batches: list[Batch] = []
    for group in _groups(keys, sizes, batch_size):
        wanted = set(group)
        base = RawData(
            revisions=[r for r in meta.revisions if r.key in wanted],
            services=[k for k in meta.services if k in wanted],
            service_infos=[s for s in meta.service_infos if s.key in wanted],
            problems=meta.problems if not batches else [],
            window_start=meta.window_start,
            window_end=meta.window_end,
            origin=meta.origin,
        )
        batches.append(Batch(len(batches), group, base, spills=[spills[k] for k in group if k in spills]))
    if not batches:
        batches.append(Batch(0, [], replace(meta, revisions=[], services=[], service_infos=[])))
    return Plan(batches, meta.origin, (meta.window_start, meta.window_end), scratch, len(keys), len(every))


def _groups(keys: list[ServiceKey], sizes: list[int], batch_size: int | None) -> Iterator[list[ServiceKey]]:
    """Consecutive services: ``batch_size`` at a time, or as many as fit in SNAPSHOT_BATCH_BYTES."""
    group: list[ServiceKey] = []
    total = 0
    for key, size in zip(keys, sizes, strict=True):
        full = len(group) >= batch_size if batch_size else total + size > SNAPSHOT_BATCH_BYTES
        if group and full:
            yield group
            group, total = [], 0
        group.append(key)
        total += size
    if group:
        yield group


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_live(query: Any, *, env: dict[str, str], now: datetime | None = None, batch_size: int | None = None,
              clients: Any = None) -> Plan:
    """List the fleet once, then batches of services each worker reads on its own."""
    from analyzer.sources.google_clients import build_clients
    from analyzer.sources.inventory import list_fleet, list_revisions
    from analyzer.sources.live import effective_window

    start, end = effective_window(query, now or datetime.now(tz=query.end.tzinfo))
    own = clients is None
    clients = clients or build_clients(env)
    try:
        inventory = list_fleet(
            clients,
            projects=query.projects,
            regions=[query.region] if query.region else None,
            services=list(query.services) or None,
            window=(start, end),
        )
        listed = list_revisions(clients, inventory.services, start=start, end=end)
    finally:
        if own:
            clients.close()
    if inventory.errors and not inventory.services:
        # Nothing could be listed: the refusal (permission, disabled API) is the run's error, not a line.
        first = inventory.errors[0]
        if len(inventory.errors) == 1:
            raise first
        lines = "\n  ".join(f"{p.subject}: {p.message}" for p in inventory.problems)
        raise type(first)(f"no service could be listed:\n  {lines}", hint=first.hint)
    problems = list(inventory.problems)
    found = {k.service for k in inventory.services}
    where = f" in {query.region}" if query.region else ""
    problems.extend(
        Problem(f"service {name}", f"no Cloud Run metrics{where} in projects {', '.join(query.projects)} during "
                "the window", "check the service name and --region, and that it served traffic in the window")
        for name in query.services if name not in found
    )
    size = batch_size or services_per_batch((end - start).total_seconds() / 86_400)
    keys = inventory.services
    origin = f"live projects {', '.join(query.projects)}"
    live = LiveBatch(env=env, start=start, end=end, now=now, history_hours=query.history_hours)
    return plan_listed(keys, size=size, live=live, origin=origin, problems=problems, listed=listed)


def plan_listed(keys: Sequence[ServiceKey], *, size: int, live: LiveBatch, origin: str,
                problems: Sequence[Problem] = (), listed: RawData | None = None) -> Plan:
    """Listed services read live in batches of ``size``; ``problems`` travel with the first batch (there
    is one, without services, when nothing was listed, so that they are still reported). ``listed``:
    the revisions and services of the fleet's regions (``inventory.list_revisions``), each batch given
    its own, so that workers read only metrics; without it each batch lists its regions itself."""
    groups = [list(keys[i : i + size]) for i in range(0, len(keys), size)] or [[]]
    if listed is not None:
        live = replace(live, listed=True)
        problems = [*problems, *listed.problems]
    shares = _AdminShares(listed)
    batches = [
        Batch(i, group, shares.of(group, RawData(problems=list(problems) if i == 0 else [], window_start=live.start,
                                                 window_end=live.end, origin=origin)), live=live)
        for i, group in enumerate(groups)
    ]
    return Plan(batches, origin, (live.start, live.end), services=len(keys), fleet=len(keys))


class _AdminShares:
    """The listed revisions, services and service settings, by service (each found once, not once a batch)."""

    def __init__(self, listed: RawData | None) -> None:
        self.listed = listed is not None
        self.revisions: dict[ServiceKey, list[Any]] = {}
        self.infos: dict[ServiceKey, list[Any]] = {}
        self.services: set[ServiceKey] = set()
        if listed is not None:
            for revision in listed.revisions:
                self.revisions.setdefault(revision.key, []).append(revision)
            for info in listed.service_infos:
                self.infos.setdefault(info.key, []).append(info)
            self.services = set(listed.services)

    def of(self, group: list[ServiceKey], base: RawData) -> RawData:
        """``base`` with ``group``'s share (in listing order within each service)."""
        if self.listed:
            base.revisions = [r for key in group for r in self.revisions.get(key, [])]
            base.services = [key for key in group if key in self.services]
            base.service_infos = [s for key in group for s in self.infos.get(key, [])]
        return base


# ---------------------------------------------------------------------------------------------
# Reading and analyzing one batch (in a worker)


def load_batch(batch: Batch) -> RawData:
    """The batch's whole RawData: its spill read back, or its services fetched live."""
    raw = replace(batch.base, series=list(batch.base.series), problems=list(batch.base.problems))
    for spill in batch.spills:
        with spill.open("rb") as handle:
            while True:
                try:
                    raw.series.extend(pickle.load(handle))
                except EOFError:
                    break
        from analyzer.sources.duplicates import drop_duplicate_series

        drop_duplicate_series(raw)  # a service's series all land in its batch, so repeats meet here
    if batch.live is not None and batch.keys:
        from analyzer.sources.google_clients import build_clients
        from analyzer.sources.inventory import fetch_share, join

        clients = build_clients(batch.live.env)
        try:
            # listed: the batch's revisions came with it, and tell whose first hours before the window to read
            part = fetch_share(clients, batch.keys, start=batch.live.start, end=batch.live.end, now=batch.live.now,
                               admin=not batch.live.listed, revisions=raw.revisions if batch.live.listed else (),
                               history_hours=batch.live.history_hours)
        finally:
            clients.close()
        join(raw, part)
        raw.window_start, raw.window_end = batch.live.start, batch.live.end
    return raw


@dataclass(frozen=True, slots=True)
class Outcome(Generic[T]):
    """What one batch gave: its summary, or the reason nothing could be analyzed (with its problems)."""

    index: int
    keys: list[ServiceKey]
    summary: T | None = None
    problems: list[Problem] = field(default_factory=list)
    nothing: str = ""  # why nothing could be analyzed, when summary is None
    has_data: bool = False  # the batch had metrics (not only services and revisions)


def run_batch(batch: Batch, config: AnalysisConfig, summarize: Summarize[T]) -> Outcome[T]:
    """Read, analyze and summarize one batch. A batch whose services have no metrics still gives its
    services (as "no data") and its problems; only a batch that knows no service at all gives none."""
    from analyzer.pipeline import analyze

    raw = load_batch(batch)
    try:
        analysis = analyze(raw, config, allow_empty=bool(batch.keys or raw.services or raw.revisions))
    except NoDataError as exc:
        return Outcome(batch.index, batch.keys, None, list(raw.problems), exc.message)
    outcome = Outcome(batch.index, batch.keys, summarize(analysis), has_data=bool(raw.series))
    del raw, analysis
    release_memory()
    return outcome


def _live(batches: Sequence[Batch]) -> bool:
    return any(batch.live is not None for batch in batches)


def settle(live: bool) -> None:
    """A worker's start: import what a batch needs, then set every object alive so far aside from the
    garbage collector (``gc.freeze``). The libraries' hundred thousand objects are never garbage, yet
    each full collection (the automatic ones during an analysis, and ``release_memory``'s after each
    batch) walked them all: about 8 % of a worker's analysis time."""
    import analyzer.pipeline
    import analyzer.render.parts

    if live:
        import analyzer.sources.google_clients
        import analyzer.sources.inventory  # noqa: F401

    gc.collect()
    gc.freeze()


TRIM_ABOVE_MIB = 1024  # a worker this large after a batch hands glibc's free memory back to the system


def release_memory() -> None:
    """Free a finished batch: frames and views hold reference cycles. glibc keeps the freed memory in
    its arenas (those of the threads that fetched the batch too) and the next batch reuses it; handing
    it back after every batch (``malloc_trim``) only made the next one fault the same pages in again
    (a third of a worker's system time; 100 service-months: 340 k minor faults against 220 k) without
    lowering its peak (a batch's large arrays are mapped apart and unmapped when freed). It is handed
    back only once the worker has grown past ``TRIM_ABOVE_MIB``, should a batch leave that much behind."""
    gc.collect()
    if _LIBC is not None and resident_mib() > TRIM_ABOVE_MIB:
        _LIBC.malloc_trim(0)


def resident_mib() -> float:
    """This process's resident memory (Linux), 0 where /proc does not say."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return 0.0


def _libc() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, musl): nothing to trim
        return None


_LIBC = _libc()


def run_batches(plan: Plan, config: AnalysisConfig, summarize: Summarize[T], *, workers: int = 1,
                progress: BatchProgress | None = None) -> Iterator[Outcome[T]]:
    """Each batch's outcome, in plan order; ``workers`` processes when there is more than one batch."""
    batches = plan.batches
    if workers <= 1 or len(batches) <= 1:
        for done, batch in enumerate(batches, 1):
            outcome = run_batch(batch, config, summarize)
            _report(progress, done, len(batches), batch)
            yield outcome
        return
    # spawn, not fork: gRPC channels and threads in this process must not be copied into workers.
    with ProcessPoolExecutor(max_workers=min(workers, len(batches)), mp_context=get_context("spawn"),
                             initializer=settle, initargs=(_live(batches),)) as pool:
        yield from _ordered(pool, batches, config, summarize, progress, window=2 * workers)


def _ordered(pool: ProcessPoolExecutor, batches: Sequence[Batch], config: AnalysisConfig, summarize: Summarize[T],
             progress: BatchProgress | None, *, window: int) -> Iterator[Outcome[T]]:
    """Keep at most ``window`` batches in flight (finished ones wait in memory only until their turn)."""
    pending: dict[int, Future[Outcome[T]]] = {}
    submitted = 0
    for index in range(len(batches)):
        while submitted < len(batches) and submitted < index + window:
            pending[submitted] = pool.submit(run_batch, batches[submitted], config, summarize)
            submitted += 1
        outcome = pending.pop(index).result()
        _report(progress, index + 1, len(batches), batches[index])
        yield outcome


def _report(progress: BatchProgress | None, done: int, total: int, batch: Batch) -> None:
    if progress is None:
        return
    names = [k.service for k in batch.keys]
    label = f"{names[0]} … {names[-1]}" if len(names) > 1 else (names[0] if names else "no service")
    progress(done, total, f"{len(names)} services ({label})")


@dataclass(slots=True)
class Collected(Generic[T]):
    """Every batch's summary in plan order, and what was met where no summary could be made."""

    summaries: list[T]
    problems: list[Problem]  # problems of batches that gave no summary
    has_data: bool  # some batch had metrics


def collect(plan: Plan, config: AnalysisConfig, summarize: Summarize[T], *, workers: int,
            progress: BatchProgress | None = None) -> Collected[T]:
    """Run every batch and gather the summaries; the plan's scratch files are removed after."""
    run: Collected[T] = Collected([], [], False)
    try:
        for outcome in run_batches(plan, config, summarize, workers=workers, progress=progress):
            run.has_data |= outcome.has_data
            if outcome.summary is None:
                run.problems.extend(outcome.problems)
            else:
                run.summaries.append(outcome.summary)
    finally:
        plan.close()
    return run


def no_data(plan: Plan, problems: Sequence[Problem]) -> NoDataError:
    """The error of a run in which no batch had any metric."""
    detail = "; ".join(f"{p.subject}: {p.message}" for p in problems[:5])
    more = f" and {len(problems) - 5} more" if len(problems) > 5 else ""
    return NoDataError(
        f"no usable Cloud Run metrics in {plan.origin or 'the input'}" + (f" ({detail}{more})" if detail else ""),
        hint="check the window (--days/--start/--end), the project and service names, and that the "
             "input holds run.googleapis.com/ time series",
    )


@dataclass(slots=True)
class ReportRun:
    """A batched report's parts and the problems met outside them."""

    parts: list[Any]  # render.parts.ReportPart, one per batch that knew a service
    problems: list[Problem]


def report_parts(plan: Plan, config: AnalysisConfig, *, generated_at: datetime, workers: int,
                 progress: BatchProgress | None = None, digest_charts: bool = False) -> ReportRun:
    """Analyze every batch of ``plan`` into a ``ReportPart`` (the fleet's layout shared by all), in order;
    ``digest_charts``: also draw the digest's chart of each service with findings.
    Raises NoDataError when no batch had any metric."""
    from functools import partial

    from analyzer.render.parts import render_part, report_layout

    layout = report_layout(key for batch in plan.batches for key in batch.keys)
    summarize = partial(render_part, generated_at=generated_at, layout=layout, digest_charts=digest_charts)
    run = collect(plan, config, summarize, workers=workers, progress=progress)
    if not run.has_data:
        raise no_data(plan, run.problems + [p for part in run.summaries for p in part.problems])
    return ReportRun(run.summaries, run.problems)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


__all__ = [
    "Batch",
    "Collected",
    "LiveBatch",
    "Outcome",
    "Plan",
    "ReportRun",
    "collect",
    "default_workers",
    "load_batch",
    "plan_listed",
    "plan_live",
    "plan_raw",
    "plan_snapshot",
    "report_parts",
    "run_batches",
    "services_per_batch",
]
