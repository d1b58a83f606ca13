# cloudrun-analyzer: the scheduled job (`run`) and the HTTP trigger (`serve`). docs/deploy.md.
# The base image is named by tag, not yet pinned: no registry could be reached where this was written.
# Pin it by digest with what `docker buildx imagetools inspect python:3.11-slim --format '{{json .Manifest.Digest}}'`
# prints: FROM python:3.11-slim@sha256:<that digest>
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.lock pyproject.toml README.md ./
COPY analyzer ./analyzer
COPY templates ./templates
COPY configs ./configs
# Every dependency (and the build backend) at the version and hashes of requirements.lock; the
# package itself then installs without resolving or downloading anything.
RUN pip install --require-hashes --no-deps -r requirements.lock \
    && pip install --no-deps --no-build-isolation . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin analyzer

# matplotlib keeps its font cache under MPLCONFIGDIR (else $HOME, /nonexistent here, and then a new
# temporary directory in every task, rebuilt each time): build it once, here, as the user that runs.
ENV MPLCONFIGDIR=/var/cache/cloudrun-analyzer/matplotlib
RUN mkdir -p "$MPLCONFIGDIR" && chown 10001 "$MPLCONFIGDIR"
USER 10001
RUN python -c "import matplotlib.font_manager"
# Cloud Run Jobs run `run --config ...`; a service overrides the args with `serve --config ...`.
ENTRYPOINT ["cloudrun-analyzer"]
CMD ["--help"]
