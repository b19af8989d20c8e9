"""RETRIEVAL_QUERY over NATS: scoped search, ownership, waiting for files being ingested."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest
import structlog
from structlog.testing import LogCapture

import retrieval.search as retrieval_search
from catalog.files import FileCatalog
from common.bus import Bus
from common.errors import RagwayError
from contracts import subjects
from contracts.auth import Principal
from contracts.retrieval import RetrievalQuery, RetrievalResult, ScopeItem, SearchMode
from retrieval.app import Retrieval
from retrieval.query_vectors import QueryVectors
from tests.retrieval.helpers import (
    add_file,
    create,
    ingested,
    set_status,
    until,
    user,
    write_chunks,
)

PASSAGES = [
    "The lighthouse keeper climbs the spiral stairs every evening to light the lamp.",
    "Sourdough bread needs a starter of flour and water fermented for several days.",
    "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "The treaty was signed in 1648 and ended thirty years of war in central Europe.",
]


async def query(
    bus: Bus,
    principal: Principal,
    text: str,
    items: list[ScopeItem],
    *,
    mode: SearchMode = "hybrid",
    k: int = 4,
    wait_seconds: float = 0.0,
) -> RetrievalResult:
    return await bus.call(
        subjects.RETRIEVAL_QUERY,
        RetrievalQuery(
            principal=principal, query=text, items=items, k=k, mode=mode, wait_seconds=wait_seconds
        ),
        timeout=15,
    )


def file_item(file_id: str, full_context: bool = False) -> ScopeItem:
    return ScopeItem(type="file", id=file_id, full_context=full_context)


@pytest.mark.parametrize("mode", ["hybrid", "dense", "sparse"])
async def test_a_query_on_a_file_returns_its_best_chunk_first_with_source_metadata(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus, mode: SearchMode
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES, name="mixed.txt")

    result = await query(
        mbus,
        owner,
        "how do plants turn sunlight into sugar",
        [file_item(record.id)],
        mode=mode,
        k=2,
    )

    [group] = result.groups
    assert (group.type, group.id, group.name) == ("file", record.id, "mixed.txt")
    assert 1 <= len(group.hits) <= 2
    best = group.hits[0]
    assert best.text == PASSAGES[2]
    assert best.metadata["file_id"] == record.id
    assert best.metadata["source"] == best.metadata["name"] == "mixed.txt"
    assert best.metadata["chunk_index"] == 2
    assert "owner" not in best.metadata and "text" not in best.metadata
    assert best.metadata["mode"] == mode


async def test_a_hybrid_hit_says_how_its_sides_were_weighed(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES)

    result = await query(mbus, owner, "plants sunlight sugar", [file_item(record.id)], k=3)

    best = result.groups[0].hits[0]
    assert best.text == PASSAGES[2]
    meta = best.metadata
    assert (meta["mode"], meta["fusion"]) == ("hybrid", "trust")
    assert meta["dense_weight"] + meta["sparse_weight"] == pytest.approx(1.0, abs=1e-3)
    assert meta["dense_score"] > 0 and meta["sparse_score"] > 0  # both sides found it
    scores = [hit.score for hit in result.groups[0].hits]
    assert scores == sorted(scores, reverse=True)


async def test_full_context_returns_every_chunk_of_the_file_in_order(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES)

    result = await query(mbus, owner, "anything", [file_item(record.id, full_context=True)], k=1)

    assert [hit.text for hit in result.groups[0].hits] == PASSAGES


async def test_each_item_of_a_query_gets_its_own_hits_in_scope_order(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    files = [await ingested(mbus, retrieval, catalog, owner, [text]) for text in PASSAGES]
    empty = await create(mbus, owner, None, name="Empty")
    items = [
        file_item(files[3].id),
        ScopeItem(type="collection", id=empty.id),  # no files: no hits, no error
        file_item(files[1].id, full_context=True),
        file_item(files[2].id),
        file_item(files[0].id),
    ]

    result = await query(mbus, owner, "bread starter flour", items, k=1)

    assert [group.id for group in result.groups] == [item.id for item in items]
    hits = [[hit.metadata["file_id"] for hit in group.hits] for group in result.groups]
    assert hits == [[files[3].id], [], [files[1].id], [files[2].id], [files[0].id]]
    assert result.groups[2].hits[0].score == 1.0  # read whole, not scored


async def test_another_users_file_is_not_found_but_an_admin_may_search_it(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner, other = user(), user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES)

    with pytest.raises(RagwayError) as denied:
        await query(mbus, other, "bread", [file_item(record.id)])
    assert denied.value.code == "not_found"

    result = await query(mbus, user("admin"), "bread", [file_item(record.id)], k=1)
    assert result.groups[0].hits[0].text == PASSAGES[1]


async def test_a_query_mixing_a_readable_and_an_unreadable_file_fails_as_not_found(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    alice, bob = user(), user()
    mine = await ingested(mbus, retrieval, catalog, bob, PASSAGES[:2])
    theirs = await ingested(mbus, retrieval, catalog, alice, PASSAGES[2:])

    with pytest.raises(RagwayError) as denied:
        await query(mbus, bob, "treaty", [file_item(mine.id), file_item(theirs.id)])
    assert denied.value.code == "not_found"
    assert theirs.id in denied.value.detail


async def test_a_query_never_returns_chunks_of_files_outside_its_scope(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    bread = await ingested(mbus, retrieval, catalog, owner, PASSAGES[1:2])
    await ingested(mbus, retrieval, catalog, owner, PASSAGES[2:3])

    result = await query(mbus, owner, "photosynthesis plants sunlight", [file_item(bread.id)])

    assert [hit.metadata["file_id"] for hit in result.groups[0].hits] == [bread.id]


async def test_a_pending_file_is_waited_for_and_found_once_it_completes_in_time(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await add_file(catalog, owner, "late.txt", status="pending")

    async def finish_ingestion() -> None:
        await asyncio.sleep(0.3)
        await write_chunks(mbus, retrieval, record, PASSAGES)
        await set_status(catalog, record.id, "completed")

    worker = asyncio.create_task(finish_ingestion())
    started = time.monotonic()
    result = await query(mbus, owner, "lighthouse lamp", [file_item(record.id)], wait_seconds=10)
    await worker

    assert 0.3 <= time.monotonic() - started < 5
    assert result.groups[0].hits[0].text == PASSAGES[0]


async def test_a_failed_file_gives_an_error_naming_the_file_and_its_reason(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await add_file(
        catalog, owner, "scan.pdf", status="failed", error="The PDF has no extractable text"
    )

    with pytest.raises(RagwayError) as failed:
        await query(mbus, owner, "anything", [file_item(record.id)], wait_seconds=5)

    assert failed.value.code == "invalid"
    assert "scan.pdf" in failed.value.detail
    assert "no extractable text" in failed.value.detail


async def test_a_file_still_processing_at_the_deadline_gives_a_clear_conflict(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await add_file(catalog, owner, "big.docx", status="processing")

    started = time.monotonic()
    with pytest.raises(RagwayError) as waiting:
        await query(mbus, owner, "anything", [file_item(record.id)], wait_seconds=0.3)

    assert 0.3 <= time.monotonic() - started < 3
    assert waiting.value.code == "conflict"
    assert "big.docx" in waiting.value.detail and "still being processed" in waiting.value.detail


ARABIC = [
    "القاهرة هي عاصمة مصر وأكبر مدنها.",
    "نهر النيل أطول نهر في أفريقيا.",
    "الأهرامات بنيت في الجيزة قبل آلاف السنين.",
    "الرياض هي عاصمة المملكة العربية السعودية.",
    "تشتهر دمشق بأسواقها القديمة.",
]


async def test_a_hybrid_query_in_a_script_the_dense_model_cannot_read_ranks_like_bm25(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, ARABIC, name="arabic.txt")
    question = "ما هي عاصمة مصر"

    hybrid = await query(mbus, owner, question, [file_item(record.id)], k=5)
    sparse = await query(mbus, owner, question, [file_item(record.id)], mode="sparse", k=5)

    assert hybrid.groups[0].hits[0].text == ARABIC[0]
    assert [h.text for h in hybrid.groups[0].hits] == [h.text for h in sparse.groups[0].hits]


async def test_a_query_with_several_unreadable_items_names_the_first_one_in_scope_order(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus
) -> None:
    alice, bob = user(), user()
    theirs = await ingested(mbus, retrieval, catalog, alice, PASSAGES[:1])
    missing = "0" * 32

    for items, first in (
        ([file_item(missing), file_item(theirs.id)], missing),
        ([file_item(theirs.id), file_item(missing)], theirs.id),
    ):
        with pytest.raises(RagwayError) as denied:
            await query(mbus, bob, "lighthouse", items)
        assert denied.value.code == "not_found"
        assert first in denied.value.detail


async def test_a_new_query_searched_in_its_embedding_thread_finds_what_a_cached_one_does(
    retrieval: Retrieval, catalog: FileCatalog, mbus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES, name="mixed.txt")
    items = [file_item(record.id), file_item(record.id, full_context=True)]
    # once the settled record is mirrored, the scope check needs no KV read: it is done
    # before the embedding, so the thread can search
    await until(lambda: record.id in retrieval.known)
    # the searcher's canonical line says which path a query took; the suite logs at
    # warning, so only this module's logger is pointed at a capture that keeps info lines
    lines = LogCapture()
    monkeypatch.setattr(
        retrieval_search,
        "log",
        structlog.wrap_logger(
            None,
            processors=[lines],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        ),
    )

    # The thread searches when the scope check (on the event loop) is done before the
    # embedding is: nearly always, but not on a loaded machine. Slowed here, the embedding
    # ends last every time, so the path this test checks is the one it takes.
    compute = QueryVectors.compute

    def slow_compute(self: QueryVectors, *args: Any, **kwargs: Any) -> Any:
        time.sleep(0.3)  # in the worker thread; no CPU time, so embed_cpu_ms is unchanged
        return compute(self, *args, **kwargs)

    monkeypatch.setattr(QueryVectors, "compute", slow_compute)

    # new text: embedded and searched in one worker thread (the scope is known by then)
    fresh = await query(mbus, owner, "who lights the lamp of the lighthouse", items)
    # the same text again: its vectors are cached, so the event loop asks the store
    cached = await query(mbus, owner, "who lights the lamp of the lighthouse", items)

    entries = [e for e in lines.entries if e["event"] == "retrieval_query"]
    assert [e["searched_in_thread"] for e in entries] == [True, False]
    # the model's CPU time is measured in the thread that embedded; a cached text has none
    assert entries[0]["embed_cpu_ms"] > 0
    assert entries[1]["embed_cpu_ms"] == 0
    assert fresh == cached
    assert fresh.groups[0].hits[0].text == PASSAGES[0]
    assert [hit.text for hit in fresh.groups[1].hits] == PASSAGES
