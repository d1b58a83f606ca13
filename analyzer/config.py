"""The one typed configuration model, and the one place its defaults live.

Loaded from YAML (``configs/default.yaml`` documents every key); unknown keys are rejected and
numbers are bounded, and a bad value is reported as a ConfigError naming the key and the fix.
Secrets (SMTP password) never live here: they come from the environment.
"""

from __future__ import annotations

import difflib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from analyzer.errors import ConfigError

ModelT = TypeVar("ModelT", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MemoryDetection(_Section):
    """Rising memory baseline: the troughs of the GC/instance sawtooth climb."""

    trough_window_minutes: int = Field(120, ge=15, le=1440,
                                       description="bin whose minimum is a trough; longer than the GC sawtooth")
    min_slope_per_day: float = Field(0.02, gt=0, le=1,
                                     description="smallest trough slope reported, fraction of the limit per day")
    min_rise: float = Field(0.02, gt=0, le=1, description="smallest total trough rise reported, fraction of the limit")
    min_duration_hours: float = Field(6.0, ge=1, le=168, description="shortest climb reported")
    significance: float = Field(0.01, gt=0, lt=0.5, description="p-value of the trend test (autocorrelation-corrected)")


class CreepDetection(_Section):
    """Instance creep: more instances than the load explains."""

    min_excess_fraction: float = Field(0.25, gt=0, le=10, description="excess over the expected instance count")
    min_excess_instances: float = Field(0.75, ge=0, le=1000, description="smallest excess in instances")
    min_duration_hours: float = Field(4.0, ge=0.5, le=168)
    reference_hours: float = Field(24.0, ge=2, le=336,
                                   description="hours of reference data used when there is no earlier revision")


class RegressionDetection(_Section):
    """Latency or CPU regression between a revision and the one before it."""

    min_increase: float = Field(0.12, gt=0, le=10, description="relative increase reported (0.12 = +12 %)")
    min_hours: float = Field(3.0, ge=0.5, le=168, description="hours of data needed on each side of the deploy")
    compare_hours: float = Field(24.0, ge=1, le=336, description="hours compared on each side of the deploy")
    significance: float = Field(0.01, gt=0, lt=0.5)


class DetectionConfig(_Section):
    warmup_minutes: int = Field(45, ge=0, le=1440, description="quiet period after each deploy and new instance wave")
    memory: MemoryDetection = MemoryDetection()
    creep: CreepDetection = CreepDetection()
    latency: RegressionDetection = RegressionDetection()
    cpu: RegressionDetection = RegressionDetection(min_increase=0.15)


class RateOverride(_Section):
    """Unit prices that replace the price table's for one project (negotiated or contract prices)."""

    cpu_vcpu_second: float | None = Field(default=None, ge=0, le=1, description="USD per vCPU-second")
    memory_gib_second: float | None = Field(default=None, ge=0, le=1, description="USD per GiB-second")
    requests_per_million: float | None = Field(default=None, ge=0, le=100,
                                               description="USD per million requests")
    idle_cpu_vcpu_second: float | None = Field(default=None, ge=0, le=1,
                                               description="USD per idle min-instance vCPU-second")
    idle_memory_gib_second: float | None = Field(default=None, ge=0, le=1,
                                                 description="USD per idle min-instance GiB-second")

    def rates(self) -> dict[str, float]:
        """The prices that are set, by name."""
        values = {name: getattr(self, name) for name in RateOverride.model_fields}
        return {name: float(value) for name, value in values.items() if value is not None}


class ProjectPricing(RateOverride):
    """One project's prices: flat rates apply to both billing modes, ``request_based`` and
    ``instance_based`` to one (and win over the flat ones); an own committed-use discount."""

    request_based: RateOverride = Field(default_factory=RateOverride)
    instance_based: RateOverride = Field(default_factory=RateOverride)
    committed_use_discount: float | None = Field(default=None, ge=0, lt=1,
                                                 description="replaces the global discount for this project")


class WhatIfConfig(_Section):
    """Knobs of the per-service what-ifs (analyzer/analysis/whatif.py)."""

    memory_headroom: float = Field(default=0.3, ge=0, le=3,
                                   description="headroom over the observed p99 memory when right-sizing")
    min_memory_mib: int = Field(default=512, ge=128, le=32768,
                                description="smallest memory limit suggested (512 MiB: 2nd-gen minimum)")
    memory_step_mib: int = Field(default=128, ge=1, le=4096,
                                 description="suggested limits are multiples of this")
    basis_days: float = Field(default=7.0, gt=0, le=90,
                              description="days of the current revision's data a what-if is judged on")


class PricingConfig(_Section):
    table: str = Field(default="builtin",
                       description="'builtin' or the path of a price table YAML like configs/prices.yaml")
    committed_use_discount: float = Field(default=0.0, ge=0, lt=1,
                                          description="fraction off compute in both billing modes")
    committed_use_discount_request_based: float | None = Field(
        default=None, ge=0, lt=1, description="fraction off request-based compute (0.17 after opting in)")
    committed_use_discount_instance_based: float | None = Field(
        default=None, ge=0, lt=1,
        description="fraction off instance-based compute (flexible CUD 0.28 / 0.46)")
    apply_free_tier: bool = Field(
        default=False,
        description="subtract the monthly free tier pro rata to the window, shared by all services")
    bill_idle_min_instances: bool = Field(
        default=False,
        description="add the idle min-instance estimate (request-based) to window cost and projection")
    default_request_based: bool = Field(
        default=True, description="billing mode assumed when a revision's cpu_idle is unknown")
    default_cpu: float = Field(default=1.0, gt=0, le=64,
                               description="vCPU limit assumed when a revision's limits are unknown")
    default_memory_gib: float = Field(default=0.5, gt=0, le=64,
                                      description="memory limit assumed when unknown")
    overrides: dict[str, ProjectPricing] = Field(
        default_factory=dict,
        description="per project: {project: {cpu_vcpu_second: x, instance_based: {...}, "
                    "committed_use_discount: d}}",
    )
    what_if: WhatIfConfig = Field(default_factory=WhatIfConfig)

    def discount(self, project: str, *, request_based: bool) -> float:
        """The committed-use discount that applies to one project's compute in one billing mode."""
        override = self.overrides.get(project)
        if override is not None and override.committed_use_discount is not None:
            return override.committed_use_discount
        by_mode = (self.committed_use_discount_request_based if request_based
                   else self.committed_use_discount_instance_based)
        return self.committed_use_discount if by_mode is None else by_mode


class AnalysisConfig(_Section):
    step_seconds: int = Field(300, ge=60, le=3600, description="time step of the analysis table")
    detection: DetectionConfig = DetectionConfig()
    pricing: PricingConfig = PricingConfig()


def _known_keys(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The keys allowed beside the unknown one at ``loc`` (for a "did you mean" hint)."""
    for part in loc[:-1]:
        if model is None or not isinstance(part, str) or part not in model.model_fields:
            return []
        annotation = model.model_fields[part].annotation
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    return list(model.model_fields) if model is not None else []


def _key_path(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """``loc`` without pydantic's union-branch tags (``literal['all']``, ``list[...]``)."""
    return tuple(p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))


def _union_noise(item: Any, paths: list[tuple[int | str, ...]]) -> bool:
    """A ``'all' or a list`` field whose list was given: the literal branch's complaint adds nothing."""
    path = _key_path(item["loc"])
    return bool(item["type"] == "literal_error" and any(len(q) > len(path) and q[: len(path)] == path
                                                        for q in paths))


def format_validation_error(error: ValidationError, source: str, model: type[BaseModel] | None = None) -> str:
    items = error.errors()
    paths = [_key_path(item["loc"]) for item in items]
    found: dict[str, list[str]] = {}  # one line per key; a union's branches are joined with "or"
    for item, path in zip(items, paths, strict=True):
        if _union_noise(item, paths):
            continue
        where = ".".join(str(p) for p in path) or "(top level)"
        if item["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(item["loc"][-1]), _known_keys(model, item["loc"]), n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            found.setdefault(where, []).append(
                f"unknown key; {guess}remove it or check its spelling against configs/default.yaml")
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            found.setdefault(where, []).append(f"{message} (got {item.get('input')!r})")
    lines = [f"{source}: invalid configuration"]
    lines += [f"  {where}: " + ", or ".join(messages) for where, messages in found.items()]
    return "\n".join(lines)


def parse_config(model: type[ModelT], data: Any, *, source: str) -> ModelT:
    try:
        return model.model_validate(data or {})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model),
                          hint="see configs/default.yaml for every key, its bounds and its meaning") from exc


