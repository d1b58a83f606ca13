"""A fake ``gcloud`` for testing deploy/deploy.sh: it records every call and answers like gcloud does.

``tests/bin/gcloud`` runs this file; the state (projects, enabled APIs, service accounts, IAM bindings,
buckets, secrets and their versions, Cloud Run jobs and services, Scheduler jobs, images) lives in the
JSON file named by ``FAKE_GCLOUD_STATE``, with every call appended to ``calls`` as
``{"argv", "exit", "error", "changed"}``. What it reproduces of the real thing:

- **APIs.** A command needs its API enabled on the project (``REQUIRED_API``); before that it fails
  with gcloud's "API has not been used in project N before or it is disabled" (and, when prompts are
  not disabled, first asks "Would you like to enable and retry? (y/N)" on stderr and reads stdin).
- **Conflicts.** Creating what exists fails as gcloud does (ALREADY_EXISTS, a bucket's 409); adding an
  IAM binding that exists, or deploying an unchanged job, succeeds and changes nothing.
- **Eventual consistency.** A new service account is invisible to ``describe`` for ``lag.describe``
  calls and refused as an IAM member for ``lag.policy`` calls; a new secretAccessor binding takes
  ``lag.policy`` calls before a Cloud Run deploy that mounts the secret accepts it. Counted in calls,
  not seconds, so the test is deterministic and fast.

It is a model of the calls deploy.sh makes, not of gcloud: any other command exits 2 ("Invalid
choice"), so the kit cannot pass on a call nobody checked.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

BOOLEAN_FLAGS = frozenset(
    {
        "--uniform-bucket-level-access",
        "--no-allow-unauthenticated",
        "--clear-env-vars",
        "--quiet",
        "--wait",
        "--enabled",
    }
)
GLOBAL_FLAGS = frozenset({"--project", "--format", "--quiet"})
SCHEDULER_FLAGS = frozenset(
    {
        "--location",
        "--schedule",
        "--time-zone",
        "--uri",
        "--http-method",
        "--message-body",
        "--attempt-deadline",
        "--max-retry-attempts",
        "--min-backoff",
        "--max-backoff",
        "--oauth-service-account-email",
        "--oauth-token-scope",
        "--oidc-service-account-email",
        "--oidc-token-audience",
    }
)
WORKLOAD_FLAGS = frozenset(
    {
        "--region",
        "--image",
        "--service-account",
        "--memory",
        "--cpu",
        "--set-secrets",
        "--set-env-vars",
        "--clear-env-vars",
        "--args",
    }
)
# The flags of the long commands, as gcloud's reference gives them: a misspelt or misplaced flag fails
# here as it fails there ("unrecognized arguments").
ACCEPTED_FLAGS = {
    ("scheduler", "jobs", "create", "http"): SCHEDULER_FLAGS | {"--headers"},
    ("scheduler", "jobs", "update", "http"): SCHEDULER_FLAGS | {"--update-headers"},
    ("run", "jobs", "deploy"): WORKLOAD_FLAGS | {"--tasks", "--max-retries", "--task-timeout"},
    ("run", "deploy"): WORKLOAD_FLAGS | {"--timeout", "--concurrency", "--max-instances", "--no-allow-unauthenticated"},
}
REQUIRED_API = {
    "iam": "iam.googleapis.com",
    "storage": "storage.googleapis.com",
    "secrets": "secretmanager.googleapis.com",
    "run": "run.googleapis.com",
    "scheduler": "cloudscheduler.googleapis.com",
    "artifacts": "artifactregistry.googleapis.com",
    "builds": "cloudbuild.googleapis.com",
}
API_TITLES = {
    "iam.googleapis.com": "Identity and Access Management (IAM) API",
    "storage.googleapis.com": "Cloud Storage API",
    "secretmanager.googleapis.com": "Secret Manager API",
    "run.googleapis.com": "Cloud Run Admin API",
    "cloudscheduler.googleapis.com": "Cloud Scheduler API",
    "artifactregistry.googleapis.com": "Artifact Registry API",
    "cloudbuild.googleapis.com": "Cloud Build API",
}


class GcloudError(Exception):
    """An error gcloud prints as ``ERROR: (gcloud.GROUP.COMMAND) MESSAGE`` and exits 1 on."""


class Args:
    """Positional arguments and ``--flag value`` / ``--flag=value`` / boolean flags."""

    def __init__(self, argv: list[str]) -> None:
        self.positional: list[str] = []
        self.flags: dict[str, str] = {}
        i = 0
        while i < len(argv):
            token = argv[i]
            if token.startswith("--"):
                name, equals, value = token.partition("=")
                if equals:
                    self.flags[name] = value
                elif name in BOOLEAN_FLAGS or i + 1 == len(argv):
                    self.flags[name] = ""
                else:
                    self.flags[name] = argv[i + 1]
                    i += 1
            else:
                self.positional.append(token)
            i += 1

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.flags.get(name, default)

    def need(self, name: str) -> str:
        if name not in self.flags:
            raise GcloudError(f"argument {name}: Must be specified.")
        return self.flags[name]


class Fake:
    """One call against the state file."""

    def __init__(self, state: dict[str, Any], argv: list[str]) -> None:
        self.state = state
        self.argv = argv
        self.call = len(state["calls"])  # this call's index: the clock of eventual consistency
        self.changed = False
        self.out: list[str] = []

    # -- helpers ---------------------------------------------------------------------------

    def project(self, project_id: str | None) -> dict[str, Any]:
        project_id = project_id or self.state.get("config", {}).get("project")
        if not project_id:
            raise GcloudError(
                "The required property [project] is not currently set.\n  gcloud config set project PROJECT_ID"
            )
        if project_id not in self.state["projects"]:
            raise GcloudError(f"[{project_id}] not found or permission denied (NOT_FOUND)")
        return self.state["projects"][project_id]  # type: ignore[no-any-return]

    def need_api(self, group: str, project: dict[str, Any], command: str) -> None:
        api = REQUIRED_API.get(group)
        if api is None or api in project["apis"]:
            return
        if os.environ.get("CLOUDSDK_CORE_DISABLE_PROMPTS") != "1":
            sys.stderr.write(
                f"API [{api}] not enabled on project [{project['id']}]. Would you like to enable and retry "
                "(this will take a few minutes)? (y/N)?  "
            )
            sys.stderr.flush()
            sys.stdin.readline()  # gcloud waits for an answer; no answer is N
        self.state.setdefault("api_errors", []).append({"call": self.call, "api": api, "command": command})
        raise GcloudError(
            f"PERMISSION_DENIED: {API_TITLES[api]} has not been used in project {project['number']} before or "
            f"it is disabled. Enable it by visiting https://console.developers.google.com/apis/api/{api}/"
            f"overview?project={project['number']} then retry. If you enabled this API recently, wait a few "
            "minutes for the action to propagate to our systems and retry.\n"
            f"- '@type': type.googleapis.com/google.rpc.ErrorInfo\n  reason: SERVICE_DISABLED"
        )

    def account(self, email: str, *, for_policy: bool) -> dict[str, Any] | None:
        """The service account if it exists and is visible yet (describe, or as a policy member)."""
        for project in self.state["projects"].values():
            found = project["service_accounts"].get(email)
            if found is not None:
                lag = self.state["lag"]["policy" if for_policy else "describe"]
                return found if self.call >= found["created_at"] + lag else None
        return None

    def check_member(self, member: str) -> None:
        kind, _, email = member.partition(":")
        if kind == "serviceAccount" and self.account(email, for_policy=True) is None:
            raise GcloudError(f"INVALID_ARGUMENT: Service account {email} does not exist.")

    def bind(self, policy: dict[str, list[dict[str, Any]]], args: Args) -> None:
        """Add ``--member`` to ``--role`` in ``policy`` (``{role: [{member, at}]}``); idempotent."""
        member, role = args.need("--member"), args.need("--role")
        self.check_member(member)
        holders = policy.setdefault(role, [])
        if not any(h["member"] == member for h in holders):
            holders.append({"member": member, "at": self.call})
            self.changed = True
        self.out.append("Updated IAM policy.")

    def effective(self, policy: dict[str, list[dict[str, Any]]], role: str, member: str) -> bool:
        lag = self.state["lag"]["policy"]
        return any(h["member"] == member and self.call >= h["at"] + lag for h in policy.get(role, []))

    def put(self, table: dict[str, Any], name: str, value: dict[str, Any]) -> None:
        """Create or replace ``table[name]``; a change only when the value differs."""
        if table.get(name) != value:
            table[name] = value
            self.changed = True

    # -- commands ---------------------------------------------------------------------------

    def run(self) -> None:
        words = [w for w in self.argv if not w.startswith("--")][:3]
        args = Args(self.argv)
        group = args.positional[0] if args.positional else ""
        handler = self.handler(args.positional)
        if handler is None:
            raise Usage(f"Invalid choice: {' '.join(words)!r}.")
        for command, accepted in ACCEPTED_FLAGS.items():
            if tuple(args.positional[: len(command)]) == command:
                unknown = sorted(set(args.flags) - accepted - GLOBAL_FLAGS)
                if unknown:
                    raise Usage(f"unrecognized arguments: {' '.join(unknown)}")
        if group in REQUIRED_API:
            project_flag = args.get("--project")
            if group == "storage" and project_flag is None:
                bucket = self.state["buckets"].get(_bucket_name(args.positional))
                project_flag = bucket["project"] if bucket else None
            if group == "artifacts" and args.positional[:3] == ["artifacts", "docker", "images"]:
                project_flag = args.positional[4].split("/")[1]
            self.need_api(group, self.project(project_flag), " ".join(args.positional[:3]))
        handler(args)

    def handler(self, words: list[str]) -> Callable[[Args], None] | None:
        table: dict[tuple[str, ...], Callable[[Args], None]] = {
            ("config", "set"): self.config_set,
            ("services", "enable"): self.services_enable,
            ("services", "list"): self.services_list,
            ("projects", "describe"): self.projects_describe,
            ("projects", "add-iam-policy-binding"): self.projects_bind,
            ("iam", "service-accounts", "describe"): self.account_describe,
            ("iam", "service-accounts", "create"): self.account_create,
            ("storage", "buckets", "describe"): self.bucket_describe,
            ("storage", "buckets", "create"): self.bucket_create,
            ("storage", "buckets", "add-iam-policy-binding"): self.bucket_bind,
            ("secrets", "describe"): self.secret_describe,
            ("secrets", "create"): self.secret_create,
            ("secrets", "versions", "add"): self.secret_add_version,
            ("secrets", "versions", "access"): self.secret_access,
            ("secrets", "add-iam-policy-binding"): self.secret_bind,
            ("artifacts", "repositories", "describe"): self.repo_describe,
            ("artifacts", "repositories", "create"): self.repo_create,
            ("artifacts", "docker", "images", "describe"): self.image_describe,
            ("builds", "submit"): self.build_submit,
            ("run", "jobs", "deploy"): self.job_deploy,
            ("run", "jobs", "add-iam-policy-binding"): self.job_bind,
            ("run", "deploy"): self.service_deploy,
            ("run", "services", "describe"): self.service_describe,
            ("run", "services", "add-iam-policy-binding"): self.service_bind,
            ("scheduler", "jobs", "describe"): self.scheduler_describe,
            ("scheduler", "jobs", "create", "http"): self.scheduler_create,
            ("scheduler", "jobs", "update", "http"): self.scheduler_update,
        }
        for length in (4, 3, 2):
            found = table.get(tuple(words[:length]))
            if found is not None:
                return found
        return None

    def config_set(self, args: Args) -> None:
        key, value = args.positional[2:4]
        self.project(value) if key == "project" else None
        self.state.setdefault("config", {})[key] = value
        self.out.append(f"Updated property [core/{key}].")

    def services_enable(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        for api in args.positional[2:]:
            if api not in project["apis"]:
                project["apis"].append(api)
                self.changed = True
        self.out.append("Operation finished successfully.")

    def services_list(self, args: Args) -> None:
        self.out.extend(sorted(self.project(args.get("--project"))["apis"]))

    def projects_describe(self, args: Args) -> None:
        project = self.project(args.positional[2])
        self.out.append(project["number"] if "projectNumber" in (args.get("--format") or "") else project["id"])

    def projects_bind(self, args: Args) -> None:
        project = self.project(args.positional[2])
        if args.get("--condition") != "None":
            raise GcloudError(
                "Adding a binding without specifying a condition to a policy containing "
                "conditions is prohibited in non-interactive mode. Run the command again with "
                "`--condition=None`"
            )
        self.bind(project["iam"], args)

    def account_describe(self, args: Args) -> None:
        email = args.positional[3]
        if self.account(email, for_policy=False) is None:
            raise GcloudError(f"NOT_FOUND: Unknown service account: {email}")
        self.out.append(email)

    def account_create(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        email = f"{args.positional[3]}@{project['id']}.iam.gserviceaccount.com"
        if email in project["service_accounts"]:
            raise GcloudError(
                f"Resource in projects [{project['id']}] is the subject of a conflict: Service account "
                f"{args.positional[3]} already exists within project projects/{project['id']}."
            )
        project["service_accounts"][email] = {"created_at": self.call, "display_name": args.get("--display-name")}
        self.changed = True
        self.out.append(f"Created service account [{args.positional[3]}].")

    def bucket_describe(self, args: Args) -> None:
        name = _bucket_name(args.positional)
        if name not in self.state["buckets"]:
            raise GcloudError(f"gs://{name} not found: 404.")
        self.out.append(json.dumps({"name": name, **self.state["buckets"][name]}))

    def bucket_create(self, args: Args) -> None:
        name = _bucket_name(args.positional)
        if name in self.state["buckets"]:
            raise GcloudError(
                "HTTPError 409: Your previous request to create the named bucket succeeded and you already own it."
            )
        self.state["buckets"][name] = {
            "project": self.project(args.get("--project"))["id"],
            "location": args.get("--location"),
            "uniform_bucket_level_access": "--uniform-bucket-level-access" in args.flags,
            "iam": {},
        }
        self.changed = True

    def bucket_bind(self, args: Args) -> None:
        name = _bucket_name(args.positional)
        if name not in self.state["buckets"]:
            raise GcloudError(f"gs://{name} not found: 404.")
        self.bind(self.state["buckets"][name]["iam"], args)

    def _secret(self, args: Args, name: str) -> dict[str, Any]:
        project = self.project(args.get("--project"))
        secret = project["secrets"].get(name)
        if secret is None:
            raise GcloudError(
                f"NOT_FOUND: Secret [projects/{project['number']}/secrets/{name}] not found or has no versions."
            )
        return secret  # type: ignore[no-any-return]

    def secret_describe(self, args: Args) -> None:
        self._secret(args, args.positional[2])
        self.out.append(args.positional[2])

    def _data(self, args: Args) -> str:
        source = args.need("--data-file")
        return sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")

    def secret_create(self, args: Args) -> None:
        project, name = self.project(args.get("--project")), args.positional[2]
        if name in project["secrets"]:
            raise GcloudError(f"ALREADY_EXISTS: Secret [projects/{project['number']}/secrets/{name}] already exists.")
        versions = [self._data(args)] if "--data-file" in args.flags else []
        project["secrets"][name] = {"versions": versions, "iam": {}, "replication": args.get("--replication-policy")}
        self.changed = True

    def secret_add_version(self, args: Args) -> None:
        self._secret(args, args.positional[3])["versions"].append(self._data(args))
        self.changed = True

    def secret_access(self, args: Args) -> None:
        secret = self._secret(args, args.need("--secret"))
        if not secret["versions"]:
            raise GcloudError("NOT_FOUND: Secret Version [latest] not found.")
        data = secret["versions"][-1]
        target = args.get("--out-file")
        if target:
            Path(target).write_text(data, encoding="utf-8")
        else:
            self.out.append(data)

    def secret_bind(self, args: Args) -> None:
        self.bind(self._secret(args, args.positional[2])["iam"], args)

    def repo_describe(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        key = f"{args.need('--location')}/{args.positional[3]}"
        if key not in project["repositories"]:
            raise GcloudError(f"NOT_FOUND: Requested entity was not found. (repository {key})")
        self.out.append(key)

    def repo_create(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        key = f"{args.need('--location')}/{args.positional[3]}"
        if key in project["repositories"]:
            raise GcloudError(f"ALREADY_EXISTS: the repository already exists ({key})")
        project["repositories"][key] = {"format": args.need("--repository-format")}
        self.changed = True

    def image_describe(self, args: Args) -> None:
        if args.positional[4] not in self.state["images"]:
            raise GcloudError(f"Image not found: {args.positional[4]}")
        self.out.append(args.positional[4])

    def build_submit(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        tag = args.need("--tag")
        host, project_id, repository = tag.split("/")[:3]
        if (
            project_id != project["id"]
            or f"{host.removesuffix('-docker.pkg.dev')}/{repository}" not in project["repositories"]
        ):
            raise GcloudError(f'name unknown: Repository "{repository}" not found (pushing {tag})')
        if "artifactregistry.googleapis.com" not in project["apis"]:
            raise GcloudError("denied: Artifact Registry API has not been used in project before or it is disabled")
        source = Path(args.positional[2] if len(args.positional) > 2 else ".")
        if not (source / "Dockerfile").is_file():
            raise GcloudError(f"Dockerfile required when specifying --tag (none in {source})")
        self.state["images"].append(tag)
        self.changed = True

    def _mounted_secrets(self, project: dict[str, Any], args: Args, account: str) -> dict[str, str]:
        """``--set-secrets`` checked as Cloud Run does: the secret exists and the account may read it."""
        mounts: dict[str, str] = {}
        for item in filter(None, (args.get("--set-secrets") or "").split(",")):
            target, _, ref = item.partition("=")
            name = ref.partition(":")[0]
            secret = project["secrets"].get(name)
            if secret is None or not self.effective(
                secret["iam"], "roles/secretmanager.secretAccessor", f"serviceAccount:{account}"
            ):
                raise GcloudError(
                    f"Permission denied on secret: projects/{project['number']}/secrets/{name}/versions/latest "
                    f"for Revision service account {account}. The service account used must be granted the "
                    "'Secret Manager Secret Accessor' role (roles/secretmanager.secretAccessor) at the secret, "
                    "project or higher level."
                )
            mounts[target] = ref
        return mounts

    def _workload(self, args: Args, project: dict[str, Any]) -> dict[str, Any]:
        account = args.need("--service-account")
        if self.account(account, for_policy=True) is None:
            raise GcloudError(f"INVALID_ARGUMENT: Service account {account} does not exist.")
        image = args.need("--image")
        if image not in self.state["images"]:
            raise GcloudError(f"Image '{image}' not found.")
        env = dict(item.partition("=")[::2] for item in filter(None, (args.get("--set-env-vars") or "").split(",")))
        spec = {
            "region": args.need("--region"),
            "image": image,
            "service_account": account,
            "memory": args.get("--memory"),
            "cpu": args.get("--cpu"),
            "env": env,
            "secrets": self._mounted_secrets(project, args, account),
            "args": (args.get("--args") or "").split(",") if args.get("--args") else [],
        }
        return spec

    def job_deploy(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        name = args.positional[3]
        spec = self._workload(args, project)
        spec.update(
            tasks=args.get("--tasks"), max_retries=args.get("--max-retries"), task_timeout=args.get("--task-timeout")
        )
        current = project["jobs"].get(name, {})
        self.put(project["jobs"], name, {**spec, "iam": current.get("iam", {})})
        self.out.append(f"Job [{name}] has successfully been deployed.")

    def job_bind(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        job = project["jobs"].get(args.positional[3])
        if job is None:
            raise GcloudError(f"NOT_FOUND: Job [{args.positional[3]}] could not be found.")
        self.bind(job["iam"], args)

    def service_deploy(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        name = args.positional[2]
        spec = self._workload(args, project)
        spec.update(
            timeout=args.get("--timeout"),
            concurrency=args.get("--concurrency"),
            max_instances=args.get("--max-instances"),
            authenticated="--no-allow-unauthenticated" in args.flags,
            url=f"https://{name}-{project['number']}.{spec['region']}.run.app",
        )
        current = project["services"].get(name, {})
        self.put(project["services"], name, {**spec, "iam": current.get("iam", {})})
        self.out.append(f"Service [{name}] has been deployed and is serving 100 percent of traffic.")

    def service_describe(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        service = project["services"].get(args.positional[3])
        if service is None:
            raise GcloudError(f"Cannot find service [{args.positional[3]}]")
        self.out.append(service["url"])

    def service_bind(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        service = project["services"].get(args.positional[3])
        if service is None:
            raise GcloudError(f"Cannot find service [{args.positional[3]}]")
        self.bind(service["iam"], args)

    def scheduler_describe(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        key = f"{args.need('--location')}/{args.positional[3]}"
        if key not in project["scheduler"]:
            raise GcloudError(f"NOT_FOUND: Job not found (projects/{project['id']}/locations/{key}).")
        self.out.append(key)

    def _scheduler_spec(self, args: Args) -> dict[str, Any]:
        for flag in ("--oauth-service-account-email", "--oidc-service-account-email"):
            email = args.get(flag)
            if email and self.account(email, for_policy=True) is None:
                raise GcloudError(f"INVALID_ARGUMENT: Service account {email} does not exist.")
        keys = (
            "--schedule",
            "--time-zone",
            "--uri",
            "--http-method",
            "--oauth-service-account-email",
            "--oauth-token-scope",
            "--oidc-service-account-email",
            "--oidc-token-audience",
            "--attempt-deadline",
            "--max-retry-attempts",
            "--min-backoff",
            "--max-backoff",
            "--message-body",
            "--headers",
        )
        spec = {key.removeprefix("--"): args.get(key) for key in keys if key in args.flags}
        if "--update-headers" in args.flags:
            spec["headers"] = args.get("--update-headers")
        return spec

    def scheduler_create(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        key = f"{args.need('--location')}/{args.positional[4]}"
        if key in project["scheduler"]:
            raise GcloudError(f"ALREADY_EXISTS: Job projects/{project['id']}/locations/{key} already exists.")
        self.put(project["scheduler"], key, self._scheduler_spec(args))

    def scheduler_update(self, args: Args) -> None:
        project = self.project(args.get("--project"))
        key = f"{args.need('--location')}/{args.positional[4]}"
        if key not in project["scheduler"]:
            raise GcloudError(f"NOT_FOUND: Job not found (projects/{project['id']}/locations/{key}).")
        self.put(project["scheduler"], key, {**project["scheduler"][key], **self._scheduler_spec(args)})


class Usage(Exception):
    """A command the fake does not know: gcloud's "Invalid choice", exit 2."""


