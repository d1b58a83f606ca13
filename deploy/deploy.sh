#!/usr/bin/env bash
# Everything the scheduled analyzer needs in one project, from an empty project to the first digest,
# with least privilege (docs/deploy.md walks it step by step):
#   0. check CONFIG (check-config: valid, and its store is in BUCKET) and the SMTP login it needs;
#      enable every API used below before its first use;
#   1. the image: built with Cloud Build into Artifact Registry unless IMAGE is given;
#   2. a service account for the job: roles/monitoring.viewer + roles/run.viewer on each analyzed
#      project, roles/storage.objectUser on the report bucket only, secretAccessor on its secrets;
#   3. the bucket; the config, the SMTP password (and user) as Secret Manager secrets;
#   4. TRIGGER=job (default): two Cloud Run Jobs (daily report, weekly digest) and two Scheduler jobs
#      calling their :run endpoint with an OAuth token;
#      TRIGGER=service: one Cloud Run service running `serve` and two Scheduler jobs POSTing /run with an
#      OIDC token;
#   both with a second service account for Cloud Scheduler holding roles/run.invoker on them only.
# New service accounts and IAM bindings take a while to be seen everywhere (IAM is eventually
# consistent): the script waits for each new account and retries what depends on IAM with backoff.
# Re-running it is safe: it creates only what is missing and changes only what differs.
#
# Usage: PROJECT=shop-prod REGION=europe-west1 BUCKET=shop-cloudrun-analyzer CONFIG=my-job.yaml \
#        SMTP_USER=apikey SMTP_PASSWORD=... ./deploy/deploy.sh
# Prerequisites: gcloud (logged in as someone who may do all of the above; docs/deploy.md lists the
# roles), and cloudrun-analyzer installed (pip install .) to check CONFIG.
set -euo pipefail

