"""Which vector collection serves searches, and which model built it.

Every collection is tied to the model that made its dense vectors (name and dimension),
recorded in KV bucket `<prefix>_vector_index`: key `active` is the collection searches
use, key `building` a collection being built for a newly configured model (with its
progress). A deployment that starts with another model keeps searching the active
collection while the new one is built from the stored chunk texts (`rebuild.py`), then
swaps the pointer. Stores made before this record existed are adopted as built by the
configured model (they were: the model was the only one).
"""

from __future__ import annotations

import re
import time

import msgspec
from nats.js import JetStreamContext

from catalog.buckets import Bucket
from common.errors import forbidden
from contracts.retrieval import IndexStatus, IndexStatusRequest, VectorIndex
from embedding.settings import EmbedderSettings

ACTIVE = "active"
BUILDING = "building"


IndexRecord = VectorIndex


def record_for(collection: str, model: str, dim: int, embedding: EmbedderSettings) -> IndexRecord:
    now = time.time()
    return IndexRecord(
        collection=collection,
        model=model,
        dim=dim,
        model_setting=embedding.model,
        quantized=embedding.quantized,
        started_at=now,
        updated_at=now,
    )


def collection_name(base: str, model: str) -> str:
    """The collection a model's index gets besides the first one: `<base>__<model slug>`."""
    slug = re.sub(r"[^a-z0-9]+", "-", model.lower()).strip("-")
    return f"{base}__{slug}"


def settings_of(record: IndexRecord, embedding: EmbedderSettings) -> EmbedderSettings:
    """The embedder settings that load the model which built `record`'s collection."""
    return msgspec.structs.replace(
        embedding, model=record.model_setting, quantized=record.quantized, model_dir=""
    )


class IndexBook:
    """The `active` and `building` records in KV."""

    def __init__(self, bucket: Bucket) -> None:
        self._bucket = bucket

    @classmethod
    async def open(cls, js: JetStreamContext, prefix: str, replicas: int) -> IndexBook:
        return cls(await Bucket.open(js, f"{prefix}_vector_index", replicas))

    async def get(self, key: str) -> IndexRecord | None:
        raw = await self._bucket.get(key)
        return None if raw is None else msgspec.json.decode(raw, type=IndexRecord)

    async def put(self, key: str, record: IndexRecord) -> None:
        await self._bucket.put(key, msgspec.json.encode(record))

    async def delete(self, key: str) -> None:
        await self._bucket.kv.delete(key)


class IndexStatusHandler:
    """RETRIEVAL_INDEX: the records, for admins (`GET /api/v1/retrieval/embedding`)."""

    def __init__(self, book: IndexBook, embedding: EmbedderSettings) -> None:
        self._book = book
        self._embedding = embedding

    async def status(self, request: IndexStatusRequest) -> IndexStatus:
        if request.principal.role != "admin":
            raise forbidden("Only administrators may see the vector index")
        return IndexStatus(
            configured_model=self._embedding.model,
            batch_size=self._embedding.batch_size,
            active=await self._book.get(ACTIVE),
            building=await self._book.get(BUILDING),
        )
