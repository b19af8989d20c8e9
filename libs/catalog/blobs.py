"""Streaming blobs in the JetStream object store, compatible with `nats object`.

nats-py's ObjectStore.put reads a synchronous file and .get buffers the whole object;
uploads arrive as an async stream and downloads should leave as one, so this writes and
reads the same chunk/meta subjects with bounded memory.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import json
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from datetime import UTC, datetime

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.kv import MSG_ROLLUP_SUBJECT
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
    OBJ_STREAM_TEMPLATE,
)

from catalog.buckets import once_jetstream_answers
from common.errors import RagwayError

CHUNK_SIZE = 128 * 1024
FETCH_BATCH = 64
# How long a new read consumer may answer its pulls with "no responders".
CONSUMER_REACHABLE_WITHIN_S = 5.0


class BlobInfo:
    __slots__ = ("name", "sha256", "size")

    def __init__(self, name: str, size: int, sha256: str) -> None:
        self.name = name
        self.size = size
        self.sha256 = sha256


class BlobStore:
    """Put and get objects of one object-store bucket as async byte streams."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)

    def _meta_subject(self, name: str) -> str:
        encoded = base64.urlsafe_b64encode(name.encode()).decode()
        return OBJ_META_PRE_TEMPLATE.format(bucket=self._bucket, obj=encoded)

    async def put_stream(
        self, name: str, chunks: AsyncIterable[bytes], max_size: int | None = None
    ) -> BlobInfo:
        """Store `chunks` as object `name`; `too_large` (and nothing kept) past `max_size`."""
        nuid = self._js._nc._nuid.next().decode()
        chunk_subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self._bucket, obj=nuid)
        digest = hashlib.sha256()
        size = 0
        count = 0
        pending = bytearray()
        try:
            async for piece in chunks:
                size += len(piece)
                if max_size is not None and size > max_size:
                    raise RagwayError("too_large", "The file is larger than the allowed size")
                digest.update(piece)
                pending += piece
                while len(pending) >= CHUNK_SIZE:
                    await self._js.publish(chunk_subject, bytes(pending[:CHUNK_SIZE]))
                    del pending[:CHUNK_SIZE]
                    count += 1
            if pending:
                await self._js.publish(chunk_subject, bytes(pending))
                count += 1
            sha = digest.digest()
            info = api.ObjectInfo(
                name=name,
                bucket=self._bucket,
                nuid=nuid,
                size=size,
                chunks=count,
                mtime=datetime.now(UTC).isoformat(),
                digest=OBJ_DIGEST_TEMPLATE.format(digest=base64.urlsafe_b64encode(sha).decode()),
                options=api.ObjectMetaOptions(max_chunk_size=CHUNK_SIZE),
            )
            await self._js.publish(
                self._meta_subject(name),
                json.dumps(info.as_dict()).encode(),
                headers={api.Header.ROLLUP: MSG_ROLLUP_SUBJECT},
            )
        except BaseException:
            await self._purge_quietly(chunk_subject)
            raise
        return BlobInfo(name, size, sha.hex())

    async def put_bytes(self, name: str, data: bytes) -> BlobInfo:
        async def one() -> AsyncIterator[bytes]:
            yield data

        return await self.put_stream(name, one())

    async def _info(self, name: str) -> api.ObjectInfo:
        try:
            msg = await self._js.get_last_msg(self._stream, self._meta_subject(name))
        except NotFoundError:
            raise RagwayError("not_found", "File content not found") from None
        info = api.ObjectInfo.from_response(json.loads(msg.data or b"{}"))
        if info.deleted:
            raise RagwayError("not_found", "File content not found")
        return info

    async def size(self, name: str) -> int:
        return int((await self._info(name)).size or 0)

    async def get_stream(self, name: str) -> AsyncIterator[bytes]:
        """Yield the object's chunks in order (a pull consumer, fetched in batches)."""
        info = await self._info(name)
        remaining = int(info.chunks or 0)
        if remaining == 0:
            return
        subject = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self._bucket, obj=info.nuid)
        # Named, so that it can be deleted as soon as the object is read: unsubscribing
        # leaves an ephemeral consumer on the server until its inactive threshold, and a
        # burst of reads (thousands of uploads ingested at once) then hits the stream's
        # consumer limit. The threshold only cleans up after a reader that died.
        consumer = f"get-{uuid.uuid4().hex}"
        await self._js.add_consumer(
            self._stream,
            config=api.ConsumerConfig(
                name=consumer,
                filter_subject=subject,
                ack_policy=api.AckPolicy.NONE,
                deliver_policy=api.DeliverPolicy.ALL,
                inactive_threshold=30.0,
                mem_storage=True,
            ),
        )
        sub = await self._js.pull_subscribe_bind(consumer=consumer, stream=self._stream)
        try:
            while remaining > 0:
                batch = min(FETCH_BATCH, remaining)
                # In a cluster a consumer just created can answer "no responders" for a
                # moment (its leader's interest in pulls has not reached this server yet;
                # seen for seconds after a node rejoins): such a pull delivered nothing.
                for msg in await once_jetstream_answers(
                    "blob read",
                    functools.partial(sub.fetch, batch, timeout=10),
                    CONSUMER_REACHABLE_WITHIN_S,
                ):
                    remaining -= 1
                    yield msg.data
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self._stream, consumer)

    async def get_bytes(self, name: str, max_size: int | None = None) -> bytes:
        parts = bytearray()
        async for piece in self.get_stream(name):
            parts += piece
            if max_size is not None and len(parts) > max_size:
                raise RagwayError("too_large", "The stored object is larger than allowed")
        return bytes(parts)

    async def delete(self, name: str) -> None:
        try:
            info = await self._info(name)
        except RagwayError:
            return
        await self._purge_quietly(
            OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=self._bucket, obj=info.nuid)
        )
        info.deleted = True
        info.size = 0
        info.chunks = 0
        info.digest = ""
        await self._js.publish(
            self._meta_subject(name),
            json.dumps(info.as_dict()).encode(),
            headers={api.Header.ROLLUP: MSG_ROLLUP_SUBJECT},
        )

    async def _purge_quietly(self, subject: str) -> None:
        with contextlib.suppress(Exception):
            await self._js.purge_stream(self._stream, subject=subject)