: "${PROJECT:?set PROJECT (where the job runs)}"
: "${REGION:?set REGION (where the job runs), e.g. europe-west1}"
: "${BUCKET:?set BUCKET (the report store), e.g. my-cloudrun-analyzer}"
: "${CONFIG:?set CONFIG to your job config (copy configs/example-job.yaml; store.url must be gs://BUCKET/...)}"
ANALYZED_PROJECTS=${ANALYZED_PROJECTS:-$PROJECT}   # space-separated project IDs to read
TRIGGER=${TRIGGER:-job}                             # job (Cloud Run Jobs) or service (`serve`)
TASKS=${TASKS:-3}
# A task's peak memory is about 700 MiB + 4.7 MiB per service of its share (7-day window): 2Gi holds
# about 200 services per task, so use TASKS >= services / 200 (docs/operations.md, "Throughput and memory").
MEMORY=${MEMORY:-2Gi}
JOB=${JOB:-cloudrun-analyzer}
DIGEST_JOB=${DIGEST_JOB:-$JOB-digest}
SERVICE=${SERVICE:-cloudrun-analyzer}
DAILY=${DAILY:-"0 6 * * *"}                          # every day 06:00 in TIME_ZONE
WEEKLY=${WEEKLY:-"0 8 * * 1"}                        # Mondays 08:00
TIME_ZONE=${TIME_ZONE:-Etc/UTC}
REPOSITORY=${REPOSITORY:-tools}                      # Artifact Registry repository for a built image
SOURCE_DIR=${SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
ANALYZER=${ANALYZER:-cloudrun-analyzer}              # the CLI that checks CONFIG
RETRIES=${RETRIES:-7}                                # attempts of an IAM-dependent step
RETRY_DELAY=${RETRY_DELAY:-5}                        # seconds before the first retry; doubles each time
SA=analyzer-job@$PROJECT.iam.gserviceaccount.com
SCHEDULER_SA=analyzer-scheduler@$PROJECT.iam.gserviceaccount.com
CONFIG_SECRET=cloudrun-analyzer-config
PASSWORD_SECRET=cloudrun-analyzer-smtp-password
USER_SECRET=cloudrun-analyzer-smtp-user
MOUNTED_CONFIG=/etc/cloudrun-analyzer/job.yaml
APIS=(
  serviceusage.googleapis.com cloudresourcemanager.googleapis.com iam.googleapis.com
  artifactregistry.googleapis.com cloudbuild.googleapis.com secretmanager.googleapis.com
  storage.googleapis.com run.googleapis.com cloudscheduler.googleapis.com monitoring.googleapis.com
)
# Never stop on a question (gcloud asks "enable API? (y/N)" on stderr and waits): fail and say why.
export CLOUDSDK_CORE_DISABLE_PROMPTS=1

say() { printf '%s\n' "$*" >&2; }
die() { say "error: $1"; [[ -n "${2:-}" ]] && say "  fix: $2"; exit 1; }
exists() { "$@" >/dev/null 2>&1; }

# Run an IAM-dependent command until it succeeds, waiting RETRY_DELAY, 2x, 4x... seconds between
# attempts: a service account, a grant or an API enabled a moment ago may not be visible yet. Other
# errors (a wrong flag, a missing image) stop at once.
PROPAGATING='does not exist|not found|NOT_FOUND|Permission denied on secret|PERMISSION_DENIED|UNAVAILABLE|try again'
retry() {
  local attempt=1 delay=$RETRY_DELAY output
  until output=$("$@" 2>&1); do
    if ((attempt >= RETRIES)) || ! grep -Eq "$PROPAGATING" <<<"$output"; then
      say "$output"
      die "failed after $attempt attempt(s): ${*:1:4}" "fix what the message says and run this script again (it is safe to re-run)"
    fi
    say "not yet ($(head -n 1 <<<"$output")); retrying in ${delay}s: ${*:1:4}"
    sleep "$delay"
    attempt=$((attempt + 1)) delay=$((delay * 2))
  done
  [[ -z "$output" ]] || say "$output"
}

# ---------------------------------------------------------------------------------------------
# 0. Check before touching anything: the tools, the config, the SMTP login, the trigger.

command -v gcloud >/dev/null || die "gcloud is not installed" "install the Google Cloud CLI: https://cloud.google.com/sdk/docs/install"
command -v "$ANALYZER" >/dev/null || die "$ANALYZER is not installed (it checks CONFIG)" "python3 -m venv .venv && .venv/bin/pip install . && export PATH=\$PWD/.venv/bin:\$PATH"
[[ -f "$CONFIG" ]] || die "CONFIG=$CONFIG is not a file" "copy configs/example-job.yaml, edit it, and pass its path"
[[ "$TRIGGER" == job || "$TRIGGER" == service ]] || die "TRIGGER=$TRIGGER" "use TRIGGER=job or TRIGGER=service"
facts=$("$ANALYZER" check-config "$CONFIG" --bucket "$BUCKET" --format env) ||
  die "$CONFIG is not ready to deploy (the lines above say why)"
smtp_user_env='' smtp_password_env='' serve_accounts=''
while IFS='=' read -r key value; do
  case $key in
    smtp_user_env) smtp_user_env=$value ;;
    smtp_password_env) smtp_password_env=$value ;;
    serve_accounts) serve_accounts=$value ;;
  esac
done <<<"$facts"
if [[ "$TRIGGER" == service && ",$serve_accounts," != *",$SCHEDULER_SA,"* ]]; then
  die "$CONFIG: serve.allowed_service_accounts does not list $SCHEDULER_SA, so Scheduler's calls would be refused" \
    "set serve: {mode: iam, allowed_service_accounts: [$SCHEDULER_SA]}"
fi
[[ "${SMTP_USER:-}" != *,* ]] || die "SMTP_USER contains a comma" "store the user as the $USER_SECRET secret instead"

say "== enabling APIs on $PROJECT (a first time takes a minute)"
gcloud services enable "${APIS[@]}" --project "$PROJECT"

# The digest's login: the config names the variables; the values come from SMTP_USER (or the
# $USER_SECRET secret) and SMTP_PASSWORD (or the $PASSWORD_SECRET secret).
login=no user_source='' password_source=''
if [[ -n "$smtp_user_env" ]]; then
  login=yes
  if [[ -n "${SMTP_USER:-}" ]]; then user_source=variable
  elif exists gcloud secrets describe "$USER_SECRET" --project "$PROJECT"; then user_source=secret
  else die "$CONFIG sends a digest through a server that needs a login, and no user is given" \
    "set SMTP_USER=... (or smtp.username_env: null in $CONFIG for a relay without login)"; fi
  if [[ -n "${SMTP_PASSWORD:-}" ]]; then password_source=variable
  elif exists gcloud secrets describe "$PASSWORD_SECRET" --project "$PROJECT"; then password_source=secret
  else die "$CONFIG sends a digest through a server that needs a login, and no password is given" \
    "set SMTP_PASSWORD=... once (it is stored as the $PASSWORD_SECRET secret)"; fi
