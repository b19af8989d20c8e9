"""The job queue: a JetStream work-queue stream and the durable consumer all workers share.

The stream itself is defined once in `catalog.jobs` (the gateway ensures it too). The
consumer is this service's alone, and so is the stream that keeps the consumer's
max-deliveries advisories (JetStream publishes them once, to whoever listens then: kept
in a stream, none is lost while no worker runs).
"""

from __future__ import annotations

import msgspec
import structlog
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from catalog.buckets import once_jetstream_answers
from catalog.jobs import ensure_stream
from common import tracing
from contracts import subjects
from contracts.files import IngestJob
from ingestion.settings import Settings

log = structlog.get_logger()


def consumer_config(settings: Settings) -> ConsumerConfig:
    return ConsumerConfig(
        durable_name=settings.ingest_consumer,
        deliver_policy=DeliverPolicy.ALL,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=settings.ack_wait_seconds,
        max_deliver=settings.max_deliver,
        filter_subject=settings.ingest_subject,
        # every worker pulls; more outstanding jobs than this wait in the stream
        max_ack_pending=1000,
    )


async def ensure_queue(js: JetStreamContext, settings: Settings) -> None:
    """The stream and the shared durable consumer (created, or updated to these settings)."""
    await ensure_stream(js, settings.ingest_stream, settings.ingest_subject, settings.kv_replicas)
    await js.add_consumer(settings.ingest_stream, consumer_config(settings))


def max_deliveries_subject(settings: Settings) -> str:
    return subjects.max_deliveries_subject(settings.ingest_stream, settings.ingest_consumer)


async def ensure_advisories(js: JetStreamContext, settings: Settings) -> None:
    """The stream that keeps the job consumer's max-deliveries advisories, and the durable
    consumer the workers take them from (each advisory goes to one worker)."""
    name = subjects.advisory_stream(settings.ingest_stream)

    async def open_or_create() -> None:
        try:
            await js.stream_info(name)
            return
        except NotFoundError:
            pass
        config = StreamConfig(
            name=name,
            subjects=[max_deliveries_subject(settings)],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=settings.kv_replicas,
        )
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.stream_info(name)

    await once_jetstream_answers(name, open_or_create)
    await js.add_consumer(
        name,
        ConsumerConfig(
            durable_name=subjects.INGEST_ADVISORY_CONSUMER,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=settings.ack_wait_seconds,
        ),
    )


class JobQueue:
    """Publishes the jobs a worker hands out (a big file's dense ranges) on the same queue."""

    def __init__(self, js: JetStreamContext, subject: str) -> None:
        self._js = js
        self._subject = subject
        self._encode = msgspec.json.Encoder().encode

    async def hand_out(self, job: IngestJob) -> None:
        """Queue `job` once: a redelivered job that hands it out again within the stream's
        duplicate window (2 min by default) is deduplicated by its message id."""
        msg_id = f"{job.file_id}:{job.run}:{job.start}-{job.stop}"
        headers = {"Nats-Msg-Id": msg_id}
        tracing.inject(headers)  # range jobs stay in the trace of the file's first job
        await self._js.publish(self._subject, self._encode(job), headers=headers)
