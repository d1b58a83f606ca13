"""The deploy kit: deploy/deploy.sh run against a fake ``gcloud`` on PATH (tests/fake_gcloud.py, which
records every call and answers like gcloud, "API not enabled", "already exists" and IAM's delays
included), from an empty project to a deployed job; then that job executed as Cloud Run would run it
(its arguments, its environment, its secrets, its service account) against the GCS double that
enforces Cloud Storage's IAM with the roles the kit granted, Google's APIs on loopback and an SMTP
relay that refuses mail without a login: the first digest arrives, and a rerun changes nothing."""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from click.testing import CliRunner

from analyzer.cli import cli
from tests.fake_gcloud import REQUIRED_API, Args, new_state
from tests.fakes.fleet import FleetSpec, add_fleet
from tests.fakes.monitoring import FakeMetricService
from tests.fakes.run import FakeRun
from tests.fakes.server import RunningServer, start
from tests.gcs_iam import BucketIam
from tests.gcs_preconditions import enforcing

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy" / "deploy.sh"
PROJECT, STAGING, REGION, BUCKET = "shop-prod", "shop-staging", "europe-west1", "shop-cloudrun-analyzer"
JOB_SA = f"analyzer-job@{PROJECT}.iam.gserviceaccount.com"
SCHEDULER_SA = f"analyzer-scheduler@{PROJECT}.iam.gserviceaccount.com"
USER, PASSWORD = "apikey", "s3cret-relay-password"
WINDOW = {"start": "2026-01-01T00:00:00Z", "end": "2026-01-01T12:00:00Z"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# ---------------------------------------------------------------------------------------------
# The world: a fake gcloud's state, Google's APIs, an SMTP relay that needs a login


@dataclass
class Relay:
    """An SMTP server that refuses mail without AUTH, as relays on the internet do."""

    port: int = 0
    messages: list[Any] = field(default_factory=list)
    logins: list[str] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content))
        return "250 Message accepted"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword):
            self.logins.append(data.login.decode())
            ok = (data.login.decode(), data.password.decode()) == (USER, PASSWORD)
            return AuthResult(success=ok, handled=False)
        return AuthResult(success=False, handled=False)


@pytest.fixture
def relay() -> Iterator[Relay]:
    box = Relay(port=_free_port())
    # aiosmtpd logs a deprecation of its own Session.login_data on every AUTH: not ours to act on.
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=box.port,
        authenticator=box.authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield box
    controller.stop()


@pytest.fixture(scope="module")
def google() -> Iterator[RunningServer]:
    monitoring, run = FakeMetricService(), FakeRun()
    add_fleet(monitoring, run, FleetSpec(services=4, hours=12, leaking=[1]))
    server = start([monitoring, run])
    yield server
    server.stop()


def job_config(path: Path, *, google: RunningServer | None = None, smtp_port: int = 2525, bucket: str = BUCKET) -> Path:
    config: dict[str, Any] = {
        "projects": [PROJECT, STAGING],
        "regions": [REGION],
        "window": WINDOW,
        "store": {"url": f"gs://{bucket}/reports"},
        "digest": {"recipients": ["platform-team@example.com"]},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none", "sender": "analyzer@example.com"},
        "serve": {"mode": "iam", "allowed_service_accounts": [SCHEDULER_SA]},
    }
    if google is not None:
        config["projects"] = ["demo-project"]
        config["regions"] = ["us-central1"]
        config["source"] = {"monitoring_emulator_host": google.address, "run_emulator_host": google.address}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class World:
    """The fake gcloud's state file and how to run deploy.sh against it."""

    def __init__(self, folder: Path) -> None:
        self.state_file = folder / "gcloud-state.json"
        self.state_file.write_text(json.dumps(new_state({PROJECT: "123456789012", STAGING: "210987654321"})))

    @property
    def state(self) -> dict[str, Any]:
        return json.loads(self.state_file.read_text(encoding="utf-8"))  # type: ignore[no-any-return]

    @property
    def project(self) -> dict[str, Any]:
        return self.state["projects"][PROJECT]  # type: ignore[no-any-return]

    def deploy(self, config: Path | None, **extra: str) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.pathsep.join(
                [str(ROOT / "tests" / "bin"), str(Path(sys.executable).parent), "/usr/bin", "/bin"]
            ),
            "HOME": str(self.state_file.parent),
            "FAKE_GCLOUD_STATE": str(self.state_file),
            "FAKE_GCLOUD_PYTHON": sys.executable,
            "PROJECT": PROJECT,
            "REGION": REGION,
            "BUCKET": BUCKET,
            "ANALYZED_PROJECTS": f"{PROJECT} {STAGING}",
            "TASKS": "2",
            "RETRY_DELAY": "0",
            "SMTP_USER": USER,
            "SMTP_PASSWORD": PASSWORD,
            **({"CONFIG": str(config)} if config is not None else {}),
            **extra,
        }
        return subprocess.run(
            ["bash", str(DEPLOY)], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300
        )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def calls(state: dict[str, Any], since: int = 0) -> list[dict[str, Any]]:
    return state["calls"][since:]  # type: ignore[no-any-return]


