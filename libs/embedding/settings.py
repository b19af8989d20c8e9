"""Where model files live and how the runtime embedder uses them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

import msgspec

from common.settings import SettingsGroup, default_cache_dir

DEFAULT_MODEL = "all-minilm-l6-v2"
BM25_DIR_NAME = "bm25"


class EmbedderSettings(SettingsGroup, kw_only=True):
    """Settings of the offline embedder; a service nests them as its `embedding` field.

    Variables: `RAGWAY_CACHE_DIR`, `RAGWAY_EMBEDDING_MODEL`, `..._MODEL_DIR`,
    `..._QUANTIZED`, `..._BATCH_SIZE`, `..._THREADS`, `RAGWAY_BM25_LANGUAGE`,
    `RAGWAY_BM25_STOPWORDS`.
    """

    env_names: ClassVar = {
        "model": "EMBEDDING_MODEL",
        "model_dir": "EMBEDDING_MODEL_DIR",
        "quantized": "EMBEDDING_QUANTIZED",
        "batch_size": "EMBEDDING_BATCH_SIZE",
        "threads": "EMBEDDING_THREADS",
    }

    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    model: str = DEFAULT_MODEL
    # Empty: `<cache_dir>/models/<model>`. Set it to use a model directory elsewhere.
    model_dir: str = ""
    # Use `model_int8.onnx` (MatMul-only int8; ~1.5x faster, cosine ~0.99 to fp32).
    quantized: bool = False
    batch_size: Annotated[int, msgspec.Meta(ge=1)] = 32
    # onnxruntime intra-op threads; 0 lets onnxruntime choose (all cores).
    threads: Annotated[int, msgspec.Meta(ge=0)] = 0
    bm25_language: str = "english"
    # Stopword lists (files in the BM25 dir) applied together, for mixed-language corpora.
    bm25_stopwords: str = "english,arabic"

    def models_root(self) -> Path:
        return Path(self.cache_dir).expanduser() / "models"

    def resolved_model_dir(self) -> Path:
        return (
            Path(self.model_dir).expanduser() if self.model_dir else self.models_root() / self.model
        )

    def bm25_dir(self) -> Path:
        return self.models_root() / BM25_DIR_NAME


def service_embedder() -> EmbedderSettings:
    """What a service embeds with unless configured otherwise: int8 (MatMul-only, per
    channel: ~1.6x faster than fp32, msmarco nDCG@10 -0.006) on one onnxruntime thread
    (concurrent queries, or N processes on N cores, use the cores instead of fighting)."""
    return EmbedderSettings(quantized=True, threads=1)
