"""One text through the dense model without fastembed's batch pipeline.

A query is one short text: fastembed's path for it (a generator over batches, padding
arrays, masked pooling in float64) costs ~10% of the model run itself, on every search.
This runs the same tokenizer and ONNX session fastembed loaded (no second copy of the
model in memory) with the same pooling and normalisation; tests hold it to fastembed's
own vectors.

A text run alone also gets the same vector whatever else is being embedded: the int8
model quantizes its activations per run, so in a padded batch a text's vector moves with
its neighbours (cosine ~0.98 to its own). The embeddings API runs each text alone for that.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embedding.catalog import ModelManifest
from embedding.vectors import DenseVector


class QueryModel:
    def __init__(self, session: Any, tokenizer: Any, manifest: ModelManifest) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._inputs = {node.name for node in session.get_inputs()}
        self._mean = manifest.pooling == "mean"
        self._normalize = manifest.normalize

    @classmethod
    def of(cls, text_embedding: Any, manifest: ModelManifest) -> QueryModel:
        """The query model over a loaded fastembed `TextEmbedding`'s session and tokenizer."""
        model = getattr(text_embedding, "model", None)
        session = getattr(model, "model", None)
        tokenizer = getattr(model, "tokenizer", None)
        if session is None or tokenizer is None:
            raise RuntimeError("fastembed's model has no loaded ONNX session and tokenizer")
        return cls(session, tokenizer, manifest)

    def embed(self, text: str) -> DenseVector:
        """The pooled (and, if the model says so, unit-length) vector of one text."""
        result: DenseVector = self.run(text)[0].tolist()
        return result

    def run(self, text: str) -> tuple[np.ndarray[Any, np.dtype[np.float32]], int]:
        """The vector of one text (float32) and how many tokens the model read of it
        (special tokens included; a text past the model's length is truncated)."""
        ids = np.array([self._tokenizer.encode(text).ids], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        if "token_type_ids" in self._inputs:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = self._session.run(None, feeds)[0][0]  # (tokens, dim): no padding in a batch of one
        vector = hidden.mean(axis=0) if self._mean else hidden[0]
        if self._normalize:
            vector = vector / max(float(np.linalg.norm(vector)), 1e-12)
        return vector.astype(np.float32, copy=False), int(ids.shape[1])
