"""The scheduled job: list the fleet, analyze this task's share, write it to the store as a shard,
assemble the fleet report once every shard is there, and send the digest once per period.

Store layout (under the store's prefix; ``DAY`` is the window's aligned end, e.g. ``2026-01-08``)::

    reports/DAY/shards/I-of-N.json   the cloudrun-analyzer/report JSON of task I's share, plus "job"
    reports/DAY/shards/I-of-N.html   that share's full HTML report (charts, evidence, costs by revision)
    reports/DAY/charts/P.R.S.png     the digest chart of each service with findings
    reports/DAY/merge.claim          who assembles the fleet report (created if absent)
    reports/DAY/report.json|.html    the fleet report, merged from the N shards
    history/END.json                 the window's history record (analyzer/delivery/history.py)
    digests/WEEK/claim, sent         who sends the digest of an ISO week, and proof that it went

Idempotence per window: a retried task finds its shard and does not analyze again; a rerun finds the
fleet report and goes straight to the digest; the digest's ``sent`` marker stops a second send. A
shard or report written under another configuration (``job.config`` digest) is not reused.

Exactly once: only a task that sees all N shards tries to claim ``merge.claim`` with a create-if-absent
write, so one task merges. The same holds for the digest claim. Claims are read back after writing,
and a claim older than its lease, or held by an earlier attempt of the same task, may be taken over,
so a task that died mid-merge does not block the window forever. On a store that does not enforce
create-if-absent (gcp-storage-emulator ignores ``ifGenerationMatch``) two tasks finishing within
milliseconds could both merge; real Cloud Storage and the local directory store enforce it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from analyzer import logs
from analyzer.config import JobConfig
from analyzer.errors import ConfigError, InputError
from analyzer.model import ServiceKey
from analyzer.sharding import TaskSlot, share
from analyzer.sources.restjson import format_time, parse_time
from analyzer.store import Store

if TYPE_CHECKING:
    from analyzer.batches import Plan
    from analyzer.render.digest import ServiceChart

log = logs.get("job")
JSON = "application/json"
HTML = "text/html; charset=utf-8"
SHARD_NAME = re.compile(r"^(\d+)-of-(\d+)\.json$")
CLAIM_LEASE = timedelta(minutes=30)


class Digest(Protocol):
    """What the job needs from the digest: its period, whether it is due, and sending it."""

    def period(self, now: datetime) -> str: ...

    def due(self, now: datetime) -> bool: ...

    def send(self, report: Mapping[str, Any], *, now: datetime) -> str: ...


@dataclass(frozen=True, slots=True)
class Layout:
    """Where one window's objects live in the store."""

    window_end: datetime

    @property
    def key(self) -> str:
        return self.window_end.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")

    @property
    def run(self) -> str:
        """``reports/YYYY-MM-DD`` (where the digest's links point) or, for a window not ending at
        midnight, ``reports/YYYY-MM-DDTHH-MM-SSZ``."""
        end = self.window_end.astimezone(UTC)
        return f"reports/{end:%Y-%m-%d}" if end.time() == time(0) else f"reports/{end:%Y-%m-%dT%H-%M-%SZ}"

    def chart(self, key: ServiceKey) -> str:
        """``charts/P.R.S.png``, each part percent-encoded (``/``, ``.``, ``\\`` and ``%`` too), so any
        name is one key segment that ``chart_service`` splits back into the same service."""
        parts = (quote(part, safe="").replace(".", "%2E") for part in (key.project, key.region, key.service))
        return f"{self.run}/charts/{'.'.join(parts)}.png"

    @staticmethod
    def chart_service(chart_key: str) -> ServiceKey:
        """The service whose chart is at ``chart_key`` (the inverse of ``chart``)."""
        project, region, service = chart_key.rsplit("/", 1)[-1].removesuffix(".png").split(".")
        return ServiceKey(unquote(project), unquote(region), unquote(service))

    @property
    def shards(self) -> str:
        return f"{self.run}/shards/"

    def shard(self, slot: TaskSlot, ext: str = "json") -> str:
        return f"{self.shards}{slot.name}.{ext}"

    @property
    def report_json(self) -> str:
        return f"{self.run}/report.json"

    @property
    def report_html(self) -> str:
        return f"{self.run}/report.html"

    @property
    def merge_claim(self) -> str:
        return f"{self.run}/merge.claim"


