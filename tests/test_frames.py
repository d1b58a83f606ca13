"""Snapshot reading, REST JSON parsing, distribution percentiles and the tidy frame."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from analyzer.distributions import percentiles
from analyzer.errors import InputError
from analyzer.frames import build
from analyzer.model import RawData
from analyzer.sources import restjson
from analyzer.sources.snapshot import ingest, read_snapshot, write_snapshot
from tests.wire import T0, linear_distribution, revision, series


def _raw(*bodies: dict, revisions: list[dict] | None = None) -> RawData:
    data = RawData()
    for i, body in enumerate(bodies):
        ingest(data, "timeSeries", f"body{i}", body)
    if revisions:
        ingest(data, "revisions", "revs", {"revisions": revisions})
    return data


def test_percentiles_match_the_samples_within_one_bucket() -> None:
    rng = np.random.default_rng(1)
    samples = rng.uniform(0.2, 0.8, 5000)
    body = linear_distribution(list(samples))
    dist = restjson.parse_distribution(body["distributionValue"])
    got = percentiles(dist.counts[None, :], dist.bounds, (0.5, 0.95, 0.99))[0]
    want = np.quantile(samples, [0.5, 0.95, 0.99])
    assert np.all(np.abs(got - want) <= 0.01)


def test_percentiles_of_an_exponential_layout_and_empty_rows() -> None:
    bounds = 1.0 * 2.0 ** np.arange(5)  # 1, 2, 4, 8, 16
    counts = np.asarray([[0, 0, 10, 0, 0, 0], [0, 0, 0, 0, 0, 0]])
    got = percentiles(counts, bounds, (0.5, 1.0))
    assert got[0, 0] == pytest.approx(3.0)  # uniform inside [2, 4)
    assert got[0, 1] == pytest.approx(4.0)
    assert np.isnan(got[1]).all()


def test_trailing_bucket_counts_may_be_omitted() -> None:
    dist = restjson.parse_distribution(linear_distribution([0.1, 0.1, 0.2])["distributionValue"])
    assert len(dist.counts) == 102
    assert dist.counts.sum() == 3


def test_memory_distribution_frames_mean_and_percentiles() -> None:
    points = [(T0 + timedelta(minutes=m + 1), linear_distribution([0.30, 0.40, 0.50, 0.60, 0.70])) for m in range(10)]
    frames = build(_raw({"timeSeries": [series("container/memory/utilizations", points)]}), step_seconds=300)
    m = frames.metrics
    assert len(m) == 2
    assert m["mem_mean"].tolist() == pytest.approx([0.5, 0.5])
    assert m["mem_p50"].iloc[0] == pytest.approx(0.5, abs=0.01)
    assert m["mem_max"].iloc[0] == pytest.approx(0.71, abs=0.011)
    assert m["ts"].iloc[0].isoformat() == "2026-11-16T00:00:00+00:00"


def test_request_count_raw_delta_and_align_rate_give_the_same_rate() -> None:
    raw_points = [(T0 + timedelta(minutes=m + 1), {"int64Value": "120"}) for m in range(10)]
    rate_points = [(T0 + timedelta(minutes=m + 1), {"doubleValue": 2.0}) for m in range(10)]
    delta = build(_raw({"timeSeries": [series("request_count", raw_points, value_type="INT64",
                                                labels={"response_code_class": "2xx"})]}))
    rate = build(_raw({"timeSeries": [series("request_count", rate_points, kind="GAUGE", value_type="DOUBLE",
                                               labels={"response_code_class": "2xx"})]}))
    assert delta.metrics["req_rate"].tolist() == pytest.approx([2.0, 2.0])
    assert rate.metrics["req_rate"].tolist() == pytest.approx([2.0, 2.0])
    assert delta.metrics["requests"].sum() == 1200


def test_errors_instances_and_amounts() -> None:
    ok = [(T0 + timedelta(minutes=m + 1), {"int64Value": "90"}) for m in range(5)]
    bad = [(T0 + timedelta(minutes=m + 1), {"int64Value": "30"}) for m in range(5)]
    active = [(T0 + timedelta(minutes=m + 1), {"int64Value": str(2 + m % 2)}) for m in range(5)]
    idle = [(T0 + timedelta(minutes=m + 1), {"int64Value": "1"}) for m in range(5)]
    billable = [(T0 + timedelta(minutes=m + 1), {"doubleValue": 60.0}) for m in range(5)]
    body = {"timeSeries": [
        series("request_count", ok, value_type="INT64", labels={"response_code_class": "2xx"}),
        series("request_count", bad, value_type="INT64", labels={"response_code_class": "5xx"}),
        series("container/instance_count", active, kind="GAUGE", value_type="INT64", labels={"state": "active"}),
        series("container/instance_count", idle, kind="GAUGE", value_type="INT64", labels={"state": "idle"}),
        series("container/billable_instance_time", billable, value_type="DOUBLE"),
    ]}
    row = build(_raw(body)).metrics.iloc[0]
    assert row["req_rate"] == pytest.approx(600 / 300)
    assert row["err_rate"] == pytest.approx(150 / 300)
    assert row["inst_active"] == pytest.approx(12 / 5)
    assert row["inst_idle"] == pytest.approx(1.0)
    assert row["billable_s"] == pytest.approx(300.0)


def test_revision_parsing_limits_billing_and_commit() -> None:
    info = restjson.parse_revision(revision("svc-00002-xyz", cpu="1000m", memory="2Gi", cpu_idle=None,
                                            labels={"commit-sha": "abc123"}))
    assert (info.cpu_limit, info.memory_limit_gib) == (1.0, 2.0)
    assert info.request_based_billing is False  # resources present, cpuIdle omitted = false
    assert info.commit == "abc123"
    assert restjson.memory_gib("512Mi") == 0.5
    assert restjson.memory_gib("1G") == pytest.approx(1e9 / 2**30)


def test_memory_usage_bytes_become_a_fraction_of_the_revision_limit() -> None:
    gib = 2**30
    usage = [(T0 + timedelta(minutes=m + 1), linear_distribution([0.25 * gib] * 3, width=gib / 100))
             for m in range(5)]
    raw = _raw({"timeSeries": [series("container/memory/usage", usage, kind="GAUGE")]},
               revisions=[revision("svc-00001-abc", memory="1Gi")])
    assert build(raw).metrics["mem_mean"].iloc[0] == pytest.approx(0.25)


def test_snapshot_reads_good_files_and_reports_bad_ones(tmp_path: Path) -> None:
    good = {"timeSeries": [series("request_count", [(T0 + timedelta(minutes=1), {"int64Value": "5"})],
                                  value_type="INT64")]}
    unknown = {"timeSeries": [{**series("request_count", [(T0, {"int64Value": "1"})]),
                               "metric": {"type": "custom.googleapis.com/other"}}]}
    write_snapshot(tmp_path, [("timeSeries", "good", good), ("timeSeries", "unknown", unknown),
                              ("revisions", "revs", {"revisions": [revision("svc-00001-abc")]})])
    (tmp_path / "timeSeries" / "broken.json").write_text('{"timeSeries": [', encoding="utf-8")
    data = read_snapshot(tmp_path)
    assert len(data.series) == 1
    assert len(data.revisions) == 1
    messages = " | ".join(f"{p.subject}: {p.message}" for p in data.problems)
    assert "broken.json" in messages and "not valid JSON" in messages
    assert "custom.googleapis.com/other" in messages


def test_snapshot_directory_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        read_snapshot(tmp_path / "missing")
    with pytest.raises(InputError, match=r"holds no timeSeries/\*\.json"):
        read_snapshot(tmp_path)


def test_a_paged_response_saved_as_a_json_array_is_read(tmp_path: Path) -> None:
    pages = [{"timeSeries": [series("request_count", [(T0 + timedelta(minutes=m), {"int64Value": "5"})],
                                    value_type="INT64")], "nextPageToken": "x"} for m in (2, 1)]
    (tmp_path / "timeSeries").mkdir()
    (tmp_path / "timeSeries" / "pages.json").write_text(json.dumps(pages), encoding="utf-8")
    assert len(read_snapshot(tmp_path).series) == 2


def test_nanosecond_timestamps_parse() -> None:
    assert restjson.parse_time("2026-11-16T10:00:00.123456789Z").microsecond == 123456


def test_other_tools_shapes_are_read_single_series_and_single_revisions(tmp_path: Path) -> None:
    """Tools that save one TimeSeries or one Revision per file, or arrays of them, are read too."""
    one, two, three = (series("request_count", [(T0 + timedelta(minutes=m), {"int64Value": "5"})], value_type="INT64")
                       for m in (1, 2, 3))
    write_snapshot(tmp_path, [("timeSeries", "one", one), ("timeSeries", "many", [two, three]),
                              ("revisions", "single", revision("svc-00001-abc"))])
    data = read_snapshot(tmp_path)
    assert len(data.series) == 3
    assert [r.revision for r in data.revisions] == ["svc-00001-abc"]
    assert data.problems == []


def test_execution_errors_keep_the_data_and_say_it_may_be_partial() -> None:
    body = {"timeSeries": [series("request_count", [(T0 + timedelta(minutes=1), {"int64Value": "5"})],
                                  value_type="INT64")],
            "executionErrors": [{"code": 4, "message": "deadline"}]}
    data = _raw(body)
    assert len(data.series) == 1
    assert any("partial" in p.message for p in data.problems)


def test_a_body_that_is_not_a_response_is_reported() -> None:
    data = _raw({"kind": "something/else", "items": []})
    assert data.series == []
    assert any("not a timeSeries.list response" in p.message for p in data.problems)


def test_distribution_metrics_reduced_by_an_aligner_are_read_as_levels() -> None:
    points = [(T0 + timedelta(minutes=m + 1), {"doubleValue": 0.42}) for m in range(5)]
    raw = _raw({"timeSeries": [series("container/memory/utilizations", points, kind="GAUGE", value_type="DOUBLE")]})
    frames = build(raw)
    assert frames.metrics["mem_p99"].iloc[0] == pytest.approx(0.42)
    assert frames.metrics["mem_max"].iloc[0] == pytest.approx(0.42)
    assert any("came as numbers" in p.message for p in frames.problems)


def test_points_before_the_window_are_kept_apart_as_history() -> None:
    # A revision deployed two hours before the window, its first hours read from before it: they are
    # Frames.history, and the table the analysis prices and judges starts at the window.
    start = T0 + timedelta(hours=2)
    points = [(T0 + timedelta(minutes=m + 1), linear_distribution([0.30 + m / 1000])) for m in range(240)]
    raw = _raw({"timeSeries": [series("container/memory/utilizations", points)]},
               revisions=[revision("svc-00001-abc", created=T0)])
    raw.window_start, raw.window_end = start, T0 + timedelta(hours=4)
    frames = build(raw, step_seconds=300)
    assert len(frames.history) == 24 and len(frames.metrics) == 24
    assert frames.history["ts"].max() < start <= frames.metrics["ts"].min()
    assert frames.history["mem_mean"].iloc[0] == pytest.approx(0.302, abs=0.006)
    (key,) = frames.services
    assert len(frames.service_metrics(key)) == 24
    assert frames.history_of(key)["revision"].unique().tolist() == ["svc-00001-abc"]
    # Without a window the table starts at the first point: nothing is history.
    raw.window_start = raw.window_end = None
    assert build(raw, step_seconds=300).history.empty
