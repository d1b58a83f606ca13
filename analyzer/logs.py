"""Logging for people and for Cloud Logging: one line of JSON with ``severity`` on Cloud Run, plain
text in a terminal, and progress bars only when stderr is a terminal.

On Cloud Run (``K_SERVICE`` or ``CLOUD_RUN_JOB`` set) each record is one JSON object on stderr, which
Cloud Logging parses into a structured entry: ``severity``, ``message``, ``time`` and
``logging.googleapis.com/labels`` (job, execution, task index), plus the record's ``extra`` fields.
Elsewhere records are ``HH:MM:SS level message key=value``. ``CLOUDRUN_ANALYZER_LOG_FORMAT=json|text``
forces either.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import click

LOGGER_NAME = "cloudrun_analyzer"
FORMAT_VARIABLE = "CLOUDRUN_ANALYZER_LOG_FORMAT"
# logging.LogRecord's own attributes: everything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_SEVERITY = {
    logging.DEBUG: "DEBUG",
    logging.INFO: "INFO",
    logging.WARNING: "WARNING",
    logging.ERROR: "ERROR",
    logging.CRITICAL: "CRITICAL",
}
_LABELS = {
    "CLOUD_RUN_JOB": "job",
    "CLOUD_RUN_EXECUTION": "execution",
    "CLOUD_RUN_TASK_INDEX": "task_index",
    "CLOUD_RUN_TASK_ATTEMPT": "task_attempt",
    "K_SERVICE": "service",
    "K_REVISION": "revision",
}

Progress = Callable[[int, int, str], None]
# Control characters (C0 but newline and tab, DEL, C1) and the bidirectional overrides: from a
# service name or a file, they could rewrite the terminal (ESC sequences) or reorder what it shows.
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``), safe for a terminal."""
    return _UNPRINTABLE.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", text)


def on_cloud_run(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return bool(env.get("K_SERVICE") or env.get("CLOUD_RUN_JOB"))


def wants_json(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    forced = env.get(FORMAT_VARIABLE, "").strip().lower()
    if forced in ("json", "text"):
        return forced == "json"
    return on_cloud_run(env)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS and not k.startswith("_")}


class CloudLoggingFormatter(logging.Formatter):
    """One JSON object per record, in the shape Cloud Logging reads from a container's stderr."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        super().__init__()
        env = os.environ if env is None else env
        self.labels = {label: env[var] for var, label in _LABELS.items() if env.get(var)}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelno, "DEFAULT"),
            "message": record.getMessage(),
            "time": datetime.fromtimestamp(record.created, UTC).isoformat().replace("+00:00", "Z"),
            "logger": record.name,
        }
        if record.exc_info:
            entry["message"] += "\n" + self.formatException(record.exc_info)
        entry.update(_extras(record))
        if self.labels:
            entry["logging.googleapis.com/labels"] = self.labels
        return json.dumps(entry, default=str)


class HumanFormatter(logging.Formatter):
    """``12:00:01 info  message key=value`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{stamp} {record.levelname.lower():<7} {record.getMessage()}" + (
            f"  {extras}" if extras else ""
        )
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return printable(line)


def setup(
    *, verbose: bool = False, stream: TextIO | None = None, env: Mapping[str, str] | None = None
) -> logging.Logger:
    """Configure the analyzer's logger once per process (idempotent); returns it."""
    logger = logging.getLogger(LOGGER_NAME)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(CloudLoggingFormatter(env) if wants_json(env) else HumanFormatter())
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.propagate = False
    return logger


def get(name: str = "") -> logging.Logger:
    """A child of the analyzer's logger (``cloudrun_analyzer.<name>``)."""
    return logging.getLogger(f"{LOGGER_NAME}.{name}" if name else LOGGER_NAME)


@contextmanager
def progress(label: str, *, env: Mapping[str, str] | None = None) -> Iterator[Progress | None]:
    """A ``(done, total, what)`` callback drawing a progress bar on a terminal, or None elsewhere."""
    if wants_json(env) or not sys.stderr.isatty():
        yield None
        return
    bar: Any = None
    shown = 0

    def update(done: int, total: int, what: str) -> None:
        nonlocal bar, shown
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr, show_pos=True)
            bar.__enter__()
        bar.length = max(total, 1)
        bar.update(done - shown, current_item=what)
        shown = done

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