def digest_keys(period: str) -> tuple[str, str]:
    """(claim, sent) marker keys of one digest period."""
    return f"digests/{period}/claim", f"digests/{period}/sent"


@dataclass(slots=True)
class RunOutcome:
    """What one task did, for the log, the exit code and ``serve``'s answer."""

    window: str
    shard: str
    fleet_services: int = 0
    share_services: int = 0
    findings: int = 0
    analyzed: str = "analyzed"  # or "reused" (its shard was already there), "skipped" (fleet report done)
    merged: str = "waiting"  # "merged", "already merged", "merged elsewhere", "waiting"
    missing_shards: list[str] = field(default_factory=list)
    report: str | None = None
    digest: str = "not attempted"

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def config_digest(config: JobConfig) -> str:
    """A short digest of what changes the analysis (not the trigger or delivery settings)."""
    relevant = config.model_dump(
        mode="json", include={"projects", "regions", "services", "source", "window", "analysis"}
    )
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def owner_id(slot: TaskSlot, env: Mapping[str, str] | None = None) -> str:
    """Who holds a claim: the Cloud Run execution and task (a retry of the task is the same owner)."""
    env = os.environ if env is None else env
    execution = env.get("CLOUD_RUN_EXECUTION") or f"local-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return f"{execution}/task-{slot.index}"


def _load(store: Store, key: str) -> dict[str, Any] | None:
    data = store.read(key)
    if data is None:
        return None
    try:
        loaded = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{store.location(key)} is not valid JSON: {exc}",
            hint="delete the object; the next run rewrites it",
        ) from exc
    return loaded if isinstance(loaded, dict) else None


def claim(store: Store, key: str, *, owner: str, now: datetime, lease: timedelta = CLAIM_LEASE) -> bool:
    """Take the claim at ``key`` for ``owner``: True when this caller now holds it.

    Created if absent; kept by the same owner (a retried task); taken over when older than ``lease``.
    Read back after writing, so of two writers on a store without preconditions the later one wins.
    """
    token = uuid.uuid4().hex
    body = json.dumps({"owner": owner, "token": token, "at": format_time(now)}).encode()
    if not store.create(key, body, content_type=JSON):
        held = _load(store, key) or {}
        stale = "at" not in held or now - parse_time(str(held["at"])) > lease
        if held.get("owner") != owner and not stale:
            return False
        log.warning("taking over claim %s from %s", key, held.get("owner", "?"), extra={"claim": key})
        store.write(key, body, content_type=JSON)
    return (_load(store, key) or {}).get("token") == token


# ---------------------------------------------------------------------------------------------
# One task's share


def plan_share(
    config: JobConfig,
    slot: TaskSlot,
    window: tuple[datetime, datetime],
    *,
    now: datetime,
) -> tuple[int, list[ServiceKey], Plan, list[Any]]:
    """(fleet size, this task's services, the batches that read and analyze them, problems met while
    listing). Batches bound a task's memory whatever its share (analyzer/batches.py)."""
    from pathlib import Path

    from analyzer.batches import LiveBatch, plan_listed, plan_raw, plan_snapshot, services_per_batch
    from analyzer.pipeline import load_demo
    from analyzer.sharding import shard_of
    from analyzer.sources.inventory import restrict, services_of

    size = services_per_batch((window[1] - window[0]).total_seconds() / 86_400, config.analysis)
    kind = config.source.kind
    if kind == "demo":
        raw = load_demo()
        fleet = services_of(raw)
        mine = share(fleet, slot)
        return len(fleet), mine, plan_raw(restrict(raw, mine), batch_size=size), []
    if kind == "snapshot":
        # Read file by file; only this task's services are kept (spilled to disk) and batched.
        assert config.source.snapshot is not None  # load_config checked it
        plan = plan_snapshot(Path(config.source.snapshot), batch_size=size,
                             keep=lambda key: shard_of(key, slot.count) == slot.index)
        return plan.fleet, [k for b in plan.batches for k in b.keys], plan, []
    from analyzer.sources.google_clients import MONITORING_EMULATOR_HOST, RUN_EMULATOR_HOST, build_clients
    from analyzer.sources.inventory import list_fleet, list_revisions

    env = dict(os.environ)
    for variable, value in (
        (MONITORING_EMULATOR_HOST, config.source.monitoring_emulator_host),
        (RUN_EMULATOR_HOST, config.source.run_emulator_host),
    ):
        if value:
            env[variable] = value
    clients = build_clients(env)
    try:
        inventory = list_fleet(
            clients,
            projects=config.projects,
            regions=None if config.regions == "all" else config.regions,
            services=None if config.services == "all" else config.services,
            window=window,
        )
        mine = share(inventory.services, slot)
        listed = list_revisions(clients, mine, start=window[0], end=window[1])  # once, not once a batch
    finally:
        clients.close()
    origin = "live " + ", ".join(sorted({f"projects/{k.project}" for k in mine}))
    plan = plan_listed(mine, size=size, live=LiveBatch(env=env, start=window[0], end=window[1], now=now),
                       origin=origin, listed=listed)
    return len(inventory.services), mine, plan, inventory.problems


