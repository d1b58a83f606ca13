"""The command line: ``cloudrun-analyzer report|…``. The edge where errors become messages and exit codes.

Exit codes: 0 success · 1 ongoing findings with ``--fail-on-findings`` (or as severe as ``--fail-on``) ·
2 bad config or usage · 3 unreadable input · 4 a Google API call failed · 5 nothing could be analyzed ·
6 delivery failed · 70 internal error (a bug: please report it).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import click

from analyzer import __version__
from analyzer.analysis.impact import at_least
from analyzer.config import AnalysisConfig, load_yaml, parse_config
from analyzer.errors import AnalyzerError, ConfigError
from analyzer.logs import printable
from analyzer.model import Severity

if TYPE_CHECKING:
    from analyzer.batches import Plan, ReportRun
    from analyzer.config import DigestConfig, JobConfig, SmtpConfig, StoreConfig
    from analyzer.job import Job, RunOutcome
    from analyzer.sharding import TaskSlot
    from analyzer.sources.live import LiveQuery

P = ParamSpec("P")
R = TypeVar("R")

EXIT_FINDINGS = 1
EXIT_INTERNAL = 70


def edge(func: Callable[P, R]) -> Callable[P, R]:
    """Turn AnalyzerErrors into a message on stderr and their exit code; anything else is a bug."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except AnalyzerError as exc:
            click.secho(f"error: {printable(exc.message)}", fg="red", err=True)  # messages quote input
            if exc.hint:
                click.echo(f"  fix: {printable(exc.hint)}", err=True)
            sys.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except Exception as exc:  # pragma: no cover - the last line of defence
            click.secho(f"internal error: {type(exc).__name__}: {printable(str(exc))}", fg="red", err=True)
            click.echo("  this is a bug in cloudrun-analyzer; please report it with the command you ran", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


def load_analysis_config(path: Path | None) -> AnalysisConfig:
    """The ``analysis`` part of a config file (or defaults when no file is given)."""
    if path is None:
        return AnalysisConfig()
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys", hint="see configs/default.yaml")
    return parse_config(AnalysisConfig, data.get("analysis", {}), source=f"{path} (analysis)")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cloudrun-analyzer")
def cli() -> None:
    """Find memory leaks, instance creep and latency/CPU regressions in Cloud Run services,
    name the deploy that caused each one, and price it in dollars.

    \b
    Try it with no Google account:
      cloudrun-analyzer report --demo --out report.html --json findings.json
    Analyze saved API responses (docs/snapshot-format.md):
      cloudrun-analyzer report --snapshot DIR --out report.html
    Read live with Application Default Credentials (docs/live-data.md):
      cloudrun-analyzer report --project PROJECT_ID --days 7 --out report.html
    """


def _one_source(demo: bool, snapshot: Path | None, live: bool) -> None:
    if sum([demo, snapshot is not None, live]) != 1:
        raise click.UsageError("choose one source: --demo, --snapshot DIR, or --project P (live)")


def plan_source(demo: bool, snapshot: Path | None, query: LiveQuery | None, config: AnalysisConfig, *,
                batch_size: int | None = None) -> Plan:
    """The batches of a run: the demo is one; a snapshot is spilled to batch files; live lists the
    fleet first (docs/performance.md: memory follows the batch, not the fleet)."""
    _one_source(demo, snapshot, query is not None)
    from analyzer import batches
    from analyzer.pipeline import load_demo

    if config.pricing.apply_free_tier:
        batch_size = batches.WHOLE_FLEET
    if demo:
        return batches.plan_raw(load_demo(), batch_size=batch_size or batches.services_per_batch(7))
    if snapshot is not None:
        return batches.plan_snapshot(snapshot, batch_size=batch_size)
    assert query is not None
    return batches.plan_live(query, env=dict(os.environ), batch_size=batch_size)


def run_report(plan: Plan, config: AnalysisConfig, *, workers: int, now: datetime, quiet: bool,
               digest_charts: bool = False) -> ReportRun:
    from analyzer.batches import report_parts

    return report_parts(plan, config, generated_at=now, workers=workers, digest_charts=digest_charts,
                        progress=None if quiet else _batch_progress(len(plan.batches), plan.services))


def write_outputs(run: ReportRun, *, out: Path | None, json_path: Path | None, now: datetime) -> None:
    from analyzer.errors import DeliveryError
    from analyzer.render.parts import assemble_report

    try:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(assemble_report(run.parts, generated_at=now, problems=run.problems), encoding="utf-8")
        if json_path is not None:
            json_path.parent.mkdir(parents=True, exist_ok=True)
            json_path.write_text(json.dumps(_json(run, now), indent=2), encoding="utf-8")
    except OSError as exc:
        raise DeliveryError(f"cannot write the report: {exc}",
                            hint="check the output path and its permissions") from exc


def _json(run: ReportRun, now: datetime) -> dict[str, Any]:
    from analyzer.render.parts import assemble_json

    return assemble_json(run.parts, generated_at=now, problems=run.problems)


def print_summary(run: ReportRun, *, fmt: str, now: datetime) -> None:
    from analyzer.render.parts import summarize
    from analyzer.render.text import summary_text

    if fmt == "json":
        click.echo(json.dumps(_json(run, now), indent=2))
    else:
        click.echo(summary_text(summarize(run.parts, problems=run.problems)))


def source_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--snapshot", type=click.Path(path_type=Path, file_okay=False),
                        help="Read saved Google API responses from DIR (see docs/snapshot-format.md).")(func)
    func = click.option("--demo", is_flag=True, help="Use the bundled demo scenario (no Google account needed).")(func)
    return func