fi

# ---------------------------------------------------------------------------------------------
# 1. The image

if [[ -z "${IMAGE:-}" ]]; then
  version=$("$ANALYZER" --version | awk '{print $NF}')
  IMAGE=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY/cloudrun-analyzer:$version
  exists gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" --project "$PROJECT" ||
    gcloud artifacts repositories create "$REPOSITORY" --repository-format docker --location "$REGION" --project "$PROJECT"
  if exists gcloud artifacts docker images describe "$IMAGE"; then
    say "== $IMAGE exists; not building it again"
  else
    say "== building $IMAGE with Cloud Build"
    gcloud builds submit --project "$PROJECT" --tag "$IMAGE" "$SOURCE_DIR"
  fi
fi

# ---------------------------------------------------------------------------------------------
# 2. Service accounts and the job's roles

for account in analyzer-job analyzer-scheduler; do
  email=$account@$PROJECT.iam.gserviceaccount.com
  exists gcloud iam service-accounts describe "$email" --project "$PROJECT" ||
    gcloud iam service-accounts create "$account" --project "$PROJECT" --display-name "cloudrun-analyzer ($account)"
  retry gcloud iam service-accounts describe "$email" --project "$PROJECT" --format 'value(email)'
done

for analyzed in $ANALYZED_PROJECTS; do
  for role in roles/monitoring.viewer roles/run.viewer; do
    retry gcloud projects add-iam-policy-binding "$analyzed" --member "serviceAccount:$SA" --role "$role" \
      --condition None --format none
  done
done

# ---------------------------------------------------------------------------------------------
# 3. The bucket and the secrets

exists gcloud storage buckets describe "gs://$BUCKET" --project "$PROJECT" ||
  gcloud storage buckets create "gs://$BUCKET" --project "$PROJECT" --location "$REGION" --uniform-bucket-level-access
# Object access only: the job reads, writes, lists and deletes objects and never the bucket's metadata.
retry gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --member "serviceAccount:$SA" \
  --role roles/storage.objectUser --project "$PROJECT" --format none

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# Create the secret NAME from FILE, or add FILE as its new version when it differs from the latest.
put_secret() {
  local name=$1 file=$2
  if ! exists gcloud secrets describe "$name" --project "$PROJECT"; then
    gcloud secrets create "$name" --project "$PROJECT" --replication-policy automatic --data-file "$file"
  elif gcloud secrets versions access latest --secret "$name" --project "$PROJECT" --out-file "$scratch/latest" \
    >/dev/null 2>&1 && cmp -s "$scratch/latest" "$file"; then
    say "== secret $name is up to date"
  else
    gcloud secrets versions add "$name" --project "$PROJECT" --data-file "$file"
  fi
}
grant_secret() {
  retry gcloud secrets add-iam-policy-binding "$1" --project "$PROJECT" --member "serviceAccount:$SA" \
    --role roles/secretmanager.secretAccessor --format none
}

put_secret "$CONFIG_SECRET" "$CONFIG"
grant_secret "$CONFIG_SECRET"
secrets="$MOUNTED_CONFIG=$CONFIG_SECRET:latest"
env_vars=''
if [[ $login == yes ]]; then
  if [[ $password_source == variable ]]; then
    (umask 077 && printf %s "$SMTP_PASSWORD" >"$scratch/password")
    put_secret "$PASSWORD_SECRET" "$scratch/password"
  fi
  grant_secret "$PASSWORD_SECRET"
  secrets+=",$smtp_password_env=$PASSWORD_SECRET:latest"
  if [[ $user_source == variable ]]; then
    env_vars="$smtp_user_env=$SMTP_USER"
  else
    grant_secret "$USER_SECRET"
    secrets+=",$smtp_user_env=$USER_SECRET:latest"
  fi
