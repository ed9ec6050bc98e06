# KAMIYO over HTTP: `docker build -t kamiyo .`, then see deploy/compose.yaml and docs/deploy.md.
# Two stages: uv installs the locked dependencies (uv.lock, --frozen: never re-resolved) and
# KAMIYO into a virtual environment; the final image carries only that environment, on the same
# slim Python, run by an unprivileged user.
FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.8 /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/kamiyo
WORKDIR /src
# The dependencies first, in a layer of their own: a code change does not reinstall them.
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev --no-install-project --extra fast
COPY . .
RUN uv sync --frozen --no-dev --no-editable --extra fast

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/kamiyo --create-home kamiyo
COPY --from=build /opt/kamiyo /opt/kamiyo
COPY deploy/entrypoint.sh /usr/local/bin/kamiyo-entrypoint
ENV PATH=/opt/kamiyo/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    KAMIYO_DATA_DIR=/var/lib/kamiyo \
    KAMIYO_LOG_FORMAT=json
USER kamiyo
WORKDIR /var/lib/kamiyo
EXPOSE 8000
# Liveness only (the process answers); readiness (/readyz) is for the proxy and compose.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
ENTRYPOINT ["kamiyo-entrypoint"]
CMD ["kamiyo", "serve", "--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