@dataclass(slots=True)
class Shard:
    """One task's results: its report JSON, its HTML report, and the digest charts of its services."""

    report: dict[str, Any]
    html: str | None = None  # None when there was nothing to analyze
    charts: dict[ServiceKey, ServiceChart] = field(default_factory=dict)
    findings: int = 0


def analyze_share(
    config: JobConfig,
    plan: Plan,
    *,
    window: tuple[datetime, datetime],
    generated_at: datetime,
    problems: list[Any],
    workers: int = 1,
) -> Shard:
    """Analyze one share batch by batch; the charts are drawn for services with findings when a digest
    is configured."""
    from functools import partial

    from analyzer.batches import collect
    from analyzer.prices import load_table
    from analyzer.render.fleet import empty_report
    from analyzer.render.parts import assemble_json, assemble_report, render_part, report_layout

    if plan.batches:
        plan.batches[0].base.problems.extend(problems)
    layout = report_layout(k for b in plan.batches for k in b.keys)
    summarize = partial(render_part, generated_at=generated_at, layout=layout,
                        digest_charts=bool(config.digest.recipients))
    run = collect(plan, config.analysis, summarize, workers=workers,
                  progress=lambda done, total, label: log.info("batch %d/%d analyzed: %s", done, total, label))
    parts = run.summaries
    charts = {key: png for part in parts for key, png in part.charts.items()}
    unread = run.problems + ([] if plan.batches else list(problems))
    if not run.has_data:
        table = load_table(config.analysis.pricing.table)
        listed = [{"subject": p.subject, "message": p.message, "hint": p.hint or None}
                  for p in [*unread, *(p for part in parts for p in part.problems)]]
        if plan.services:
            listed.append({"subject": "this share", "message": f"no usable Cloud Run metrics in {plan.origin}",
                           "hint": "check the window, the projects and services, and that they served traffic"})
        report = empty_report(
            window=(plan.window[0] or window[0], plan.window[1] or window[1]),
            step_seconds=config.analysis.step_seconds,
            prices={
                "as_of": table.as_of,
                "currency": table.currency,
                "committed_use_discount": config.analysis.pricing.committed_use_discount,
            },
            source=plan.origin,
            problems=listed,
            generated_at=generated_at,
        )
        return Shard(report)
    report = assemble_json(parts, generated_at=generated_at)
    html = assemble_report(parts, generated_at=generated_at, problems=unread)
    return Shard(report, html, charts, sum(len(p.findings) for p in parts))


# ---------------------------------------------------------------------------------------------
# The run


