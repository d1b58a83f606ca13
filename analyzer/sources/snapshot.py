"""Snapshot directories: Google's own REST JSON response bodies on disk, read and written.

Layout (see docs/snapshot-format.md)::

    DIR/timeSeries/*.json   bodies of Cloud Monitoring v3 projects.timeSeries.list responses
    DIR/revisions/*.json    bodies of Cloud Run Admin v2 revisions.list responses
    DIR/services/*.json     (optional) bodies of services.list responses or single Service resources
    DIR/manifest.json       (optional) {"window": {"start": T, "end": T}, ...} written by `fetch`

A file that cannot be read is recorded as a Problem naming the file; every other file is still read.
Snapshots come from strangers (bug reports, shared folders), so the reader trusts nothing in them:
it reads only regular files inside the directory (no links out of it, no devices or FIFOs), at most
``MAX_FILE_BYTES`` each, rejects numbers JSON cannot hold (``1e999``, 5,000-digit integers) and
nesting Python cannot parse, keeps only the Revision and Service fields the analyzer reads
(sources/redact.py), and turns any failure to parse one file into a Problem naming it.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from analyzer.errors import InputError
from analyzer.model import Problem, RawData
from analyzer.sources import redact, restjson
from analyzer.sources.duplicates import drop_duplicate_series

KNOWN_METRICS = frozenset(
    {
        "container/memory/utilizations",
        "container/memory/usage",
        "container/cpu/utilizations",
        "container/instance_count",
        "request_count",
        "request_latencies",
        "container/billable_instance_time",
        "container/cpu/allocation_time",
        "container/memory/allocation_time",
        "container/max_request_concurrencies",
        "container/startup_latencies",
    }
)
SUBDIRS = ("timeSeries", "revisions", "services")
# One timeSeries.list page of 100,000 distribution points is about 40 MB of JSON; parsed, a file
# takes several times its size in memory.
MAX_FILE_BYTES = 128 * 2**20
# What a bad file's parse can raise besides InputError: data of the wrong shape or out of range.
PARSE_ERRORS = (ValueError, TypeError, KeyError, IndexError, AttributeError, ArithmeticError, RecursionError)


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:24]} is out of range")
    return number


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _read_regular(path: Path, root: Path) -> bytes:
    """The bytes of ``path`` if it is a regular file inside ``root`` no larger than MAX_FILE_BYTES."""
    real = path.resolve()
    if not real.is_relative_to(root.resolve()):
        raise InputError(f"{path}: a link to {real}, outside the snapshot directory: not read",
                         hint="copy the file into the snapshot instead of linking to it")
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc.strerror})") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"{path}: not a regular file (a directory, device, FIFO or socket): not read",
                             hint="a snapshot holds only .json files")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES and (chunk := os.read(fd, 1 << 20)):
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise InputError(f"{path}: larger than {MAX_FILE_BYTES // 2**20} MiB: not read",
                         hint="save each page of a paged response as its own file")
    return b"".join(chunks)


def _load(path: Path, root: Path) -> Any:
    """The JSON document in ``path`` (see _read_regular for which files are read)."""
    data = _read_regular(path, root)
    try:
        return json.loads(data.decode("utf-8"), parse_float=_finite, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except RecursionError as exc:
        raise InputError(f"{path}: nested too deeply to parse") from exc
    except ValueError as exc:  # a number out of range or with thousands of digits
        raise InputError(f"{path}: not readable JSON ({exc})") from exc


def _files(directory: Path, sub: str) -> list[Path]:
    folder = directory / sub
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def read_snapshot(directory: Path) -> RawData:
    """Read every file of a snapshot; unreadable files and unknown metrics become Problems."""
    if not directory.is_dir():
        raise InputError(
            f"snapshot directory {directory} does not exist",
            hint="pass a directory holding timeSeries/*.json and revisions/*.json (docs/snapshot-format.md)",
        )
    data = RawData(origin=f"snapshot {directory}")
    if not any(_files(directory, sub) for sub in SUBDIRS):
        raise InputError(
            f"{directory} holds no timeSeries/*.json, revisions/*.json or services/*.json",
            hint="see docs/snapshot-format.md for the layout, or run `cloudrun-analyzer fetch` to make one",
        )
    _read_manifest(directory, data)
    for sub in SUBDIRS:
        for path in _files(directory, sub):
            try:
                body = redact.keep_read_fields(sub, _load(path, directory))
            except InputError as exc:
                data.problems.append(Problem(str(path), exc.message, exc.hint or "fix or remove the file"))
                continue
            _ingest_file(data, sub, path, body)
    drop_duplicate_series(data)
    return data


def _ingest_file(data: RawData, sub: str, path: Path, body: Any) -> None:
    """Ingest one file's body whole or not at all: a parse failure anywhere in it is one Problem."""
    read = RawData()
    try:
        ingest(read, sub, str(path), body)
    except PARSE_ERRORS as exc:
        data.problems.append(Problem(str(path), f"could not be parsed, so none of it was read: "
                                                f"{type(exc).__name__}: {str(exc)[:200]}", "fix or remove the file"))
        return
    data.series.extend(read.series)
    data.revisions.extend(read.revisions)
    data.services.extend(read.services)
    data.service_infos.extend(read.service_infos)
    data.problems.extend(read.problems)