fi
env_flags=(--set-env-vars "$env_vars")
[[ -n "$env_vars" ]] || env_flags=(--clear-env-vars)

# ---------------------------------------------------------------------------------------------
# 4. The trigger: Cloud Run Jobs + Scheduler (OAuth), or a service + Scheduler (OIDC)

# Create or update one Scheduler job (its name first, then the target's flags; `update` spells
# --headers as --update-headers).
schedule() {
  local name=$1 verb=create
  shift
  if exists gcloud scheduler jobs describe "$name" --project "$PROJECT" --location "$REGION"; then
    verb=update
    set -- "${@/#--headers/--update-headers}"
  fi
  retry gcloud scheduler jobs "$verb" http "$name" --project "$PROJECT" --location "$REGION" \
    --time-zone "$TIME_ZONE" --http-method POST "$@"
}

if [[ "$TRIGGER" == job ]]; then
  # Two jobs from one image: the daily report never sends mail; the weekly one sends the digest once.
  for spec in "$JOB:skip" "$DIGEST_JOB:now"; do
    name=${spec%%:*} mode=${spec##*:}
    retry gcloud run jobs deploy "$name" --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
      --service-account "$SA" --tasks "$TASKS" --max-retries 2 --task-timeout 3600s --memory "$MEMORY" --cpu 1 \
      --set-secrets "$secrets" "${env_flags[@]}" --args "run,--config,$MOUNTED_CONFIG,--digest,$mode"
    retry gcloud run jobs add-iam-policy-binding "$name" --project "$PROJECT" --region "$REGION" \
      --member "serviceAccount:$SCHEDULER_SA" --role roles/run.invoker --format none
  done
  # :run only starts an execution and answers at once; a failed start is retried (a duplicate start
  # is harmless: the window's results are reused).
  for spec in "$JOB-daily:$JOB:$DAILY" "$JOB-weekly:$DIGEST_JOB:$WEEKLY"; do
    IFS=: read -r trigger target when <<<"$spec"
    schedule "$trigger" --schedule "$when" \
      --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/$target:run" \
      --oauth-service-account-email "$SCHEDULER_SA" \
      --oauth-token-scope https://www.googleapis.com/auth/cloud-platform \
      --attempt-deadline 180s --max-retry-attempts 3 --min-backoff 60s --max-backoff 600s
  done
  say "done: gcloud run jobs execute $JOB --region $REGION --project $PROJECT --wait   # a first run now"
else
  # The run happens inside the request: one instance (a second call gets serve's 409 instead of a
  # second run), a request timeout of an hour, room for a few concurrent requests (the 409s, /healthz).
  retry gcloud run deploy "$SERVICE" --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
    --service-account "$SA" --no-allow-unauthenticated --memory "$MEMORY" --cpu 1 --timeout 3600 \
    --concurrency 4 --max-instances 1 --set-secrets "$secrets" "${env_flags[@]}" \
    --args "serve,--config,$MOUNTED_CONFIG"
  retry gcloud run services add-iam-policy-binding "$SERVICE" --project "$PROJECT" --region "$REGION" \
    --member "serviceAccount:$SCHEDULER_SA" --role roles/run.invoker --format none
  url=$(gcloud run services describe "$SERVICE" --project "$PROJECT" --region "$REGION" --format 'value(status.url)')
  # Scheduler waits at most 30 minutes for an answer; a run still going then answers later attempts
  # 409, which Scheduler retries with backoff until the finished run's report is found (200).
  for spec in "$SERVICE-daily:skip:$DAILY" "$SERVICE-weekly:now:$WEEKLY"; do
    IFS=: read -r trigger mode when <<<"$spec"
    schedule "$trigger" --schedule "$when" --uri "$url/run" \
      --headers Content-Type=application/json --message-body "{\"digest\": \"$mode\"}" \
      --oidc-service-account-email "$SCHEDULER_SA" --oidc-token-audience "$url" \
      --attempt-deadline 1800s --max-retry-attempts 5 --min-backoff 300s --max-backoff 1800s
  done
  say "done: the service is $url; a first run: gcloud scheduler jobs run $SERVICE-daily --location $REGION --project $PROJECT"
fi
