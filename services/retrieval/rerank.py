"""An external reranker (optional): the fused top-N of each searched item, scored again.

`RAGWAY_RERANKER_URL` names the endpoint. Two protocols, as the servers that run
cross-encoders speak them:
- `tei` (Hugging Face text-embeddings-inference): `POST {"query", "texts", "raw_scores",
  "truncate"}` answers `[{"index", "score"}, ...]`, best first;
- `infinity` (Infinity, and the Cohere/Jina shape Open WebUI's external reranker sends):
  `POST {"model", "query", "documents", "top_n"}` answers `{"results": [{"index",
  "relevance_score"}, ...]}`.

The search fetches `top_n` candidates (at least k) per item; the reranker's order replaces
the fused one and the best k are kept. A reranker that errs, answers something else, or
takes longer than its timeout leaves the fused order (a `rerank_failed` log line), and
each hit's metadata says which happened: `reranked` true (with `fused_score`; `score` is
then the reranker's) or false.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import aiohttp
import msgspec
import structlog

from contracts.retrieval import ChunkHit

log = structlog.get_logger()

Protocol = Literal["tei", "infinity"]


class TeiScore(msgspec.Struct, kw_only=True):
    index: int
    score: float


class InfinityResult(msgspec.Struct, kw_only=True):
    index: int
    relevance_score: float


class InfinityReply(msgspec.Struct, kw_only=True):
    results: list[InfinityResult]


_decode_tei = msgspec.json.Decoder(list[TeiScore]).decode
_decode_infinity = msgspec.json.Decoder(InfinityReply).decode


class RerankFailed(Exception):
    pass


class Reranker:
    """One endpoint, one kept-alive connection pool (`open_reranker`)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        url: str,
        *,
        protocol: Protocol,
        top_n: int,
        timeout_seconds: float,
        api_key: str = "",
        model: str = "",
    ) -> None:
        self._session = session
        self._url = url
        self._protocol = protocol
        self.top_n = top_n
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model

    async def rerank(self, query: str, hits: list[ChunkHit], k: int) -> list[ChunkHit]:
        """The best k of `hits` (fused order) after the reranker scored the first top_n;
        the fused best k, marked not reranked, when it could not."""
        if not hits:
            return hits
        head, rest = hits[: self.top_n], hits[self.top_n :]
        started = time.perf_counter()
        try:
            scores = await self._scores(query, [hit.text for hit in head])
        except (RerankFailed, aiohttp.ClientError, TimeoutError, msgspec.DecodeError) as exc:
            log.warning(
                "rerank_failed",
                reason=type(exc).__name__ if not str(exc) else str(exc),
                candidates=len(head),
                fallback="fused order",
            )
            return [_marked(hit, reranked=False) for hit in hits[:k]]
        order = sorted(range(len(head)), key=lambda i: scores[i], reverse=True)
        reranked = [_marked(head[i], reranked=True, score=scores[i]) for i in order]
        log.info(
            "reranked",
            candidates=len(head),
            duration_ms=round((time.perf_counter() - started) * 1000, 2),
        )
        return [*reranked, *(_marked(hit, reranked=False) for hit in rest)][:k]

    async def _scores(self, query: str, texts: list[str]) -> list[float]:
        """One score per text, in the texts' order."""
        body: dict[str, object]
        if self._protocol == "tei":
            body = {"query": query, "texts": texts, "raw_scores": False, "truncate": True}
        else:
            body = {"query": query, "documents": texts, "top_n": len(texts)}
            if self._model:
                body["model"] = self._model
        async with self._session.post(
            self._url, json=body, headers=self._headers, timeout=self._timeout
        ) as reply:
            raw = await reply.read()
            if reply.status != 200:
                raise RerankFailed(f"the reranker answered {reply.status}")
        pairs = (
            [(s.index, s.score) for s in _decode_tei(raw)]
            if self._protocol == "tei"
            else [(r.index, r.relevance_score) for r in _decode_infinity(raw).results]
        )
        scores: dict[int, float] = dict(pairs)
        if sorted(scores) != list(range(len(texts))):
            raise RerankFailed(f"the reranker scored {len(scores)} of {len(texts)} texts")
        return [scores[i] for i in range(len(texts))]


def _marked(hit: ChunkHit, *, reranked: bool, score: float | None = None) -> ChunkHit:
    metadata = {**hit.metadata, "reranked": reranked}
    if score is None:
        return ChunkHit(text=hit.text, score=hit.score, metadata=metadata)
    metadata["fused_score"] = hit.score
    return ChunkHit(text=hit.text, score=score, metadata=metadata)


@asynccontextmanager
async def open_reranker(
    url: str,
    *,
    protocol: Protocol,
    top_n: int,
    timeout_seconds: float,
    api_key: str = "",
    model: str = "",
) -> AsyncIterator[Reranker | None]:
    """The configured reranker for the service's lifetime; None when `url` is empty."""
    if not url:
        yield None
        return
    async with aiohttp.ClientSession() as session:
        yield Reranker(
            session,
            url,
            protocol=protocol,
            top_n=top_n,
            timeout_seconds=timeout_seconds,
            api_key=api_key,
            model=model,
        )


async def rerank_all(
    reranker: Reranker, query: str, groups: list[list[ChunkHit]], k: int
) -> list[list[ChunkHit]]:
    """Every searched item's hits reranked, the items at once."""
    return list(await asyncio.gather(*(reranker.rerank(query, hits, k) for hits in groups)))
