# One image for every ragway service: `python -m <service>` picks which one runs.
# First version (not built in CI: the development machines have no Docker engine).

FROM python:3.11-slim AS models
WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip install --no-cache-dir .
# The embedding model is exported to ONNX once, in a throwaway venv with CPU torch.
ENV RAGWAY_CACHE_DIR=/cache \
    PIP_INDEX_URL=https://download.pytorch.org/whl/cpu \
    PIP_EXTRA_INDEX_URL=https://pypi.org/simple
RUN python -m embedding.build && rm -rf /cache/build-venv

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 ragway
WORKDIR /app
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip install --no-cache-dir . && rm -rf /root/.cache
COPY --from=models --chown=ragway /cache/models /home/ragway/.cache/ragway/models
USER ragway
ENV RAGWAY_CACHE_DIR=/home/ragway/.cache/ragway \
    RAGWAY_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
EXPOSE 3000
CMD ["python", "-m", "gateway"]
