# syntax=docker/dockerfile:1
# Every GreenLane service image, from one template; the service is a build argument.
# Build from the repository root (`make images` builds them all, with docker or podman):
#   docker build --build-arg SERVICE=grid -t greenlane-grid:0.1.0 .
# SERVICE is a folder under services/ with a stage of that name below. Only that
# service's locked dependencies are installed (uv export --package), with hashes.
ARG SERVICE

FROM ghcr.io/astral-sh/uv:0.13.9 AS uv

FROM python:3.11.14-slim-bookworm AS builder
ARG SERVICE
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11
WORKDIR /src
# Third-party dependencies first, in their own layer: it is rebuilt when the lock
# or a pyproject changes, not when the code does. Hashes come from uv.lock.
COPY pyproject.toml uv.lock ./
COPY services/core/pyproject.toml services/core/
COPY services/${SERVICE}/pyproject.toml services/${SERVICE}/
RUN --mount=type=cache,target=/root/.cache/uv \
    uv export --frozen --package "greenlane-$(echo "${SERVICE}" | tr _ -)" \
        --no-dev --no-editable --no-emit-workspace --output-file requirements.txt \
    && uv venv /app/.venv \
    && uv pip install --python /app/.venv/bin/python --require-hashes --requirement requirements.txt
# Then core and the service, as ordinary (non-editable) wheels. uv's lock file in the
# venv is world-writable and of no use at run time.
COPY services/core/src services/core/src
COPY services/${SERVICE}/src services/${SERVICE}/src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv pip install --python /app/.venv/bin/python --no-deps ./services/core "./services/${SERVICE}" \
    && rm -f /app/.venv/.lock

FROM python:3.11.14-slim-bookworm AS runtime
# The chart's runAsUser. An ordinary account (a --system one must have a uid below
# 1000), no home, no login shell, no lastlog entry.
RUN groupadd --gid 10001 greenlane \
    && useradd --uid 10001 --gid greenlane --no-create-home --no-log-init \
        --home-dir /nonexistent --shell /usr/sbin/nologin greenlane
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GREENLANE_LOG_FORMAT=json
WORKDIR /app
# A numeric user, so Kubernetes can check runAsNonRoot without reading /etc/passwd.
USER 10001:10001

# One stage per service, named like its folder: what differs between the images.
# A service that needs more (e.g. web assets built by a Node stage) adds a build
# stage above its own and copies from it; docker and podman build only the stages
# the chosen SERVICE needs. See docs/kubernetes.md, "Adding a service".

FROM runtime AS grid
LABEL org.opencontainers.image.title="greenlane-grid" \
      org.opencontainers.image.description="GreenLane grid service, the time-of-use tariff over HTTP."
ENV GREENLANE_GRID_HOST=0.0.0.0
# The API, /metrics, /healthz and /readyz share one port.
EXPOSE 8081
ENTRYPOINT ["python", "-m", "greenlane.grid"]

# The hub's dashboard, built from package-lock.json; only its output reaches the image.
FROM node:22.12.0-bookworm-slim AS hub-web
WORKDIR /web
COPY services/hub/web/package.json services/hub/web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY services/hub/web/index.html services/hub/web/tsconfig.json services/hub/web/vite.config.ts ./
COPY services/hub/web/src src
RUN npm run build

FROM runtime AS hub
LABEL org.opencontainers.image.title="greenlane-hub" \
      org.opencontainers.image.description="GreenLane hub, fleet events to WebSocket clients and the live fleet map."
COPY --from=hub-web /web/dist /app/web
ENV GREENLANE_HUB_HOST=0.0.0.0 \
    GREENLANE_HUB_WEB_DIR=/app/web
# The map, the API, the WebSocket, /metrics, /healthz and /readyz share one port.
EXPOSE 8090
ENTRYPOINT ["python", "-m", "greenlane.hub"]

FROM runtime AS ingestion
LABEL org.opencontainers.image.title="greenlane-ingestion" \
      org.opencontainers.image.description="GreenLane gRPC telemetry streams into Redis and Kafka."
# gRPC (fleet telemetry, gRPC health), the booking HTTP API, /metrics /healthz /readyz.
EXPOSE 50051 8082 9101
ENTRYPOINT ["python", "-m", "greenlane.ingestion"]

FROM runtime AS operator
LABEL org.opencontainers.image.title="greenlane-operator" \
      org.opencontainers.image.description="GreenLane operator, FleetSimulation resources become simulator Jobs (kopf)."
# kopf's liveness endpoint; /metrics /healthz /readyz.
EXPOSE 8080 9103
ENTRYPOINT ["python", "-m", "greenlane.operator"]

FROM runtime AS planner
LABEL org.opencontainers.image.title="greenlane-planner" \
      org.opencontainers.image.description="GreenLane planner, one joint charging plan per site (HiGHS)."
ENV GREENLANE_PLANNER_HOST=0.0.0.0
# The API, /metrics, /healthz and /readyz share one port.
EXPOSE 8083
ENTRYPOINT ["python", "-m", "greenlane.planner"]

FROM runtime AS pricing_worker
LABEL org.opencontainers.image.title="greenlane-pricing-worker" \
      org.opencontainers.image.description="GreenLane pricing worker, fleet events priced into charging_sessions."
# The migrations, run by the chart's migration Job (and compose's migrate) with this image.
COPY sql/ /app/sql/
ENV GREENLANE_MIGRATIONS_DIR=/app/sql
# /metrics /healthz /readyz.
EXPOSE 9102
ENTRYPOINT ["python", "-m", "greenlane.pricing_worker"]

FROM runtime AS simulator
LABEL org.opencontainers.image.title="greenlane-simulator" \
      org.opencontainers.image.description="GreenLane fleet simulator, many cars on their own gRPC streams."
ENTRYPOINT ["python", "-m", "greenlane.simulator"]

# The image: the stage of the service asked for.
FROM ${SERVICE}
