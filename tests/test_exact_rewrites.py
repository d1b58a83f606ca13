"""The analysis' array rewrites of pandas and per-point loops give the same numbers to the last bit:
the hourly sums and means of ``analysis.hourly`` against ``resample("1h")``, and the leave-one-out
load models of ``load_model.left_out_predictions`` against fitting one model per left-out point.
Findings are compared byte for byte by ``bench/analysis_cost.py dump``; these pin the building
blocks on inputs the fleets do not have (NaN, infinities, irregular and unsorted steps, ties)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import pytest

from analyzer import frames
from analyzer.analysis import hourly, load_model
from analyzer.model import RawSeries


def _steps(rng: np.random.Generator, n: int, unit: Literal["us", "ns"], shuffle: bool) -> pd.Series:
    step = int(rng.choice([17, 60, 300, 600]))
    offsets = np.sort(rng.choice(np.arange(3 * n + 1), size=n, replace=False)) * step
    start = pd.Timestamp("2026-01-01 03:17", tz="UTC")
    ts = pd.Series(pd.DatetimeIndex(start + pd.to_timedelta(offsets, unit="s")).as_unit(unit))
    return ts.sample(frac=1.0, random_state=1).reset_index(drop=True) if shuffle else ts


def _block(rng: np.random.Generator, n: int, nan: bool, infinite: bool) -> list[np.ndarray]:
    block = []
    for _ in range(int(rng.integers(1, 4))):
        values = rng.standard_normal(n) * 10.0 ** rng.integers(-5, 12, n)  # sums that round differently
        if nan:
            values[rng.random(n) < 0.05] = np.nan
        if infinite and n:
            values[rng.integers(0, n)] = float(rng.choice([np.inf, -np.inf]))
        block.append(values)
    return block


@pytest.mark.parametrize("nan", [False, True])  # pandas 3: np.add.reduceat without NaN, Kahan with
@pytest.mark.parametrize("shuffle", [False, True])
def test_hourly_sums_and_means_equal_resample(nan: bool, shuffle: bool) -> None:
    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(0, 300))
        ts = _steps(rng, n, "us" if trial % 2 else "ns", shuffle)
        block = _block(rng, n, nan, infinite=trial % 5 == 0)
        frame = pd.DataFrame({f"c{i}": values for i, values in enumerate(block)})
        frame.index = pd.DatetimeIndex(ts)
        hours = hourly.of(ts)
        for min_count in (0, 1):
            expected = frame.resample("1h").sum(min_count=min_count)
            assert hours.index().equals(expected.index) and hours.index().dtype == expected.index.dtype
            for i, got in enumerate(hourly.sum_min_count(hours, block, min_count)):
                np.testing.assert_array_equal(got, expected[f"c{i}"].to_numpy(), strict=True)
        means = frame.resample("1h").mean()
        for i, got in enumerate(hourly.means(hours, block)):
            np.testing.assert_array_equal(got, means[f"c{i}"].to_numpy(), strict=True)
        if n:
            floored = pd.DatetimeIndex(ts).floor("1h").tz_localize(None).to_numpy()
            np.testing.assert_array_equal(hours.labels[hourly.step_hours(hours)], floored)


def _loads(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:
        return rng.random(n) * 100.0
    if kind == 1:
        return np.round(rng.random(n) * 5.0)  # ties: bins merge, medians repeat
    if kind == 2:
        return np.exp(rng.standard_normal(n) * 3.0)
    if kind == 3:
        load = np.full(n, 3.0)
        load[: n // 3] = rng.random(n // 3)
        return load
    return rng.integers(0, 3, n).astype(np.float64) * 10.0 ** rng.integers(-3, 4)


def test_left_out_predictions_equal_one_fit_per_point() -> None:
    rng = np.random.default_rng(5)
    for trial in range(150):
        n = int(rng.integers(1, 75))
        load = _loads(rng, trial % 5, n)
        value = rng.random(n) * 10.0 ** rng.integers(-3, 3) + load * rng.random() * 0.01
        if trial % 13 == 0 and n > 2:
            value[1] = np.nan
        if trial % 17 == 0 and n > 3:
            value[2:4] = (-0.0, 0.0)  # equal zeros: which one a median takes follows the rows' order
        bins, min_points = int(rng.choice([3, 6, 12])), int(rng.integers(1, 15))
        expected = np.full(n, np.nan)
        for i in range(n):
            others = np.arange(n) != i
            model = load_model.fit(load[others], value[others], bins=bins, min_points=min_points)
            if model is not None:
                expected[i] = model.predict(load[i:i + 1])[0]
        got = load_model.left_out_predictions(load, value, bins=bins, min_points=min_points)
        np.testing.assert_array_equal(got, expected, strict=True)


def test_hourly_medians_equal_resample() -> None:
    rng = np.random.default_rng(3)
    for trial in range(100):
        n = int(rng.integers(0, 300))
        ts = _steps(rng, n, "us", shuffle=False)
        values = np.round(rng.standard_normal(n) * 10.0 ** rng.integers(-3, 6), int(rng.integers(0, 3)))  # ties
        if trial % 2:
            values[rng.random(n) < 0.2] = np.nan
        if trial % 3 == 0 and n:
            values[rng.integers(0, n)] = -0.0  # which zero is the median: pandas' selection decides
        index = pd.DatetimeIndex(ts, name="ts")
        hours = hourly.of(index)
        expected = pd.Series(values, index=index).resample("1h").median()
        got = pd.Series(hourly.medians(hours, values), index=hours.resampled("ts"))
        pd.testing.assert_series_equal(got, expected, check_exact=True, check_freq=True)
        assert repr(got) == repr(expected) and repr(got.dropna()) == repr(expected.dropna())  # -0.0 and Freq too


def test_percentiles_over_held_buckets_equal_all_buckets() -> None:
    from analyzer.distributions import percentiles

    rng = np.random.default_rng(11)
    for _ in range(200):
        rows, nbuckets = int(rng.integers(1, 300)), int(rng.integers(2, 40))
        counts = np.zeros((rows, nbuckets))
        for column in rng.choice(nbuckets, size=int(rng.integers(1, nbuckets + 1)), replace=False):
            counts[:, column] = rng.integers(0, 4, rows) * (rng.random(rows) < 0.5)
        bounds = np.cumsum(rng.random(nbuckets - 1) * 10.0)
        lower, upper = rng.random(rows) * bounds[0], bounds[-1] + rng.random(rows)
        lower[rng.random(rows) < 0.3] = np.nan
        quantiles = (0.5, 0.95, 0.99, 1.0)
        got = percentiles(counts, bounds, quantiles, lower=lower, upper=upper)
        # A quantile of 0 makes every bucket a candidate: the path that searches them all.
        every = percentiles(counts, bounds, (0.0, *quantiles), lower=lower, upper=upper)[:, 1:]
        np.testing.assert_array_equal(got, every, strict=True)


def test_percentiles_from_the_nonzero_buckets_equal_the_dense_search() -> None:
    from analyzer.distributions import _located_dense, _located_sparse, percentiles

    rng = np.random.default_rng(12)
    for trial in range(200):
        rows, nbuckets = int(rng.integers(1, 400)), int(rng.integers(2, 70))
        counts = np.zeros((rows, nbuckets))
        for row in range(rows):  # a step's distribution holds a few buckets; some steps hold none
            held = rng.choice(nbuckets, size=int(rng.integers(0, min(nbuckets, 5) + 1)), replace=False)
            counts[row, held] = rng.integers(1, (3, 1000, 10**9)[trial % 3], len(held))
        if trial % 4 == 0:
            counts = np.asfortranarray(counts)  # a column-major array reads row by row all the same
        total = counts.sum(axis=1)
        quantiles = ((0.5, 0.95, 0.99), (0.5, 0.99, 1.0), (1e-9, 0.25))[trial % 3]
        sparse = _located_sparse(counts, total, quantiles)
        assert sparse is not None or not counts.any()
        if sparse is None:
            continue
        for (s_at, s_below, s_in), (d_at, d_below, d_in) in zip(sparse, _located_dense(counts, total, quantiles),
                                                                strict=True):
            has = total > 0
            np.testing.assert_array_equal(s_at[has], d_at[has])
            np.testing.assert_array_equal(s_below[has], d_below[has], strict=True)
            np.testing.assert_array_equal(s_in[has], d_in[has], strict=True)
        bounds = np.cumsum(rng.random(nbuckets - 1) * 10.0)
        every = percentiles(counts, bounds, (0.0, *quantiles))[:, 1:]  # q = 0: the dense search
        np.testing.assert_array_equal(percentiles(counts, bounds, quantiles), every, strict=True)
    # Counts that are not whole numbers >= 0, or sums past 2**53, are left to the dense search.
    for counts in (np.array([[0.5, 1.0]]), np.array([[-1.0, 2.0]]), np.array([[np.nan, 1.0]]),
                   np.array([[np.inf, 1.0]]), np.array([[2.0**53, 1.0]])):
        assert _located_sparse(counts, counts.sum(axis=1), (0.5,)) is None
    assert _located_sparse(np.array([[1.0, 2.0]]), np.array([3.0]), (0.0, 0.5)) is None


def test_serving_revision_equals_sorting_the_rows() -> None:
    from analyzer.analysis.timeline import _serving

    rng = np.random.default_rng(2)
    for _ in range(100):
        steps = pd.date_range("2026-01-01", periods=int(rng.integers(1, 60)), freq="5min", tz="UTC", unit="us")
        names = [f"rev-{i}" for i in range(int(rng.integers(1, 4)))]
        rows = pd.DataFrame([(name, ts) for name in names for ts in steps], columns=["revision", "ts"])
        rows["requests"] = rng.integers(0, 3, len(rows)).astype(np.float64)  # ties: the sort's order decides
        rows["inst_active"] = np.where(rng.random(len(rows)) < 0.3, np.nan, rng.integers(0, 2, len(rows)))
        rows = rows.sample(frac=rng.random() * 0.5 + 0.5, random_state=int(rng.integers(1000))).sort_values(
            ["revision", "ts"], kind="stable")
        weight = rows["requests"].fillna(0.0) + 1e-6 * rows["inst_active"].fillna(0.0)
        expected = rows.assign(_w=weight).sort_values("_w").groupby("ts")["revision"].last()
        pd.testing.assert_series_equal(_serving(rows), expected, check_exact=True)


def test_instance_counts_without_containers_to_merge_equal_the_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer import frames
    from analyzer.model import RawSeries

    rng = np.random.default_rng(4)
    for trial in range(40):
        series = []
        for revision in ("r1", "r2")[: int(rng.integers(1, 3))]:
            for container in ("app", "sidecar")[: 1 + (trial % 4 == 0)]:  # two containers: merged
                for state in ("active", "idle"):
                    ends = np.sort(rng.choice(np.arange(60, 60 * 400, 60), size=int(rng.integers(1, 120)),
                                              replace=False)).astype(np.int64)
                    values = rng.integers(0, 5, len(ends)).astype(np.float64) + rng.random(len(ends)) * (trial % 2)
                    values[rng.random(len(ends)) < 0.05 * (trial % 3 == 0)] = np.nan
                    series.append(RawSeries("container/instance_count", "GAUGE", "DOUBLE", "p", "r", "s", revision,
                                            {"state": state, "container_name": container}, ends - 60, ends, values))
        keys = {("p", "r", "s", r): i for i, r in enumerate(("r1", "r2"))}
        grid = frames._Grid.of(series, 300)
        fast = frames._instance_columns(series, keys, grid)
        with monkeypatch.context() as patch:
            patch.setattr(frames, "_one_per_instant", lambda *_: None)
            merged = frames._instance_columns(series, keys, grid)
        for got, expected in zip(fast, merged, strict=True):
            assert got.name == expected.name
            np.testing.assert_array_equal(got.codes, expected.codes)
            np.testing.assert_array_equal(got.values, expected.values)


@pytest.mark.parametrize("how", ["sum", "mean"])
def test_step_sums_and_means_on_the_grid_equal_pandas_groupby(how: str) -> None:
    from analyzer import frames

    rng = np.random.default_rng(7)
    for trial in range(60):
        n = int(rng.integers(1, 300))
        # aligned data (one point per code), or raw minutes (several), in any order, with NaN
        codes = rng.permutation(n) if trial % 2 else rng.integers(0, max(n // 4, 1), n)
        values = rng.standard_normal(n) * 10.0 ** rng.integers(-5, 12, n)
        values[rng.random(n) < 0.1 * (trial % 3)] = np.nan
        got_codes, got = frames._by_step(codes.astype(np.int64), values, how)
        grouped = pd.Series(values, index=codes).groupby(level=0)
        expected = grouped.sum() if how == "sum" else grouped.mean()
        np.testing.assert_array_equal(got_codes, expected.index.to_numpy())
        np.testing.assert_array_equal(got, expected.to_numpy())


def test_the_grid_table_is_the_outer_join_of_its_columns_in_name_order() -> None:
    """``_assemble`` against what pandas gives: the columns joined on (revision, step), sorted by the
    revision's names (the grid numbers revisions in the order first seen), amounts absent as zero."""
    from analyzer import frames

    rng = np.random.default_rng(11)
    names = [("p", "r", "svc-b", "b-2"), ("p", "r", "svc-a", "a-1"), ("p", "q", "svc-a", "a-0"),
             ("o", "r", "svc-z", "z-1")]
    keys = {key: i for i, key in enumerate(names)}
    grid = frames._Grid(low=1_700_000_100, step=300, span=50)
    columns, reference = [], []
    for name in ["mem_max", "requests", "memusage_max", "mem_max"]:  # a repeated name: the first wins
        codes = np.sort(rng.choice(len(keys) * grid.span, size=int(rng.integers(1, 120)), replace=False))
        values = rng.standard_normal(len(codes))
        columns.append(frames._Column(name, codes.astype(np.int64), values))
        key_ids, starts = grid.keys_and_starts(codes)
        reference.append(pd.Series(values, index=pd.MultiIndex.from_arrays([key_ids, starts]), name=name))
    table = pd.concat(reference, axis=1).sort_index()  # a repeated name's rows are rows too
    table = table.loc[:, ~table.columns.duplicated()]
    key_ids = table.index.get_level_values(0).to_numpy()
    expected = pd.DataFrame({
        **{col: np.asarray(names, dtype=object)[key_ids, i] for i, col in enumerate(frames.KEY_COLUMNS)},
        "ts": pd.to_datetime(table.index.get_level_values(1).to_numpy(), unit="s", utc=True),
        **{col: table[col].to_numpy() if col in table else np.full(len(table), np.nan)
           for col in [*frames.METRIC_COLUMNS, "memusage_max"]},
    })
    for amount in ("requests", "req_rate", "err_rate", "billable_s", "cpu_alloc_s", "mem_alloc_gibs"):
        expected[amount] = expected[amount].fillna(0.0)
    expected = expected.sort_values([*frames.KEY_COLUMNS, "ts"]).reset_index(drop=True)
    table, ranks = frames._assemble(columns, keys, grid)
    pd.testing.assert_frame_equal(table, expected, check_exact=True)
    in_order = sorted(keys)
    rows = expected[frames.KEY_COLUMNS].to_numpy()
    np.testing.assert_array_equal(ranks, [in_order.index(tuple(row)) for row in rows])


