"""An ingestion worker process SIGKILLed while two of them work through 50 uploads: every
file still ends `completed` with exactly one stored point per chunk."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from common.bus import Bus
from common.nats_conn import connect_nats
from contracts import subjects
from contracts.retrieval import FileVectorsRef
from tests.reliability.conftest import StackFactory
from tests.reliability.support import ProcessStack, eventually, markdown_file

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

FILES = 50


def log_events(path: Path | None) -> list[dict[str, Any]]:
    assert path is not None
    events = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def files_started(path: Path | None, delivery: int | None = None) -> set[str]:
    return {
        e["file_id"]
        for e in log_events(path)
        if e.get("event") == "job_started" and delivery in (None, e.get("delivery"))
    }


@pytest.fixture(scope="module")
async def stack(launch: StackFactory) -> ProcessStack:
    launched: ProcessStack = await launch(
        services="auth,ingestion,retrieval",
        RAGWAY_HEALTH_SERVICES="auth,ingestion,retrieval",
        RAGWAY_LOG_LEVEL="info",  # the workers' job_started lines tell who had which file
        RAGWAY_CONCURRENCY="2",
    )
    return launched


@pytest.fixture
async def bus(stack: ProcessStack) -> AsyncIterator[Bus]:
    async with connect_nats([stack.stack.nats.url], "reliability-test") as nc:
        yield Bus(nc)


async def test_a_worker_killed_mid_batch_loses_and_duplicates_no_chunk_of_50_files(
    stack: ProcessStack, bus: Bus
) -> None:
    user = stack.admin
    victim = stack.child("ingestion")
    survivor = stack.start_child("ingestion")
    await eventually(
        lambda: asyncio.to_thread(log_events, survivor.log_path),
        lambda events: any(e.get("event") == "ingestion_worker_started" for e in events),
        60,
    )

    uploads = asyncio.Semaphore(8)

    async def upload(index: int) -> str:
        async with uploads:
            record = await stack.upload(
                user, markdown_file(index, sections=1, sentences=20), f"doc-{index}.md"
            )
            return str(record["id"])

    file_ids = await asyncio.gather(*(upload(i) for i in range(FILES)))

    async def completed() -> int:
        states = await asyncio.gather(*(stack.file_status(user, f) for f in file_ids))
        return states.count("completed")

    # Kill mid-way: some files done, and the victim holding jobs it has not finished.
    await eventually(completed, lambda n: n >= 5, 60, interval=0.05)
    in_hand = files_started(victim.log_path)
    victim.signal_group(signal.SIGKILL)
    assert victim.process is not None
    assert await asyncio.to_thread(victim.process.wait, 10) == -signal.SIGKILL
    done_at_kill = await completed()
    assert in_hand and done_at_kill < FILES

    await eventually(completed, lambda n: n == FILES, 120, interval=0.2)
    for file_id in file_ids:
        status, record = await stack.call("GET", f"/api/v1/files/{file_id}", user)
        assert status == 200 and record["data"]["status"] == "completed", record
        total = record["data"]["chunks_total"]
        assert total >= 3 and record["data"]["chunks_done"] == total
        stored = await bus.call(subjects.VECTORS_STORED, FileVectorsRef(file_id=file_id), timeout=5)
        assert stored.count == total, (file_id, stored.count, total)
        assert stored.indexes == list(range(total)), file_id
    # at least one of the victim's unfinished jobs went to the survivor on redelivery
    assert files_started(survivor.log_path, delivery=2) & in_hand
