"""One weekly digest run: keep the window's full report and history record in the store, compare with
last week's record, build the email, and send it once (or, for a dry run, only write the ``.eml``).

Sending is idempotent per window: a ``sent/`` marker is created with a conditional write before the
message goes out and removed again if sending fails, so a retried job neither skips nor repeats the
digest. A dry run reads the history but writes nothing to the store: it writes the full report beside
the ``.eml`` instead, and the email links to that file (never to a stored report it did not write).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from analyzer.config import DigestConfig, SmtpConfig
from analyzer.delivery.email import DRY_RUN_SENDER, build_message, send, write_eml, write_file
from analyzer.delivery.history import previous_record, save_record
from analyzer.errors import ConfigError
from analyzer.render.digest import Digest, report_key
from analyzer.render.fleet_digest import fleet_digest, record_from_report
from analyzer.render.parts import FinishedReport
from analyzer.render.week import WindowRecord
from analyzer.sources.restjson import format_time
from analyzer.store import Store

SENT_PREFIX = "sent/"


@dataclass(slots=True)
class DigestOutcome:
    digest: Digest
    message: EmailMessage
    report_location: str
    recipients: list[str]
    eml: Path | None = None  # the dry run's file
    report: Path | None = None  # the dry run's full report, beside the .eml
    sent: bool = False
    already_sent: bool = False  # an earlier run sent this window's digest; nothing was sent now
    record_written: bool = False  # False: this window already had a record (a retry) or a dry run


def sent_marker(window_end: datetime) -> str:
    return f"{SENT_PREFIX}{window_end:%Y-%m-%dT%H-%M-%SZ}.json"


def run_digest(
    report: FinishedReport,
    *,
    store: Store,
    smtp: SmtpConfig,
    config: DigestConfig,
    generated_at: datetime,
    recipients: Sequence[str] | None = None,
    dry_run: Path | None = None,
    resend: bool = False,
    env: Mapping[str, str] | None = None,
) -> DigestOutcome:
    """Build the digest of ``report`` (a whole report, analyzed batch by batch) and deliver it (see the
    module docstring)."""
    to = list(recipients if recipients else config.recipients)
    window_end = report.window_end
    key = report_key(window_end)
    previous = previous_record(store, window_end)
    if dry_run is not None:
        return _dry_run(report, previous, config, smtp, to, generated_at, dry_run)
    digest = fleet_digest(
        report.report,
        previous=previous,
        config=config,
        generated_at=generated_at,
        images=report.charts,
        report_location=store.location(key),
    )
    if not to:
        raise ConfigError(
            "the digest has no recipients", hint="set digest.recipients in the config, or pass --to"
        )
    if not smtp.sender:
        raise ConfigError(
            "smtp.sender is not set",
            hint="set smtp.sender to the From: address, e.g. cloudrun-analyzer@example.com",
        )
    message = build_message(digest, sender=smtp.sender, recipients=to, date=generated_at)
    store.write(key, report.html.encode("utf-8"), content_type="text/html; charset=utf-8")
    store.write(
        key.removesuffix(".html") + ".json",
        json.dumps(report.report, indent=1).encode("utf-8"),
        content_type="application/json",
    )
    written = save_record(store, record_from_report(report.report, generated_at=generated_at, location=key))
    outcome = DigestOutcome(digest, message, store.location(key), to, record_written=written)
    marker = sent_marker(window_end)
    stamp = json.dumps(
        {"sent_at": format_time(generated_at), "subject": digest.subject, "recipients": len(to)}
    ).encode("utf-8")
    if resend:
        store.write(marker, stamp, content_type="application/json")
    elif not store.create(marker, stamp, content_type="application/json"):
        outcome.already_sent = True
        return outcome
    try:
        send(message, smtp, sender=smtp.sender, recipients=to, env=env)
    except BaseException:
        store.delete(marker)  # not sent: let the retry send it
        raise
    outcome.sent = True
    return outcome


def _dry_run(report: FinishedReport, previous: WindowRecord | None, config: DigestConfig, smtp: SmtpConfig,
             to: list[str], generated_at: datetime, eml: Path) -> DigestOutcome:
    """Write the email and, beside it, the full report it links to; the store is left alone."""
    page = eml.with_name(f"{eml.stem}.report.html")
    write_file(page, report.html.encode("utf-8"))
    # No report_url_base: the stored report it would point at is not written by a dry run.
    digest = fleet_digest(report.report, previous=previous, config=config.model_copy(update={"report_url_base": None}),
                          generated_at=generated_at, images=report.charts, report_location=str(page))
    message = build_message(digest, sender=smtp.sender or DRY_RUN_SENDER, recipients=to, date=generated_at)
    write_eml(message, eml)
    return DigestOutcome(digest, message, str(page), to, eml=eml, report=page)
