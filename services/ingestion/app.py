"""The ingestion service: its lifetime on NATS, the embedder, and the job workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, asynccontextmanager

import structlog
from nats.aio.client import Client

from catalog.files import FileCatalog
from common.bus import Bus
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts.subjects import INGESTION_SERVICE
from embedding.embedder import Embedder
from ingestion.child import process_file_in_child
from ingestion.documents import ProcessedFile
from ingestion.jobs import JobProcessor
from ingestion.metrics import ingest_families
from ingestion.queue import JobQueue
from ingestion.settings import Settings
from ingestion.vectors import EmbeddingStats, VectorWriter
from ingestion.worker import Worker, WorkerStats

__all__ = ["Ingestion", "Settings", "serve"]

log = structlog.get_logger()


class Ingestion:
    """The running service: its connection, the catalog, the workers and what they did."""

    def __init__(
        self,
        nc: Client,
        host: ServiceHost,
        settings: Settings,
        processor: JobProcessor,
        worker: Worker,
    ) -> None:
        self.nc = nc
        self.host = host
        self.settings = settings
        self.limits = settings.extraction_limits()
        self.chunking = settings.chunking()
        self.catalog = processor.catalog
        self.worker = worker
        self._processor = processor

    @property
    def embedding(self) -> EmbeddingStats:
        return self._processor.writer.stats

    @property
    def extractions(self) -> int:
        return self._processor.extractions

    @property
    def jobs(self) -> WorkerStats:
        return self.worker.stats

    async def process_file(self, blob: bytes, filename: str, content_type: str) -> ProcessedFile:
        """Extract and chunk one file in a child process; raises `ExtractionError`."""
        return await process_file_in_child(
            blob,
            filename,
            content_type,
            limits=self.limits,
            chunking=self.chunking,
            child=self.settings.child_limits(),
        )


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Ingestion]:
    """Load the model, connect, work the job queue until exit; then stop fetching and drain."""
    async with AsyncExitStack() as stack:
        embedder = await asyncio.to_thread(Embedder, settings.embedding)
        # One thread by default: embedding is CPU-bound, processes scale across cores.
        pool = ThreadPoolExecutor(
            max_workers=max(settings.embedding.threads, 1), thread_name_prefix="embed"
        )
        stack.callback(pool.shutdown, wait=False, cancel_futures=True)
        nc = await stack.enter_async_context(
            connect_nats(settings.nats_servers(), name=INGESTION_SERVICE, auth=settings.nats_auth())
        )
        js = nc.jetstream()
        catalog = await FileCatalog.open(js, settings.bucket_prefix, settings.kv_replicas)
        writer = VectorWriter(
            Bus(nc),
            embedder,
            pool,
            timeout=settings.upsert_timeout_seconds,
            attempts=settings.upsert_attempts,
        )
        processor = JobProcessor(
            catalog,
            writer,
            limits=settings.extraction_limits(),
            chunking=settings.chunking(),
            child=settings.child_limits(),
            max_file_bytes=settings.file_max_size_mb * 1024 * 1024,
            hand_out=JobQueue(js, settings.ingest_subject).hand_out,
            range_chunks=settings.dense_range_chunks,
        )
        host = await stack.enter_async_context(
            ServiceHost(nc, INGESTION_SERVICE, description="File ingestion")
        )
        worker = Worker(js, processor, settings)
        host.add_metrics(lambda: ingest_families(processor.files, writer.stats, worker.stats))
        await worker.start()
        stack.push_async_callback(worker.stop)
        yield Ingestion(nc, host, settings, processor, worker)