@dataclass(slots=True)
class Job:
    """One task's run against one store; ``digest`` is None when no digest is configured."""

    config: JobConfig
    store: Store
    slot: TaskSlot = field(default_factory=TaskSlot)
    digest: Digest | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def fingerprint(self) -> str:
        return config_digest(self.config)

    def _current(self, report: Mapping[str, Any] | None) -> bool:
        return bool(report) and (report or {}).get("job", {}).get("config") == self.fingerprint

    def run(
        self,
        *,
        now: datetime,
        digest_mode: str = "auto",
        force: bool = False,
        progress: logs.Progress | None = None,
    ) -> RunOutcome:
        """Analyze this task's share (unless done), merge when every shard is there, then the digest."""
        window = self.config.window.resolve(now)
        layout = Layout(window[1])
        outcome = RunOutcome(window=layout.key, shard=self.slot.name)
        fleet_report = _load(self.store, layout.report_json)
        if not force and self._current(fleet_report):
            outcome.analyzed, outcome.merged = "skipped", "already merged"
            outcome.report = self.store.location(layout.report_html)
            log.info("the fleet report of window %s exists; not analyzing again", layout.key)
        else:
            self._analyze(layout, window, outcome, now=now, force=force, progress=progress)
            fleet_report = self.merge(layout, outcome, now=now, force=force)
        if fleet_report is not None:
            outcome.digest = self.send_digest(fleet_report, now=now, mode=digest_mode)
        return outcome

    def _analyze(
        self,
        layout: Layout,
        window: tuple[datetime, datetime],
        outcome: RunOutcome,
        *,
        now: datetime,
        force: bool,
        progress: logs.Progress | None,
    ) -> None:
        existing = _load(self.store, layout.shard(self.slot))
        if not force and self._current(existing):
            assert existing is not None
            outcome.analyzed = "reused"
            outcome.fleet_services = int(existing["job"].get("fleet_services", 0))
            outcome.share_services = len(existing["services"])
            outcome.findings = len(existing["findings"])
            log.info("shard %s of window %s exists; not analyzing again", self.slot.name, layout.key)
            return
        fleet, mine, plan, problems = plan_share(self.config, self.slot, window, now=now)
        log.info(
            "task %s analyzes %d of %d services",
            self.slot.name,
            len(mine),
            fleet,
            extra={"fleet_services": fleet, "share_services": len(mine)},
        )
        from analyzer.batches import default_workers

        if not mine:
            plan.origin = "no service in this share"
        shard = analyze_share(  # collect() removes a snapshot's spill files when done
            self.config,
            plan,
            window=window,
            generated_at=now,
            problems=problems if self.slot.index == 0 else [],
            workers=default_workers(),
        )
        shard.report["job"] = {
            "config": self.fingerprint,
            "shard": self.slot.name,
            "fleet_services": fleet,
            "window_key": layout.key,
        }
        for key, chart in shard.charts.items():
            self.store.write(layout.chart(key), chart.png, content_type="image/png")
        if shard.html is not None:
            self.store.write(layout.shard(self.slot, "html"), shard.html.encode(), content_type=HTML)
        # the JSON last: its presence is what tells the other tasks this shard is complete
        self.store.write(
            layout.shard(self.slot), json.dumps(shard.report, indent=1).encode(), content_type=JSON
        )
        outcome.fleet_services, outcome.share_services, outcome.findings = fleet, len(mine), shard.findings
        log.info(
            "wrote shard %s: %d services, %d findings",
            self.store.location(layout.shard(self.slot)),
            len(mine),
            shard.findings,
        )

    def _present(self, layout: Layout) -> dict[int, dict[str, Any]]:
        found: dict[int, dict[str, Any]] = {}
        for key in self.store.list(layout.shards):
            match = SHARD_NAME.match(key.rsplit("/", 1)[-1])
            if match and int(match[2]) == self.slot.count:
                report = _load(self.store, key)
                if self._current(report):
                    assert report is not None
                    found[int(match[1])] = report
        return found

    def merge(
        self, layout: Layout, outcome: RunOutcome, *, now: datetime, force: bool = False
    ) -> dict[str, Any] | None:
        """Assemble the fleet report when all shards are present and this task wins the claim."""
        from analyzer.render.fleet import merge_reports, render_fleet

        shards = self._present(layout)
        missing = [f"{i}-of-{self.slot.count}" for i in range(self.slot.count) if i not in shards]
        if missing:
            outcome.merged, outcome.missing_shards = "waiting", missing
            log.info(
                "waiting for %d of %d shards: %s", len(missing), self.slot.count, ", ".join(missing[:10])
            )
            return None
        existing = _load(self.store, layout.report_json)
        if not force and self._current(existing):
            outcome.merged, outcome.report = "already merged", self.store.location(layout.report_html)
            return existing
        if not claim(self.store, layout.merge_claim, owner=owner_id(self.slot, self.env), now=now):
            outcome.merged = "merged elsewhere"
            log.info("another task is assembling the fleet report of window %s", layout.key)
            return None
        names = {f"{i}-of-{self.slot.count}": report for i, report in shards.items()}
        links = {name: f"shards/{name}.html" for name, report in names.items() if report["services"]}
        fleet = merge_reports(names, generated_at=now, links=links)
        fleet["job"] = {"config": self.fingerprint, "window_key": layout.key, "tasks": self.slot.count}
        self.store.write(layout.report_html, render_fleet(fleet).encode(), content_type=HTML)
        self.store.write(layout.report_json, json.dumps(fleet, indent=1).encode(), content_type=JSON)
        outcome.merged, outcome.report = "merged", self.store.location(layout.report_html)
        log.info(
            "wrote the fleet report %s: %d services, %d findings",
            outcome.report,
            fleet["summary"]["services"],
            fleet["summary"]["findings"],
        )
        record_history(self.store, fleet, now=now)
        return fleet

    def send_digest(self, report: Mapping[str, Any], *, now: datetime, mode: str) -> str:
        """Send the digest of the current period once.

        ``auto`` sends it when due, ``now`` regardless, ``skip`` never.
        """
        if self.digest is None or mode == "skip":
            return "not configured" if self.digest is None else "skipped"
        if mode == "auto" and not self.digest.due(now):
            return "not due"
        period = self.digest.period(now)
        claim_key, sent_key = digest_keys(period)
        if self.store.read(sent_key) is not None:
            log.info("the digest of %s was already sent", period)
            return "already sent"
        if not claim(self.store, claim_key, owner=owner_id(self.slot, self.env), now=now):
            return "sending elsewhere"
        receipt = self.digest.send(report, now=now)
        self.store.write(
            sent_key,
            json.dumps(
                {
                    "at": format_time(now),
                    "window": report.get("job", {}).get("window_key"),
                    "receipt": receipt,
                }
            ).encode(),
            content_type=JSON,
        )
        log.info("sent the digest of %s: %s", period, receipt)
        return "sent"


