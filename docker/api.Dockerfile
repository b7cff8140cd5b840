# syntax=docker/dockerfile:1
# Regimen API image (CPU only). Also used by the one-shot `migrate` service, by `flower` and by the
# `admin` tool service in docker-compose.yml.
#   docker build -f docker/api.Dockerfile -t regimen-api .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REGIMEN_VAR_DIR=/var/lib/regimen \
    REGIMEN_ARTIFACT_DIR=/var/lib/regimen/artifacts

# torch first, from the CPU wheel index (its own layer: large and rarely changing). The project's
# `torch>=...` requirement is then already satisfied and pip will not fetch a CUDA build.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
COPY . /app
# The project, plus flower for the `flower` service (the same image runs it).
RUN pip install /app "flower>=2.0,<3"

RUN groupadd --system --gid 10001 regimen \
 && useradd --system --uid 10001 --gid regimen --home-dir /home/regimen --create-home regimen \
 && mkdir -p /var/lib/regimen/artifacts \
 && chown -R regimen:regimen /var/lib/regimen
USER regimen

EXPOSE 8000
# No HEALTHCHECK here: migrate, flower and admin run this image too. The api service in
# docker-compose.yml probes /healthz.
CMD ["uvicorn", "--factory", "api.main:create_app", "--host", "0.0.0.0", "--port", "8000"]
