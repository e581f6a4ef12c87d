# syntax=docker/dockerfile:1
# lockgate: one image for the operator (`lockgate run`, the default) and the migration
# runner (`lockgate migrate`, what the migration Jobs run).
#
#   docker build -t ghcr.io/lockgate/lockgate:0.1.0 .
#
# Teams bake their migrations in on top of it; the runner reads /migrations by default:
#
#   FROM ghcr.io/lockgate/lockgate:0.1.0
#   COPY migrations/ /migrations/
#
# and name that image in SchemaMigration.spec.image (or ship the scripts in a ConfigMap
# with spec.migrations.configMap and use this image as it is).
#
# The final stage holds the Python runtime and the virtual environment only: no compiler,
# no pip cache, no sources. It runs as uid/gid 10001 (the chart's runAsUser) and works with a
# read-only root filesystem: nothing is written outside /tmp, where the chart mounts an emptyDir.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
# Compilers only here, for dependencies without a wheel for the target platform.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/lockgate
WORKDIR /src
COPY pyproject.toml ./
COPY README.md* ./
COPY operator/ operator/
RUN /opt/lockgate/bin/pip install --no-cache-dir . \
 && /opt/lockgate/bin/lockgate --version

FROM ${PYTHON_IMAGE} AS final
LABEL org.opencontainers.image.title="lockgate" \
      org.opencontainers.image.description="Exactly-once, rollout-gated database schema migrations for Kubernetes" \
      org.opencontainers.image.source="https://github.com/lockgate/lockgate" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 lockgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin lockgate \
 && mkdir -p /migrations
COPY --from=builder /opt/lockgate /opt/lockgate
ENV PATH=/opt/lockgate/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    LOCKGATE_MIGRATIONS_DIR=/migrations
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["lockgate"]
CMD ["run"]
