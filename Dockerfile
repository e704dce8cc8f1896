# syntax=docker/dockerfile:1
# Build a wheel in one stage, install it into a slim runtime that runs as a non-root user.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY mirrord ./mirrord
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="mirrord" \
      org.opencontainers.image.description="Asynchronous container registry mirroring daemon" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --home-dir /var/lib/mirrord --create-home mirrord
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 MIRRORD_CONFIG=/etc/mirrord/mirrord.yaml
EXPOSE 9402
ENTRYPOINT ["mirrord", "run"]
