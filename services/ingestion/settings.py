"""The ingestion service's configuration: safe embedded defaults, decoded once in __main__."""

from __future__ import annotations

from typing import Annotated

import msgspec

from common.settings import default_cache_dir
from contracts.subjects import INGEST_JOBS
from embedding.settings import EmbedderSettings
from ingestion.child import ChildLimits
from ingestion.chunking import ChunkingOptions
from ingestion.extraction import ExtractionLimits

Positive = Annotated[int, msgspec.Meta(ge=1)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
Name = Annotated[str, msgspec.Meta(pattern=r"^[a-zA-Z0-9_-]+$")]

# Open WebUI's names for the same settings, accepted too.
SETTINGS_ALIASES: dict[str, tuple[str, ...]] = {
    "chunk_size": ("CHUNK_SIZE",),
    "chunk_overlap": ("CHUNK_OVERLAP",),
}


class Settings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    nats_url: str = "nats://127.0.0.1:4222"  # comma-separated for a cluster
    log_level: str = "info"
    # KV buckets / object store are `<prefix>_files`, `<prefix>_blobs`, ... (as retrieval's)
    bucket_prefix: Name = "ragway"
    kv_replicas: Positive = 1  # 3 on a NATS cluster; also the job stream's replicas
    # the job queue; tests isolate by giving each its own stream, subject and consumer
    ingest_stream: Name = INGEST_JOBS.stream
    ingest_subject: str = INGEST_JOBS.subject
    ingest_consumer: Name = INGEST_JOBS.consumer
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
    # embedding model (see libs/embedding): the same names as the retrieval service's
    cache_dir: str = msgspec.field(default_factory=default_cache_dir)
    embedding_model: str = "all-minilm-l6-v2"
    embedding_model_dir: str = ""
    # int8 (MatMul-only, per channel): ~1.6x faster than fp32, msmarco nDCG@10 -0.006
    embedding_quantized: bool = True
    # onnxruntime threads per process: 1 lets N processes on N cores scale (0 = all cores)
    embedding_threads: Annotated[int, msgspec.Meta(ge=0)] = 1
    embedding_batch_size: Positive = 32
    # a file with more chunks than this is embedded in ranges of this many chunks, each
    # its own job, so several workers embed one big file together
    dense_range_chunks: Positive = 256
    bm25_language: str = "english"
    bm25_stopwords: str = "english,arabic"

    def __post_init__(self) -> None:
        self.chunking()  # reports a bad size/overlap pair at startup, by name

    def nats_servers(self) -> list[str]:
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]

    def chunking(self) -> ChunkingOptions:
        return ChunkingOptions(chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap)

    def extraction_limits(self) -> ExtractionLimits:
        return ExtractionLimits(
            max_chars=self.max_extracted_chars,
            max_pdf_pages=self.max_pdf_pages,
            max_docx_uncompressed_bytes=self.max_docx_uncompressed_bytes,
            max_docx_xml_tags=self.max_docx_xml_tags,
            max_json_bytes=self.max_json_bytes,
        )

    def child_limits(self) -> ChildLimits:
        return ChildLimits(
            memory_bytes=self.extraction_memory_mb * 1024 * 1024,
            timeout_seconds=self.extraction_timeout_seconds,
        )

    def embedder(self) -> EmbedderSettings:
        return EmbedderSettings(
            cache_dir=self.cache_dir,
            model=self.embedding_model,
            model_dir=self.embedding_model_dir,
            quantized=self.embedding_quantized,
            threads=self.embedding_threads,
            batch_size=self.embedding_batch_size,
            bm25_language=self.bm25_language,
            bm25_stopwords=self.bm25_stopwords,
        )
