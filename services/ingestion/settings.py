"""The ingestion service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar

import msgspec

from common.settings import Name, Positive, ServiceSettings
from contracts.subjects import INGEST_DEAD_LETTERS, INGEST_DEAD_STREAM, INGEST_JOBS
from embedding.settings import EmbedderSettings, service_embedder
from ingestion.chunking import ChunkingOptions

if TYPE_CHECKING:  # the extraction package loads the PDF reader: settings stay light
    from ingestion.child import ChildLimits
    from ingestion.extraction import ExtractionLimits

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class Settings(ServiceSettings, kw_only=True):
    """KV buckets / object store `<prefix>_files`, `<prefix>_blobs`, ... (as retrieval's)."""

    # Open WebUI's names for the same settings, accepted too
    aliases: ClassVar = {"chunk_size": ("CHUNK_SIZE",), "chunk_overlap": ("CHUNK_OVERLAP",)}

    # the job queue; tests isolate by giving each its own stream, subject and consumer
    ingest_stream: Name = INGEST_JOBS.stream
    ingest_subject: str = INGEST_JOBS.subject
    ingest_consumer: Name = INGEST_JOBS.consumer
    # jobs that failed for good or ran out of deliveries (one entry per file, `.*`)
    dead_letter_stream: Name = INGEST_DEAD_STREAM
    dead_letter_subjects: str = INGEST_DEAD_LETTERS.subject
    # jobs one process works on at once (extraction and uploads overlap; embedding queues)
    concurrency: Positive = 2
    # a job not acked (nor marked in progress) for this long goes to another worker
    ack_wait_seconds: Seconds = 60.0
    # deliveries before a job that keeps failing unexpectedly ends its file `failed`
    max_deliver: Positive = 5
    nak_delay_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    # on SIGTERM, jobs in flight get this long to finish, then go back to the queue
    stop_grace_seconds: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    # the largest stored file a worker reads (the gateway refuses bigger uploads anyway)
    file_max_size_mb: Positive = 100
    # vector writes to the retrieval service
    upsert_timeout_seconds: Seconds = 30.0
    upsert_attempts: Positive = 6
    # text pipeline
    chunk_size: int = 1000
    chunk_overlap: int = 100
    max_extracted_chars: int = 5_000_000
    max_pdf_pages: int = 2_000
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_docx_xml_tags: Positive = 1_000_000
    max_json_bytes: Positive = 16 * 1024 * 1024
    # each file is read in a child process with at most this much address space and time
    extraction_memory_mb: Annotated[int, msgspec.Meta(ge=256)] = 1024
    extraction_timeout_seconds: Seconds = 120.0
    # the embedding model (see libs/embedding), read from the same variables as retrieval's;
    # one onnxruntime thread per process lets N processes on N cores scale
    embedding: EmbedderSettings = msgspec.field(default_factory=service_embedder)
    # a file with more chunks than this is embedded in ranges of this many chunks, each
    # its own job, so several workers embed one big file together
    dense_range_chunks: Positive = 256

    def check(self) -> None:
        super().check()
        self.chunking()  # reports a bad size/overlap pair at startup, by name

    def chunking(self) -> ChunkingOptions:
        return ChunkingOptions(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    def extraction_limits(self) -> ExtractionLimits:
        from ingestion.extraction import ExtractionLimits

        return ExtractionLimits(
            max_chars=self.max_extracted_chars,
            max_pdf_pages=self.max_pdf_pages,
            max_docx_uncompressed_bytes=self.max_docx_uncompressed_bytes,
            max_docx_xml_tags=self.max_docx_xml_tags,
            max_json_bytes=self.max_json_bytes,
        )

    def child_limits(self) -> ChildLimits:
        from ingestion.child import ChildLimits

        return ChildLimits(
            memory_bytes=self.extraction_memory_mb * 1024 * 1024,
            timeout_seconds=self.extraction_timeout_seconds,
        )