def test_a_services_step_totals_equal_pandas_groupby_sum() -> None:
    """``timeline._totals`` against ``groupby("ts").sum(min_count=1)``: one revision (rows in time
    order: pandas adds up with reduceat), several overlapping (not in time order: Kahan), NaN."""
    from analyzer.analysis import timeline

    rng = np.random.default_rng(5)
    for trial in range(40):
        frames = []
        for revision in ("a", "b", "c")[: 1 + trial % 3]:
            ts = _steps(rng, int(rng.integers(1, 80)), "us", shuffle=False).dt.tz_convert("UTC")
            data = {c: rng.standard_normal(len(ts)) * 10.0 ** rng.integers(-5, 12, len(ts)) for c in timeline.SUMMED}
            if trial % 4 == 1:
                data["requests"][rng.random(len(ts)) < 0.3] = np.nan
            frames.append(pd.DataFrame({"revision": revision, "ts": ts, **data}))
        rows = pd.concat(frames, ignore_index=True)
        expected = rows.groupby("ts")[timeline.SUMMED].sum(min_count=1)
        got = timeline._totals(rows)
        pd.testing.assert_frame_equal(got[timeline.SUMMED], expected, check_exact=True)


def test_the_services_rows_found_at_build_equal_grouping_the_names() -> None:
    """``build`` hands each service its row positions from the keys' ranks; they are what grouping the
    table's three name columns gives (``Frames.service_metrics`` on a table made otherwise)."""
    from analyzer import frames
    from analyzer.model import RawData, RawSeries, ServiceKey

    rng = np.random.default_rng(3)
    names = [("p", "r", "svc-b", "b-2"), ("p", "r", "svc-a", "a-2"), ("p", "r", "svc-b", "b-1"),
             ("o", "q", "svc-a", "a-1"), ("p", "r", "svc-a", "a-1")]
    series = []
    for project, region, service, revision in names:
        ends = np.sort(rng.choice(np.arange(300, 300 * 200, 300), size=40, replace=False)).astype(np.int64)
        series.append(RawSeries("container/billable_instance_time", "DELTA", "DOUBLE", project, region, service,
                                revision, {}, ends - 60, ends, rng.random(40)))
    built = frames.build(RawData(series=series))
    grouped = built.metrics.groupby(["project", "region", "service"], sort=False).indices
    assert built._positions is not None
    assert built._positions.keys() == grouped.keys()
    for names_of_service, positions in grouped.items():
        np.testing.assert_array_equal(built._positions[cast(tuple[str, str, str], names_of_service)], positions)
    assert list(built.service_metrics(ServiceKey("p", "r", "svc-a")).columns) == \
        [c for c in built.metrics.columns if c not in ("project", "region", "service")]


