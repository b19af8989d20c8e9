"""Where model files live and how the runtime embedder uses them."""

from __future__ import annotations

from pathlib import Path

import msgspec

from common.settings import default_cache_dir

DEFAULT_MODEL = "all-minilm-l6-v2"
BM25_DIR_NAME = "bm25"


class EmbedderSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the offline embedder (a service maps its own `RAGWAY_*` fields here)."""

    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    model: str = DEFAULT_MODEL
    # Empty: `<cache_dir>/models/<model>`. Set it to use a model directory elsewhere.
    model_dir: str = ""
    # Use `model_int8.onnx` (MatMul-only int8; ~1.5x faster, cosine ~0.99 to fp32).
    quantized: bool = False
    batch_size: int = 32
    # onnxruntime intra-op threads; 0 lets onnxruntime choose (all cores).
    threads: int = 0
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
