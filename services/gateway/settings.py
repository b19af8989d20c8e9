"""Gateway configuration: decoded once in __main__, passed down explicitly."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec

from common.settings import Name, ServiceSettings
from contracts.subjects import INGEST_DEAD_LETTERS, INGEST_DEAD_STREAM, INGEST_JOBS


class Settings(ServiceSettings, kw_only=True):
    """Files: KV buckets / object store `<prefix>_files`, `<prefix>_blobs` (as the retrieval
    and ingestion services'); the job queue is shared with the ingestion workers."""

    # Open WebUI's names for the same settings, accepted too
    aliases: ClassVar = {
        "rag_top_k": ("RAG_TOP_K",),
        "file_max_size_mb": ("RAG_FILE_MAX_SIZE",),
        "env": ("ENV",),
    }

    host: str = "127.0.0.1"
    # 0 binds any free port (tests); the handle from serve() tells the real one.
    port: int = 3000
    request_timeout_seconds: float = 10.0
    # Above the inference-proxy's backend timeout, so the proxy reports first.
    completion_timeout_seconds: float = 130.0
    stream_idle_timeout_seconds: float = 65.0
    health_timeout_seconds: float = 1.0
    # on SIGTERM: stop listening, let requests in flight (streams) finish for this long
    shutdown_grace_seconds: Annotated[float, msgspec.Meta(ge=0)] = 25.0
    max_body_mb: int = 16
    auth_cache_seconds: float = 60.0
    # Comma-separated addresses/CIDRs of reverse proxies whose X-Forwarded-For is believed
    # (for sign-in rate limits per client). Empty: the peer address is the client's.
    trusted_proxies: str = ""
    # Comma-separated nats.micro names /health asks; empty means every backend service.
    health_services: str = ""
    env: str = ""
    ingest_stream: Name = INGEST_JOBS.stream
    ingest_subject: str = INGEST_JOBS.subject
    # the ingestion workers' durable consumer, whose lag /metrics reports
    ingest_consumer: Name = INGEST_JOBS.consumer
    # /metrics: a bearer token scrapers must send; empty, anyone reaching the port may read
    metrics_token: str = ""
    # /metrics waits this long for every service instance's `$SRV.STATS` reply
    metrics_stats_window_seconds: Annotated[float, msgspec.Meta(gt=0, le=5)] = 0.2
    # the ingestion dead letters admins list and retry (written by the ingestion workers)
    dead_letter_stream: Name = INGEST_DEAD_STREAM
    dead_letter_subjects: str = INGEST_DEAD_LETTERS.subject
    file_max_size_mb: Annotated[int, msgspec.Meta(ge=1)] = 100
    # uploaded bytes each user may keep (all their files together); 0: no quota
    storage_quota_mb: Annotated[int, msgspec.Meta(ge=0)] = 1024
    # ?stream=true status streams end after this long even if the file is still processing
    file_status_stream_max_seconds: Annotated[float, msgspec.Meta(gt=0)] = 600.0
    # RAG: how long a chat or query waits for files still being processed; chunks per item
    rag_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    # ... and how long for a file that is keyword-searchable but still being embedded,
    # before it is searched as it is (named in the reply's sources as `indexing`)
    rag_complete_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    rag_top_k: Annotated[int, msgspec.Meta(ge=1)] = 4
    # Gateway controls: limits (definitions `<prefix>_limits`, counters
    # `<prefix>_limit_usage`) and the usage ledger (stream `<prefix>_usage`)
    limits_enabled: bool = True
    usage_ledger: bool = True
    # tokens a completion is assumed to generate when it names no max_tokens (settled
    # against the backend's usage afterwards)
    completion_estimate_tokens: Annotated[int, msgspec.Meta(ge=0)] = 256
    # `?process_in_background=false` uploads, `process/text` and text edits answer once the
    # file is processed, or with it as it is after this long
    process_wait_seconds: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    # `POST /api/embeddings`: texts in one request (OpenAI's limit) and their characters
    # (~250k tokens), texts per batch sent on, batches of one request in flight at once
    embeddings_max_inputs: Annotated[int, msgspec.Meta(ge=1)] = 2048
    embeddings_max_chars: Annotated[int, msgspec.Meta(ge=1)] = 1_000_000
    embeddings_batch_size: Annotated[int, msgspec.Meta(ge=1)] = 32
    embeddings_concurrency: Annotated[int, msgspec.Meta(ge=1)] = 4
