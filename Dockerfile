# cloudrun-analyzer: the scheduled job (`run`) and the HTTP trigger (`serve`). docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY analyzer ./analyzer
COPY templates ./templates
COPY configs ./configs
RUN pip install . && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin analyzer

# matplotlib keeps its font cache under MPLCONFIGDIR (else $HOME, /nonexistent here, and then a new
# temporary directory in every task, rebuilt each time): build it once, here, as the user that runs.
ENV MPLCONFIGDIR=/var/cache/cloudrun-analyzer/matplotlib
RUN mkdir -p "$MPLCONFIGDIR" && chown 10001 "$MPLCONFIGDIR"
USER 10001
RUN python -c "import matplotlib.font_manager"
# Cloud Run Jobs run `run --config ...`; a service overrides the args with `serve --config ...`.
ENTRYPOINT ["cloudrun-analyzer"]
CMD ["--help"]
