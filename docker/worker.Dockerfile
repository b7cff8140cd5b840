# syntax=docker/dockerfile:1
# Regimen GPU worker image: one Celery worker (solo pool) per GPU, see docker-compose.yml.
#   docker build -f docker/worker.Dockerfile -t regimen-worker .
# The CUDA user-space libraries (cuBLAS, cuDNN, NCCL, ...) come with the CUDA build of torch as pip
# wheels, so the small `base` CUDA image is enough; the driver is mounted at run time by the NVIDIA
# Container Toolkit (the image sets NVIDIA_DRIVER_CAPABILITIES=compute,utility).
FROM nvidia/cuda:12.8.1-base-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    REGIMEN_VAR_DIR=/var/lib/regimen \
    REGIMEN_ARTIFACT_DIR=/var/lib/regimen/artifacts

# Ubuntu 24.04's Python is 3.12 (the project needs >= 3.11); a venv because the system Python is
# externally managed (PEP 668).
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && python3 -m venv /opt/venv

# torch first, the CUDA 12.8 build (its own layer: large and rarely changing).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128

WORKDIR /app
COPY . /app
RUN pip install /app

# Same uid/gid as the API image, so both can write the shared artifacts volume.
RUN groupadd --system --gid 10001 regimen \
 && useradd --system --uid 10001 --gid regimen --home-dir /home/regimen --create-home regimen \
 && mkdir -p /var/lib/regimen/artifacts \
 && chown -R regimen:regimen /var/lib/regimen
USER regimen

# docker-compose.yml appends `-n worker-gpuN@%h` to this command for each GPU service.
CMD ["celery", "-A", "workers.celery_app", "worker", "--pool=solo", "--concurrency=1", "--loglevel=INFO"]