def test_a_services_step_costs_equal_pandas_groupby_sum() -> None:
    """``cost._summed`` (the service's steps from its revisions') against ``pd.concat(parts).groupby(
    level=0).sum()``: revisions one after the other (in time order: reduceat) or overlapping in a
    rollout (Kahan), with NaN."""
    from analyzer.analysis import cost

    rng = np.random.default_rng(9)
    for trial in range(30):
        parts = []
        for _ in range(1 + trial % 3):
            ts = pd.DatetimeIndex(_steps(rng, int(rng.integers(1, 60)), "us", shuffle=False)).tz_convert("UTC")
            values = {c: rng.standard_normal(len(ts)) * 10.0 ** rng.integers(-5, 12, len(ts))
                      for c in cost.STEP_COLUMNS}
            if trial % 4 == 3:
                values["usd"][rng.random(len(ts)) < 0.3] = np.nan
            parts.append(pd.DataFrame(values, index=ts))
        expected = pd.concat(parts).groupby(level=0).sum()
        pd.testing.assert_frame_equal(cost._summed(parts), expected, check_exact=True, check_names=False,
                                      check_freq=False)


def test_distinct_codes_by_marking_equal_numpy_unique() -> None:
    from analyzer import frames

    rng = np.random.default_rng(13)
    for trial in range(50):
        n = int(rng.integers(0, 2000))
        spread = [n // 3 + 1, 3 * n + 10, 10**9][trial % 3]  # dense, sparse-ish, far apart: the sort
        codes = rng.integers(0, spread, n).astype(np.int64) + int(rng.integers(0, 10**6))
        expected, inverse = np.unique(codes, return_inverse=True)
        got, got_inverse = frames._distinct(codes)
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(got_inverse, inverse.reshape(-1))


def _troughs_as_dropna(rows: pd.DataFrame, bin_minutes: int, from_first: bool) -> pd.DataFrame:
    """``memory.troughs`` as it was: every bin's frame built, then ``dropna(subset=["trough"])``."""
    from analyzer.analysis import memory

    typical = memory.typical_memory(rows)
    worst = rows["mem_max"].to_numpy(dtype=np.float64)
    inst = rows["inst_active"].to_numpy(dtype=np.float64)
    load = rows["req_rate"].to_numpy(dtype=np.float64) / np.where(inst > 0, inst, np.nan)
    width = pd.Timedelta(minutes=bin_minutes).value
    stamps = pd.DatetimeIndex(rows["ts"]).as_unit("ns").asi8
    origin = int(stamps.min()) if from_first and len(stamps) else 0
    starts, codes = memory._bins((stamps - origin) // width)
    n = len(starts)
    finite = np.isfinite(load)
    held = np.bincount(codes, weights=finite.astype(np.float64), minlength=n)
    frame = pd.DataFrame(
        {"trough": pd.Series(typical).groupby(codes).min().reindex(range(n)).to_numpy(),
         "worst": pd.Series(worst).groupby(codes).min().reindex(range(n)).to_numpy(),
         "load": np.divide(np.bincount(codes, weights=np.where(finite, load, 0.0), minlength=n), held,
                           out=np.full(n, np.nan), where=held > 0),
         "peak": pd.Series(worst).groupby(codes).max().reindex(range(n)).to_numpy()},
        index=pd.to_datetime(origin + starts * width, unit="ns", utc=True))
    return frame.dropna(subset=["trough"])


def test_trough_bins_without_memory_are_left_out_as_dropna_left_them() -> None:
    from analyzer.analysis import memory

    rng = np.random.default_rng(5)
    for trial in range(60):
        n = int(rng.integers(1, 400))
        rows = pd.DataFrame({"ts": pd.date_range("2026-01-01 00:05", periods=n, freq="5min", tz="UTC")})
        for name in ("mem_mean", "mem_p50", "mem_max", "inst_active", "req_rate"):
            values = rng.random(n)
            values[rng.random(n) < (0.0, 0.1, 0.6, 1.0)[trial % 4]] = np.nan  # none, some, most, all missing
            rows[name] = values
        rows.loc[rng.random(n) < 0.1, "inst_active"] = 0.0  # no instance: no load
        for minutes, from_first in ((30, False), (60, True), (360, False)):
            got = memory.troughs(rows, minutes, from_first=from_first)
            pd.testing.assert_frame_equal(got, _troughs_as_dropna(rows, minutes, from_first), check_exact=True,
                                          check_index_type=False, check_freq=False)


def test_basis_instance_seconds_equal_pandas_row_sums() -> None:
    from analyzer.analysis.whatif import _Basis

    rng = np.random.default_rng(6)
    for trial in range(40):
        n = int(rng.integers(1, 300))
        rows = pd.DataFrame({"inst_active": rng.integers(0, 9, n) + rng.random(n) * (trial % 2),
                             "inst_idle": rng.integers(0, 4, n) * 0.5}, index=np.arange(n) + 7)
        for name in rows.columns:
            rows.loc[rng.random(n) < (0.0, 0.2, 1.0)[trial % 3], name] = np.nan
        basis = _Basis(cast(Any, None), pd.DataFrame(), rows, 1.0, 1.0, 0.5, cast(Any, None), 300, "", 0.0)
        for state, columns in ((None, ["inst_active", "inst_idle"]), ("active", ["inst_active"]),
                               ("idle", ["inst_idle"])):
            counts = rows[columns].astype(np.float64)
            got = basis.instance_seconds(state)
            if counts.isna().all().all():
                assert got is None
                continue
            expected = counts.fillna(0.0).sum(axis=1) * 300.0
            assert got is not None
            np.testing.assert_array_equal(got, expected.to_numpy())
            assert float(got.sum()) == float(expected.sum())


def test_rows_between_two_times_equal_the_masks() -> None:
    from analyzer.analysis.timeline import between

    rng = np.random.default_rng(13)
    for trial in range(120):
        unit: Literal["us", "ns"] = "us" if trial % 2 else "ns"
        ts = _steps(rng, int(rng.integers(0, 80)), unit, shuffle=trial % 5 == 0)
        if trial % 7 == 0 and len(ts):
            ts = ts.where(rng.random(len(ts)) > 0.2, pd.NaT)
        rows = pd.DataFrame({"ts": ts, "value": rng.random(len(ts))}, index=rng.permutation(len(ts)) * 3)
        around = pd.Timestamp("2026-01-01 03:17", tz="UTC") + pd.Timedelta(
            nanoseconds=int(rng.integers(-10**12, 10**14)))
        # Bounds on the rows' own steps, or between them to the nanosecond.
        steps = list(ts.dropna().sample(2, replace=True, random_state=trial)) if ts.notna().any() else []
        picks = [around, *steps, *(step + pd.Timedelta(nanoseconds=1) for step in steps)]
        for start in (None, *picks):
            for end in (None, *picks, around + pd.Timedelta(nanoseconds=1)):
                keep = np.ones(len(rows), dtype=bool)
                if start is not None:
                    keep &= (rows["ts"] >= start).to_numpy()
                if end is not None:
                    keep &= (rows["ts"] < end).to_numpy()
                pd.testing.assert_frame_equal(between(rows, start, end), rows.loc[keep], check_index_type=False)


def test_first_best_error_equals_scanning_every_candidate() -> None:
    from analyzer.analysis.stats import first_best

    def scanned(errors: np.ndarray) -> int | None:
        best, best_error = None, float("inf")
        for k, error in enumerate(errors):
            if error < best_error - 1e-12:
                best, best_error = k, float(error)
        return best

    rng = np.random.default_rng(14)
    for trial in range(400):
        n = int(rng.integers(0, 60))
        errors = rng.random(n) * 10.0 ** float(rng.integers(-13, 3))  # spreads near the tolerance too
        if trial % 3 == 0:
            errors = np.round(errors, int(rng.integers(0, 3)))  # ties
        if trial % 4 == 0 and n:
            errors[rng.random(n) < 0.3] = np.nan
        if trial % 5 == 0 and n:
            errors[rng.random(n) < 0.2] = np.inf
        if trial % 6 == 0 and n > 2:  # a run lowered by less than the tolerance at each step
            errors[1:] = errors[0] - np.arange(1, n) * 6e-13
        assert first_best(errors) == scanned(errors), errors


def test_served_steps_from_the_serving_codes_equal_value_counts() -> None:
    from analyzer.analysis.timeline import RevisionSpan, ServiceView, served_hours
    from analyzer.model import ServiceKey

    rng = np.random.default_rng(15)
    key = ServiceKey("p", "r", "s")
    for _ in range(40):
        n = int(rng.integers(0, 50))
        serving = pd.Series(rng.choice(np.array(["a", "b", "", None, np.nan], dtype=object), n), dtype=object)
        view = ServiceView(key, pd.DataFrame(), pd.DataFrame({"serving": serving}), [], 300)
        counts = serving.value_counts().to_dict()
        for name in ("a", "b", "", "c"):
            span = cast(RevisionSpan, type("Span", (), {"name": name})())
            assert served_hours(view, span) == counts.get(name, 0) * 300 / 3600
    empty = ServiceView(key, pd.DataFrame(), pd.DataFrame(), [], 300)  # no steps at all
    assert served_hours(empty, cast(RevisionSpan, type("Span", (), {"name": "a"})())) == 0.0


def test_each_steps_highest_value_equals_groupby_max() -> None:
    from analyzer.render.charts import _by_ts, epoch_ns, step_highest

    rng = np.random.default_rng(16)
    for trial in range(60):
        ts = _steps(rng, int(rng.integers(0, 90)), ("us", "ns")[trial % 2], shuffle=trial % 3 == 0)
        rows = pd.DataFrame({"ts": pd.concat([ts, ts.sample(frac=0.5, random_state=trial)], ignore_index=True)})
        rows["mem_max"] = rng.random(len(rows))
        rows.loc[rng.random(len(rows)) < (0.0, 0.3, 1.0)[trial % 3], "mem_max"] = np.nan
        expected = _by_ts(rows, "mem_max", "max").dropna()
        ns, values = step_highest(rows, "mem_max")
        np.testing.assert_array_equal(ns, epoch_ns(pd.DatetimeIndex(expected.index)), strict=True)
        np.testing.assert_array_equal(values, expected.to_numpy(dtype=np.float64), strict=True)


def test_rows_at_positions_equal_take() -> None:
    from analyzer.frames import rows_at

    rng = np.random.default_rng(17)
    table = pd.DataFrame({"a": rng.random(50), "b": rng.integers(0, 9, 50)}, index=rng.permutation(50) * 2)
    for positions in (np.arange(10, 30), np.arange(0, 50), np.array([7]), np.empty(0, dtype=np.intp),
                      np.array([3, 4, 6]), np.array([5, 4, 3]), np.sort(rng.choice(50, 20, replace=False))):
        got = rows_at(table, positions)
        pd.testing.assert_frame_equal(got, table.take(positions))
        got.loc[got.index[:1], "a"] = -1.0  # a slice is the table's own rows: changing it must not reach them
        assert (table["a"] >= 0).all()


def _input_spacing_one_by_one(series: list[RawSeries]) -> int:
    """``frames._input_spacing`` as it was: each series' median spacing, one by one."""
    spacings = [int(np.median(np.diff(s.end_times))) for s in series if len(s.end_times) > 2]
    return int(np.median(spacings)) if spacings else 60


def test_the_inputs_spacing_read_at_once_equals_each_series_median() -> None:
    rng = np.random.default_rng(17)
    for _ in range(200):
        series = []
        for _ in range(int(rng.integers(0, 12))):
            n = int(rng.integers(0, 9))
            spacing = int(rng.choice([60, 300, 3600]))
            if rng.random() < 0.3:  # gaps, doubled steps, an uneven spacing
                gaps = rng.choice([spacing, 2 * spacing, spacing + 7], size=max(n - 1, 0))
            else:
                gaps = np.full(max(n - 1, 0), spacing)
            first = 1_767_225_600 + int(rng.integers(0, 10_000))
            ends = (first + np.concatenate([[0], np.cumsum(gaps)]).astype(np.int64))[:n]
            series.append(RawSeries("request_count", "DELTA", "INT64", "p", "r", "s", "v", {}, ends - spacing, ends,
                                    values=np.ones(n)))
        assert frames._input_spacing(series) == _input_spacing_one_by_one(series)


def _reference_totals_by_masks(view: Any, span: Any, warmup_minutes: int, reference_hours: float,
                               reference: Any = None, *, enough_hours: float | None = None) -> tuple[pd.DataFrame, str]:
    """``timeline.reference_totals`` as it was: time masks over every measured step."""
    keep = view.totals["inst_active"].notna().to_numpy()
    measured, totals = keep, view.totals.loc[keep]
    warm = pd.Timedelta(minutes=warmup_minutes)
    reference = reference if reference is not None else view.previous(span.name)
    if reference is not None:
        mask = (view.serves(reference.name)[measured] & (totals.index >= reference.first_seen + warm)
                & (totals.index < span.first_seen))
        if mask.any():
            mask &= totals.index >= totals.index[mask].max() - pd.Timedelta(hours=reference_hours * 3)
        if mask.sum() * view.step_seconds >= (enough_hours or reference_hours / 2) * 3600:
            return totals.loc[mask], f"revision {reference.name}"
    start = span.first_seen + warm
    end = start + pd.Timedelta(hours=reference_hours)
    mask = view.serves(span.name)[measured] & (totals.index >= start) & (totals.index < end)
    return totals.loc[mask], f"the first {reference_hours:g} h of {span.name}"


def test_reference_steps_found_by_binary_search_equal_the_masks() -> None:
    from analyzer.analysis.timeline import RevisionSpan, ServiceView, reference_totals
    from analyzer.model import RevisionInfo, ServiceKey

    rng = np.random.default_rng(23)
    key = ServiceKey("p", "r", "s")
    origin = pd.Timestamp("2026-01-01", tz="UTC")
    for _ in range(150):
        n = int(rng.integers(0, 400))
        index = pd.DatetimeIndex(origin + pd.to_timedelta(np.sort(rng.choice(2000, n, replace=False)) * 300, unit="s"),
                                 name="ts")
        names = ["a", "b", "c"]
        cut = np.sort(rng.integers(0, n + 1, 2))  # a, then b, then c serve, with stray steps of the others
        serving = np.where(np.arange(n) < cut[0], "a", np.where(np.arange(n) < cut[1], "b", "c")).astype(object)
        stray = rng.random(n) < 0.05
        serving[stray] = rng.choice(names, int(stray.sum()))
        active = rng.random(n) * 5
        active[rng.random(n) < 0.1] = np.nan  # steps without an instance count are not measured
        totals = pd.DataFrame({"inst_active": active, "req_rate": rng.random(n), "serving": serving}, index=index)
        starts = [origin + pd.Timedelta(seconds=300 * int(x)) for x in (0, *np.sort(rng.integers(0, 2000, 2)))]
        seen = [at + pd.Timedelta(minutes=int(rng.integers(0, 90))) for at in starts]
        spans = [RevisionSpan(RevisionInfo("p", "r", "s", name), at, first, at + pd.Timedelta(days=8), True)
                 for name, at, first in zip(names, starts, seen, strict=True)]
        view = ServiceView(key, pd.DataFrame(), totals, spans, 300)
        for span in spans:
            for reference in (None, spans[0]):
                hours = float(rng.choice([3.0, 12.0, 24.0]))
                enough = float(rng.choice([3.0, 6.0])) if rng.random() < 0.5 else None
                got = reference_totals(view, span, 15, hours, reference, enough_hours=enough)
                want = _reference_totals_by_masks(view, span, 15, hours, reference, enough_hours=enough)
                assert got[1] == want[1]
                pd.testing.assert_frame_equal(got[0], want[0])


def test_each_revisions_first_and_last_step_from_its_ends_equal_min_and_max() -> None:
    from analyzer.analysis.timeline import build_view
    from tests import synthetic

    frames = synthetic.frames([synthetic.Rev("a", 0.0), synthetic.Rev("b", 30.0), synthetic.Rev("a", 50.0)],
                              until=70.0)
    shuffled = replace(frames, metrics=frames.metrics.sample(frac=1.0, random_state=3).reset_index(drop=True))
    for table in (frames, shuffled):  # rows in time order (the ends), and not (min and max)
        view = build_view(table, synthetic.KEY)
        for span in view.spans:
            times = table.metrics.loc[table.metrics["revision"] == span.name, "ts"]
            assert (span.first_seen, span.last_seen) == (times.min(), times.max())
            assert span.first_seen.unit == times.min().unit and span.first_seen.tz == times.min().tz
