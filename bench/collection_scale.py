"""Collection scale for bench/retrieval_latency.py: one knowledge collection of 5,000 and
50,000 files, queried through the HTTP API (`/api/v1/retrieval/query/collection`).

The files are synthetic (COLLECTION_CHUNKS_PER_FILE random unit 384-d chunks each, a few
BM25 terms, completed records made directly in the catalog). Their chunks are written
with the vectorstore lib into the store directory while the retrieval process is stopped,
tagged with the collection as the retrieval service's VECTORS_UPSERT handler tags them,
and the collection's record (all its file ids) is put into the knowledge bucket at once:
adding 50,000 files one by one through the API rewrites a growing record 50,000 times.
What is measured is the query: gateway (auth, form), NATS, the retrieval service (scope
check, query embedding, hybrid search over the collection), and back.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
from harness import Ragway, cpu_seconds, percentile

from catalog.files import FileCatalog, now
from contracts.auth import Principal
from contracts.files import FileData, FileMeta, FileRecord
from contracts.knowledge import AccessControl, Knowledge, KnowledgeData
from embedding.vectors import SparseVector
from retrieval.knowledge_store import KnowledgeStore
from vectorstore.edge import EdgeStore
from vectorstore.points import COLLECTIONS, ChunkPoint

DIM = 384
COLLECTION_CHUNKS_PER_FILE = 2
FILE_IDS = uuid.UUID("0b7e4d2a-93c1-4f6e-8a5d-1c2b3e4f5a60")
KNOWLEDGE_ID = str(uuid.uuid5(FILE_IDS, "the collection"))
CREATE_BATCH = 500  # file records created at once


def synthetic_file(owner: Principal, name: str, chunks: int, namespace: uuid.UUID) -> FileRecord:
    """A completed synthetic file; its id depends only on its name (so stores can be kept)."""
    stamp = now()
    return FileRecord(
        id=str(uuid.uuid5(namespace, name)),
        user_id=owner.id,
        hash=hashlib.sha256(name.encode()).hexdigest(),
        filename=name,
        data=FileData(status="completed", chunks_done=chunks, chunks_total=chunks),
        meta=FileMeta(name=name, content_type="text/plain", size=1000),
        created_at=stamp,
        updated_at=stamp,
    )


def file_record(owner: Principal, file_no: int) -> FileRecord:
    return synthetic_file(owner, f"collected-{file_no}.txt", COLLECTION_CHUNKS_PER_FILE, FILE_IDS)


def collection_points(
    records: list[FileRecord], owner: str, rng: np.random.Generator
) -> Iterator[ChunkPoint]:
    """The files' chunks, tagged with the collection as VECTORS_UPSERT tags them."""
    dense = rng.standard_normal((len(records) * COLLECTION_CHUNKS_PER_FILE, DIM))
    dense = (dense / np.linalg.norm(dense, axis=1, keepdims=True)).astype(np.float32)
    terms = rng.integers(0, 30_000, (len(dense), 8))
    for n, record in enumerate(records):
        for index in range(COLLECTION_CHUNKS_PER_FILE):
            row = n * COLLECTION_CHUNKS_PER_FILE + index
            indices = sorted({int(t) for t in terms[row]})
            yield ChunkPoint(
                file_id=record.id,
                chunk_index=index,
                text=f"{record.meta.name} chunk {index}",
                dense=dense[row].tolist(),
                sparse=SparseVector(indices=indices, values=[1.0] * len(indices)),
                payload={"owner": owner, "name": record.meta.name, COLLECTIONS: [KNOWLEDGE_ID]},
            )


def store_key() -> str:
    """The code that writes a collection store: a change to it loads the store again."""
    code = hashlib.sha256()
    for written_by in (EdgeStore._open, EdgeStore._upsert, ChunkPoint, collection_points):
        code.update(inspect.getsource(written_by).encode())
    return code.hexdigest()[:12]


async def grow_collection(
    store_path: Path,
    catalog: FileCatalog,
    knowledge: KnowledgeStore,
    owner: Principal,
    file_nos: range,
    cached: Path | None,
    copy_store: Any,
) -> list[str]:
    """Add files `file_nos` to the collection (records, chunks, the collection's record);
    the collection's file ids. `cached`: a kept copy of the store as this call leaves it."""
    records = [file_record(owner, n) for n in file_nos]
    for start in range(0, len(records), CREATE_BATCH):
        await asyncio.gather(*(catalog.create(r) for r in records[start : start + CREATE_BATCH]))
    if cached is not None and await asyncio.to_thread(cached.is_dir):
        await asyncio.to_thread(copy_store, cached, store_path)
    else:
        store = EdgeStore(store_path)
        await store.ensure_collection(DIM)
        try:
            rng = np.random.default_rng(file_nos.start)
            batch: list[ChunkPoint] = []
            for point in collection_points(records, owner.id, rng):
                batch.append(point)
                if len(batch) >= 2000:
                    await store.upsert(batch)
                    batch = []
            await store.upsert(batch)
        finally:
            await store.close()
        if cached is not None:
            await asyncio.to_thread(copy_store, store_path, cached)
    file_ids = [file_record(owner, n).id for n in range(file_nos.stop)]
    stamp = now()
    await knowledge.put(
        Knowledge(
            id=KNOWLEDGE_ID,
            user_id=owner.id,
            name="scale",
            data=KnowledgeData(file_ids=file_ids),
            access_control=AccessControl(),
            created_at=stamp,
            updated_at=stamp,
        )
    )
    return file_ids


async def time_http_queries(
    rw: Ragway, texts: list[str], pid: int, file_id: str | None = None, k: int = 4
) -> dict[str, float]:
    """Sequential queries through the gateway, of the collection (or of one file, the
    baseline): latency percentiles and the retrieval process's CPU time per query."""
    route = "collection" if file_id is None else "doc"
    url = f"{rw.url}/api/v1/retrieval/query/{route}"
    latencies = []
    cpu_before = cpu_seconds(pid)
    async with aiohttp.ClientSession() as http:
        for text in texts:
            body: dict[str, Any] = {"query": text, "k": k}
            if file_id is None:
                body["collection_names"] = [KNOWLEDGE_ID]
            else:
                body["collection_name"] = f"file-{file_id}"
            started = time.perf_counter()
            async with http.post(url, json=body, headers=rw.headers) as reply:
                found = await reply.json()
            latencies.append((time.perf_counter() - started) * 1000)
            assert reply.status == 200, found
            assert found["documents"][0], "a collection query found nothing"
    return {
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "cpu_ms": (cpu_seconds(pid) - cpu_before) * 1000 / len(texts),
    }