def live_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options of a live read: projects, region, services and the window (docs/live-data.md)."""
    options = (
        click.option("--project", "projects", multiple=True, metavar="PROJECT_ID",
                     help="Read this project live (repeatable) with Application Default Credentials, or the "
                          "emulators named by MONITORING_EMULATOR_HOST / RUN_EMULATOR_HOST."),
        click.option("--region", help="Only this Cloud Run region (default: every region with data)."),
        click.option("--service", "services", multiple=True, metavar="NAME",
                     help="Only this service (repeatable; default: every service with data in the window)."),
        click.option("--days", type=click.IntRange(1, 42), help="Window: N days before --end (default 7)."),
        click.option("--start", metavar="TIME", help="Window start, RFC 3339 (e.g. 2026-11-16T00:00:00Z)."),
        click.option("--end", metavar="TIME", help="Window end, RFC 3339 (default: now)."),
    )
    for option in reversed(options):
        func = option(func)
    return func


def _when(text: str, option: str) -> datetime:
    from analyzer.sources.restjson import parse_time

    try:
        return parse_time(text)
    except ValueError:
        pass
    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a time; use RFC 3339, e.g. 2026-11-16T00:00:00Z",
                                 param_hint=option) from None
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


def live_query(projects: tuple[str, ...], region: str | None, services: tuple[str, ...], days: int | None,
               start: str | None, end: str | None, *, step_seconds: int) -> LiveQuery | None:
    """The live query the options ask for, or None when no --project was given."""
    if not projects:
        if region or services or days or start or end:
            raise click.UsageError("--region, --service, --days, --start and --end need --project")
        return None
    if days is not None and start is not None:
        raise click.UsageError("give either --days or --start, not both")
    from analyzer.sources.live import LiveQuery

    until = _when(end, "--end") if end else datetime.now(UTC)
    since = _when(start, "--start") if start else until - timedelta(days=days or 7)
    return LiveQuery(projects=projects, start=since, end=until, region=region, services=services,
                     alignment_period_s=step_seconds)


def _progress() -> Callable[[int, int, str], None] | None:
    """A one-line progress display on stderr when it is a terminal."""
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int, label: str) -> None:
        click.echo(f"\r  read {done}/{total} {label[:60]:<60}", err=True, nl=done == total)

    return show


def _batch_progress(batches: int, services: int) -> Callable[[int, int, str], None] | None:
    """Per batch on stderr when it is a terminal: batches done, services, elapsed time."""
    if not sys.stderr.isatty() or batches <= 1:
        return None
    began = time.monotonic()
    click.echo(f"  {services} services in {batches} batches", err=True)

    def show(done: int, total: int, label: str) -> None:
        elapsed = time.monotonic() - began
        click.echo(f"\r  analyzed batch {done}/{total} ({elapsed:.0f} s) {label[:50]:<50}", err=True,
                   nl=done == total)

    return show


def workers_option(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option(
        "--batch-size", type=click.IntRange(1, 100_000), default=None, metavar="N",
        help="Services read and analyzed together; memory follows it (default: 350 service-days, e.g. 50 "
             "services over 7 days; for a snapshot, about 256 MiB of its series).")(func)
    return click.option(
        "--workers", type=click.IntRange(1, 256), default=None, metavar="N",
        help="Worker processes that read and analyze batches of services (default: the CPU count).")(func)


@cli.command()
@source_options
@live_options
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML config (thresholds, pricing); see configs/default.yaml.")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), help="Write the HTML report here.")
@click.option("--json", "json_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Write the findings as JSON here (schema in docs/json-schema.md).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="What to print on stdout.")
@click.option("--fail-on-findings", is_flag=True,
              help="Exit 1 when there are ongoing findings (for CI gates); the same as --fail-on warning.")
@click.option("--fail-on", "fail_on", type=click.Choice([s.value for s in (Severity.WARNING, Severity.CRITICAL)]),
              help="Exit 1 when an ongoing finding is at least this severe; critical: hurting users now or "
                   "within 24 h (OOM kills, memory at the limit, more 5xx; see docs/reports.md).")
@workers_option
@edge
def report(demo: bool, snapshot: Path | None, projects: tuple[str, ...], region: str | None,
           services: tuple[str, ...], days: int | None, start: str | None, end: str | None,
           config_path: Path | None, out: Path | None, json_path: Path | None, fmt: str,
           fail_on_findings: bool, fail_on: str | None, workers: int | None, batch_size: int | None) -> None:
    """Analyze one window and report findings, costs and fix checks.

    \b
    Examples:
      cloudrun-analyzer report --demo --out report.html --json findings.json
      cloudrun-analyzer report --snapshot ./snap --format json > findings.json
      cloudrun-analyzer report --project my-project --region europe-west1 --days 7 --out report.html
      cloudrun-analyzer report --snapshot ./snap --fail-on critical   # exit 1 if users are hurt
    """
    from analyzer.batches import default_workers

    config = load_analysis_config(config_path)
    query = live_query(projects, region, services, days, start, end, step_seconds=config.step_seconds)
    now = datetime.now(UTC)
    count = workers or default_workers()
    run = run_report(plan_source(demo, snapshot, query, config, batch_size=batch_size), config, workers=count, now=now,
                     quiet=fmt == "json")
    write_outputs(run, out=out, json_path=json_path, now=now)
    print_summary(run, fmt=fmt, now=now)
    for path, what in ((out, "HTML report"), (json_path, "JSON findings")):
        if path is not None:
            click.echo(f"wrote {what}: {path}", err=True)
    threshold = Severity(fail_on) if fail_on else Severity.WARNING if fail_on_findings else None
    findings = (f for part in run.parts for f in part.findings)
    if threshold and any(f.ongoing and at_least(f.severity, threshold) for f in findings):
        sys.exit(EXIT_FINDINGS)


@cli.command()
@live_options
@click.option("--snapshot", "directory", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Write every response read here, as a snapshot directory (must be new or empty).")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML config; its analysis.step_seconds is the alignment period read.")
@edge
def fetch(projects: tuple[str, ...], region: str | None, services: tuple[str, ...], days: int | None,
          start: str | None, end: str | None, directory: Path, config_path: Path | None) -> None:
    """Read live and save exactly what was read as a snapshot DIR (Google's REST JSON).

    `report --snapshot DIR` on it gives the same findings as the live run.

    \b
    Example:
      cloudrun-analyzer fetch --project my-project --days 7 --snapshot ./snap
    """
    from analyzer.sources.live import fetch_to_snapshot

    config = load_analysis_config(config_path)
    query = live_query(projects, region, services, days, start, end, step_seconds=config.step_seconds)
    if query is None:
        raise click.UsageError("fetch needs --project")
    if directory.exists() and any(directory.iterdir()):
        raise ConfigError(f"{directory} is not empty", hint="choose a new directory so snapshots do not mix")
    data, written = fetch_to_snapshot(query, directory, progress=_progress())
    for problem in data.problems:
        click.echo(printable(f"problem: {problem.subject}: {problem.message}"), err=True)
        if problem.hint:
            click.echo(printable(f"  fix: {problem.hint}"), err=True)
    click.echo(f"wrote {len(written)} files to {directory}: {len(data.series)} series, "
               f"{len(data.revisions)} revisions, {len(data.problems)} problems")


@cli.command("demo-snapshot")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@edge
def demo_snapshot(directory: Path) -> None:
    """Write the bundled demo scenario as a snapshot DIRECTORY (Google's REST JSON), to inspect or edit."""
    from analyzer.simulate import demo_documents
    from analyzer.sources.snapshot import write_snapshot

    documents, manifest = demo_documents()
    written = write_snapshot(directory, documents, manifest=manifest)
    click.echo(f"wrote {len(written)} files to {directory}")


def main() -> None:
    cli(prog_name="cloudrun-analyzer")


# ---------------------------------------------------------------------------------------------
# The scheduled job: run, merge, check-config, serve (docs/deploy.md, docs/operations.md)

DIGEST_CHOICE = click.Choice(["auto", "now", "skip"])


def _job_setup(config_path: Path, verbose: bool) -> JobConfig:
    from analyzer import logs
    from analyzer.config import load_config

    logs.setup(verbose=verbose)
    return load_config(config_path)


def _job(config: JobConfig, slot: TaskSlot) -> Job:
    from analyzer.job import Job, digest_for
    from analyzer.store import open_store

    store = open_store(config.store.url)
    return Job(config, store, slot, digest=digest_for(config, store))


def _finish(outcome: RunOutcome) -> None:
    from analyzer import logs

    logs.get("job").info("task %s: %s; fleet report: %s; digest: %s", outcome.shard, outcome.analyzed,
                         outcome.merged, outcome.digest, extra={"outcome": outcome.as_dict()})
    click.echo(json.dumps(outcome.as_dict()))


@cli.command("run")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Job config (YAML); see configs/example-job.yaml.")
@click.option("--digest", "digest_mode", type=DIGEST_CHOICE, default="auto", show_default=True,
              help="auto: send the digest when it is due (digest.day); now: send this period's if not sent; "
                   "skip: do not send.")
@click.option("--force", is_flag=True, help="Analyze and merge again even if this window's shard or report "
                                            "exists (the digest is still sent at most once).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@edge
def run_command(config_path: Path, digest_mode: str, force: bool, verbose: bool) -> None:
    """The job entry point: analyze this task's share, write it to the store, assemble the fleet
    report when every task is done, and send the digest when due. Safe to retry.

    \b
    On Cloud Run Jobs each task reads CLOUD_RUN_TASK_INDEX and CLOUD_RUN_TASK_COUNT and takes a
    stable share of the services. Locally, with neither set, one process does everything:
      cloudrun-analyzer run --config configs/example-job.yaml
    """
    from analyzer import logs
    from analyzer.job import check_digest_login
    from analyzer.sharding import TaskSlot

    config = _job_setup(config_path, verbose)
    check_digest_login(config, digest_mode=digest_mode)
    job = _job(config, TaskSlot.from_env())
    with logs.progress("reading Cloud Monitoring") as progress:
        outcome = job.run(now=datetime.now(UTC), digest_mode=digest_mode, force=force, progress=progress)
    _finish(outcome)


@cli.command("merge")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Job config (YAML).")
@click.option("--tasks", type=click.IntRange(1, 10_000), required=True,
              help="How many tasks wrote shards (the job's --tasks).")
@click.option("--digest", "digest_mode", type=DIGEST_CHOICE, default="auto", show_default=True,
              help="As for run.")
@click.option("--force", is_flag=True, help="Assemble again even if the fleet report exists.")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@edge
def merge_command(config_path: Path, tasks: int, digest_mode: str, force: bool, verbose: bool) -> None:
    """Assemble this window's fleet report from the tasks' shards (and send the digest when due).

    Normally the last task does this by itself; run it by hand when that task could not.
    Exits 5 when a shard is missing.
    """
    from analyzer.errors import NoDataError
    from analyzer.job import Layout, RunOutcome, check_digest_login
    from analyzer.sharding import TaskSlot

    config = _job_setup(config_path, verbose)
    check_digest_login(config, digest_mode=digest_mode)
    job = _job(config, TaskSlot(0, tasks))
    now = datetime.now(UTC)
    layout = Layout(config.window.resolve(now)[1])
    outcome = RunOutcome(window=layout.key, shard="merge", analyzed="skipped")
    report = job.merge(layout, outcome, now=now, force=force)
    if outcome.missing_shards:
        raise NoDataError(f"window {layout.key}: {len(outcome.missing_shards)} of {tasks} shards missing: "
                          + ", ".join(outcome.missing_shards[:10]),
                          hint="run the job (or the missing tasks) for this window first, and pass the "
                               "job's task count as --tasks")
    if report is not None:
        outcome.digest = job.send_digest(report, now=now, mode=digest_mode)
    _finish(outcome)


@cli.command("check-config")
@click.argument("config_path", metavar="FILE", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--bucket", help="The bucket being deployed to: exit 2 unless store.url is gs://BUCKET/...")
@click.option("--format", "output", type=click.Choice(["text", "env"]), default="text", show_default=True,
              help="env: KEY=value lines for deploy/deploy.sh (store bucket, digest, SMTP variables).")
@edge
def check_config(config_path: Path, bucket: str | None, output: str) -> None:
    """Validate a job config FILE and summarize it; exit 2 naming each bad key and its fix.

    \b
    Before a deploy, name the bucket it deploys to (deploy/deploy.sh does):
      cloudrun-analyzer check-config my-job.yaml --bucket shop-cloudrun-analyzer
    """
    from analyzer.config import load_config
    from analyzer.job import deploy_facts, describe_config

    config = load_config(config_path)
    facts = deploy_facts(config, bucket=bucket, source=str(config_path))
    if output == "env":
        for key, value in facts.items():
            click.echo(f"{key}={value}")
        return
    click.echo(f"{config_path}: valid")
    for line in describe_config(config, now=datetime.now(UTC)):
        click.echo(f"  {line}")


@cli.command("serve")
@click.option("--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False),
              help="Job config (YAML) with a serve: section.")
@click.option("--host", default=None,
              help="Address to listen on (default 0.0.0.0 on Cloud Run, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535), envvar="PORT", default=8080, show_default=True,
              help="Port (Cloud Run sets PORT).")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details.")
@edge
def serve_command(config_path: Path, host: str | None, port: int, verbose: bool) -> None:
    """Serve POST /run for Cloud Scheduler: check its OIDC token, then run the whole fleet.

    \b
    serve.mode iam (behind Cloud Run IAM) or public (the token is verified here); see
    docs/operations.md for both.
    """
    import signal
    import threading

    from analyzer import logs
    from analyzer.job import check_digest_login
    from analyzer.oidc import TokenPolicy
    from analyzer.serve import TriggerServer
    from analyzer.sharding import TaskSlot

    config = _job_setup(config_path, verbose)
    check_digest_login(config, digest_mode="now")  # a caller may ask for the digest
    serve = config.serve
    if not serve.allowed_service_accounts:
        raise ConfigError(f"{config_path}: serve.allowed_service_accounts is empty, so no caller could run",
                          hint="list the Cloud Scheduler job's service account, e.g. "
                               "[analyzer-scheduler@my-project.iam.gserviceaccount.com]")
    if not serve.audience:
        raise ConfigError(f"{config_path}: serve.audience is not set, so a token Google signed for any other "
                          "service would be accepted",
                          hint="set serve.audience to the URL the Scheduler job calls (its OIDC audience), "
                               "e.g. https://analyzer-abc-uc.a.run.app")
    policy = TokenPolicy(mode=serve.mode, allowed_accounts=frozenset(serve.allowed_service_accounts),
                         audience=serve.audience, issuers=tuple(serve.issuers), certs_url=serve.certs_url,
                         clock_skew_s=serve.clock_skew_seconds)

    def run_once(mode: str) -> dict[str, Any]:
        return _job(config, TaskSlot()).run(now=datetime.now(UTC), digest_mode=mode).as_dict()

    address = host or ("0.0.0.0" if logs.on_cloud_run() else "127.0.0.1")
    server = TriggerServer((address, port), policy=policy, runner=run_once)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown, daemon=True).start())
    logs.get("serve").info("listening on %s (mode %s)", server.url, serve.mode)
    click.echo(f"listening on {server.url}", err=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


# ---------------------------------------------------------------------------------------------
# The weekly digest of one process (docs/reports.md); a sharded job sends it from `run`/`merge`


def _delivery_sections(path: Path | None) -> tuple[SmtpConfig, DigestConfig, StoreConfig]:
    """The ``smtp``, ``digest`` and ``store`` sections of a config file (defaults without one)."""
    from analyzer.config import DigestConfig, SmtpConfig, StoreConfig

    data = (load_yaml(path) or {}) if path is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys", hint="see configs/default.yaml")
    return (parse_config(SmtpConfig, data.get("smtp"), source=f"{path} (smtp)"),
            parse_config(DigestConfig, data.get("digest"), source=f"{path} (digest)"),
            parse_config(StoreConfig, data.get("store"), source=f"{path} (store)"))


@cli.command()
@source_options
@live_options
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML config: analysis, smtp, digest and store sections (configs/default.yaml).")
@click.option("--store", "store_url", metavar="DIR|gs://BUCKET/PREFIX",
              help="History and report store (overrides store.url).")
@click.option("--to", "recipients", multiple=True, metavar="ADDRESS",
              help="Send to this address instead of digest.recipients (repeatable).")
@click.option("--dry-run", "dry_run", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE.eml",
              help="Write the email to FILE.eml instead of sending it; the store is only read.")
@click.option("--resend", is_flag=True, help="Send even if this window's digest was already sent.")
@workers_option
@edge
def digest(demo: bool, snapshot: Path | None, projects: tuple[str, ...], region: str | None,
           services: tuple[str, ...], days: int | None, start: str | None, end: str | None,
           config_path: Path | None, store_url: str | None, recipients: tuple[str, ...], dry_run: Path | None,
           resend: bool, workers: int | None, batch_size: int | None) -> None:
    """Email the weekly digest: what is new, ongoing and resolved since last week, in dollars.

    SMTP credentials come from the variables named by smtp.username_env and smtp.password_env
    (CLOUDRUN_ANALYZER_SMTP_USER / CLOUDRUN_ANALYZER_SMTP_PASSWORD by default).

    \b
    Examples:
      cloudrun-analyzer digest --demo --dry-run digest.eml
      cloudrun-analyzer digest --project my-project --days 7 --config analyzer.yaml
      cloudrun-analyzer digest --snapshot ./snap --store gs://my-bucket/cloudrun --to oncall@example.com
    """
    from analyzer.batches import default_workers
    from analyzer.config import DigestConfig, StoreConfig
    from analyzer.delivery.weekly import run_digest
    from analyzer.render.parts import finish
    from analyzer.store import open_store

    config = load_analysis_config(config_path)
    smtp, digest_config, store_config = _delivery_sections(config_path)
    if store_url is not None:
        store_config = parse_config(StoreConfig, {"url": store_url}, source="--store")
    if recipients:
        digest_config = parse_config(DigestConfig, {**digest_config.model_dump(), "recipients": recipients},
                                     source="--to")
    query = live_query(projects, region, services, days, start, end, step_seconds=config.step_seconds)
    now = datetime.now(UTC)
    # Read and analyzed in batches, as `report` is: memory follows the batch, not the fleet.
    run = run_report(plan_source(demo, snapshot, query, config, batch_size=batch_size), config,
                     workers=workers or default_workers(), now=now, quiet=False, digest_charts=True)
    finished = finish(run.parts, generated_at=now, problems=run.problems)
    outcome = run_digest(finished, store=open_store(store_config.url), smtp=smtp, config=digest_config,
                         generated_at=now, dry_run=dry_run, resend=resend)
    sent = outcome.digest
    click.echo(f"subject: {printable(sent.subject)}")
    changes = sent.changes
    click.echo(f"  {len(changes.new)} new, {len(changes.ongoing)} ongoing, {len(changes.resolved)} resolved"
               f" · HTML {sent.html_bytes / 1024:.1f} KB · {len(sent.images)} charts "
               f"({sum(len(i.data) for i in sent.images) / 1024:.1f} KB)")
    if outcome.eml is not None:
        click.echo(f"wrote {outcome.eml} and the full report it links to, {outcome.report} (not sent; "
                   "nothing written to the store)", err=True)
        return
    click.echo(f"full report: {outcome.report_location}", err=True)
    if outcome.already_sent:
        click.echo(f"already sent for the window ending {finished.window_end:%Y-%m-%d %H:%M} UTC; "
                   "nothing sent (--resend sends again)", err=True)
    else:
        count = len(outcome.recipients)
        click.echo(f"sent to {count} recipient{'s' if count != 1 else ''} via {smtp.host}:{smtp.port} "
                   f"({smtp.security})", err=True)


@cli.command("prices")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="YAML config whose pricing section (table, discounts, overrides) is used.")
@click.option("--refresh", is_flag=True,
              help="Fetch current list prices from the Cloud Billing Catalog API "
                   "(BILLING_EMULATOR_HOST honoured).")
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False),
              help="Also write the table here; point pricing.table at the file to use it.")
