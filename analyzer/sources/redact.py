"""What a snapshot keeps of a Cloud Run Revision or Service: only the fields the analyzer reads.

Revision and Service bodies carry far more than the analyzer needs, some of it secret: literal
``containers[].env`` values, ``command`` and ``args``, volumes, the service account, VPC settings.
A snapshot is meant to be attached to bug reports, so ``fetch`` writes (and the snapshot reader
reads) a Revision or Service reduced to the fields below, by allow-list: a field Google adds later
is left out until the analyzer reads it. Time series bodies are kept whole (metric and resource
labels and numbers, nothing secret). A body that is neither a list page nor a resource (an error
body, something else) is passed on untouched, for the parser to name it.

A parser that starts reading a new Revision or Service field adds it here, or it will not reach
the analysis from a snapshot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

# field -> None (kept whole) or the allow-list of its own fields (applied to each item of a list)
Shape = Mapping[str, "Shape | None"]

CONTAINER: Shape = {
    "name": None,
    "image": None,
    "ports": None,
    "resources": {"limits": None, "cpuIdle": None, "startupCpuBoost": None},
}
REVISION: Shape = {
    "name": None,
    "service": None,
    "createTime": None,
    "labels": None,  # shown in the report (commit, ticket): the same text the report shows
    "annotations": None,  # run.googleapis.com/cpu-throttling decides the billing mode; shown too
    "scaling": {"minInstanceCount": None, "maxInstanceCount": None},
    "maxInstanceRequestConcurrency": None,
    "containers": CONTAINER,
}
TRAFFIC: Shape = {"type": None, "type_": None, "revision": None, "percent": None}  # to_dict says type_
SERVICE: Shape = {
    "name": None,
    "scaling": {"minInstanceCount": None},  # a service-level floor, shared by the revisions taking traffic
    "traffic": TRAFFIC,
    "trafficStatuses": TRAFFIC,
    "latestReadyRevision": None,  # what a LATEST traffic target means
}
LIST_KEYS = {"revisions": REVISION, "services": SERVICE}


@lru_cache(maxsize=256)
def _camel(key: str) -> str:
    """proto3 JSON accepts snake_case spellings too: compare keys in camelCase."""
    return re.sub(r"_([a-z0-9])", lambda m: m[1].upper(), key)


def _reduce(value: Any, shape: Shape | None) -> Any:
    if shape is None:
        return value
    if isinstance(value, list):
        return [_reduce(item, shape) for item in value]
    if not isinstance(value, Mapping):
        return value  # a malformed resource: the parser reports it
    return {key: _reduce(item, shape[_camel(key)]) for key, item in value.items() if _camel(key) in shape}


def _is_resource(page: Mapping[str, Any], sub: str) -> bool:
    name = str(page.get("name", ""))
    return "/revisions/" in name if sub == "revisions" else "/services/" in name and "/revisions/" not in name


def _reduce_page(page: Any, sub: str) -> Any:
    shape = LIST_KEYS[sub]
    if not isinstance(page, Mapping):
        return page
    if _is_resource(page, sub):
        return _reduce(page, shape)
    if sub in page:
        return {sub: _reduce(page[sub], shape)}
    return page


def keep_read_fields(sub: str, body: Any) -> Any:
    """``body`` (of snapshot kind ``sub``) with each Revision or Service reduced to the fields read.

    A ``revisions.list`` / ``services.list`` page keeps only its list (no page token), an array of
    pages each page, a single resource its own read fields; time series bodies are returned as is.
    """
    if sub not in LIST_KEYS:
        return body
    if isinstance(body, list):
        return [_reduce_page(page, sub) for page in body]
    return _reduce_page(body, sub)
