"""The ingestion dead-letter stream: jobs that failed for good or ran out of deliveries.

One entry per file (subject `<prefix>.<file_id>`, at most one message per subject), so a
file that fails again replaces its entry, and retrying or deleting the file purges it.
Ingestion workers write entries; the gateway lists them for admins and retries from them.
The stream keeps entries until then (no age or count limit): nothing is dropped unseen.
"""

from __future__ import annotations

import contextlib

import msgspec
import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, NotFoundError

from catalog.buckets import once_jetstream_answers
from contracts.files import DeadLetter

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(DeadLetter).decode
READ_BATCH = 256
READ_WAIT_SECONDS = 2.0


class DeadLetters:
    """Entries of the dead-letter stream `stream`, on subjects matching `subjects` (`x.*`)."""

    def __init__(self, js: JetStreamContext, stream: str, subjects: str) -> None:
        if not subjects.endswith(".*"):
            raise ValueError(f"dead-letter subjects must end in '.*': {subjects!r}")
        self._js = js
        self.stream = stream
        self.subjects = subjects

    @classmethod
    async def open(
        cls, js: JetStreamContext, stream: str, subjects: str, replicas: int = 1
    ) -> DeadLetters:
        """The stream, created unless it exists (a concurrent creator is fine)."""
        letters = cls(js, stream, subjects)

        async def open_or_create() -> None:
            try:
                await js.stream_info(stream)
                return
            except NotFoundError:
                pass
            config = StreamConfig(
                name=stream,
                subjects=[subjects],
                retention=RetentionPolicy.LIMITS,
                storage=StorageType.FILE,
                num_replicas=replicas,
                max_msgs_per_subject=1,
                discard=DiscardPolicy.OLD,
            )
            try:
                await js.add_stream(config)
            except BadRequestError:
                await js.stream_info(stream)  # created meanwhile by another process

        await once_jetstream_answers(stream, open_or_create)
        return letters

    def subject_of(self, file_id: str) -> str:
        return self.subjects[:-1] + file_id

    async def put(self, letter: DeadLetter) -> None:
        """Store (or replace) the file's entry; returns once the stream has it."""
        await self._js.publish(self.subject_of(letter.job.file_id), _encode(letter))

    async def get(self, file_id: str) -> DeadLetter | None:
        try:
            stored = await self._js.get_last_msg(self.stream, self.subject_of(file_id))
        except NotFoundError:
            return None
        return _decode(stored.data or b"")

    async def remove(self, file_id: str) -> None:
        await self._js.purge_stream(self.stream, subject=self.subject_of(file_id))

    async def count(self) -> int:
        info = await self._js.stream_info(self.stream)
        return int(info.state.messages)

    async def all(self) -> list[DeadLetter]:
        """Every entry, oldest first, read in batches through a short-lived consumer."""
        if await self.count() == 0:
            return []
        config = ConsumerConfig(
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.ALL,
            inactive_threshold=30.0,
            mem_storage=True,
        )
        reader = await self._js.pull_subscribe(self.subjects, stream=self.stream, config=config)
        letters: list[DeadLetter] = []
        try:
            while True:
                try:
                    batch = await reader.fetch(READ_BATCH, timeout=READ_WAIT_SECONDS)
                except (TimeoutError, nats.errors.TimeoutError):
                    break  # purged meanwhile: what was there has been read
                for msg in batch:
                    with contextlib.suppress(msgspec.DecodeError):
                        letters.append(_decode(msg.data))
                if batch and batch[-1].metadata.num_pending == 0:
                    break
        finally:
            with contextlib.suppress(Exception):
                await reader.unsubscribe()
        return letters
