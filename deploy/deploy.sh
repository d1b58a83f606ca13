#!/usr/bin/env bash
# Create everything the scheduled analyzer needs in one project, with least privilege (docs/deploy.md):
#   - a service account for the job: roles/monitoring.viewer + roles/run.viewer on each analyzed
#     project, object access (roles/storage.objectUser) on the report bucket only;
#   - the report bucket; the job's config as a Secret Manager secret; the SMTP password as a secret;
#   - the Cloud Run Job (TASKS tasks, each taking a share of the services);
#   - a second service account for Cloud Scheduler with roles/run.invoker on the jobs only, and two
#     Scheduler jobs calling the jobs' :run endpoint with an OAuth token: a daily report and a weekly digest.
# Usage: PROJECT=shop-prod REGION=europe-west1 BUCKET=shop-cloudrun-analyzer IMAGE=... ./deploy/deploy.sh
# DRY_RUN=1 prints the commands instead of running them. Re-running it is safe (it skips what exists).
set -euo pipefail

: "${PROJECT:?set PROJECT (where the job runs)}"
: "${REGION:?set REGION (where the job runs), e.g. europe-west1}"
: "${BUCKET:?set BUCKET (the report store), e.g. my-cloudrun-analyzer}"
: "${IMAGE:?set IMAGE, e.g. europe-west1-docker.pkg.dev/PROJECT/tools/cloudrun-analyzer:0.1.0}"
ANALYZED_PROJECTS=${ANALYZED_PROJECTS:-$PROJECT}   # space-separated project IDs to read
CONFIG=${CONFIG:-configs/example-job.yaml}          # the job config uploaded as a secret
TASKS=${TASKS:-3}
# A task's peak memory is about 700 MiB + 4.7 MiB per service of its share (7-day window): 2Gi holds
# about 200 services per task, so use TASKS >= services / 200 (docs/operations.md, "Throughput and memory").
MEMORY=${MEMORY:-2Gi}
JOB=${JOB:-cloudrun-analyzer}
DIGEST_JOB=${DIGEST_JOB:-$JOB-digest}
DAILY=${DAILY:-"0 6 * * *"}                          # every day 06:00 in TIME_ZONE
WEEKLY=${WEEKLY:-"0 8 * * 1"}                        # Mondays 08:00
TIME_ZONE=${TIME_ZONE:-Etc/UTC}
SA=analyzer-job@$PROJECT.iam.gserviceaccount.com
SCHEDULER_SA=analyzer-scheduler@$PROJECT.iam.gserviceaccount.com

run() { if [[ -n "${DRY_RUN:-}" ]]; then printf '%q ' "$@"; echo; else "$@"; fi; }
exists() { [[ -z "${DRY_RUN:-}" ]] && "$@" >/dev/null 2>&1; }

run gcloud services enable run.googleapis.com cloudscheduler.googleapis.com monitoring.googleapis.com \
  secretmanager.googleapis.com storage.googleapis.com --project "$PROJECT"

for account in analyzer-job analyzer-scheduler; do
  exists gcloud iam service-accounts describe "$account@$PROJECT.iam.gserviceaccount.com" --project "$PROJECT" ||
    run gcloud iam service-accounts create "$account" --project "$PROJECT" --display-name "cloudrun-analyzer ($account)"
done

for analyzed in $ANALYZED_PROJECTS; do
  for role in roles/monitoring.viewer roles/run.viewer; do
    run gcloud projects add-iam-policy-binding "$analyzed" --member "serviceAccount:$SA" --role "$role" --condition None
  done
done

exists gcloud storage buckets describe "gs://$BUCKET" ||
  run gcloud storage buckets create "gs://$BUCKET" --project "$PROJECT" --location "$REGION" --uniform-bucket-level-access
run gcloud storage buckets add-iam-policy-binding "gs://$BUCKET" --member "serviceAccount:$SA" --role roles/storage.objectUser

exists gcloud secrets describe cloudrun-analyzer-config --project "$PROJECT" ||
  run gcloud secrets create cloudrun-analyzer-config --project "$PROJECT" --replication-policy automatic
run gcloud secrets versions add cloudrun-analyzer-config --project "$PROJECT" --data-file "$CONFIG"
run gcloud secrets add-iam-policy-binding cloudrun-analyzer-config --project "$PROJECT" \
  --member "serviceAccount:$SA" --role roles/secretmanager.secretAccessor
secrets=(--set-secrets "/etc/cloudrun-analyzer/job.yaml=cloudrun-analyzer-config:latest")
if exists gcloud secrets describe cloudrun-analyzer-smtp-password --project "$PROJECT" || [[ -n "${DRY_RUN:-}" ]]; then
  run gcloud secrets add-iam-policy-binding cloudrun-analyzer-smtp-password --project "$PROJECT" \
    --member "serviceAccount:$SA" --role roles/secretmanager.secretAccessor
  secrets=(--set-secrets "/etc/cloudrun-analyzer/job.yaml=cloudrun-analyzer-config:latest,CLOUDRUN_ANALYZER_SMTP_PASSWORD=cloudrun-analyzer-smtp-password:latest")
fi

# Two jobs from one image: the daily report never sends mail; the weekly one sends the digest once.
for spec in "$JOB:skip" "$DIGEST_JOB:now"; do
  name=${spec%%:*}; digest=${spec##*:}
  run gcloud run jobs deploy "$name" --project "$PROJECT" --region "$REGION" --image "$IMAGE" \
    --service-account "$SA" --tasks "$TASKS" --max-retries 2 --task-timeout 3600s --memory "$MEMORY" --cpu 1 \
    "${secrets[@]}" --args "run,--config,/etc/cloudrun-analyzer/job.yaml,--digest,$digest"
  run gcloud run jobs add-iam-policy-binding "$name" --project "$PROJECT" --region "$REGION" \
    --member "serviceAccount:$SCHEDULER_SA" --role roles/run.invoker
done

for spec in "$JOB-daily:$JOB:$DAILY" "$JOB-weekly:$DIGEST_JOB:$WEEKLY"; do
  IFS=: read -r trigger target schedule <<<"$spec"
  verb=create
  exists gcloud scheduler jobs describe "$trigger" --project "$PROJECT" --location "$REGION" && verb=update
  run gcloud scheduler jobs "$verb" http "$trigger" --project "$PROJECT" --location "$REGION" \
    --schedule "$schedule" --time-zone "$TIME_ZONE" --http-method POST \
    --uri "https://run.googleapis.com/v2/projects/$PROJECT/locations/$REGION/jobs/$target:run" \
    --oauth-service-account-email "$SCHEDULER_SA" \
    --oauth-token-scope https://www.googleapis.com/auth/cloud-platform
done
echo "done: gcloud run jobs execute $JOB --region $REGION --project $PROJECT   # a first run now" >&2
