# syntax=docker/dockerfile:1
#
# Three images from one file; docker-compose.yml builds each by its target:
#   api       the service on python:3.11-slim: the base install only (onnxruntime CPU, no torch)
#   trainer   the `train` extra (torch's CPU build); retrains and exports the next model version
#   api-gpu   the service with onnxruntime-gpu on an NVIDIA CUDA + cuDNN runtime base
#
#   docker build --target api -t mmoe-service .
#
# Every image runs as the unprivileged user 10001, writes nothing outside /tmp and the model
# repository volume (/models), and carries the bundled model at /models so that an empty named
# volume mounted there is seeded with it.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# onnxruntime-gpu from PyPI is built for CUDA 12.x and cuDNN 9.x. A CUDA 12.9 image needs an
# NVIDIA driver of the R575 branch or a data-centre driver with forward compatibility; on an older
# driver build with e.g. --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04.
ARG CUDA_IMAGE=nvidia/cuda:12.9.1-cudnn-runtime-ubuntu24.04
ARG APP_UID=10001

# ---------------------------------------------------------------------------------------------
# Builders: the virtual environment /opt/venv, made by docker/install-venv.sh for every image:
# dependencies first, at the versions docker/constraints.txt pins (a layer that changes only with
# pyproject.toml and that file), then the project itself.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-build
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/install-venv.sh docker/constraints.txt docker/

FROM python-build AS api-build
RUN --mount=type=cache,target=/root/.cache/pip sh docker/install-venv.sh dependencies
# Only service/: the training package never enters a serving image. The import check runs
# isolated (-I) so that it imports the installed package, not ./service.
COPY service/ service/
RUN sh docker/install-venv.sh project \
    && /opt/venv/bin/python -I -c "import sys, service.app; assert 'torch' not in sys.modules"

FROM python-build AS trainer-build
# torch==X+cpu exists only on PyTorch's CPU wheel index: the trainer never gets the CUDA build.
RUN --mount=type=cache,target=/root/.cache/pip \
    sh docker/install-venv.sh dependencies --extra train --torch-cpu
COPY service/ service/
COPY training/ training/
RUN sh docker/install-venv.sh project

# ---------------------------------------------------------------------------------------------
# python-runtime: what the api and trainer images share: the unprivileged user, the bundled
# model, and an environment that writes nothing outside /tmp.
# ---------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS python-runtime
ARG APP_UID
RUN groupadd --system --gid "${APP_UID}" mmoe \
    && useradd --system --uid "${APP_UID}" --gid mmoe --no-create-home --home-dir /tmp mmoe
COPY --chown=${APP_UID}:${APP_UID} models/ /models/
# Bytecode was compiled at install time; at run time the root filesystem may be read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER ${APP_UID}:${APP_UID}

# ---------------------------------------------------------------------------------------------
# api: the CPU service.
# ---------------------------------------------------------------------------------------------
FROM python-runtime AS api
COPY --from=api-build /opt/venv /opt/venv
ENV MMOE_MODEL_REPOSITORY=/models \
    MMOE_HOST=0.0.0.0 \
    MMOE_PORT=8000
EXPOSE 8000
# Healthy = ready: the model is loaded and warmed up. Python's urllib only, no curl in the image;
# urlopen raises (exit 1) on a refused connection, a timeout or any status >= 400 (503: not ready).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MMOE_PORT', '8000') + '/health/ready', timeout=2)"]
CMD ["python", "-m", "service"]

# ---------------------------------------------------------------------------------------------
# trainer: `docker compose run --rm trainer [mmoe-train options]` exports the next version; it
# becomes the served default only if its held-out metrics are not worse (--export.promote).
# ---------------------------------------------------------------------------------------------
FROM python-runtime AS trainer
COPY --from=trainer-build /opt/venv /opt/venv
ENV MPLCONFIGDIR=/tmp/matplotlib
# Options given to `docker compose run trainer ...` replace CMD and follow the entrypoint's
# options; a later option wins, so even --export.models_dir can be overridden.
ENTRYPOINT ["python", "-m", "training", "--export.models_dir", "/models"]
CMD ["--export.name", "mmoe-synthetic", "--quiet"]

# ---------------------------------------------------------------------------------------------
# api-gpu: the service with onnxruntime-gpu; MMOE_PROVIDER=auto picks CUDA when a GPU is passed
# in (compose: deploy.resources.reservations.devices; docker run: --gpus all).
# Ubuntu 24.04's supported python3 is 3.12 (the project needs >= 3.11).
# ---------------------------------------------------------------------------------------------
FROM ${CUDA_IMAGE} AS gpu-build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml ./
COPY docker/requirements.py docker/install-venv.sh docker/constraints.txt docker/
RUN --mount=type=cache,target=/root/.cache/pip sh docker/install-venv.sh dependencies --extra gpu
COPY service/ service/
RUN sh docker/install-venv.sh project

FROM ${CUDA_IMAGE} AS api-gpu
ARG APP_UID
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid "${APP_UID}" mmoe \
    && useradd --system --uid "${APP_UID}" --gid mmoe --no-create-home --home-dir /tmp mmoe
COPY --from=gpu-build /opt/venv /opt/venv
COPY --chown=${APP_UID}:${APP_UID} models/ /models/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    MMOE_MODEL_REPOSITORY=/models \
    MMOE_HOST=0.0.0.0 \
    MMOE_PORT=8000 \
    MMOE_PROVIDER=auto
WORKDIR /tmp
USER ${APP_UID}:${APP_UID}
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('MMOE_PORT', '8000') + '/health/ready', timeout=2)"]
CMD ["python", "-m", "service"]
