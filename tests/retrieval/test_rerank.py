"""The external reranker: the retrieval service with `reranker_url` set, against a fake
that speaks text-embeddings-inference's `/rerank` over real HTTP on 127.0.0.1."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

import retrieval.rerank as rerank_module
from catalog.files import FileCatalog
from common.bus import Bus
from contracts import subjects
from contracts.auth import Principal
from contracts.retrieval import ChunkHit, RetrievalQuery, RetrievalResult, ScopeItem
from embedding.embedder import read_manifest
from retrieval.app import Retrieval, serve
from retrieval.rerank import Reranker
from retrieval.settings import Settings
from tests.fakes.tei_fake import TeiFake, overlap
from tests.retrieval.helpers import ingested, user
from tests.support.logs import module_logs

# The fused search ranks the ocean passage first; word overlap (the fake's score) ranks
# the passage that repeats the question's little words first.
QUESTION = "which of these is about the ocean"
PASSAGES = [
    "The ocean covers most of the planet and holds nearly all of its water.",
    "Which of these is it? This one is about that, and these are about those.",
    "Sourdough bread needs a starter of flour and water fermented for days.",
    "The treaty was signed in 1648 and ended thirty years of war in Europe.",
]
TIMEOUT = 0.5


@pytest.fixture(scope="module")
async def tei() -> AsyncIterator[TeiFake]:
    fake = TeiFake()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture(scope="module")
async def retrieval(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory, tei: TeiFake
) -> AsyncIterator[Retrieval]:
    settings = Settings(
        nats_url=nats_url,
        bucket_prefix=f"t{uuid.uuid4().hex[:10]}",
        data_dir=str(tmp_path_factory.mktemp("retrieval")),
        log_level="warning",
        reranker_url=f"{tei.origin}/rerank",
        reranker_timeout_seconds=TIMEOUT,
    )
    read_manifest(settings.embedding.resolved_model_dir())
    async with serve(settings) as handle:
        yield handle


@pytest.fixture
def healthy(tei: TeiFake) -> TeiFake:
    tei.delay, tei.status = 0.0, 200
    return tei


async def search(bus: Bus, who: Principal, file_id: str, k: int = 4) -> list[ChunkHit]:
    result: RetrievalResult = await bus.call(
        subjects.RETRIEVAL_QUERY,
        RetrievalQuery(
            principal=who, query=QUESTION, items=[ScopeItem(type="file", id=file_id)], k=k
        ),
        timeout=15,
    )
    return result.groups[0].hits


@pytest.fixture(scope="module")
async def passages(mbus: Bus, retrieval: Retrieval, catalog: FileCatalog) -> tuple[Principal, str]:
    owner = user()
    record = await ingested(mbus, retrieval, catalog, owner, PASSAGES, name="mixed.txt")
    return owner, record.id


async def test_the_reranker_reorders_the_fused_candidates(
    mbus: Bus, passages: tuple[Principal, str], healthy: TeiFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, file_id = passages
    healthy.status = 503  # first the fused order, which a failing reranker leaves
    fused = await search(mbus, owner, file_id)
    assert fused[0].text == PASSAGES[0]
    healthy.status = 200
    hits = await search(mbus, owner, file_id)
    by_overlap = sorted(PASSAGES, key=lambda text: -overlap(QUESTION, text))
    assert [hit.text for hit in hits] == by_overlap
    assert [hit.text for hit in hits] != [hit.text for hit in fused]
    assert hits[0].text == PASSAGES[1]
    for hit in hits:
        assert hit.metadata["reranked"] is True
        assert hit.score == pytest.approx(overlap(QUESTION, hit.text))
        assert "fused_score" in hit.metadata and "mode" in hit.metadata
    sent = healthy.last("/rerank").json
    assert sent["query"] == QUESTION and sorted(sent["texts"]) == sorted(PASSAGES)


async def test_the_reranker_scores_top_n_candidates_and_k_come_back(
    mbus: Bus, passages: tuple[Principal, str], healthy: TeiFake
) -> None:
    owner, file_id = passages
    hits = await search(mbus, owner, file_id, k=1)
    assert [hit.text for hit in hits] == [PASSAGES[1]]
    assert len(healthy.last("/rerank").json["texts"]) == len(PASSAGES)  # not just k


async def test_a_slow_reranker_leaves_the_fused_order_and_says_so(
    mbus: Bus, passages: tuple[Principal, str], healthy: TeiFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, file_id = passages
    healthy.status = 503
    fused = await search(mbus, owner, file_id)
    healthy.status, healthy.delay = 200, TIMEOUT * 6
    lines = module_logs(monkeypatch, rerank_module)
    hits = await search(mbus, owner, file_id)
    assert [hit.text for hit in hits] == [hit.text for hit in fused]
    assert [hit.score for hit in hits] == [hit.score for hit in fused]
    assert all(hit.metadata["reranked"] is False for hit in hits)
    assert all("fused_score" not in hit.metadata for hit in hits)
    [failed] = [line for line in lines.entries if line["event"] == "rerank_failed"]
    assert failed["fallback"] == "fused order" and failed["reason"] == "TimeoutError"


async def test_a_reranker_that_errs_leaves_the_fused_order(
    mbus: Bus, passages: tuple[Principal, str], healthy: TeiFake, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner, file_id = passages
    healthy.status = 429
    lines = module_logs(monkeypatch, rerank_module)
    hits = await search(mbus, owner, file_id)
    assert hits[0].text == PASSAGES[0]
    assert all(hit.metadata["reranked"] is False for hit in hits)
    [failed] = [line for line in lines.entries if line["event"] == "rerank_failed"]
    assert "429" in failed["reason"]


def hit(text: str, score: float) -> ChunkHit:
    return ChunkHit(text=text, score=score, metadata={"name": "x"})


async def test_infinitys_protocol_reranks_the_same_way(healthy: TeiFake) -> None:
    fused = [hit(text, 1.0 - n / 10) for n, text in enumerate(PASSAGES)]
    async with aiohttp.ClientSession() as session:
        reranker = Reranker(
            session,
            f"{healthy.origin}/infinity/rerank",
            protocol="infinity",
            top_n=3,
            timeout_seconds=TIMEOUT,
            model="bge-reranker",
        )
        hits = await reranker.rerank(QUESTION, fused, k=4)
    sent = healthy.last("/infinity/rerank").json
    assert sent == {
        "query": QUESTION,
        "documents": PASSAGES[:3],
        "top_n": 3,
        "model": "bge-reranker",
    }
    # the first three in the reranker's order, the fourth (beyond top_n) as fused
    assert [h.text for h in hits] == [PASSAGES[1], PASSAGES[0], PASSAGES[2], PASSAGES[3]]
    assert [h.metadata["reranked"] for h in hits] == [True, True, True, False]
    assert hits[3].score == fused[3].score