def load_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}", hint="check the path") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}", hint="fix the YAML syntax at the line shown") from exc


# ---------------------------------------------------------------------------------------------
# The scheduled job's config: what to read, the window, where reports go, who is told, the trigger

def _matching(pattern: str, what: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


ProjectId = Annotated[str, _matching(r"[a-z][a-z0-9-]{4,28}[a-z0-9]",
                                     "a project ID (6-30 lowercase letters, digits and hyphens, starting "
                                     "with a letter, e.g. my-project; not its number)")]
Region = Annotated[str, _matching(r"[a-z]+-[a-z]+[0-9]+", "a Cloud Run region, e.g. us-central1")]
ServiceName = Annotated[str, _matching(r"[a-z]([-a-z0-9]{0,47}[a-z0-9])?",
                                       "a Cloud Run service name (lowercase letters, digits and hyphens)")]
Email = Annotated[str, _matching(r"[^@\s]+@[^@\s]+\.[^@\s]+",
                                 "an email address, e.g. scheduler@my-project.iam.gserviceaccount.com")]
HostPort = Annotated[str, _matching(r"[^\s:/]+:[0-9]{1,5}", "host:port, e.g. 127.0.0.1:8085")]


class SourceConfig(_Section):
    """Where the job reads from: Google's APIs, a snapshot directory, or the bundled demo."""

    kind: Literal["live", "snapshot", "demo"] = Field(default="live", description="live | snapshot | demo")
    snapshot: str | None = Field(default=None, description="snapshot directory, when kind is snapshot")
    monitoring_emulator_host: HostPort | None = Field(
        default=None, description="host:port of a plaintext Monitoring emulator (tests); unset = Google")
    run_emulator_host: HostPort | None = Field(
        default=None, description="host:port of a plaintext Cloud Run Admin emulator (tests); unset = Google")


class WindowConfig(_Section):
    """The window analyzed: the last ``days`` before an aligned end, or a fixed ``start``/``end``.

    The aligned end is also the run's key in the store: every run in the same day (``align: day``)
    analyzes the same window and writes to the same place, which is what makes a retry idempotent.
    """

    days: float = Field(default=7.0, gt=0, le=42, description="window length (metrics are kept 6 weeks)")
    start: datetime | None = Field(default=None, description="fixed start (RFC 3339 with a zone); needs end")
    end: datetime | None = Field(default=None, description="fixed end (RFC 3339 with a zone)")
    align: Literal["day", "hour", "none"] = Field(default="day", description="round the end to a day/hour")

    @field_validator("start", "end", mode="before")
    @classmethod
    def _dates_at_midnight(cls, value: Any) -> Any:
        if isinstance(value, date) and not isinstance(value, datetime):
            return datetime(value.year, value.month, value.day, tzinfo=UTC)
        return value

    @field_validator("start", "end")
    @classmethod
    def _zoned(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("the time has no zone; write RFC 3339 with one, e.g. 2026-01-05T00:00:00Z")
        return value

    def resolve(self, now: datetime) -> tuple[datetime, datetime]:
        """(start, end) in UTC for a run at ``now``."""
        end = self.end or now
        if self.end is None and self.align != "none":
            step = 86_400 if self.align == "day" else 3_600
            end = datetime.fromtimestamp(int(end.timestamp()) // step * step, UTC)
        start = self.start or end - timedelta(days=self.days)
        return start.astimezone(UTC), end.astimezone(UTC)


class ServeConfig(_Section):
    """``cloudrun-analyzer serve``: who may trigger a run over HTTP, and how their token is checked."""

    mode: Literal["iam", "public"] = Field(
        default="iam", description="iam: Cloud Run IAM checked the token (signature stripped); "
                                   "public: verify it here")
    audience: str | None = Field(default=None, description="the token's expected aud: the URL called "
                                                           "(required by serve, in both modes)")
    allowed_service_accounts: list[Email] = Field(
        default_factory=list, description="service accounts whose tokens may trigger a run (Scheduler's)")
    issuers: list[str] = Field(default=["https://accounts.google.com", "accounts.google.com"], min_length=1)
    certs_url: str = Field(default="https://www.googleapis.com/oauth2/v1/certs",
                           description="Google's OIDC signing certificates (x509 PEM by key id)")
    clock_skew_seconds: int = Field(default=10, ge=0, le=300, description="tolerance on iat/exp")


# ---------------------------------------------------------------------------------------------
# Delivery: the weekly digest's mail server and recipients, and the history store
# (configs/default.yaml, keys smtp:, digest: and store:)

EnvName = Annotated[str, _matching(r"[A-Za-z_][A-Za-z0-9_]*",
                                   "an environment variable name, e.g. CLOUDRUN_ANALYZER_SMTP_USER")]
HttpUrl = Annotated[str, _matching(r"https?://[^\s]+", "an http(s) URL, e.g. https://reports.example.com/cloudrun")]
_GCS_URL = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s]*)?")


def _store_url(value: str) -> str:
    if value.startswith("gs:") and not _GCS_URL.fullmatch(value):
        raise ValueError(f"{value!r} is not gs://BUCKET/PREFIX (a bucket name is 3-222 lowercase letters, "
                         "digits, dots, hyphens and underscores)")
    if "://" in value and not value.startswith("gs://"):
        raise ValueError(f"{value!r}: only local directories and gs://BUCKET/PREFIX are supported")
    if not value.strip():
        raise ValueError("empty; give a local directory or gs://BUCKET/PREFIX")
    return value


StoreUrl = Annotated[str, AfterValidator(_store_url)]


class SmtpConfig(_Section):
    """The mail server the digest goes through. Credentials come from the environment variables
    named here, never from this file, and are never logged."""

    host: str = Field(default="localhost", min_length=1, max_length=253, description="SMTP server host")
    port: int = Field(default=587, ge=1, le=65535, description="587 for starttls, 465 for ssl, 25 for none")
    security: Literal["starttls", "ssl", "none"] = Field(
        default="starttls",
        description="starttls: upgrade after connecting; ssl: implicit TLS (SMTPS); none: plaintext")
    username_env: EnvName | None = Field(
        default="CLOUDRUN_ANALYZER_SMTP_USER",
        description="variable holding the AUTH user; the server needs a login unless this is null "
                    "(a relay that takes mail from this network without one)")
    password_env: EnvName = Field(
        default="CLOUDRUN_ANALYZER_SMTP_PASSWORD", description="variable holding the password")
    sender: Email | None = Field(default=None, description="From: address, e.g. analyzer@example.com")
    timeout_seconds: float = Field(default=30.0, gt=0, le=300, description="connect/command timeout")
    ca_file: str | None = Field(
        default=None,
        description="PEM bundle of CAs to trust instead of the system's (a relay with a private certificate)")


class DigestConfig(_Section):
    """``cloudrun-analyzer digest``: who gets the weekly email, and where its links point."""

    recipients: list[Email] = Field(default_factory=list, max_length=100, description="To: addresses")
    subject_prefix: str = Field(default="[cloudrun-analyzer]", max_length=60,
                                description="put before the headline")
    report_url_base: HttpUrl | None = Field(
        default=None,
        description="URL at which the store's reports/ folder is readable; links are "
                    "BASE/YYYY-MM-DD/report.html (unset: the digest names the stored path instead)")
    day: Literal["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"] = Field(
        default="monday",
        description="weekday the scheduled job sends the digest (covering the 7 days before)")
    max_charts: int = Field(default=6, ge=0, le=20,
                            description="services charted in the email (most urgent first)")


class StoreConfig(_Section):
    """Where run history (findings per window) and the reports the digest links to are kept."""

    url: StoreUrl = Field(default="cloudrun-analyzer-history",
                          description="a local directory, or gs://BUCKET/PREFIX (google-cloud-storage; "
                                      "STORAGE_EMULATOR_HOST points it at an emulator)")


# ---------------------------------------------------------------------------------------------
# The whole job config

class JobConfig(_Section):
    """The whole config of ``run``, ``merge``, ``serve`` and ``check-config`` (configs/default.yaml)."""

    projects: list[ProjectId] = Field(default_factory=list, description="project IDs to read (live)")
    regions: Literal["all"] | list[Region] = Field(default="all", description="'all' or a list of regions")
    services: Literal["all"] | list[ServiceName] = Field(default="all", description="'all' or a list")
    source: SourceConfig = Field(default_factory=SourceConfig)
    window: WindowConfig = Field(default_factory=WindowConfig)
    # model_validate({}): the defaults, and a call mypy can check whatever style the class uses
    analysis: AnalysisConfig = Field(default_factory=lambda: AnalysisConfig.model_validate({}))
    store: StoreConfig = Field(default_factory=lambda: StoreConfig.model_validate({}))
    digest: DigestConfig = Field(default_factory=lambda: DigestConfig.model_validate({}))
    smtp: SmtpConfig = Field(default_factory=lambda: SmtpConfig.model_validate({}))
    serve: ServeConfig = Field(default_factory=ServeConfig)


def job_problems(config: JobConfig) -> list[tuple[str, str]]:
    """What is wrong across keys, as (key, problem and fix); empty when the config is usable."""
    found = []
    if config.source.kind == "live" and not config.projects:
        found.append(("projects", "no project to read; list at least one ID, e.g. projects: [my-project]"))
    if config.source.kind == "snapshot" and not config.source.snapshot:
        found.append(("source.snapshot", "kind is snapshot but no directory is given; set snapshot: DIR"))
    if config.source.kind != "snapshot" and config.source.snapshot:
        found.append(("source.snapshot", f"set, but source.kind is {config.source.kind}; "
                                         "remove it or set source.kind: snapshot"))
    window = config.window
    if window.start is not None and window.end is None:
        found.append(("window.end", "window.start is set but window.end is not; set both, or use days"))
    if window.start is not None and window.end is not None and window.start >= window.end:
        found.append(("window.start", "is not before window.end; swap them or fix the dates"))
    if window.start is not None and "days" in window.model_fields_set:
        found.append(("window.days", "set together with window.start; keep one of them"))
    serve = config.serve
    if serve.mode == "public" and not serve.audience:
        found.append(("serve.audience", "public mode needs the expected audience; set it to the service URL "
                                        "the Scheduler job calls, e.g. https://analyzer-abc-uc.a.run.app"))
    return found


def load_config(path: Path) -> JobConfig:
    """Read, validate and cross-check a job config file; a ConfigError names every bad key and its fix."""
    data = load_yaml(path)
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys",
                          hint="see configs/example-job.yaml")
    config = parse_config(JobConfig, data, source=str(path))
    problems = job_problems(config)
    if problems:
        lines = "\n".join(f"  {key}: {message}" for key, message in problems)
        raise ConfigError(f"{path}: invalid configuration\n{lines}",
                          hint="see configs/default.yaml for every key, its bounds and its meaning")
    return config
