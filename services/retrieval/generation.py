"""What searches use together: one collection and the model that embeds queries for it.

A query takes the current generation once and uses it to the end, so a swap to a new
model's collection never pairs a query vector of one model with another's collection.
The old generation's store is closed only when no query holds it any more.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

from embedding.embedder import Embedder
from retrieval.fusion import parse_scripts
from retrieval.query_vectors import QueryVectors
from vectorstore.store import VectorStore


@dataclass
class Generation:
    store: VectorStore
    vectors: QueryVectors
    model: str
    # the scripts the model reads (empty: all); None: no dense model for this collection
    # (its model could not be loaded: searches run on BM25 until the new one is swapped in)
    dense_scripts: frozenset[str] | None
    in_flight: int = field(default=0)
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    @classmethod
    def of(
        cls,
        store: VectorStore,
        model: str,
        dense: Embedder | None,
        sparse: Embedder,
        scripts_setting: str,
        cache_size: int,
    ) -> Generation:
        scripts = None
        if dense is not None:
            setting = scripts_setting.strip()
            scripts = parse_scripts(dense.manifest.scripts if setting == "model" else setting)
        return cls(store, QueryVectors(dense, sparse, cache_size), model, scripts)

    @property
    def has_dense(self) -> bool:
        return self.dense_scripts is not None

    @contextlib.contextmanager
    def searching(self) -> Iterator[Generation]:
        """Held by a query while it uses this generation."""
        self.in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    async def drained(self, within_s: float) -> bool:
        """Wait until no query uses this generation (at most `within_s`)."""
        if self.in_flight:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), within_s)
        return not self.in_flight
