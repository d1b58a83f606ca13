"""Parse Google's REST JSON (proto3 JSON mapping) bodies into plain data.

Reads the body of a Cloud Monitoring v3 ``projects.timeSeries.list`` response and of a Cloud Run
Admin API v2 ``revisions.list`` / ``services.list`` response, exactly as curl returns them: camelCase
keys, INT64 as strings, default values omitted. snake_case keys (``preserving_proto_field_name``) are
accepted too, as proto3 JSON parsers must.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import numpy as np

from analyzer.errors import InputError
from analyzer.model import (
    ContainerInfo,
    Distribution,
    Histograms,
    RawSeries,
    RevisionInfo,
    ServiceInfo,
    ServiceKey,
    metric_kind_name,
    value_type_name,
)

METRIC_PREFIX = "run.googleapis.com/"
REVISION_NAME = re.compile(
    r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/services/(?P<service>[^/]+)"
    r"/revisions/(?P<revision>[^/]+)$"
)
SERVICE_NAME = re.compile(r"^projects/(?P<project>[^/]+)/locations/(?P<region>[^/]+)/services/(?P<service>[^/]+)$")


@lru_cache(maxsize=256)
def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def field(message: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """A proto3 JSON field by its camelCase name, falling back to the snake_case spelling."""
    if name in message:
        return message[name]
    return message.get(_snake(name), default)


def parse_time(text: str) -> datetime:
    """RFC 3339 with any number of fractional digits, as Google emits (``...:00.123456789Z``)."""
    match = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text.strip())
    if not match:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    base, frac, zone = match.groups()
    micros = f"{(frac or '.0')[1:7]:0<6}"
    stamp = datetime.fromisoformat(f"{base}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return stamp.astimezone(UTC)


def format_time(stamp: datetime) -> str:
    return stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=1 << 16)
def _epoch(text: str) -> int:
    # The same minute stamps recur in every series of a response, so parsing each once pays.
    return int(parse_time(text).timestamp())


# Cloud Monitoring allows 200 buckets in a custom distribution and Cloud Run's own use fewer: far
# more is a hostile or broken file, and would allocate gigabytes (numFiniteBuckets: 3e9).
MAX_BUCKETS = 4096


def _bucket_count(buckets: Mapping[str, Any]) -> int:
    raw = field(buckets, "numFiniteBuckets", 0)
    n = int(raw) if isinstance(raw, int | str) or (isinstance(raw, float) and raw.is_integer()) else -1
    if not 0 <= n <= MAX_BUCKETS:
        raise ValueError(f"numFiniteBuckets {str(raw)[:24]} is not an integer in 0..{MAX_BUCKETS}")
    return n


def bucket_bounds(options: Mapping[str, Any]) -> np.ndarray:
    """The finite boundaries between buckets (bucket 0 is underflow, the last overflow); at most
    MAX_BUCKETS of them."""
    if (linear := field(options, "linearBuckets")) is not None:
        n = _bucket_count(linear)
        width = float(field(linear, "width", 0.0))
        offset = float(field(linear, "offset", 0.0))
        return offset + width * np.arange(n + 1, dtype=np.float64)
    if (expo := field(options, "exponentialBuckets")) is not None:
        n = _bucket_count(expo)
        growth = float(field(expo, "growthFactor", 0.0))
        scale = float(field(expo, "scale", 0.0))
        return scale * growth ** np.arange(n + 1, dtype=np.float64)
    if (explicit := field(options, "explicitBuckets")) is not None:
        bounds = field(explicit, "bounds", [])
        if len(bounds) > MAX_BUCKETS + 1:
            raise ValueError(f"{len(bounds)} explicit bucket bounds, more than {MAX_BUCKETS + 1}")
        return np.asarray([float(b) for b in bounds], dtype=np.float64)
    raise ValueError(f"unknown bucketOptions {sorted(options)}")


_BOUNDS: dict[str, np.ndarray] = {}


def _cached_bounds(key: str, options: Mapping[str, Any]) -> np.ndarray:
    """Every point of a series repeats the same bucketOptions: compute its bounds once."""
    bounds = _BOUNDS.get(key)
    if bounds is None:
        if len(_BOUNDS) > 1024:
            _BOUNDS.clear()
        bounds = _BOUNDS[key] = bucket_bounds(options)
        bounds.setflags(write=False)
    return bounds


def parse_distribution(value: Mapping[str, Any]) -> Distribution:
    """One distribution value on its own (series are parsed column-wise by ``parse_time_series``)."""
    ((_, hist),) = _histograms([value])
    low, high = float(hist.range_min[0]), float(hist.range_max[0])
    return Distribution(
        count=int(hist.count[0]),
        mean=float(hist.mean[0]),
        bounds=hist.bounds,
        counts=hist.counts[0].astype(np.int64),
        range_min=None if np.isnan(low) else low,
        range_max=None if np.isnan(high) else high,
    )


def _scalar(value: Mapping[str, Any]) -> float:
    for name in ("doubleValue", "int64Value", "boolValue"):
        raw = field(value, name)
        if raw is not None:
            return float(raw)
    if not value:  # proto3 JSON omits zero values entirely
        return 0.0
    raise ValueError(f"unsupported point value {sorted(value)}")


def _times(points: list[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.empty(len(points), dtype=np.int64)
    ends = np.empty(len(points), dtype=np.int64)
    for i, point in enumerate(points):
        interval = field(point, "interval") or {}
        ends[i] = _epoch(field(interval, "endTime"))
        start_text = field(interval, "startTime")
        starts[i] = _epoch(start_text) if start_text else ends[i]
    return starts, ends


def _histograms(dists: list[Mapping[str, Any]]) -> list[tuple[np.ndarray, Histograms]]:
    """Distribution values as column arrays, one Histograms per bucket layout met (usually one);
    returns (point indices, histograms) pairs."""
    layouts: dict[str, list[int]] = {}
    for i, dist in enumerate(dists):
        options = field(dist, "bucketOptions")
        has_buckets = options is not None and bool(field(dist, "bucketCounts"))
        layouts.setdefault(repr(options) if has_buckets else "", []).append(i)
    out = []
    for key, members in layouts.items():
        first = dists[members[0]]
        bounds = _cached_bounds(key, field(first, "bucketOptions")) if key else np.empty(0)
        n, width = len(members), len(bounds) + 1
        counts = np.zeros((n, width))
        count = np.empty(n)
        mean = np.empty(n)
        low = np.full(n, np.nan)
        high = np.full(n, np.nan)
        for row, i in enumerate(members):
            dist = dists[i]
            count[row] = float(field(dist, "count", 0))
            mean[row] = float(field(dist, "mean", 0.0))
            if key:
                raw = field(dist, "bucketCounts")
                if len(raw) > width:
                    raise ValueError(f"{len(raw)} bucketCounts for {width} buckets")
                counts[row, : len(raw)] = np.asarray(raw, dtype=np.float64)  # missing trailing counts are 0
            else:
                counts[row, 0] = count[row]
            value_range = field(dist, "range")
            if value_range:
                low[row] = float(field(value_range, "min", 0.0))
                high[row] = float(field(value_range, "max", 0.0))
        out.append((np.asarray(members), Histograms(bounds, counts, count, mean, low, high)))
    return out


def parse_time_series(series: Mapping[str, Any], *, source: str) -> list[RawSeries]:
    """One ``TimeSeries`` message (one RawSeries per bucket layout in it). Raises ValueError on
    anything malformed."""
    metric = field(series, "metric") or {}
    resource = field(series, "resource") or {}
    labels = field(resource, "labels") or {}
    # Enums come by name (REST) or by number (the client's to_dict): one mapping for every parser.
    raw_type = field(series, "valueType")
    value_type = "" if raw_type in (None, "") else value_type_name(raw_type)
    value_type = "" if value_type == "VALUE_TYPE_UNSPECIFIED" else value_type
    metric_kind = metric_kind_name(field(series, "metricKind", "GAUGE"))
    points = list(reversed(field(series, "points") or []))  # the API returns newest first
    starts, ends = _times(points)
    values = [field(p, "value") or {} for p in points]
    is_distribution = value_type == "DISTRIBUTION" or any(field(v, "distributionValue") is not None for v in values)

    def make(index: np.ndarray, *, scalars: np.ndarray | None = None, hist: Histograms | None = None) -> RawSeries:
        order = np.argsort(ends[index], kind="stable")
        if hist is not None:
            hist = Histograms(hist.bounds, hist.counts[order], hist.count[order], hist.mean[order],
                              hist.range_min[order], hist.range_max[order])
        return RawSeries(
            metric=str(field(metric, "type", "")).removeprefix(METRIC_PREFIX),
            metric_kind=metric_kind,
            value_type="DISTRIBUTION" if is_distribution else (value_type or "DOUBLE"),
            project=str(labels.get("project_id", "")),
            region=str(labels.get("location", "")),
            service=str(labels.get("service_name", "")),
            revision=str(labels.get("revision_name", "")),
            metric_labels={str(k): str(v) for k, v in (field(metric, "labels") or {}).items()},
            start_times=starts[index][order],
            end_times=ends[index][order],
            values=scalars[order] if scalars is not None else None,
            histograms=hist,
            source=source,
        )

    if not is_distribution:
        return [make(np.arange(len(points)), scalars=np.asarray([_scalar(v) for v in values], dtype=np.float64))]
    dists = [field(v, "distributionValue") or {} for v in values]
    return [make(index, hist=hist) for index, hist in _histograms(dists)]


ERROR_HINTS = {
    "timeSeries": "fix the request and save the timeSeries.list response again (docs/snapshot-format.md)",
    "revisions": "list revisions region by region: the Admin API refuses locations/- "
                 "(docs/snapshot-format.md has a curl loop); then save the response again",
    "services": "list services region by region: the Admin API refuses locations/- "
                "(docs/snapshot-format.md has a curl loop); then save the response again",
}


def raise_if_error_body(page: Mapping[str, Any], *, source: str, kind: str) -> None:
    """A saved ``{"error": {...}}`` body (what the REST API answers a refused call) is an InputError
    naming the status and message, never a response with nothing in it."""
    error = page.get("error")
    if error is None or not isinstance(error, Mapping | str):
        return
    if isinstance(error, str):  # OAuth-style {"error": "invalid_token", "error_description": ...}
        detail = f"{error}: {page.get('error_description', '')}".rstrip(": ")
    else:
        status = field(error, "status") or field(error, "code") or "error"
        detail = f"{status} {field(error, 'message', '')}".strip()
    raise InputError(f"{source}: holds an API error, not a {kind} response: {detail}", hint=ERROR_HINTS[kind])


def time_series_of(body: Any, *, source: str) -> tuple[list[Mapping[str, Any]], list[str]]:
    """The ``TimeSeries`` messages of one file, and warnings about it.

    Accepts a ``timeSeries.list`` response body, a JSON array of such pages, a single ``TimeSeries``
    message, or an array of them (what other tools write when they save series one by one).
    A response that reports ``executionErrors`` still has its series read: the warning says the data
    may be partial.
    """
    pages = body if isinstance(body, list) else [body]
    found: list[Mapping[str, Any]] = []
    warnings: list[str] = []
    for page in pages:
        if not isinstance(page, Mapping):
            raise InputError(f"{source}: expected a timeSeries.list response object, got {type(page).__name__}")
        raise_if_error_body(page, source=source, kind="timeSeries")
        if field(page, "points") is not None or (field(page, "metric") is not None and "timeSeries" not in page):
            found.append(page)  # a bare TimeSeries message
            continue
        if field(page, "executionErrors"):
            warnings.append(f"the response reports executionErrors, so its data may be partial: "
                            f"{field(page, 'executionErrors')}")
        series = field(page, "timeSeries", [])
        if not isinstance(series, list):
            raise InputError(f"{source}: 'timeSeries' is not a list")
        if not series and page and not set(page) <= {"timeSeries", "nextPageToken", "executionErrors", "unit",
                                                      "next_page_token", "time_series", "execution_errors"}:
            raise InputError(f"{source}: not a timeSeries.list response (keys: {', '.join(sorted(page)[:6])})",
                             hint="put Cloud Monitoring projects.timeSeries.list response bodies in timeSeries/")
        found.extend(series)
    return found, warnings


def _cpu(text: str | None) -> float | None:
    if not text:
        return None
    text = str(text).strip()
    return float(text[:-1]) / 1000.0 if text.endswith("m") else float(text)


_MEMORY_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def memory_gib(text: str | None) -> float | None:
    """A Kubernetes-style quantity ("512Mi", "1Gi", "2G", "536870912") in GiB."""
    if not text:
        return None
    match = re.fullmatch(r"\s*([0-9.]+)\s*([KMGT]i?|k)?\s*", str(text))
    if not match:
        raise ValueError(f"not a memory quantity: {text!r}")
    number, unit = match.groups()
    return float(number) * (_MEMORY_UNITS[unit] if unit else 1.0) / 2**30


def _billing_mode(annotations: Mapping[str, str], resources: Mapping[str, Any] | None) -> bool | None:
    """True for request-based billing (CPU only during requests), False for instance-based."""
    throttling = annotations.get("run.googleapis.com/cpu-throttling")
    if throttling is not None:
        return throttling.strip().lower() != "false"
    if resources is None:
        return None
    cpu_idle = field(resources, "cpuIdle")
    # proto3 JSON omits a false bool: resources present without cpuIdle means instance-based.
    return bool(cpu_idle) if cpu_idle is not None else False


def parse_revision(message: Mapping[str, Any]) -> RevisionInfo:
    name = str(field(message, "name", ""))
    match = REVISION_NAME.match(name)
    if not match:
        raise ValueError(f"revision name {name!r} is not projects/P/locations/L/services/S/revisions/R")
    containers = field(message, "containers") or []
    ingress = containers[0] if containers else {}
    # The ingress container is the one with ports; the first otherwise.
    for container in containers:
        if field(container, "ports"):
            ingress = container
            break
    resources = field(ingress, "resources")
    limits = (field(resources, "limits") if resources else None) or {}
    described = tuple(_container(c, ingress=c is ingress) for c in containers)
    scaling = field(message, "scaling") or {}
    annotations = {str(k): str(v) for k, v in (field(message, "annotations") or {}).items()}
    create = field(message, "createTime")
    max_instances = field(scaling, "maxInstanceCount")
    concurrency = field(message, "maxInstanceRequestConcurrency")
    return RevisionInfo(
        project=match["project"],
        region=match["region"],
        service=match["service"],
        revision=match["revision"],
        create_time=parse_time(create) if create else None,
        cpu_limit=_cpu(limits.get("cpu")),
        memory_limit_gib=memory_gib(limits.get("memory")),
        request_based_billing=_billing_mode(annotations, resources),
        min_instances=int(field(scaling, "minInstanceCount", 0) or 0),
        # 0 is proto3's "not set" (the client's to_dict writes it out): no limit, not a limit of 0.
        max_instances=int(max_instances) if max_instances else None,
        max_concurrency=int(concurrency) if concurrency else None,
        image=str(field(ingress, "image", "")),
        labels={str(k): str(v) for k, v in (field(message, "labels") or {}).items()},
        annotations=annotations,
        containers=described,
    )


def _container(message: Mapping[str, Any], *, ingress: bool) -> ContainerInfo:
    limits = field(field(message, "resources") or {}, "limits") or {}
    return ContainerInfo(
        name=str(field(message, "name", "")),
        ingress=ingress,
        cpu_limit=_cpu(limits.get("cpu")),
        memory_limit_gib=memory_gib(limits.get("memory")),
        image=str(field(message, "image", "")),
    )


def revisions_of(body: Any, *, source: str) -> list[Mapping[str, Any]]:
    """Revision resources of a revisions.list body, an array of pages, or single Revision resources."""
    pages = body if isinstance(body, list) else [body]
    found: list[Mapping[str, Any]] = []
    for page in pages:
        if not isinstance(page, Mapping):
            raise InputError(f"{source}: expected a revisions.list response object")
        raise_if_error_body(page, source=source, kind="revisions")
        if "/revisions/" in str(field(page, "name", "")):
            found.append(page)  # a single Revision (revisions.get)
            continue
        revisions = field(page, "revisions", [])
        if not isinstance(revisions, list):
            raise InputError(f"{source}: 'revisions' is not a list")
        _check_list_keys(page, "revisions", source)
        found.extend(revisions)
    return found


def services_of(body: Any, *, source: str) -> list[Mapping[str, Any]]:
    pages = body if isinstance(body, list) else [body]
    found: list[Mapping[str, Any]] = []
    for page in pages:
        if not isinstance(page, Mapping):
            raise InputError(f"{source}: expected a services.list response object")
        raise_if_error_body(page, source=source, kind="services")
        if "services" in page:
            found.extend(page["services"] or [])
        elif "name" in page:  # a single Service resource (services.get)
            found.append(page)
        else:
            _check_list_keys(page, "services", source)
    return found


def _check_list_keys(page: Mapping[str, Any], key: str, source: str) -> None:
    """An object that is no list response of ``key`` (an empty list response is ``{}``) is an error."""
    known = {key, "nextPageToken", "next_page_token", "unreachable"}
    if not set(page) <= known:
        raise InputError(f"{source}: not a {key}.list response (keys: {', '.join(sorted(page)[:6])})",
                         hint=f"put Cloud Run Admin API v2 {key}.list response bodies in {key}/")


def service_identity(message: Mapping[str, Any]) -> tuple[str, str, str]:
    name = str(field(message, "name", ""))
    match = SERVICE_NAME.match(name)
    if not match:
        raise ValueError(f"service name {name!r} is not projects/P/locations/L/services/S")
    return match["project"], match["region"], match["service"]


def parse_service(message: Mapping[str, Any]) -> ServiceInfo:
    """A v2 Service: its service-level min instances and where its traffic goes now."""
    key = ServiceKey(*service_identity(message))
    scaling = field(message, "scaling") or {}
    latest = str(field(message, "latestReadyRevision", "")).rsplit("/", 1)[-1]
    traffic: dict[str, float] = {}
    # trafficStatuses is what is applied; traffic what was asked for (the same once rolled out).
    for target in field(message, "trafficStatuses") or field(message, "traffic") or []:
        kind = str(target.get("type", target.get("type_", "")))
        revision = str(field(target, "revision", "")) or (latest if kind in ("1", _LATEST) else "")
        if revision:
            traffic[revision] = traffic.get(revision, 0.0) + float(field(target, "percent", 0) or 0)
    return ServiceInfo(key, int(field(scaling, "minInstanceCount", 0) or 0), traffic)


_LATEST = "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST"
