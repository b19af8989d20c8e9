"""`Bucket.get_many` on a 3-node JetStream cluster with replicated buckets: every value
written is read back at once through any node (the reads go to the stream's leader, as
`get` does), so a listing right after an upload never misses the upload."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from catalog.buckets import Bucket
from common.nats_conn import connect_nats
from stack.nats_cluster import NatsCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
async def cluster(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[NatsCluster]:
    nodes = NatsCluster.on_free_ports(Path(tmp_path_factory.mktemp("getmany")), name="gm")
    await asyncio.to_thread(nodes.start)
    try:
        yield nodes
    finally:
        await asyncio.to_thread(nodes.stop)


async def test_values_written_through_one_node_are_all_read_at_once_through_every_node(
    cluster: NatsCluster,
) -> None:
    name = f"t{uuid.uuid4().hex[:10]}_many"
    urls = [node.url for node in cluster.nodes]
    async with (
        connect_nats([urls[0]], name="writer") as writer_nc,
        connect_nats([urls[1]], name="reader-1") as reader_one,
        connect_nats([urls[2]], name="reader-2") as reader_two,
    ):
        writer = await Bucket.open(writer_nc.jetstream(timeout=10), name, replicas=3)
        readers = [
            await Bucket.open(nc.jetstream(timeout=10), name, replicas=3)
            for nc in (writer_nc, reader_one, reader_two)
        ]
        for round_ in range(5):
            keys = [f"k{round_}-{n}" for n in range(300)]
            await asyncio.gather(*(writer.put(key, key.encode()) for key in keys))
            for reader in readers:
                assert await reader.get_many(keys) == [key.encode() for key in keys]
