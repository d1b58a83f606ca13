"""``load_model.fit_linear``: a quantity learned as a non-negative sum of its drivers (CPU from requests,
instance starts and running instances), keeping only the drivers that earn their place; and how the
CPU dating counts instance starts (``regression._instance_starts``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analyzer.analysis import hourly, load_model, regression


def _hours(n: int = 72, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    requests = 1000.0 * (1.2 + np.sin(np.arange(n) * 2 * np.pi / 24))
    instances = np.maximum(np.round(requests / 200.0), 1.0)
    starts = np.maximum(np.diff(instances, prepend=instances[0]), 0.0) + rng.poisson(0.3, n)
    return requests, starts, instances


def test_a_sum_of_drivers_is_learned_part_by_part() -> None:
    requests, starts, instances = _hours()
    rng = np.random.default_rng(4)
    instances = np.maximum(instances, 5.0) + rng.integers(0, 3, len(instances))  # a floor, idle ones kept warm
    cpu = 0.01 * requests + 0.8 * starts + 0.05 * instances
    cpu = cpu * (1.0 + 0.01 * rng.standard_normal(len(cpu)))
    model = load_model.fit_linear(np.column_stack([requests, starts, instances]), cpu, min_points=12)
    assert model is not None
    assert model.coefficients == pytest.approx([0.01, 0.8, 0.05], rel=0.25)


def test_a_driver_that_explains_nothing_is_left_out() -> None:
    # CPU is work per request only; instances follow requests (autoscaling). Splitting the CPU between
    # the two would expect more CPU wherever a revision runs more instances for the same traffic.
    requests, starts, instances = _hours()
    cpu = 0.01 * requests * (1.0 + 0.01 * np.random.default_rng(5).standard_normal(len(requests)))
    model = load_model.fit_linear(np.column_stack([requests, starts, instances]), cpu, min_points=12)
    assert model is not None
    assert model.coefficients[1:] == pytest.approx([0.0, 0.0])
    assert model.predict(np.array([[500.0, 0.0, 10.0]]))[0] == pytest.approx(5.0, rel=0.02)


def test_no_driver_takes_a_negative_share() -> None:
    # A driver that falls where CPU is high: least squares gives it a negative share; it is left out.
    requests, _, instances = _hours()
    against = requests.max() - requests
    drivers = np.column_stack([requests, against, instances])
    cpu = 0.01 * requests + 0.05 * instances - 0.002 * against
    assert np.linalg.lstsq(drivers, cpu, rcond=None)[0][1] < 0
    model = load_model.fit_linear(drivers, cpu, min_points=12)
    assert model is not None and (model.coefficients >= 0).all() and model.coefficients[1] == 0.0


def test_too_few_hours_learn_nothing() -> None:
    requests, starts, instances = _hours(11)
    assert load_model.fit_linear(np.column_stack([requests, starts, instances]), 0.01 * requests, min_points=12) is None


def test_instances_started_are_the_count_rises_and_a_gap_in_the_count_starts_none() -> None:
    ts = pd.Series(pd.date_range("2026-03-01", periods=8, freq="5min", tz="UTC"))
    count = np.array([2.0, 2.0, 4.0, np.nan, np.nan, 5.0, 3.0, 4.0])
    starts = regression._instance_starts(count, hourly.of(ts))
    assert starts.tolist() == [0.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 1.0]
    shuffled = np.array([3, 0, 7, 1, 5, 2, 6, 4])  # rows out of time order
    assert regression._instance_starts(count[shuffled], hourly.of(ts[shuffled].reset_index(drop=True))).tolist() == \
        starts[shuffled].tolist()
