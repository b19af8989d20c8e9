"""Switching the embedding model: the new model's collection is built from the stored
chunks in the background and swapped in; searches and writes go on meanwhile, no file is
lost. The real service, twice on the same data dir and buckets: model A is MiniLM int8,
model B the same model in fp32 (other vectors, the cheapest pair to build here)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
from nats.aio.client import Client

from catalog.files import FileCatalog
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Principal
from contracts.retrieval import (
    ChunkVector,
    FileVectorsRef,
    IndexStatus,
    IndexStatusRequest,
    RetrievalQuery,
    RetrievalResult,
    ScopeItem,
    UpsertChunks,
)
from embedding.embedder import Embedder
from embedding.settings import EmbedderSettings
from retrieval.app import Retrieval, serve
from retrieval.model_index import ACTIVE, BUILDING
from retrieval.settings import Settings
from tests.retrieval.helpers import add, add_file, create, ingested, search, set_status, until, user
from vectorstore.edge import EdgeStore

TOPICS = [
    "Glaciers carve U-shaped valleys as they slowly move downhill.",
    "A violin has four strings tuned in perfect fifths.",
    "Honeybees communicate the location of flowers with a waggle dance.",
    "Sourdough bread rises thanks to wild yeast and lactic acid bacteria.",
    "The Rosetta Stone helped scholars decipher Egyptian hieroglyphs.",
]
# enough text that the rebuild takes seconds: the test writes during it
FILES = 40
REPEAT = 12


def settings_for(base: Settings, quantized: bool) -> Settings:
    return Settings(
        nats_url=base.nats_url,
        bucket_prefix=base.bucket_prefix,
        data_dir=base.data_dir,
        log_level="warning",
        embedding=EmbedderSettings(quantized=quantized, threads=1),
    )


@pytest.fixture
def base(nats_url: str, tmp_path: Path) -> Settings:
    return Settings(
        nats_url=nats_url,
        bucket_prefix=f"t{uuid.uuid4().hex[:10]}",
        data_dir=str(tmp_path / "data"),
    )


@pytest.fixture
def bus(nc: Client) -> Bus:
    return Bus(nc)


async def chunks_with(embedder: Embedder, texts: list[str]) -> list[ChunkVector]:
    dense = await asyncio.to_thread(embedder.embed_documents, texts)
    sparse = await asyncio.to_thread(embedder.sparse_documents, texts)
    return [
        ChunkVector(index=i, text=t, dense=d, sparse_indices=s.indices, sparse_values=s.values)
        for i, (t, d, s) in enumerate(zip(texts, dense, sparse, strict=True))
    ]


def edge_path(retrieval: Retrieval) -> Path:
    store = retrieval.store.active
    assert isinstance(store, EdgeStore)
    return store.path


async def searching(bus: Bus, who: Principal, knowledge_id: str) -> AsyncIterator[int]:
    """Searches one after another (each must find the glacier chunk), counted."""
    done = 0
    while True:
        result = await search(bus, who, knowledge_id, "How do glaciers shape valleys?")
        assert result.groups[0].hits, "a search during the rebuild found nothing"
        assert "Glaciers" in result.groups[0].hits[0].text
        done += 1
        yield done


async def test_a_new_model_is_built_in_the_background_and_swapped_in_without_losing_a_file(
    base: Settings, bus: Bus, nc: Client
) -> None:
    owner = user()
    files: list[str] = []
    async with serve(settings_for(base, quantized=True)) as a:
        catalog = await FileCatalog.open(nc.jetstream(), base.bucket_prefix)
        collection = await create(bus, owner, None)
        for n in range(FILES):
            texts = [
                " ".join([TOPICS[n % len(TOPICS)]] * REPEAT) + f" (file {n}, part {p})"
                for p in range(3)
            ]
            record = await ingested(bus, a, catalog, owner, texts, name=f"f{n}.txt")
            await add(bus, owner, collection.id, record.id)
            files.append(record.id)
        model_a = a.embedder.model_name
        embedder_a = a.embedder
        path_a = edge_path(a)
        assert a.rebuild is None

    async with serve(settings_for(base, quantized=False)) as b:
        model_b = b.embedder.model_name
        assert model_b != model_a
        assert b.rebuild is not None, "another model: a rebuild must start"
        book = b.index.book
        # until the swap, searches use model A's collection with model A's query vectors
        assert b.searcher.generation.model == model_a
        assert edge_path(b) == path_a
        searches = searching(bus, owner, collection.id)
        assert await anext(searches) == 1
        building = await book.get(BUILDING)
        assert building is not None and building.model == model_b
        # admins see it (`GET /api/v1/retrieval/embedding`), others may not
        status: IndexStatus = await bus.call(
            subjects.RETRIEVAL_INDEX, IndexStatusRequest(principal=user("admin")), timeout=10
        )
        assert status.active is not None and status.active.model == model_a
        assert status.building is not None and status.building.state == "building"
        assert status.building.model == model_b and status.building.files_total == FILES
        with pytest.raises(RagwayError) as refused:
            await bus.call(
                subjects.RETRIEVAL_INDEX, IndexStatusRequest(principal=owner), timeout=10
            )
        assert refused.value.code == "forbidden"

        # writes during the rebuild: a new file (vectors of model B, as a restarted worker
        # sends them), one from a worker still on model A, and a deletion
        new = await add_file(catalog, owner, "late.txt", status="processing")
        late_texts = ["Volcanic islands form where magma rises through the ocean floor."]
        await bus.call(
            subjects.VECTORS_UPSERT,
            UpsertChunks(
                file_id=new.id,
                owner=owner.id,
                name="late.txt",
                chunks=await chunks_with(b.embedder, late_texts),
                model=model_b,
            ),
            timeout=30,
        )
        await set_status(catalog, new.id, "completed")
        await add(bus, owner, collection.id, new.id)
        old = await add_file(catalog, owner, "old-worker.txt", status="processing")
        old_texts = ["Penguins huddle together to survive the Antarctic winter."]
        await bus.call(
            subjects.VECTORS_UPSERT,
            UpsertChunks(
                file_id=old.id,
                owner=owner.id,
                name="old-worker.txt",
                chunks=await chunks_with(embedder_a, old_texts),
                model=model_a,
            ),
            timeout=30,
        )
        await set_status(catalog, old.id, "completed")
        await add(bus, owner, collection.id, old.id)
        assert b.searcher.generation.model == model_a, "the rebuild was over too soon"
        gone = files.pop()
        await bus.call(subjects.VECTORS_DELETE, FileVectorsRef(file_id=gone), timeout=30)

        # searches go on until the swap
        while b.searcher.generation.model != model_b:
            await anext(searches)
            await asyncio.sleep(0.01)
        await anext(searches)  # and after it

        active = await book.get(ACTIVE)
        assert active is not None and active.model == model_b and active.state == "ready"
        assert await book.get(BUILDING) is None
        status = await bus.call(
            subjects.RETRIEVAL_INDEX, IndexStatusRequest(principal=user("admin")), timeout=10
        )
        assert status.building is None and status.active == active
        assert edge_path(b) != path_a and edge_path(b).name.endswith("all-minilm-l6-v2")
        for _ in range(200):  # the old collection goes once no query holds it
            if not path_a.exists():
                break
            await asyncio.sleep(0.05)
        assert not path_a.exists()

        # every file is there, with model B's vectors; the deleted one is not
        counts = await b.store.file_counts()
        assert set(counts) == {*files, new.id, old.id}
        assert all(counts[f] == 3 for f in files)
        points = await b.store.get_file_points(files[0])
        want = await asyncio.to_thread(b.embedder.embed_documents, [p.text for p in points])
        cosines = [float(np.dot(p.dense, w)) for p, w in zip(points, want, strict=True)]
        assert min(cosines) > 0.999
        result = await search(bus, owner, collection.id, "islands made by volcanoes")
        assert result.groups[0].hits[0].metadata["file_id"] == new.id
        # the old worker's chunk was embedded again with model B for the new collection
        [penguins] = await b.store.get_file_points(old.id)
        [want_b] = await asyncio.to_thread(b.embedder.embed_documents, old_texts)
        assert float(np.dot(penguins.dense, want_b)) > 0.999

    # a restart with model B again: nothing to build
    async with serve(settings_for(base, quantized=False)) as again:
        assert again.rebuild is None
        assert again.searcher.generation.model == model_b
        assert set(await again.store.file_counts()) == {*files, new.id, old.id}


async def test_without_the_old_model_searches_run_on_bm25_until_the_swap(
    base: Settings, bus: Bus, nc: Client
) -> None:
    owner = user()
    settings = settings_for(base, quantized=True)
    async with serve(settings) as a:
        catalog = await FileCatalog.open(nc.jetstream(), base.bucket_prefix)
        collection = await create(bus, owner, None)
        for n in range(FILES):
            texts = [
                " ".join([TOPICS[n % len(TOPICS)]] * REPEAT) + f" (file {n}, part {p})"
                for p in range(3)
            ]
            record = await ingested(bus, a, catalog, owner, texts, name=f"f{n}.txt")
            await add(bus, owner, collection.id, record.id)
        # the collection claims a model this machine cannot load (another architecture's)
        active = await a.index.book.get(ACTIVE)
        assert active is not None
        retired = msgspec.structs.replace(
            active, model="ragway/retired-model", model_setting="retired-model"
        )
        await a.index.book.put(ACTIVE, retired)

    async with serve(settings) as b:
        assert b.rebuild is not None
        assert not b.searcher.generation.has_dense
        result = await search(bus, owner, collection.id, "glaciers valleys")
        assert "Glaciers" in result.groups[0].hits[0].text  # hybrid: BM25 alone
        dense = RetrievalQuery(
            principal=owner,
            query="glaciers valleys",
            items=[ScopeItem(type="collection", id=collection.id)],
            mode="dense",
        )
        with pytest.raises(RagwayError) as refused:
            await bus.call(subjects.RETRIEVAL_QUERY, dense, timeout=10)
        assert refused.value.code == "unavailable"
        await until(lambda: b.searcher.generation.model == b.embedder.model_name, 120)
        found: RetrievalResult = await bus.call(subjects.RETRIEVAL_QUERY, dense, timeout=10)
        assert "Glaciers" in found.groups[0].hits[0].text
        assert len(await b.store.file_counts()) == FILES
