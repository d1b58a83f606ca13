# cloudrun-analyzer: the scheduled job (`run`) and the HTTP trigger (`serve`). docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY analyzer ./analyzer
COPY templates ./templates
COPY configs ./configs
RUN pip install . && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin analyzer

USER 10001
# Cloud Run Jobs run `run --config ...`; a service overrides the args with `serve --config ...`.
ENTRYPOINT ["cloudrun-analyzer"]
CMD ["--help"]
