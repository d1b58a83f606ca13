"""The columnar protobuf parser equals the REST JSON parser on every page shape.

Live pages are parsed straight from protobuf (``sources/columnar.py``) while snapshots are parsed
from the REST JSON that ``fetch`` writes (``sources/restjson.py``); both must give the same
``RawSeries``, so a live run and its replayed snapshot give the same findings.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings

from analyzer.model import RawSeries
from analyzer.sources import columnar, restjson
from tests.test_live import _pages


def _parsed(parse: Any, message: Any) -> list[RawSeries] | str:
    try:
        return list(parse(message, source="s"))
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        return f"malformed: {type(exc).__name__}"


def _same_series(a: RawSeries, b: RawSeries) -> None:
    for name in ("metric", "metric_kind", "value_type", "project", "region", "service", "revision",
                 "metric_labels"):
        assert getattr(a, name) == getattr(b, name), name
    np.testing.assert_array_equal(a.start_times, b.start_times)
    np.testing.assert_array_equal(a.end_times, b.end_times)
    if a.values is not None or b.values is not None:
        assert a.values is not None and b.values is not None
        np.testing.assert_array_equal(a.values, b.values)
    else:
        ha, hb = a.histograms, b.histograms
        assert ha is not None and hb is not None
        for name in ("bounds", "counts", "count", "mean", "range_min", "range_max"):
            np.testing.assert_array_equal(getattr(ha, name), getattr(hb, name), err_msg=name)


def check_page(page: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # overflowing bucket bounds, in both parsers alike
        _compare_page(page)


def _compare_page(page: Any) -> None:
    body = json_format.MessageToDict(page)
    for message, ts in zip(body.get("timeSeries", []), page.time_series, strict=True):
        from_json = _parsed(restjson.parse_time_series, message)
        from_proto = _parsed(columnar.parse_time_series, ts)
        if isinstance(from_json, str) or isinstance(from_proto, str):
            assert isinstance(from_json, str) and isinstance(from_proto, str), (from_json, from_proto)
            continue
        assert len(from_json) == len(from_proto)
        for a, b in zip(from_json, from_proto, strict=True):
            _same_series(a, b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_pages())
def test_protobuf_parser_equals_rest_json_parser(page: Any) -> None:
    check_page(page)
