"""Progressive ingestion: a file is keyword-searchable (BM25 over every chunk) long before
its dense vectors are all written, and a big file's dense ranges are jobs of their own."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog, chunks_name
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Principal
from contracts.files import FileRecord
from contracts.retrieval import (
    FileVectorsRef,
    RetrievalQuery,
    RetrievalResult,
    ScopeItem,
    SearchMode,
    StoredChunks,
)
from ingestion.app import Settings, serve
from ingestion.jobs import chunk_ranges
from retrieval.app import Retrieval
from tests.ingestion.test_worker import DONE, handbook
from tests.ingestion.uploads import queue_job, record_when, upload, wait_for

LAST_LINE = "The quartermaster stores the violet umbrellas in the northern boathouse."


def long_handbook(seed: int, parts: int) -> bytes:
    """A handbook whose last sentence is found only in its last chunk."""
    return handbook(seed, parts) + f"\n\n## Appendix\n\n{LAST_LINE}\n".encode()


async def query(
    bus: Bus,
    record: FileRecord,
    text: str,
    mode: SearchMode,
    complete_wait: float | None = None,
) -> RetrievalResult:
    owner = record.user_id
    principal = Principal(id=owner, email=f"{owner}@example.com", name=owner, role="user")
    request = RetrievalQuery(
        principal=principal,
        query=text,
        items=[ScopeItem(type="file", id=record.id)],
        k=3,
        mode=mode,
        wait_seconds=10,
        complete_wait_seconds=complete_wait,
    )
    result: RetrievalResult = await bus.call(subjects.RETRIEVAL_QUERY, request, timeout=20)
    return result


async def stored(bus: Bus, file_id: str) -> StoredChunks:
    reply: StoredChunks = await bus.call(
        subjects.VECTORS_STORED, FileVectorsRef(file_id=file_id), timeout=10
    )
    return reply


def test_chunk_ranges_cover_every_chunk_once() -> None:
    assert chunk_ranges(0, 4) == []
    assert chunk_ranges(4, 4) == [(0, 4)]
    assert chunk_ranges(10, 4) == [(0, 4), (4, 8), (8, 10)]


async def test_a_file_is_found_by_keywords_before_its_dense_vectors_are_written(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, mbus: Bus, settings: Settings
) -> None:
    ranged = msgspec.structs.replace(settings, dense_range_chunks=64)
    async with serve(ranged) as ingestion:
        # the service's first query pays for warm-ups (seconds): not what is measured here
        small = await upload(module_nc, catalog, ranged, handbook(30, parts=1))
        small = await wait_for(catalog, small.id, DONE)
        for mode in ("sparse", "hybrid"):
            await query(mbus, small, "lamp room", mode)
        warm = ingestion.embedding.chunks_embedded

        record = await upload(module_nc, catalog, ranged, long_handbook(31, parts=80))
        early = await record_when(catalog, record.id, lambda r: r.data.keyword_searchable)
        # BM25 covers every chunk at once, the last one included
        found = await query(mbus, record, "violet umbrellas boathouse", "sparse")
        # hybrid does not wait for the rest: it fuses what is embedded and says so
        hybrid = await query(mbus, record, "violet umbrellas boathouse", "hybrid", 0.0)
        done = await wait_for(catalog, record.id, DONE)

    total = early.data.chunks_total
    assert early.data.status == "processing" and early.data.chunks_done < total
    assert total > 2 * ranged.dense_range_chunks  # several range jobs
    assert LAST_LINE in found.groups[0].hits[0].text
    [partial] = hybrid.groups[0].partial
    assert (partial.file_id, partial.chunks_total) == (record.id, total)
    assert partial.chunks_embedded < total, "the file finished before the query: make it longer"
    assert any(LAST_LINE in hit.text for hit in hybrid.groups[0].hits)

    assert done.data.status == "completed"
    assert (done.data.chunks_done, done.data.chunks_total) == (total, total)
    assert done.data.keyword_searchable and done.data.dense_ranges == {}
    assert ingestion.embedding.chunks_embedded - warm == total  # every chunk embedded once
    held = await stored(mbus, record.id)
    assert (held.count, held.indexes) == (total, list(range(total)))
    points = await retrieval.store.get_file_points(record.id)
    assert all(len(point.dense) == retrieval.embedder.dimension for point in points)
    dense = await query(mbus, done, "Where are the violet umbrellas kept?", "dense")
    assert dense.groups[0].partial == []
    assert any(LAST_LINE in hit.text for hit in dense.groups[0].hits)


async def test_two_workers_embed_the_ranges_of_one_big_file_together(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, mbus: Bus, settings: Settings
) -> None:
    ranged = msgspec.structs.replace(settings, dense_range_chunks=32, concurrency=1)
    async with serve(ranged) as first, serve(ranged) as second:
        record = await upload(module_nc, catalog, ranged, long_handbook(41, parts=40))
        done = await wait_for(catalog, record.id, DONE)
        await asyncio.sleep(0.2)  # both workers' stats settle

    total = done.data.chunks_total
    assert done.data.status == "completed"
    assert total > 3 * 32  # several ranges ...
    assert first.extractions + second.extractions == 1  # ... and the file was parsed once
    with pytest.raises(RagwayError):  # the chunks kept for the ranges are gone with them
        await catalog.blobs.size(chunks_name(record.id))
    assert first.embedding.chunks_embedded > 0 and second.embedding.chunks_embedded > 0
    assert first.embedding.chunks_embedded + second.embedding.chunks_embedded == total
    held = await stored(mbus, record.id)
    assert (held.count, held.indexes) == (total, list(range(total)))


async def test_a_redelivered_file_job_never_writes_keyword_only_points_over_dense_ones(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, mbus: Bus, settings: Settings
) -> None:
    async with serve(settings) as ingestion:
        record = await upload(module_nc, catalog, settings, handbook(51, parts=3))
        done = await wait_for(catalog, record.id, DONE)
        # The same job again, as after a crash before its ack: the record says what is done.
        await catalog.update(
            record.id,
            lambda r: msgspec.structs.replace(
                r,
                data=msgspec.structs.replace(r.data, status="processing", dense_ranges={"0": 8}),
            ),
        )
        await queue_job(module_nc, settings, record.id)
        again = await record_when(
            catalog, record.id, lambda r: r.data.status == "completed" and not r.data.dense_ranges
        )

    total = done.data.chunks_total
    assert again.data.chunks_done == total
    # only the chunks after the first 8 were embedded again
    assert ingestion.embedding.chunks_embedded == total + (total - 8)
    points = await retrieval.store.get_file_points(record.id)
    assert len(points) == total
    assert all(len(point.dense) == retrieval.embedder.dimension for point in points)