def ingest(data: RawData, sub: str, source: str, body: Any) -> None:
    """Add one response body (of kind ``sub``: timeSeries, revisions or services) to ``data``.

    Shared by the snapshot reader, the demo and the live source, so all three read alike.
    """
    consume = {"timeSeries": _add_series, "revisions": _add_revisions, "services": _add_services}[sub]
    try:
        consume(data, body, source)
    except InputError as exc:
        data.problems.append(Problem(source, exc.message, exc.hint or "fix or remove the file"))


def _read_manifest(directory: Path, data: RawData) -> None:
    path = directory / "manifest.json"
    if not path.exists():
        return
    try:
        window = _load(path, directory).get("window") or {}
        if window.get("start"):
            data.window_start = restjson.parse_time(window["start"])
        if window.get("end"):
            data.window_end = restjson.parse_time(window["end"])
    except (InputError, ValueError, AttributeError) as exc:
        data.problems.append(Problem(str(path), f"manifest ignored: {exc}", "fix or remove manifest.json"))


def _full_type(metric: str) -> str:
    """The metric type as the API names it (RawSeries.metric drops the run.googleapis.com/ prefix)."""
    if not metric:
        return "(no metric.type)"
    return metric if "." in metric.split("/", 1)[0] else restjson.METRIC_PREFIX + metric


def _add_series(data: RawData, body: Any, path: str) -> None:
    unknown: dict[str, int] = {}
    empty: dict[str, int] = {}
    unplaced: dict[str, int] = {}  # missing resource label -> series
    messages, warnings = restjson.time_series_of(body, source=path)
    data.problems.extend(Problem(path, warning, "re-run the query for this window") for warning in warnings)
    for index, message in enumerate(messages):
        try:
            parsed = restjson.parse_time_series(message, source=path)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            data.problems.append(Problem(f"{path} timeSeries[{index}]", f"malformed series skipped: {exc}"))
            continue
        metric = _full_type(str(restjson.field(restjson.field(message, "metric") or {}, "type", "")))
        if not parsed or not any(len(s.end_times) for s in parsed):
            empty[metric] = empty.get(metric, 0) + 1
            continue
        series = parsed[0]
        if series.metric not in KNOWN_METRICS:
            unknown[metric] = unknown.get(metric, 0) + 1
            continue
        if not series.service:
            data.problems.append(
                Problem(f"{path} timeSeries[{index}]", "series has no resource.labels.service_name: skipped",
                        "query resource.type = \"cloud_run_revision\" without reducing away service_name")
            )
            continue
        for label, value in (("location", series.region), ("revision_name", series.revision)):
            if not value:
                unplaced[label] = unplaced.get(label, 0) + 1
        data.series.extend(parsed)
    _say_what_was_left(data, path, unknown, empty, unplaced)


def _say_what_was_left(data: RawData, path: str, unknown: dict[str, int], empty: dict[str, int],
                       unplaced: dict[str, int]) -> None:
    """One Problem per kind of series of a file that was skipped or read without its place."""
    for metric, count in sorted(unknown.items()):
        data.problems.append(
            Problem(path, f"unknown metric {metric} ({count} series) ignored",
                    "the analyzer reads these run.googleapis.com/ metrics: "
                    + ", ".join(restjson.METRIC_PREFIX + m for m in sorted(KNOWN_METRICS)))
        )
    if empty:
        listed = ", ".join(f"{metric} ({count})" for metric, count in sorted(empty.items()))
        data.problems.append(Problem(path, f"series without points skipped: {listed}",
                                     "the window may miss the data: check the interval of the query"))
    if unplaced:
        missing = " and ".join(f"resource.labels.{label} ({count} series)" for label, count in sorted(unplaced.items()))
        data.problems.append(Problem(
            path, f"series read without {missing}: their Console links lead to the project's services, and "
                  "without a revision_name a deploy cannot be named",
            "keep resource.labels.location and resource.labels.revision_name when aggregating (groupByFields)"))


def _add_revisions(data: RawData, body: Any, path: str) -> None:
    for index, message in enumerate(restjson.revisions_of(body, source=path)):
        try:
            data.revisions.append(restjson.parse_revision(message))
        except (ValueError, TypeError, AttributeError) as exc:
            data.problems.append(Problem(f"{path} revisions[{index}]", f"malformed revision skipped: {exc}"))


def _add_services(data: RawData, body: Any, path: str) -> None:
    for index, message in enumerate(restjson.services_of(body, source=path)):
        try:
            info = restjson.parse_service(message)
            data.services.append(info.key)
            data.service_infos.append(info)
        except (ValueError, TypeError, AttributeError) as exc:
            data.problems.append(Problem(f"{path} services[{index}]", f"malformed service skipped: {exc}"))


def write_snapshot(
    directory: Path,
    documents: Iterable[tuple[str, str, Any]],
    *,
    manifest: Mapping[str, Any] | None = None,
) -> list[Path]:
    """Write (subdir, file stem, body) documents as a snapshot; returns the files written. Revisions
    and services keep only the fields the analyzer reads (no env values, no secrets: redact.py)."""
    written: list[Path] = []
    for sub, stem, body in documents:
        if sub not in SUBDIRS:
            raise ValueError(f"unknown snapshot subdirectory {sub!r}")
        folder = directory / sub
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.json"
        kept = redact.keep_read_fields(sub, body)
        path.write_text(json.dumps(kept, separators=(",", ":")), encoding="utf-8")
        written.append(path)
    if manifest is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written