def _bucket_name(words: list[str]) -> str:
    return next(w for w in words if w.startswith("gs://")).removeprefix("gs://").rstrip("/")


def new_state(projects: dict[str, str], *, describe_lag: int = 2, policy_lag: int = 3) -> dict[str, Any]:
    """An empty world: ``projects`` ({id: number}) exist with nothing enabled and nothing in them."""
    empty: dict[str, Any] = {
        "apis": [],
        "iam": {},
        "service_accounts": {},
        "secrets": {},
        "repositories": {},
        "jobs": {},
        "services": {},
        "scheduler": {},
    }
    return {
        "projects": {p: {"id": p, "number": n, **json.loads(json.dumps(empty))} for p, n in projects.items()},
        "buckets": {},
        "images": [],
        "calls": [],
        "lag": {"describe": describe_lag, "policy": policy_lag},
    }


def main(argv: list[str]) -> int:
    path = Path(os.environ["FAKE_GCLOUD_STATE"])
    state = json.loads(path.read_text(encoding="utf-8"))
    fake = Fake(state, argv)
    code, error = 0, ""
    try:
        fake.run()
    except Usage as exc:
        code, error = 2, f"ERROR: (gcloud) {exc}"
    except GcloudError as exc:
        command = ".".join(Args(argv).positional[:3])
        code, error = 1, f"ERROR: (gcloud.{command}) {exc}"
    state["calls"].append({"argv": argv, "exit": code, "error": error, "changed": fake.changed})
    path.write_text(json.dumps(state, indent=1), encoding="utf-8")
    if fake.out and code == 0:
        print("\n".join(fake.out))
    if error:
        print(error, file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
