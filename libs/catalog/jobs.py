"""The ingestion job queue: one JetStream work-queue stream, created by whoever starts first.

The gateway publishes jobs and the ingestion workers consume them; both ensure the stream
with this one definition, so the config can never drift between them.
"""

from __future__ import annotations

import structlog
from nats.js import JetStreamContext
from nats.js.api import RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from catalog.buckets import once_jetstream_answers

log = structlog.get_logger()


def stream_config(name: str, subject: str, replicas: int) -> StreamConfig:
    """Jobs stay until a worker acks them (work-queue retention), on disk."""
    return StreamConfig(
        name=name,
        subjects=[subject],
        retention=RetentionPolicy.WORK_QUEUE,
        storage=StorageType.FILE,
        num_replicas=replicas,
    )


async def ensure_stream(js: JetStreamContext, name: str, subject: str, replicas: int) -> None:
    """Create the stream unless it exists (a concurrent creator with the same config is fine)."""

    async def open_or_create() -> None:
        try:
            await js.stream_info(name)
            return
        except NotFoundError:
            pass
        try:
            await js.add_stream(stream_config(name, subject, replicas))
            log.info("ingest_stream_created", stream=name, subject=subject, replicas=replicas)
        except BadRequestError:
            await js.stream_info(name)  # created meanwhile by another process: fine if there

    await once_jetstream_answers(name, open_or_create)