def describe_config(config: JobConfig, *, now: datetime, env: Mapping[str, str] | None = None) -> list[str]:
    """What ``check-config`` prints: the config in a few lines, with what the environment must supply."""
    env = os.environ if env is None else env
    source = config.source
    where = {
        "live": f"live, projects {', '.join(config.projects)}",
        "snapshot": f"snapshot {source.snapshot}",
        "demo": "the bundled demo",
    }[source.kind]
    regions = "every region" if config.regions == "all" else ", ".join(config.regions)
    services = "every service" if config.services == "all" else f"{len(config.services)} services"
    start, end = config.window.resolve(now)
    lines = [
        f"source: {where}; {regions}; {services}",
        f"window: {format_time(start)} to {format_time(end)} for a run now "
        f"(written under {Layout(end).run}/)",
        f"store: {config.store.url}",
    ]
    digest, smtp = config.digest, config.smtp
    if digest.recipients:
        user, secret = smtp.username_env, smtp.password_env
        missing = [f"${name}" for name in (user, secret) if not env.get(name or "")]
        state = f"NOT SET here: {', '.join(missing)}; the job needs them" if missing else "set"
        login = f"; login from ${user} and ${secret} ({state})" if user else "; no SMTP login (relay)"
        lines.append(
            f"digest: {len(digest.recipients)} recipients on {digest.day}s via {smtp.host}:{smtp.port} "
            f"({smtp.security}){login}"
        )
    else:
        lines.append("digest: off (no digest.recipients)")
    serve = config.serve
    lines.append(
        f"serve: {serve.mode} mode, {len(serve.allowed_service_accounts)} allowed accounts"
        + (f", audience {serve.audience}" if serve.audience else "")
    )
    return lines


