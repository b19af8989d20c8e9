"""The job consumer in-process: jobs from the queue end as searchable vectors or a clear failure."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgspec
from nats.aio.client import Client

from catalog.files import FileCatalog, text_name
from common.bus import Bus
from contracts import subjects
from contracts.auth import Principal
from contracts.retrieval import RetrievalQuery, RetrievalResult, ScopeItem
from ingestion.app import Settings, serve
from ingestion.queue import ensure_queue
from retrieval.app import Retrieval
from tests.ingestion.test_chunking import prose
from tests.ingestion.uploads import queue_job, record_when, upload, wait_for

DONE = ("completed", "failed")


def handbook(seed: int, parts: int = 6) -> bytes:
    sections = [f"## Part {n}\n\n{prose(seed + n, 3)}" for n in range(parts)]
    sections.insert(2, "## Lighthouse\n\nThe lighthouse keeper paints the lamp room green.")
    return ("# Handbook\n\n" + "\n\n".join(sections)).encode()


async def search(bus: Bus, owner: str, file_id: str, query: str) -> RetrievalResult:
    principal = Principal(id=owner, email=f"{owner}@example.com", name=owner, role="user")
    request = RetrievalQuery(
        principal=principal, query=query, items=[ScopeItem(type="file", id=file_id)], k=2
    )
    result: RetrievalResult = await bus.call(subjects.RETRIEVAL_QUERY, request, timeout=10)
    return result


async def test_a_text_file_goes_from_pending_through_progress_to_completed_and_is_searchable(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, mbus: Bus, settings: Settings
) -> None:
    seen: list[tuple[str, int, int]] = []

    async with serve(settings) as ingestion:
        record = await upload(module_nc, catalog, settings, handbook(1))
        assert record.data.status == "pending"

        async def watch() -> None:
            async for current in catalog.watch(record.id):
                assert current is not None
                data = current.data
                seen.append((data.status, data.chunks_done, data.chunks_total))
                if data.status in DONE:
                    return

        await asyncio.wait_for(watch(), timeout=30)

    status, done, total = seen[-1]
    assert (status, done) == ("completed", total), seen
    assert total > 2 * settings.embedding.batch_size  # several batches, so progress shows
    progress = [d for s, d, _ in seen if s == "processing" and 0 < d < total]
    assert progress, f"no progress reported: {seen}"
    assert progress == sorted(progress)
    assert await retrieval.store.count(record.id) == total
    assert ingestion.embedding.chunks_embedded == total

    text = await catalog.blobs.get_bytes(text_name(record.id))
    assert b"The lighthouse keeper paints the lamp room green." in text
    found = await search(mbus, record.user_id, record.id, "what colour is the lamp room?")
    best = found.groups[0].hits[0]
    assert "lighthouse keeper paints the lamp room green" in best.text
    assert best.metadata["headings"] == ["# Handbook", "## Lighthouse"]


async def test_an_unreadable_file_fails_with_a_reason_and_its_job_is_not_redelivered(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, settings: Settings
) -> None:
    async with serve(settings) as ingestion:
        record = await upload(
            module_nc, catalog, settings, b"%PDF-1.4 not really", "broken.pdf", "application/pdf"
        )
        failed = await wait_for(catalog, record.id, DONE)
        await asyncio.sleep(settings.ack_wait_seconds + 0.5)  # a lost ack would redeliver now
        info = await module_nc.jetstream().consumer_info(
            settings.ingest_stream, settings.ingest_consumer
        )
        assert ingestion.jobs.failed == 1

    assert failed.data.status == "failed"
    assert failed.data.error and "PDF" in failed.data.error, failed.data.error
    assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)
    assert await retrieval.store.count(record.id) == 0


async def test_re_uploading_identical_content_copies_the_vectors_instead_of_embedding(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, mbus: Bus, settings: Settings
) -> None:
    content = handbook(7, parts=3)
    async with serve(settings) as ingestion:
        first = await upload(module_nc, catalog, settings, content, "first.md")
        first = await wait_for(catalog, first.id, DONE)
        embedded = ingestion.embedding.chunks_embedded
        second = await upload(module_nc, catalog, settings, content, "second.md", owner="u-other")
        second = await wait_for(catalog, second.id, DONE)

    total = first.data.chunks_total
    assert first.data.status == second.data.status == "completed"
    assert ingestion.embedding.chunks_embedded == embedded == total  # nothing embedded again
    assert ingestion.embedding.chunks_copied == total
    assert (second.data.chunks_done, second.data.chunks_total) == (total, total)
    assert await retrieval.store.count(second.id) == total
    found = await search(mbus, "u-other", second.id, "lamp room colour")
    assert found.groups[0].hits[0].metadata["name"] == "second.md"


async def test_a_job_for_a_deleted_file_is_acked_and_skipped(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, settings: Settings
) -> None:
    async with serve(settings) as ingestion:
        record = await upload(module_nc, catalog, settings, b"short note", queue=False)
        await catalog.delete(record.id)
        await queue_job(module_nc, settings, record.id)
        for _ in range(100):
            if ingestion.jobs.skipped:
                break
            await asyncio.sleep(0.05)
        info = await module_nc.jetstream().consumer_info(
            settings.ingest_stream, settings.ingest_consumer
        )
    assert vars(ingestion.jobs) == {
        "completed": 0,
        "failed": 0,
        "skipped": 1,
        "retried": 0,
        "cancelled": 0,
    }
    assert (info.num_ack_pending, info.num_pending) == (0, 0)
    assert await catalog.get(record.id) is None


async def test_stopping_mid_file_hands_the_job_back_at_once_and_the_next_worker_finishes_it(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, settings: Settings
) -> None:
    patient = msgspec.structs.replace(settings, ack_wait_seconds=60.0)
    quick_stop = msgspec.structs.replace(patient, stop_grace_seconds=0.0)
    content = handbook(11, parts=30)
    async with serve(quick_stop) as first:
        record = await upload(module_nc, catalog, settings, content, f"{uuid.uuid4()}.md")
        await record_when(catalog, record.id, lambda r: r.data.chunks_done > 0)
    assert (await catalog.require(record.id)).data.status == "processing"

    started = time.monotonic()
    async with serve(patient) as second:
        done = await wait_for(catalog, record.id, DONE)
    # Naked on the way out, so redelivered now rather than after ack_wait.
    assert time.monotonic() - started < patient.ack_wait_seconds / 2
    assert done.data.status == "completed"
    assert second.jobs.completed == 1 and first.jobs.completed == 0
    assert await retrieval.store.count(record.id) == done.data.chunks_total


async def test_a_job_whose_workers_keep_dying_ends_its_file_failed_after_max_deliveries(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, settings: Settings
) -> None:
    doomed = msgspec.structs.replace(settings, max_deliver=2, ack_wait_seconds=2.0)
    js = module_nc.jetstream()
    await ensure_queue(js, doomed)
    record = await upload(module_nc, catalog, doomed, b"a note nobody finishes")
    # A worker that takes the job and dies, twice (it never acks).
    dying = await js.pull_subscribe_bind(doomed.ingest_consumer, stream=doomed.ingest_stream)
    for delivery in (1, 2):
        [msg] = await dying.fetch(1, timeout=10)
        assert msg.metadata.num_delivered == delivery
    await dying.unsubscribe()

    async with serve(doomed):
        failed = await wait_for(catalog, record.id, DONE)
        for _ in range(50):
            if (await js.stream_info(doomed.ingest_stream)).state.messages == 0:
                break
            await asyncio.sleep(0.1)
    assert failed.data.status == "failed"
    assert failed.data.error == "The file could not be processed after 2 attempts"
    assert (await js.stream_info(doomed.ingest_stream)).state.messages == 0
