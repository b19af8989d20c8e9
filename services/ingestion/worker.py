"""The job consumer: pull jobs from the shared durable consumer, run them, ack after the writes.

Any number of processes pull from the same consumer, each with `concurrency` jobs at a
time. A job is acked only once its outcome is written (vectors + record), so a worker
that dies mid-file leaves the job to be redelivered after `ack_wait`; while a long file
is processed the worker says so (`in_progress`) so the job is not handed out twice.

A job that fails for good (an unreadable file, or an unexpected error on its last
delivery) or runs out of deliveries (its workers kept dying: JetStream's advisory, kept
in a stream) is written to the dead-letter stream with its reason before its file is
marked failed and the job acked, so no failure is lost between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import msgspec
import nats.errors
import nats.js.errors
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from catalog.dead_letters import DeadLetters
from common import tracing
from common.bus import request_id_var
from common.errors import RagwayError
from contracts import subjects
from contracts.files import DeadLetter, DeadLetterKind, IngestJob
from ingestion.jobs import Cancelled, FileGone, JobFailed, JobProcessor, StaleJob
from ingestion.queue import ensure_advisories, ensure_queue
from ingestion.settings import Settings

log = structlog.get_logger()

FETCH_WAIT_SECONDS = 5.0
_decode_job = msgspec.json.Decoder(IngestJob).decode


class WorkerStats:
    def __init__(self) -> None:
        self.completed = 0
        self.failed = 0
        self.skipped = 0
        self.retried = 0
        self.cancelled = 0


class Worker:
    """Runs jobs from the queue until `stop()`; each job in its own task."""

    def __init__(self, js: JetStreamContext, processor: JobProcessor, settings: Settings) -> None:
        self._js = js
        self._processor = processor
        self._settings = settings
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._jobs: set[asyncio.Task[None]] = set()
        self._fetcher: asyncio.Task[None] | None = None
        self._stopping = False
        self._sub: JetStreamContext.PullSubscription | None = None
        self._advisories: JetStreamContext.PullSubscription | None = None
        self._advisory_reader: asyncio.Task[None] | None = None
        self._dead: DeadLetters | None = None
        self.stats = WorkerStats()

    async def start(self) -> None:
        settings = self._settings
        await ensure_queue(self._js, settings)
        await ensure_advisories(self._js, settings)
        self._dead = await DeadLetters.open(
            self._js,
            settings.dead_letter_stream,
            settings.dead_letter_subjects,
            settings.kv_replicas,
        )
        self._sub = await self._js.pull_subscribe_bind(
            consumer=settings.ingest_consumer, stream=settings.ingest_stream
        )
        # One worker takes each advisory that a job ran out of deliveries and fails its file.
        self._advisories = await self._js.pull_subscribe_bind(
            consumer=subjects.INGEST_ADVISORY_CONSUMER,
            stream=subjects.advisory_stream(settings.ingest_stream),
        )
        self._stopping = False
        self._fetcher = asyncio.create_task(self._fetch_loop(self._sub))
        self._advisory_reader = asyncio.create_task(self._advisory_loop(self._advisories))
        log.info(
            "ingestion_worker_started",
            stream=settings.ingest_stream,
            consumer=settings.ingest_consumer,
            concurrency=settings.concurrency,
        )

    async def stop(self) -> None:
        """Stop fetching; let jobs in flight finish (bounded), hand the rest back to the queue."""
        if self._fetcher is not None:
            # The loop also checks `_stopping`: nats-py can swallow a cancellation (its flush
            # path catches CancelledError), seen when SIGTERM and the loss of NATS come
            # together, as they do when the launcher dies and every child gets SIGTERM at
            # once; the loop then ends after the fetch it is in (at most its wait).
            self._stopping = True
            self._fetcher.cancel()
            await asyncio.wait({self._fetcher}, timeout=FETCH_WAIT_SECONDS + 1.0)
            self._fetcher = None
        if self._advisory_reader is not None:
            self._advisory_reader.cancel()
            await asyncio.wait({self._advisory_reader}, timeout=FETCH_WAIT_SECONDS + 1.0)
            self._advisory_reader = None
        # Unsubscribing also withdraws the pull request still waiting at the server, which
        # would otherwise swallow the jobs naked below (and a drain would hang on it).
        for sub in (self._sub, self._advisories):
            if sub is not None:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()
        self._sub = self._advisories = None
        if self._jobs:
            _, pending = await asyncio.wait(
                set(self._jobs), timeout=self._settings.stop_grace_seconds
            )
            for task in pending:
                task.cancel()  # the job naks itself on the way out
            await asyncio.gather(*pending, return_exceptions=True)

    async def _fetch_loop(self, sub: JetStreamContext.PullSubscription) -> None:
        while not self._stopping:
            await self._slots.acquire()
            try:
                msgs = await sub.fetch(1, timeout=FETCH_WAIT_SECONDS)
            except (TimeoutError, nats.errors.TimeoutError):
                self._slots.release()
                continue
            except Exception as exc:  # disconnected, or the consumer is being recreated
                self._slots.release()
                log.warning("job_fetch_failed", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            if not msgs:
                self._slots.release()
                continue
            for msg in msgs:
                task = asyncio.create_task(self._run(msg))
                self._jobs.add(task)
                task.add_done_callback(self._job_done)

    def _job_done(self, task: asyncio.Task[None]) -> None:
        self._jobs.discard(task)
        self._slots.release()

    async def _run(self, msg: Msg) -> None:
        try:
            job = _decode_job(msg.data)
        except msgspec.DecodeError:
            log.error("job_malformed", data=msg.data[:200])
            await msg.term()
            return
        deliveries = msg.metadata.num_delivered or 1
        request_id_var.set(job.request_id)
        structlog.contextvars.bind_contextvars(
            request_id=job.request_id, file_id=job.file_id, delivery=deliveries
        )
        if job.stop > job.start:
            structlog.contextvars.bind_contextvars(chunks=f"{job.start}-{job.stop}")
        log.info("job_started")
        heartbeat = asyncio.create_task(self._heartbeat(msg))
        try:
            if tracing.enabled():  # the job continues the trace of the upload that queued it
                attributes: dict[str, str | int] = {
                    "ragway.service": "ingestion",
                    "ragway.file_id": job.file_id,
                    "ragway.delivery": deliveries,
                }
                with tracing.served("ingest job", msg.headers, attributes, tracing.CONSUMER):
                    await self._settle(msg, job, deliveries)
            else:
                await self._settle(msg, job, deliveries)
        except asyncio.CancelledError:
            await _quietly(msg.nak())
            log.info("job_returned_to_queue")
            raise
        finally:
            heartbeat.cancel()

    async def _settle(self, msg: Msg, job: IngestJob, deliveries: int) -> None:
        """Process, write the outcome, then ack; on an unexpected error, nak for a retry."""
        try:
            try:
                await self._processor.process(job)
                self.stats.completed += 1
            except FileGone:
                self.stats.skipped += 1
                log.info("job_skipped_file_gone")
            except StaleJob:
                self.stats.skipped += 1
                log.info("job_skipped_nothing_left")
            except Cancelled as exc:
                await self._processor.stop_cancelled(job, exc.reason)
                self.stats.cancelled += 1
            except JobFailed as exc:
                if await self._give_up(job, exc.reason, "failed", deliveries):
                    self.stats.failed += 1
                else:
                    self.stats.skipped += 1
            except (asyncio.CancelledError, KeyboardInterrupt):
                raise
            except Exception as exc:
                if deliveries < self._settings.max_deliver:
                    raise
                self.stats.failed += 1
                log.exception("job_failed_for_good")
                reason = _give_up_reason(exc, deliveries)
                await self._give_up(job, reason, "exhausted", deliveries)
            # before the ack: a job without this line was certainly not acked yet (the
            # fault tests tell a job in flight from one done by it)
            log.info("job_finished")
            await msg.ack()
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception:
            self.stats.retried += 1
            log.exception("job_will_retry", delay=self._settings.nak_delay_seconds)
            await _quietly(msg.nak(delay=self._settings.nak_delay_seconds))

    async def _heartbeat(self, msg: Msg) -> None:
        interval = max(self._settings.ack_wait_seconds / 3, 0.2)
        while True:
            await asyncio.sleep(interval)
            await _quietly(msg.in_progress())

    async def _give_up(
        self, job: IngestJob, reason: str, kind: DeadLetterKind, deliveries: int
    ) -> bool:
        """Dead-letter the job, then mark its file failed; False when the file is gone."""
        assert self._dead is not None
        record = await self._processor.catalog.get(job.file_id)
        if record is None:
            return False
        letter = DeadLetter(
            file_id=job.file_id,
            user_id=record.user_id,
            filename=record.filename,
            reason=reason,
            kind=kind,
            deliveries=deliveries,
            job=job,
            failed_at=time.time(),
        )
        await self._dead.put(letter)
        if not await self._processor.fail(job, reason):
            await self._dead.remove(job.file_id)  # deleted meanwhile: nothing to retry
            return False
        return True

    async def _advisory_loop(self, sub: JetStreamContext.PullSubscription) -> None:
        await _pull_each(sub, lambda: self._stopping, self._on_max_deliveries)

    async def _on_max_deliveries(self, advisory: Msg) -> None:
        """A job ran out of deliveries without an outcome (e.g. its workers kept dying):
        dead-letter it, fail its file, drop it from the queue, then ack the advisory."""
        try:
            seq = int(json.loads(advisory.data)["stream_seq"])
            try:
                stored = await self._js.get_msg(self._settings.ingest_stream, seq)
            except nats.js.errors.NotFoundError:
                await advisory.ack()  # handled already (an advisory delivered twice)
                return
            job = _decode_job(stored.data or b"")
            reason = _give_up_reason(None, self._settings.max_deliver)
            await self._give_up(job, reason, "exhausted", self._settings.max_deliver)
            await self._js.delete_msg(self._settings.ingest_stream, seq)
            await advisory.ack()
            log.warning("job_out_of_deliveries", file_id=job.file_id, stream_seq=seq)
        except Exception:
            log.exception("max_deliveries_advisory_failed")  # redelivered after ack_wait


async def _pull_each(
    sub: JetStreamContext.PullSubscription,
    stopping: Callable[[], bool],
    handle: Callable[[Msg], Awaitable[None]],
) -> None:
    """Fetch messages one by one and handle each, until `stopping()`."""
    while not stopping():
        try:
            msgs = await sub.fetch(1, timeout=FETCH_WAIT_SECONDS)
        except (TimeoutError, nats.errors.TimeoutError):
            continue
        except Exception as exc:
            log.warning("advisory_fetch_failed", error=str(exc))
            await asyncio.sleep(1.0)
            continue
        for msg in msgs:
            await handle(msg)


def _give_up_reason(exc: BaseException | None, attempts: int) -> str:
    base = f"The file could not be processed after {attempts} attempts"
    if isinstance(exc, RagwayError):
        return f"{base}: {exc.detail}"
    return base


async def _quietly(action: Awaitable[None]) -> None:
    with contextlib.suppress(Exception):
        await action