def deploy_facts(config: JobConfig, *, bucket: str | None, source: str) -> dict[str, str]:
    """What a deploy needs to know of a config (``check-config --format env``); with ``bucket``, a
    ConfigError unless the store is in that bucket (a forgotten CONFIG must not deploy someone else's)."""
    from analyzer.store import split_gcs_url

    url = config.store.url
    store_bucket = split_gcs_url(url)[0] if url.startswith("gs://") else ""
    if bucket is not None and store_bucket != bucket:
        raise ConfigError(
            f"{source}: store.url is {url}, not in gs://{bucket} (the bucket being deployed to)",
            hint=f"set store.url: gs://{bucket}/reports in {source}, or deploy with BUCKET={store_bucket or '...'}",
        )
    login = bool(config.digest.recipients) and bool(config.smtp.username_env)
    return {
        "store_bucket": store_bucket,
        "digest": "on" if config.digest.recipients else "off",
        "smtp_user_env": (config.smtp.username_env or "") if login else "",
        "smtp_password_env": config.smtp.password_env if login else "",
        "serve_accounts": ",".join(config.serve.allowed_service_accounts),
    }


def record_history(store: Store, report: Mapping[str, Any], *, now: datetime) -> None:
    """The window's history record (what the digest compares week to week); a rerun keeps the first."""
    from analyzer.delivery.history import save_record
    from analyzer.render.fleet_digest import record_from_report

    key = Layout(parse_time(report["window"]["end"])).report_html
    if not save_record(store, record_from_report(report, generated_at=now, location=key)):
        log.info("the history record of this window exists; kept")


@dataclass(slots=True)
class FleetDigest:
    """The weekly digest of the fleet report: history, the week's comparison, the email (SMTP)."""

    config: JobConfig
    store: Store
    env: Mapping[str, str] | None = None

    def period(self, now: datetime) -> str:
        year, week, _ = now.astimezone(UTC).isocalendar()
        return f"{year}-W{week:02d}"

    def due(self, now: datetime) -> bool:
        return now.astimezone(UTC).strftime("%A").lower() == self.config.digest.day

    def _images(self, layout: Layout) -> dict[ServiceKey, ServiceChart]:
        from analyzer.render.digest import stored_chart

        images = {}
        for key in self.store.list(f"{layout.run}/charts/"):
            data = self.store.read(key)
            if data is not None:
                service = Layout.chart_service(key)
                images[service] = stored_chart(service, data)
        return images

    def send(self, report: Mapping[str, Any], *, now: datetime) -> str:
        from analyzer.delivery.email import build_message, send
        from analyzer.delivery.history import previous_record
        from analyzer.render.fleet_digest import fleet_digest

        smtp, recipients = self.config.smtp, self.config.digest.recipients
        if not smtp.sender:
            raise ConfigError(
                "smtp.sender is not set",
                hint="set smtp.sender to the From: address, e.g. cloudrun-analyzer@example.com",
            )
        layout = Layout(parse_time(report["window"]["end"]))
        digest = fleet_digest(
            report,
            previous=previous_record(self.store, layout.window_end),
            config=self.config.digest,
            generated_at=now,
            images=self._images(layout),
            report_location=self.store.location(layout.report_html),
        )
        message = build_message(digest, sender=smtp.sender, recipients=recipients, date=now)
        send(message, smtp, sender=smtp.sender, recipients=recipients, env=self.env)
        return f"{message['Message-ID']} to {len(recipients)} recipients: {digest.subject}"


def check_digest_login(config: JobConfig, *, digest_mode: str, env: Mapping[str, str] | None = None) -> None:
    """Refuse to start a run that may send the digest but could not log in to the mail server
    (ConfigError, exit 2): better a failed first run than an unsent digest discovered weeks later."""
    if digest_mode == "skip" or not config.digest.recipients:
        return
    from analyzer.delivery.email import credentials

    if not config.smtp.sender:
        raise ConfigError("digest.recipients is set but smtp.sender is not",
                          hint="set smtp.sender to the From: address, e.g. cloudrun-analyzer@example.com")
    credentials(config.smtp, os.environ if env is None else env)


def digest_for(config: JobConfig, store: Store, env: Mapping[str, str] | None = None) -> Digest | None:
    """The digest of ``config`` (None when it has no recipients)."""
    return FleetDigest(config, store, env) if config.digest.recipients else None
