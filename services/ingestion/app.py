"""The ingestion service: settings, and its lifetime on NATS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import msgspec
import structlog
from common.nats_conn import connect_nats
from common.service import ServiceHost
from contracts.subjects import INGESTION_SERVICE
from nats.aio.client import Client

from ingestion.chunking import ChunkingOptions
from ingestion.documents import ProcessedFile
from ingestion.extraction import ExtractionLimits
from ingestion.pipeline import process_file_in_thread

log = structlog.get_logger()

# Open WebUI's names for the same settings, accepted too.
SETTINGS_ALIASES: dict[str, tuple[str, ...]] = {
    "chunk_size": ("CHUNK_SIZE",),
    "chunk_overlap": ("CHUNK_OVERLAP",),
}


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    log_level: str = "info"
    chunk_size: int = 1000
    chunk_overlap: int = 100
    max_extracted_chars: int = 5_000_000
    max_pdf_pages: int = 2_000
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024

    def __post_init__(self) -> None:
        self.chunking()  # reports a bad size/overlap pair at startup, by name

    def chunking(self) -> ChunkingOptions:
        return ChunkingOptions(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            max_chars=self.max_extracted_chars,
            max_pdf_pages=self.max_pdf_pages,
            max_docx_uncompressed_bytes=self.max_docx_uncompressed_bytes,
        )


class Ingestion:
    """The running service: its connection, its nats.micro host, and the text pipeline."""

    def __init__(self, nc: Client, host: ServiceHost, settings: Settings) -> None:
        self.nc = nc
        self.host = host
        self.limits = settings.extraction_limits()
        self.chunking = settings.chunking()

    async def process_file(self, blob: bytes, filename: str, content_type: str) -> ProcessedFile:
        """Extract and chunk one file in a worker thread; raises `ExtractionError`."""
        processed = await process_file_in_thread(
            blob, filename, content_type, limits=self.limits, chunking=self.chunking
        )
        log.info(
            "file_processed",
            filename=filename,
            kind=processed.kind,
            characters=processed.characters,
            chunks=len(processed.chunks),
            warnings=len(processed.warnings),
        )
        return processed


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Ingestion]:
    """Connect, announce the nats.micro service (answers `$SRV.PING`), drain on exit."""
    servers = [url.strip() for url in settings.nats_url.split(",") if url.strip()]
    async with (
        connect_nats(servers, name=INGESTION_SERVICE) as nc,
        ServiceHost(nc, INGESTION_SERVICE, description="File ingestion") as host,
    ):
        yield Ingestion(nc, host, settings)
