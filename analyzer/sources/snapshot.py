"""Snapshot directories: Google's own REST JSON response bodies on disk, read and written.

Layout (see docs/snapshot-format.md)::

    DIR/timeSeries/*.json   bodies of Cloud Monitoring v3 projects.timeSeries.list responses
    DIR/revisions/*.json    bodies of Cloud Run Admin v2 revisions.list responses
    DIR/services/*.json     (optional) bodies of services.list responses or single Service resources
    DIR/manifest.json       (optional) {"window": {"start": T, "end": T}, ...} written by `fetch`

A file that cannot be read is recorded as a Problem naming the file; every other file is still read.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from analyzer.errors import InputError
from analyzer.model import Problem, RawData, RawSeries
from analyzer.sources import restjson
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


def _load(path: Path) -> Any:
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        pass  # orjson refuses what Python's reader accepts (NaN literals, huge integers): let it judge
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: cannot be read ({exc})") from exc


def _files(directory: Path, sub: str) -> list[Path]:
    folder = directory / sub
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def check_directory(directory: Path) -> list[Path]:
    """The snapshot's body files in reading order; InputError when it is not a snapshot."""
    if not directory.is_dir():
        raise InputError(
            f"snapshot directory {directory} does not exist",
            hint="pass a directory holding timeSeries/*.json and revisions/*.json (docs/snapshot-format.md)",
        )
    files = [path for sub in SUBDIRS for path in _files(directory, sub)]
    if not files:
        raise InputError(
            f"{directory} holds no timeSeries/*.json, revisions/*.json or services/*.json",
            hint="see docs/snapshot-format.md for the layout, or run `cloudrun-analyzer fetch` to make one",
        )
    return files


def read_file(data: RawData, path: Path) -> None:
    """Add one body file of a snapshot to ``data``; a file that cannot be read becomes a Problem."""
    try:
        body = _load(path)
    except InputError as exc:
        data.problems.append(Problem(str(path), exc.message, exc.hint or "fix or remove the file"))
        return
    ingest(data, path.parent.name, str(path), body)


def read_snapshot(directory: Path) -> RawData:
    """Read every file of a snapshot; unreadable files and unknown metrics become Problems."""
    files = check_directory(directory)
    data = RawData(origin=f"snapshot {directory}")
    read_manifest(directory, data)
    for path in files:
        read_file(data, path)
    drop_duplicate_series(data)
    return data


def ingest(data: RawData, sub: str, source: str, body: Any) -> None:
    """Add one response body (of kind ``sub``: timeSeries, revisions or services) to ``data``.

    Shared by the snapshot reader, the demo and the live source, so all three read alike.
    """
    consume = {"timeSeries": _add_series, "revisions": _add_revisions, "services": _add_services}[sub]
    try:
        consume(data, body, source)
    except InputError as exc:
        data.problems.append(Problem(source, exc.message, exc.hint or "fix or remove the file"))


def read_manifest(directory: Path, data: RawData) -> None:
    path = directory / "manifest.json"
    if not path.exists():
        return
    try:
        window = _load(path).get("window") or {}
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
    messages, warnings = restjson.time_series_of(body, source=path)
    add_time_series(data, messages, restjson.parse_time_series, _rest_metric_type, path, warnings)


def _rest_metric_type(message: Any) -> str:
    return str(restjson.field(restjson.field(message, "metric") or {}, "type", ""))


ParseSeries = Callable[..., list[RawSeries]]


def add_time_series(
    data: RawData,
    messages: Iterable[Any],
    parse: ParseSeries,
    metric_type: Callable[[Any], str],
    path: str,
    warnings: Iterable[str] = (),
) -> None:
    """Parse ``TimeSeries`` messages (REST JSON dicts or protobuf, with the matching ``parse`` and
    ``metric_type``) into ``data``; malformed, empty and unknown series, series without a service, and
    series without their place (location, revision) become Problems."""
    unknown: dict[str, int] = {}
    empty: dict[str, int] = {}
    unplaced: dict[str, int] = {}  # missing resource label -> series
    data.problems.extend(Problem(path, warning, "re-run the query for this window") for warning in warnings)
    for index, message in enumerate(messages):
        try:
            parsed = parse(message, source=path)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            data.problems.append(Problem(f"{path} timeSeries[{index}]", f"malformed series skipped: {exc}"))
            continue
        metric = _full_type(metric_type(message))
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
    """Write (subdir, file stem, body) documents as a snapshot; returns the files written."""
    written: list[Path] = []
    for sub, stem, body in documents:
        if sub not in SUBDIRS:
            raise ValueError(f"unknown snapshot subdirectory {sub!r}")
        folder = directory / sub
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}.json"
        path.write_text(json.dumps(body, separators=(",", ":")), encoding="utf-8")
        written.append(path)
    if manifest is not None:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return written