def holders(policy: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    return {role: sorted(h["member"] for h in members) for role, members in policy.items()}


def job_environment(
    state: dict[str, Any], workload: dict[str, Any], mount_root: Path
) -> tuple[dict[str, str], list[str]]:
    """The environment and arguments of one Cloud Run workload as its container sees them: plain
    variables, secrets as variables (their latest version), secrets as files (under ``mount_root``)."""
    secrets = state["projects"][PROJECT]["secrets"]
    env = dict(workload["env"])
    args = list(workload["args"])
    for target, ref in workload["secrets"].items():
        name, _, version = ref.partition(":")
        assert version == "latest"
        data = secrets[name]["versions"][-1]
        if target.startswith("/"):
            local = mount_root / target.lstrip("/")
            local.parent.mkdir(parents=True, exist_ok=True)
            local.write_text(data, encoding="utf-8")
            args = [str(local) if a == target else a for a in args]
        else:
            env[target] = data
    return env, args


# ---------------------------------------------------------------------------------------------
# The kit


def test_an_empty_project_is_deployed_and_a_second_run_changes_nothing(world: World, tmp_path: Path) -> None:
    config = job_config(tmp_path / "job.yaml")
    first = world.deploy(config)
    assert first.returncode == 0, first.stderr
    state = world.state
    log = calls(state)
    assert not [c for c in log if c["exit"] == 2], "a command the fake does not know"
    assert state.get("api_errors", []) == []

    # Every API is enabled before its first use (and the job's own APIs are enabled).
    enabled: set[str] = set()
    for call in log:
        args = Args(call["argv"])
        if args.positional[:2] == ["services", "enable"]:
            enabled |= set(args.positional[2:])
        api = REQUIRED_API.get(args.positional[0])
        assert api is None or api in enabled, f"{api} used before it was enabled: {call['argv']}"
    assert {"monitoring.googleapis.com", "run.googleapis.com", "iam.googleapis.com"} <= enabled

    # IAM is eventually consistent in the fake, and the kit waited and retried rather than failed.
    refused = [
        c
        for c in log
        if c["exit"] == 1
        and (
            "does not exist" in c["error"]
            or "Unknown service account" in c["error"]
            or "Permission denied on secret" in c["error"]
        )
    ]
    assert refused, "the fake's IAM delays were not exercised"

    # The roles, and to whom: the job reads metrics and revisions in both projects and the bucket's
    # objects; the Scheduler's account may only run the two jobs.
    project, staging = state["projects"][PROJECT], state["projects"][STAGING]
    reader = {"roles/monitoring.viewer": [f"serviceAccount:{JOB_SA}"], "roles/run.viewer": [f"serviceAccount:{JOB_SA}"]}
    assert holders(project["iam"]) == reader
    assert holders(staging["iam"]) == reader
    assert holders(state["buckets"][BUCKET]["iam"]) == {"roles/storage.objectUser": [f"serviceAccount:{JOB_SA}"]}
    assert state["buckets"][BUCKET]["uniform_bucket_level_access"] is True
    for name in ("cloudrun-analyzer-config", "cloudrun-analyzer-smtp-password"):
        assert holders(project["secrets"][name]["iam"]) == {
            "roles/secretmanager.secretAccessor": [f"serviceAccount:{JOB_SA}"]
        }
    assert set(project["jobs"]) == {"cloudrun-analyzer", "cloudrun-analyzer-digest"}

    # The image was built into the repository the jobs run from.
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/tools/cloudrun-analyzer:0.1.0"
    assert state["images"] == [image]

    from analyzer.config import load_config
    from analyzer.delivery.email import credentials

    for name, mode in (("cloudrun-analyzer", "skip"), ("cloudrun-analyzer-digest", "now")):
        job = project["jobs"][name]
        assert holders(job["iam"]) == {"roles/run.invoker": [f"serviceAccount:{SCHEDULER_SA}"]}
        assert (job["service_account"], job["image"], job["tasks"]) == (JOB_SA, image, "2")
        env, args = job_environment(state, job, tmp_path / name)
        assert args[:2] == ["run", "--config"] and args[-2:] == ["--digest", mode]
        # The SMTP user and password both reach the job, under the names its config gives them.
        deployed = load_config(Path(args[2]))
        assert credentials(deployed.smtp, env) == (USER, PASSWORD)
        assert Path(args[2]).read_text(encoding="utf-8") == config.read_text(encoding="utf-8")

    # The Scheduler jobs: POST the jobs' :run endpoint with an OAuth token of the Scheduler's account.
    base = f"https://run.googleapis.com/v2/projects/{PROJECT}/locations/{REGION}/jobs"
    assert set(project["scheduler"]) == {f"{REGION}/cloudrun-analyzer-daily", f"{REGION}/cloudrun-analyzer-weekly"}
    for trigger, target in (("daily", "cloudrun-analyzer"), ("weekly", "cloudrun-analyzer-digest")):
        spec = project["scheduler"][f"{REGION}/cloudrun-analyzer-{trigger}"]
        assert spec["uri"] == f"{base}/{target}:run"
        assert spec["http-method"] == "POST"
        assert spec["oauth-service-account-email"] == SCHEDULER_SA
        assert spec["oauth-token-scope"] == "https://www.googleapis.com/auth/cloud-platform"
        assert "oidc-service-account-email" not in spec
        assert int(spec["max-retry-attempts"]) >= 1

    # A second run: everything exists, nothing changes.
    before = len(log)
    again = world.deploy(config)
    assert again.returncode == 0, again.stderr
    rerun = calls(world.state, before)
    assert [c["argv"][:3] for c in rerun if c["changed"]] == []
    assert world.project == project

    # A changed config: exactly one change, the config secret's new version (the jobs mount :latest).
    config.write_text(config.read_text(encoding="utf-8") + "# edited\n", encoding="utf-8")
    before = len(world.state["calls"])
    edited = world.deploy(config)
    assert edited.returncode == 0, edited.stderr
    changed = [c["argv"][:3] for c in calls(world.state, before) if c["changed"]]
    assert changed == [["secrets", "versions", "add"]]
    assert len(world.project["secrets"]["cloudrun-analyzer-config"]["versions"]) == 2


def test_the_service_trigger_gets_its_invoker_binding_and_a_scheduler_consistent_with_409(
    world: World, tmp_path: Path
) -> None:
    done = world.deploy(job_config(tmp_path / "job.yaml"), TRIGGER="service", IMAGE="")
    assert done.returncode == 0, done.stderr
    project = world.project
    service = project["services"]["cloudrun-analyzer"]
    assert service["authenticated"] is True
    assert holders(service["iam"]) == {"roles/run.invoker": [f"serviceAccount:{SCHEDULER_SA}"]}
    assert service["memory"] == "2Gi" and service["timeout"] == "3600"
    assert service["max_instances"] == "1", "a second instance would start a second run instead of a 409"
    assert int(service["concurrency"]) >= 2, "the second request must reach serve to be answered 409"
    assert service["args"][:3] == ["serve", "--config", "/etc/cloudrun-analyzer/job.yaml"]
    for trigger, mode in (("daily", "skip"), ("weekly", "now")):
        spec = project["scheduler"][f"{REGION}/cloudrun-analyzer-{trigger}"]
        assert spec["uri"] == f"{service['url']}/run"
        assert (spec["http-method"], spec["oidc-service-account-email"]) == ("POST", SCHEDULER_SA)
        assert spec["oidc-token-audience"] == service["url"]
        assert json.loads(spec["message-body"]) == {"digest": mode}
        assert spec["attempt-deadline"] == "1800s"  # Scheduler's most for HTTP targets
        assert int(spec["max-retry-attempts"]) >= 3 and spec["min-backoff"] == "300s"  # retries after a 409
        assert spec["headers"] == "Content-Type=application/json"
    before = len(world.state["calls"])
    again = world.deploy(job_config(tmp_path / "job.yaml"), TRIGGER="service", IMAGE="")
    assert again.returncode == 0, again.stderr
    assert [c["argv"][:4] for c in calls(world.state, before) if c["changed"]] == []
    assert world.project == project


def test_a_config_for_another_bucket_or_none_deploys_nothing(world: World, tmp_path: Path) -> None:
    missing = world.deploy(None)
    assert missing.returncode != 0
    assert "set CONFIG" in missing.stderr
    example = world.deploy(job_config(tmp_path / "other.yaml", bucket="someone-elses-bucket"))
    assert example.returncode != 0
    assert f"not in gs://{BUCKET}" in example.stderr
    assert world.state["calls"] == []


def test_a_digest_that_needs_a_login_and_has_none_deploys_nothing(world: World, tmp_path: Path) -> None:
    result = world.deploy(job_config(tmp_path / "job.yaml"), SMTP_USER="")
    assert result.returncode != 0
    assert "SMTP_USER" in result.stderr
    mutations = [c["argv"][:3] for c in world.state["calls"] if c["changed"]]
    assert mutations == [["services", "enable", "serviceusage.googleapis.com"]]


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_the_scripts_pass_shellcheck() -> None:
    result = subprocess.run(
        ["shellcheck", str(DEPLOY), str(ROOT / "tests" / "bin" / "gcloud")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


def test_check_config_names_the_bucket_and_the_smtp_variables(tmp_path: Path) -> None:
    config = job_config(tmp_path / "job.yaml")
    result = CliRunner().invoke(cli, ["check-config", str(config), "--bucket", BUCKET, "--format", "env"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"store_bucket={BUCKET}",
        "digest=on",
        "smtp_user_env=CLOUDRUN_ANALYZER_SMTP_USER",
        "smtp_password_env=CLOUDRUN_ANALYZER_SMTP_PASSWORD",
        f"serve_accounts={SCHEDULER_SA}",
    ]
    wrong = CliRunner().invoke(cli, ["check-config", str(config), "--bucket", "elsewhere"])
    assert wrong.exit_code == 2
    assert "not in gs://elsewhere" in wrong.output


# ---------------------------------------------------------------------------------------------
# The deployed job, executed


def test_run_refuses_to_start_without_the_login_the_server_needs(tmp_path: Path) -> None:
    """Regression: without the user variable the digest job analyzed, then mailed without AUTH."""
    config = job_config(tmp_path / "job.yaml")
    store = tmp_path / "store"
    text = config.read_text(encoding="utf-8").replace(f"gs://{BUCKET}/reports", str(store))
    config.write_text(text, encoding="utf-8")
    env = {"CLOUDRUN_ANALYZER_SMTP_USER": "", "CLOUDRUN_ANALYZER_SMTP_PASSWORD": PASSWORD}
    result = CliRunner().invoke(cli, ["run", "--config", str(config), "--digest", "now"], env=env)
    assert result.exit_code == 2, result.output
    assert "needs a login" in result.output
    assert not store.exists(), "nothing is analyzed or written before the check"
    skip = CliRunner().invoke(cli, ["check-config", str(config)], env=env)
    assert "NOT SET here: $CLOUDRUN_ANALYZER_SMTP_USER" in skip.output


@pytest.fixture
def gcs(world: World) -> Iterator[tuple[str, BucketIam]]:
    """The bucket the kit created, in gcp-storage-emulator behind Cloud Storage's IAM; every request
    comes from the job's service account."""
    from gcp_storage_emulator.server import create_server

    port = _free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    iam = BucketIam(caller=f"serviceAccount:{JOB_SA}")
    try:
        with enforcing(f"http://127.0.0.1:{port}", iam) as proxy:
            yield proxy.url, iam
    finally:
        server.stop()


def execute(state: dict[str, Any], name: str, folder: Path, extra_env: dict[str, str]) -> list[dict[str, Any]]:
    """Run every task of the deployed job ``name`` at once, as Cloud Run does; their outcomes."""
    job = state["projects"][PROJECT]["jobs"][name]
    env, args = job_environment(state, job, folder)
    count = int(job["tasks"])
    base = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDRUN_ANALYZER_")}
    tasks = [
        subprocess.Popen(
            [sys.executable, "-c", "from analyzer.cli import main; main()", *args],
            env={
                **base,
                **env,
                **extra_env,
                "CLOUD_RUN_JOB": name,
                "CLOUD_RUN_EXECUTION": f"{name}-exec",
                "CLOUD_RUN_TASK_INDEX": str(index),
                "CLOUD_RUN_TASK_COUNT": str(count),
                "NO_GCE_CHECK": "true",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(count)
    ]
    outcomes = []
    for task in tasks:
        out, err = task.communicate(timeout=180)
        assert task.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


# Plain SMTP with AUTH on loopback only: the relay stands for one behind TLS, which tests/test_digest.py covers.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_the_deployed_job_runs_with_the_granted_roles_and_sends_the_first_digest(
    world: World, tmp_path: Path, google: RunningServer, relay: Relay, gcs: tuple[str, BucketIam]
) -> None:
    url, iam = gcs
    deployed = world.deploy(job_config(tmp_path / "job.yaml", google=google, smtp_port=relay.port))
    assert deployed.returncode == 0, deployed.stderr
    state = world.state
    for role, members in holders(state["buckets"][BUCKET]["iam"]).items():
        for member in members:
            iam.grant(BUCKET, member, role)  # exactly what the kit granted, nothing more
    storage = {"STORAGE_EMULATOR_HOST": url}

    daily = execute(state, "cloudrun-analyzer", tmp_path / "daily", storage)
    merged = sorted(o["merged"] for o in daily)
    assert merged.count("merged") == 1 and set(merged) <= {"merged", "waiting", "merged elsewhere", "already merged"}
    assert {o["digest"] for o in daily} <= {"skipped", "not attempted"}
    weekly = execute(state, "cloudrun-analyzer-digest", tmp_path / "weekly", storage)
    assert [o["analyzed"] for o in weekly] == ["skipped", "skipped"]
    sent = sorted(o["digest"] for o in weekly)
    assert sent.count("sent") == 1 and set(sent) <= {"sent", "already sent", "sending elsewhere"}
    assert len(relay.messages) == 1
    assert relay.logins == [USER]

    again = execute(state, "cloudrun-analyzer", tmp_path / "daily2", storage)
    assert {o["analyzed"] for o in again} == {"skipped"}
    assert len(relay.messages) == 1
    # Nothing the job itself asked for was refused (the storage library's own background bucket
    # metadata fetch for its traces is, and it carries on: see tests/test_store.py).
    assert {permission for permission, _ in iam.denied} <= {"storage.buckets.get"}
