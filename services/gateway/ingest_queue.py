"""The ingestion job queue as the gateway sees it: make sure it exists, put jobs on it.

The ingestion workers create the same stream when they start (whoever comes first wins),
so this config must stay identical to theirs (`ingestion.queue.stream_config`): a
work-queue stream on disk, jobs kept until a worker acks them.
"""

from __future__ import annotations

import structlog
from common.bus import outgoing_headers
from common.codec import encode
from common.errors import RagwayError
from contracts.files import IngestJob
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

log = structlog.get_logger()

PUBLISH_TIMEOUT_SECONDS = 5.0


def stream_config(name: str, subject: str, replicas: int) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, name: str, subject: str, replicas: int) -> None:
    """Create the stream unless it exists (a concurrent creator with the same config is fine)."""
    try:
        await js.stream_info(name)
        return
    except NotFoundError:
        pass
    try:
        await js.add_stream(stream_config(name, subject, replicas))
        log.info("ingest_stream_created", stream=name, subject=subject, replicas=replicas)
    except BadRequestError:
        await js.stream_info(name)  # created meanwhile by a worker: fine if it is there


async def publish_job(js: JetStreamContext, subject: str, job: IngestJob) -> None:
    """Queue `job`; the stream's ack means it is stored and some worker will take it."""
    try:
        await js.publish(
            subject, encode(job), timeout=PUBLISH_TIMEOUT_SECONDS, headers=outgoing_headers()
        )
    except Exception as exc:
        log.warning("ingest_job_publish_failed", file_id=job.file_id, error=type(exc).__name__)
        raise RagwayError("unavailable", "The ingestion queue is unavailable") from None
