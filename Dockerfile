# syntax=docker/dockerfile:1
# mirrord container image: `mirrord run` with the plan at /etc/mirrord/mirrord.yaml.
#
#   docker build -t mirrord .
#   docker run --read-only --tmpfs /tmp -v mirrord-state:/var/lib/mirrord \
#     -v "$PWD/mirrord.yaml:/etc/mirrord/mirrord.yaml:ro" -p 9402:9402 mirrord
#
# Two stages: the build stage installs mirrord and its dependencies into a virtualenv (with pip, wheel
# caches and build tools); the runtime stage copies only that virtualenv onto a fresh slim base, so the
# image holds no compiler, no pip cache and no source tree.
#
# Read-only root filesystem: the runtime writes nothing outside /tmp and the state volume
# (/var/lib/mirrord, blob locations kept across restarts). Bytecode is compiled at build time and
# PYTHONDONTWRITEBYTECODE stops Python from trying to write more; HOME points at the state volume so a
# docker config lookup (~/.docker/config.json) never needs a writable home elsewhere.
#
# PID 1 is mirrord itself: it installs its own SIGTERM/SIGINT/SIGHUP handlers (the kernel only drops
# signals to PID 1 that have no handler) and starts no child processes, so no init shim is needed.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/mirrord
COPY pyproject.toml README.md ./
COPY mirrord ./mirrord
# Installing from the source tree (not an index) is the pin: the dependency ranges live in pyproject.toml.
RUN /opt/mirrord/bin/pip install . \
    && /opt/mirrord/bin/python -m compileall -q /opt/mirrord/lib \
    && /opt/mirrord/bin/mirrord version

FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="mirrord" \
      org.opencontainers.image.description="Asynchronous container registry mirroring daemon" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.documentation="README.md: Running under Kubernetes / systemd" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# A fixed numeric UID/GID (not a name) so Kubernetes' runAsNonRoot can check it without /etc/passwd.
RUN groupadd --system --gid 10001 mirrord \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/mirrord \
       --shell /usr/sbin/nologin mirrord \
    && mkdir -p /etc/mirrord /var/lib/mirrord \
    && chown 10001:10001 /var/lib/mirrord
COPY --from=build /opt/mirrord /opt/mirrord
ENV PATH=/opt/mirrord/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/var/lib/mirrord \
    MIRRORD_CONFIG=/etc/mirrord/mirrord.yaml \
    MIRRORD_STATE_DIR=/var/lib/mirrord
VOLUME ["/var/lib/mirrord"]
USER 10001:10001
WORKDIR /var/lib/mirrord
# server.listen in the plan; 9402 is the default.
EXPOSE 9402
# /healthz answers 200 while the event loop runs; python is in the image, curl is not. A plan that
# moves server.listen off port 9402 should override this (or rely on the orchestrator's probes).
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9402/healthz', timeout=4)"]
ENTRYPOINT ["mirrord", "run"]
