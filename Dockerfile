# syntax=docker/dockerfile:1
# toggler: a Matrix bot that scales Kubernetes workloads on and off.
#
# Stage 1 builds wheels for toggler and every dependency; stage 2 installs only those wheels (bind-mounted,
# so they never become a layer) and keeps no compiler, package cache or build tool. All dependencies ship
# binary wheels for CPython 3.12 on x86_64 and aarch64 (vodozemac included), so no stage needs a compiler.
#
# The image runs as UID/GID 10001 and works with a read-only root filesystem when /data (crypto store,
# credentials, sync token) and /tmp are volumes, e.g.:
#   docker run --read-only --tmpfs /tmp -v toggler-data:/data -v ./config.yaml:/etc/toggler/config.yaml:ro IMAGE
# Kubernetes: see kustomize/base.

FROM python:3.12-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY toggler ./toggler
RUN pip wheel --wheel-dir /wheels .


FROM python:3.12-slim AS runtime

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="toggler" \
      org.opencontainers.image.description="Switch Kubernetes workloads on and off from an end-to-end encrypted Matrix room." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TMPDIR=/tmp \
    TOGGLER_HEALTH__HOST=0.0.0.0 \
    TOGGLER_HEALTH__PORT=8080

# Install from the wheels only (no index), then drop pip: nothing is installed at run time.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels /wheels/*.whl \
    && pip uninstall --yes pip \
    && groupadd --system --gid 10001 toggler \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin toggler \
    && mkdir -p /data /etc/toggler \
    && chown 10001:10001 /data

WORKDIR /data
VOLUME ["/data"]
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["toggler"]
CMD ["run"]
