"""Run history in a Store: one record per analyzed window (see ``analyzer.render.week`` for the
record and the week-over-week comparison), as JSON under ``history/`` named by the window's end,
written with a conditional create so that a retried run keeps the first record of its window.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from analyzer.errors import DeliveryError
from analyzer.render.week import WindowRecord
from analyzer.store import Store

PREFIX = "history/"
# "Last week" is the newest record whose window ended at least this long before this one, so that
# daily runs or a same-day retry are not mistaken for last week's digest.
MIN_GAP = timedelta(days=6)


def record_key(window_end: datetime) -> str:
    return f"{PREFIX}{window_end:%Y-%m-%dT%H-%M-%SZ}.json"


def _end_of(key: str) -> datetime | None:
    name = key.removeprefix(PREFIX).removesuffix(".json")
    try:
        return datetime.strptime(name, "%Y-%m-%dT%H-%M-%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def save_record(store: Store, record: WindowRecord) -> bool:
    """Store the record unless its window already has one (a retry keeps the first); True if written."""
    data = json.dumps(record.to_json(), indent=1).encode("utf-8")
    return store.create(record_key(record.window_end), data, content_type="application/json")


def load_record(store: Store, key: str) -> WindowRecord | None:
    data = store.read(key)
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise DeliveryError(
            f"{store.location(key)} is not JSON: {exc}",
            hint="remove it from the store; the next run writes a fresh record",
        ) from exc
    return WindowRecord.from_json(doc, source=store.location(key))


def previous_record(
    store: Store, window_end: datetime, *, min_gap: timedelta = MIN_GAP
) -> WindowRecord | None:
    """Last week's record: the newest whose window ended at least ``min_gap`` before ``window_end``."""
    candidates = [
        (end, key)
        for key in store.list(PREFIX)
        if (end := _end_of(key)) is not None and end <= window_end - min_gap
    ]
    if not candidates:
        return None
    return load_record(store, max(candidates)[1])