@edge
def prices_command(config_path: Path | None, refresh: bool, out: Path | None) -> None:
    """Print the price table in use, or refresh it from the Cloud Billing Catalog API.

    \b
    Examples:
      cloudrun-analyzer prices
      cloudrun-analyzer prices --refresh --out configs/prices-live.yaml
    """
    from analyzer.analysis.pricing import settings_summary
    from analyzer.errors import DeliveryError
    from analyzer.prices import dump_table, load_table

    config = load_analysis_config(config_path)
    table = load_table(config.pricing.table)
    if refresh:
        from analyzer.sources.billing import refresh_prices
        from analyzer.sources.google_clients import build_catalog_client

        client = build_catalog_client()
        try:
            refreshed = refresh_prices(client, base=table, as_of=datetime.now(UTC).date().isoformat())
        finally:
            client.transport.close()
        table = refreshed.table
        matched = len({m.sku_id for m in refreshed.matched})
        click.echo(f"{matched} of {refreshed.skus_seen} Cloud Run SKUs matched; "
                   f"{len(refreshed.unmatched)} not matched (listed under unmatched_skus)", err=True)
        for line in [*refreshed.notes, *(f"kept from the base table: {n}" for n in refreshed.not_refreshed)]:
            click.echo(f"  {line}", err=True)
    text = "".join(f"# {line}\n" for line in settings_summary(config.pricing)) + dump_table(table)
    if out is not None:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise DeliveryError(f"cannot write the price table: {exc}",
                                hint="check the path and its permissions") from exc
        click.echo(f"wrote {out}", err=True)
    click.echo(text, nl=False)
