"""The runtime embedder: dense vectors from the exported ONNX model, BM25 sparse vectors.

Everything here is offline: fastembed loads the files `python -m embedding.build` wrote and
never contacts a hub. Every method blocks (ONNX inference on the CPU): async callers run
them in a thread, e.g. `await asyncio.to_thread(embedder.embed_documents, texts)`.
The methods are safe to call from several threads at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import structlog

from embedding.catalog import MANIFEST_FILE, ModelManifest
from embedding.errors import model_missing
from embedding.query_model import QueryModel
from embedding.settings import EmbedderSettings
from embedding.vectors import DenseVector, SparseVector

log = structlog.get_logger(__name__)

BM25_MODEL = "Qdrant/bm25"
_register_lock = threading.Lock()


def read_manifest(model_dir: Path) -> ModelManifest:
    path = model_dir / MANIFEST_FILE
    if not path.is_file():
        raise model_missing(str(model_dir))
    return msgspec.json.decode(path.read_bytes(), type=ModelManifest)


def _register_custom_model(name: str, manifest: ModelManifest, model_file: str) -> None:
    """Tell fastembed about our local ONNX file (once per process: its registry is global)."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    with _register_lock:
        known = {m["model"].lower() for m in TextEmbedding.list_supported_models()}
        if name.lower() in known:
            return
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN if manifest.pooling == "mean" else PoolingType.CLS,
            normalization=manifest.normalize,
            # Never fetched: the model is always loaded from `specific_model_path`.
            sources=ModelSource(hf=f"ragway-local/{manifest.name}"),
            dim=manifest.dim,
            model_file=model_file,
        )


class Embedder:
    """Dense (sentence-transformers via ONNX) and sparse (BM25) embeddings, offline."""

    def __init__(self, settings: EmbedderSettings) -> None:
        # fastembed consults huggingface_hub for some paths; make any such attempt fail fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from fastembed import SparseTextEmbedding, TextEmbedding

        self.settings = settings
        model_dir = settings.resolved_model_dir()
        self.manifest = read_manifest(model_dir)
        model_file = "model_int8.onnx" if settings.quantized else "model.onnx"
        if not (model_dir / model_file).is_file():
            raise model_missing(str(model_dir / model_file))
        self.model_name = f"ragway/{self.manifest.name}" + ("-int8" if settings.quantized else "")
        _register_custom_model(self.model_name, self.manifest, model_file)
        threads = settings.threads or None
        self._dense = TextEmbedding(
            self.model_name,
            specific_model_path=str(model_dir),
            local_files_only=True,
            threads=threads,
        )
        self._query = QueryModel.of(self._dense, self.manifest)
        bm25_dir = settings.bm25_dir()
        if not bm25_dir.is_dir():
            raise model_missing(str(bm25_dir))
        self._sparse = SparseTextEmbedding(
            BM25_MODEL,
            specific_model_path=str(bm25_dir),
            local_files_only=True,
            language=settings.bm25_language,
            stopwords=self._stopwords(bm25_dir),
        )
        log.info(
            "embedder_loaded",
            model=self.model_name,
            dim=self.manifest.dim,
            model_dir=str(model_dir),
            bm25_dir=str(bm25_dir),
        )

    def _stopwords(self, bm25_dir: Path) -> set[str]:
        words: set[str] = set()
        for language in filter(None, (x.strip() for x in self.settings.bm25_stopwords.split(","))):
            path = bm25_dir / f"{language}.txt"
            if path.is_file():
                words.update(w.strip().lower() for w in path.read_text().splitlines() if w.strip())
        return words

    @property
    def dimension(self) -> int:
        return self.manifest.dim

    def embed_documents(self, texts: Sequence[str]) -> list[DenseVector]:
        """One unit-length vector per text (texts are truncated at the model's length)."""
        prefix = self.manifest.document_prefix
        items = [prefix + text for text in texts] if prefix else list(texts)
        if not items:
            return []
        # A batch is padded to its longest text: embedding in length order wastes far less
        # compute on padding when chunk lengths vary (the results go back in input order).
        order = sorted(range(len(items)), key=lambda i: len(items[i]))
        vectors = self._dense.embed([items[i] for i in order], batch_size=self.settings.batch_size)
        result: list[DenseVector] = [[] for _ in items]
        for i, vector in zip(order, vectors, strict=True):
            result[i] = vector.tolist()
        return result

    def embed_query(self, text: str) -> DenseVector:
        """The vector of a search query (with the model's query prefix, if it has one)."""
        return self._query.embed(self.manifest.query_prefix + text)

    def embed_each(self, texts: Sequence[str]) -> tuple[bytes, int]:
        """The texts as given (no prefix), each run alone so its vector never depends on
        the others: their vectors as little-endian float32 rows, and the tokens read."""
        rows = np.empty((len(texts), self.dimension), dtype="<f4")
        tokens = 0
        for row, text in enumerate(texts):
            rows[row], count = self._query.run(text)
            tokens += count
        return rows.tobytes(), tokens

    def sparse_documents(self, texts: Sequence[str]) -> list[SparseVector]:
        """BM25 term frequencies per text; the store applies IDF at query time."""
        if not texts:
            return []
        return [
            SparseVector(indices=e.indices.tolist(), values=e.values.tolist())
            for e in self._sparse.embed(list(texts), batch_size=self.settings.batch_size * 8)
        ]

    def sparse_query(self, text: str) -> SparseVector:
        """The query's terms, weight 1 each (BM25 scoring happens in the store)."""
        e = next(iter(self._sparse.query_embed(text)))
        return SparseVector(indices=e.indices.tolist(), values=[float(v) for v in e.values])
