"""Putting ingestion jobs on the work queue (the stream is defined in `catalog.jobs`)."""

from __future__ import annotations

import structlog
from nats.js import JetStreamContext

from common.bus import outgoing_headers
from common.codec import encode
from common.errors import RagwayError
from contracts.files import IngestJob

log = structlog.get_logger()

PUBLISH_TIMEOUT_SECONDS = 5.0


async def publish_job(js: JetStreamContext, subject: str, job: IngestJob) -> None:
    """Queue `job`; the stream's ack means it is stored and some worker will take it.

    A job of a run after the first carries a message id, so queuing it twice within the
    stream's duplicate window (a retried request) stores it once."""
    headers = outgoing_headers()
    if job.run:
        headers = {**headers, "Nats-Msg-Id": f"{job.file_id}:{job.run}:{job.start}-{job.stop}"}
    try:
        await js.publish(subject, encode(job), timeout=PUBLISH_TIMEOUT_SECONDS, headers=headers)
    except Exception as exc:
        log.warning("ingest_job_publish_failed", file_id=job.file_id, error=type(exc).__name__)
        raise RagwayError("unavailable", "The ingestion queue is unavailable") from None
