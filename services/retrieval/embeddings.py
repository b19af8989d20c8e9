"""Batches of texts embedded by ragway's own model, for the embeddings API.

The model is the one searches use (loaded once, see `retrieval.engines`). Each text runs
alone (`Embedder.embed_each`), so its vector never depends on what it was sent with, and
`prompt_tokens` counts the tokens the model read, by its own tokenizer. Batches take turns
(`embedding_api_concurrency`): a large request must not take every core from searches.
"""

from __future__ import annotations

import asyncio

from common.errors import RagwayError, invalid
from contracts.embeddings import (
    EmbedBatch,
    EmbeddedBatch,
    EmbeddingModel,
    EmbeddingModelInfo,
    EmbeddingModels,
    EmbeddingModelsRequest,
)
from embedding.embedder import Embedder
from retrieval.settings import Settings


class EmbeddingHandlers:
    def __init__(self, embedder: Embedder, settings: Settings) -> None:
        self._embedder = embedder
        self._max_inputs = settings.embedding_api_max_batch
        self._max_chars = settings.embedding_api_max_batch_chars
        self._turns = asyncio.Semaphore(settings.embedding_api_concurrency)
        manifest = embedder.manifest
        self.model = EmbeddingModel(
            id=manifest.name,
            info=EmbeddingModelInfo(dimensions=manifest.dim, max_input_tokens=manifest.max_length),
        )

    async def models(self, _: EmbeddingModelsRequest) -> EmbeddingModels:
        return EmbeddingModels(models=[self.model])

    async def embed(self, batch: EmbedBatch) -> EmbeddedBatch:
        """The batch's vectors (float32 rows) and the tokens the model read."""
        self._check(batch)
        async with self._turns:
            vectors, tokens = await asyncio.to_thread(self._embedder.embed_each, batch.input)
        return EmbeddedBatch(
            dimensions=self.model.info.dimensions, vectors=vectors, prompt_tokens=tokens
        )

    def _check(self, batch: EmbedBatch) -> None:
        model = self.model
        if batch.model != model.id:
            raise RagwayError("not_found", f"Model '{batch.model}' not found")
        dimensions = model.info.dimensions
        if batch.dimensions is not None and batch.dimensions != dimensions:
            raise invalid(
                f"'{model.id}' makes vectors of {dimensions} dimensions and cannot shorten "
                f"them: leave `dimensions` out or set it to {dimensions}"
            )
        if len(batch.input) > self._max_inputs:
            raise invalid(f"At most {self._max_inputs} texts in one batch")
        if sum(len(text) for text in batch.input) > self._max_chars:
            raise RagwayError("too_large", f"At most {self._max_chars} characters in one batch")
