"""Worker processes (`python -m ingestion`) sharing one queue: a killed worker's job is finished
by another, with exactly one point per chunk."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog
from common.parent_death import tied_to_parent
from ingestion.app import Settings
from retrieval.app import Retrieval
from tests.ingestion.test_worker import DONE, handbook
from tests.ingestion.uploads import record_when, upload, wait_for

# worker processes started and killed: the slow tier (`make test-fast` leaves them out)
pytestmark = pytest.mark.slow


class WorkerProcess:
    """One `python -m ingestion` child; its JSON log lines are collected as they come."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for line in self.proc.stderr:
            try:
                self.events.append(json.loads(line))
            except ValueError:
                self.events.append({"event": "text", "line": line.decode(errors="replace")})

    def saw(self, event: str, **fields: object) -> bool:
        return any(
            e.get("event") == event and all(e.get(k) == v for k, v in fields.items())
            for e in self.events
        )

    async def wait_for_event(self, event: str, **fields: object) -> None:
        """Wait (up to a minute) for a log line, failing early if the process exits."""
        async with asyncio.timeout(60):
            while not self.saw(event, **fields):
                assert self.proc.returncode is None, self.events[-10:]
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        await self._reader


def worker_env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAGWAY_")}
    for name in (
        "nats_url",
        "bucket_prefix",
        "ingest_stream",
        "ingest_subject",
        "ingest_consumer",
        "chunk_size",
        "chunk_overlap",
        "dense_range_chunks",
        "ack_wait_seconds",
    ):
        env[f"RAGWAY_{name.upper()}"] = str(getattr(settings, name))
    env["RAGWAY_EMBEDDING_BATCH_SIZE"] = str(settings.embedding.batch_size)
    env |= {"RAGWAY_LOG_LEVEL": "info", "RAGWAY_CONCURRENCY": "1", "HF_HUB_OFFLINE": "1"}
    return env


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    try:
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                *tied_to_parent([sys.executable, "-m", "ingestion"]),  # gone if pytest is killed
                env=worker_env(settings),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            started.append(WorkerProcess(proc))
        for worker in started:
            await worker.wait_for_event("ingestion_worker_started")
        yield started
    finally:
        for worker in started:
            await worker.close()


async def test_a_worker_killed_mid_file_leaves_the_job_to_another_that_completes_it_exactly(
    retrieval: Retrieval,
    catalog: FileCatalog,
    module_nc: Client,
    settings: Settings,
    workers: list[WorkerProcess],
) -> None:
    record = await upload(module_nc, catalog, settings, handbook(21, parts=60), "big.md")
    batches_done = 2 * settings.embedding.batch_size
    await record_when(catalog, record.id, lambda r: r.data.chunks_done >= batches_done)
    [victim] = [w for w in workers if w.saw("job_started", file_id=record.id)]
    [survivor] = [w for w in workers if w is not victim]
    partial = await catalog.require(record.id)
    victim.proc.send_signal(signal.SIGKILL)
    assert await victim.proc.wait() == -signal.SIGKILL

    done = await wait_for(catalog, record.id, DONE)
    total = done.data.chunks_total
    assert done.data.status == "completed", done.data
    assert 0 < partial.data.chunks_done < total  # it really was killed mid-file
    assert done.data.chunks_done == total
    assert await retrieval.store.count(record.id) == total  # overwritten, not duplicated
    assert survivor.saw("job_started", file_id=record.id, delivery=2)

    # SIGTERM: the survivor stops fetching and exits cleanly.
    survivor.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(survivor.proc.wait(), timeout=20) == 0
    assert survivor.saw("service_stopped")


async def test_a_worker_killed_while_both_embed_ranges_of_one_file_loses_and_duplicates_nothing(
    retrieval: Retrieval, catalog: FileCatalog, module_nc: Client, settings: Settings
) -> None:
    ranged = msgspec.structs.replace(settings, dense_range_chunks=32)
    started: list[WorkerProcess] = []
    try:
        for _ in range(2):
            proc = await asyncio.create_subprocess_exec(
                *tied_to_parent([sys.executable, "-m", "ingestion"]), env=worker_env(ranged),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            started.append(WorkerProcess(proc))
        for worker in started:
            await worker.wait_for_event("ingestion_worker_started")
        record = await upload(module_nc, catalog, ranged, handbook(23, parts=60), "ranges.md")
        # both workers hold a range of this file, and some chunks are embedded already
        await record_when(catalog, record.id, lambda r: r.data.chunks_done >= 2 * 32)
        victim, survivor = started
        assert victim.saw("job_started", file_id=record.id) and survivor.saw(
            "job_started", file_id=record.id
        )
        victim.proc.send_signal(signal.SIGKILL)
        assert await victim.proc.wait() == -signal.SIGKILL
        partial = await catalog.require(record.id)

        done = await wait_for(catalog, record.id, DONE)
        total = done.data.chunks_total
        assert partial.data.status == "processing" and partial.data.chunks_done < total
        assert done.data.status == "completed" and done.data.chunks_done == total
        points = await retrieval.store.get_file_points(record.id)
        assert sorted(p.chunk_index for p in points) == list(range(total))  # none twice
        assert all(len(p.dense) == retrieval.embedder.dimension for p in points)
    finally:
        for worker in started:
            await worker.close()
