"""RETRIEVAL_QUERY: embed the query once, search each scope item within its own files.

All items of a query are searched in one store call (one thread hop, one engine batch).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import Future
from typing import Any

import msgspec
import structlog

from catalog.metadata_match import matches
from common.errors import RagwayError
from contracts.filters import MetadataFilter
from contracts.retrieval import ChunkHit, HitGroup, PartialFile, RetrievalQuery, RetrievalResult
from embedding.vectors import DenseVector, SparseVector
from retrieval.fusion import FusionRule, dense_reads
from retrieval.generation import Generation
from retrieval.hybrid import asked, collapse, plan
from retrieval.memberships import Memberships
from retrieval.query_vectors import Vectors
from retrieval.rerank import Reranker, rerank_all
from retrieval.scope import ResolvedItem, ScopeResolver
from retrieval.settings import Settings
from vectorstore.points import COLLECTIONS, FILE_METADATA, Hit, SearchQuery

log = structlog.get_logger()

# `collections` names every collection holding the file, some the caller may not know of
HIDDEN_PAYLOAD = ("owner", "text", COLLECTIONS)
# what the embedding thread hands back: the vectors it made, the hits when it searched, and
# the CPU time the embedding took in that thread (ms)
_Embedded = tuple[Vectors, list[list[Hit]] | None, float]


def chunk_hit(hit: Hit, score: float | None = None) -> ChunkHit:
    """A store hit as clients see it: the text, the score, and metadata that names the source."""
    metadata: dict[str, Any] = {k: v for k, v in hit.payload.items() if k not in HIDDEN_PAYLOAD}
    name = str(hit.payload.get("name", ""))
    metadata.update(file_id=hit.file_id, name=name, source=name, chunk_index=hit.chunk_index)
    return ChunkHit(text=hit.text, score=hit.score if score is None else score, metadata=metadata)


class Searcher:
    def __init__(
        self,
        settings: Settings,
        resolver: ScopeResolver,
        generation: Generation,
        memberships: Memberships,
        reranker: Reranker | None = None,
    ) -> None:
        self._settings = settings
        self._reranker = reranker
        self._memberships = memberships
        self._resolver = resolver
        self._gen = generation
        # None: the engine fuses hybrid queries itself (rrf, dbsf)
        self._rule = FusionRule() if settings.hybrid_fusion == "trust" else None

    @property
    def generation(self) -> Generation:
        return self._gen

    def use(self, generation: Generation) -> Generation:
        """Search `generation` from the next query on; the one replaced."""
        old, self._gen = self._gen, generation
        log.info("retrieval_generation", model=generation.model, replaced=old.model)
        return old

    async def query(self, request: RetrievalQuery) -> RetrievalResult:
        if not request.items:
            return RetrievalResult(groups=[])
        with self._gen.searching() as gen:  # this query's collection and model, to its end
            return await self._query(gen, request)

    async def _query(self, gen: Generation, request: RetrievalQuery) -> RetrievalResult:
        if request.mode == "dense" and not gen.has_dense:
            raise RagwayError(
                "unavailable",
                "dense search is back once the index for the configured embedding model is"
                " built (keyword and hybrid search work meanwhile)",
            )
        # k <= 0 asks for the deployment's default (RAGWAY_DEFAULT_K)
        k = min(request.k if request.k > 0 else self._settings.default_k, self._settings.max_k)
        wanted = k  # a reranker picks the k best of its top_n fused candidates
        if self._reranker is not None:
            k = max(k, self._reranker.top_n)
        wait = min(max(request.wait_seconds, 0.0), self._settings.max_wait_seconds)
        complete_wait: float | None = None  # dense search waits for the dense vectors
        if request.mode == "sparse":
            complete_wait = 0.0  # BM25 covers every chunk of a keyword-searchable file
        elif request.mode == "hybrid" and request.complete_wait_seconds is not None:
            complete_wait = min(max(request.complete_wait_seconds, 0.0), wait)
        needs_search = any(not item.full_context for item in request.items)
        use_dense = request.mode != "hybrid" or (
            gen.dense_scripts is not None and dense_reads(request.query, gen.dense_scripts)
        )
        want_dense = needs_search and (
            request.mode == "dense" or (request.mode == "hybrid" and use_dense)
        )
        want_sparse = needs_search and request.mode in ("sparse", "hybrid")
        known = gen.vectors.cached(request.query, dense=want_dense, sparse=want_sparse)
        need_dense = want_dense and known[0] is None
        need_sparse = want_sparse and known[1] is None
        # The query is embedded in a worker thread while the scope is checked here (KV
        # reads): neither needs the other, and a scope that fails the query only wastes
        # the embedding. The scope is nearly always known before the embedding is done:
        # then the thread searches too (one thread hop for both, not two).
        started = time.perf_counter()
        scope: Future[list[ResolvedItem]] = Future()
        work: asyncio.Future[_Embedded] | None = None
        if need_dense or need_sparse:
            work = asyncio.ensure_future(
                asyncio.to_thread(
                    self._embed_then_search, gen, request, k, need_dense, need_sparse, known, scope
                )
            )
        try:
            resolved = await self._resolver.resolve(
                request.principal, request.items, wait, complete_wait
            )
        except BaseException:
            scope.cancel()  # the thread will not search
            if work is not None:
                work.cancel()
                if work.done() and not work.cancelled():
                    work.exception()  # retrieved: the scope's error is the one reported
            raise
        scope.set_result(resolved)
        scoped = time.perf_counter()
        dense, sparse = known
        searched: list[list[Hit]] | None = None
        embed_cpu_ms = 0.0
        if work is not None:
            made, searched, embed_cpu_ms = await work
            dense, sparse = gen.vectors.keep(request.query, made, known)
        embedded = time.perf_counter()
        hits = await self._hits(gen, resolved, request, k, dense, sparse, searched)
        if self._reranker is not None:
            hits = await self._reranked(resolved, request.query, hits, wanted)
        groups = [self._group(entry, found) for entry, found in zip(resolved, hits, strict=True)]
        log.info(
            "retrieval_query",
            items=len(resolved),
            hits=sum(len(group.hits) for group in groups),
            mode=request.mode,
            dense=use_dense,
            # stages: the scope check and the embedding overlap; `embed_wait_ms` is the part
            # of the embedding (and of the search, when `searched_in_thread`) that the scope
            # check did not hide
            scope_ms=round((scoped - started) * 1000, 2),
            embed_wait_ms=round((embedded - scoped) * 1000, 2),
            search_ms=round((time.perf_counter() - embedded) * 1000, 2),
            # the model's own cost (CPU time of the embedding thread): apart from the wait
            # above, which also holds the thread hops, the search and any CPU contention
            embed_cpu_ms=round(embed_cpu_ms, 2),
            searched_in_thread=searched is not None,
        )
        return RetrievalResult(groups=groups)

    def _embed_then_search(
        self,
        gen: Generation,
        request: RetrievalQuery,
        k: int,
        need_dense: bool,
        need_sparse: bool,
        known: Vectors,
        scope: Future[list[ResolvedItem]],
    ) -> _Embedded:
        """In a worker thread: the missing vectors, and the searched items' hits when the
        scope is already known and the store can search from this thread (else None: the
        event loop searches)."""
        started = time.thread_time()
        made = gen.vectors.compute(request.query, dense=need_dense, sparse=need_sparse)
        cpu_ms = (time.thread_time() - started) * 1000
        thread_search = gen.store.thread_search()
        if thread_search is None or not scope.done() or scope.cancelled():
            return made, None, cpu_ms
        dense = made[0] if made[0] is not None else known[0]
        sparse = made[1] if made[1] is not None else known[1]
        plans = [
            plan(q, self._rule) for q in self._queries(scope.result(), request, k, dense, sparse)
        ]
        found = collapse(plans, thread_search(asked(plans)), self._rule)
        return made, found, cpu_ms

    def _queries(
        self,
        resolved: list[ResolvedItem],
        request: RetrievalQuery,
        k: int,
        dense: DenseVector | None,
        sparse: SparseVector | None,
    ) -> list[SearchQuery]:
        """One store query per searched (not full-context) item, in scope order."""
        return [
            SearchQuery(
                file_ids=[record.id for record in entry.records]
                if entry.collection is None
                else [],
                collection=entry.collection,
                exclude_file_ids=sorted(entry.excluded),
                dense=dense,
                sparse=sparse,
                limit=k,
                mode=request.mode,
                score_threshold=request.score_threshold,
                fusion="dbsf" if self._settings.hybrid_fusion == "dbsf" else "rrf",
                # no dense vector in a hybrid query: the model cannot read its language
                dense_weight=0.0 if dense is None else 1.0,
                filter=entry.item.filter,
            )
            for entry in resolved
            if not entry.item.full_context
        ]

    async def _hits(
        self,
        gen: Generation,
        resolved: list[ResolvedItem],
        request: RetrievalQuery,
        k: int,
        dense: DenseVector | None,
        sparse: SparseVector | None,
        searched: list[list[Hit]] | None,
    ) -> list[list[ChunkHit]]:
        """Each item's hits: the searched ones (already found in the embedding thread, or
        now in one store call), full-context ones read whole."""
        whole_reads = [
            self._full_context(gen, entry.file_ids(), entry.item.filter)
            for entry in resolved
            if entry.item.full_context
        ]
        found: list[list[Hit]]
        read: list[list[ChunkHit]] = []
        if searched is not None:
            found = searched
            if whole_reads:
                read = await asyncio.gather(*whole_reads)
        else:
            queries = self._queries(resolved, request, k, dense, sparse)
            if whole_reads:
                found, read = await asyncio.gather(
                    self._search(gen, queries), asyncio.gather(*whole_reads)
                )
            else:
                found = await self._search(gen, queries)
        items = [entry for entry in resolved if not entry.item.full_context]
        found = await self._checked(gen, items, found, request, k, dense, sparse)
        searched_hits = iter(found)
        whole = iter(read)
        return [
            next(whole) if entry.item.full_context else [chunk_hit(h) for h in next(searched_hits)]
            for entry in resolved
        ]

    async def _reranked(
        self, resolved: list[ResolvedItem], query: str, hits: list[list[ChunkHit]], k: int
    ) -> list[list[ChunkHit]]:
        """The searched items' hits in the reranker's order (full-context ones as read)."""
        assert self._reranker is not None
        searched = [n for n, entry in enumerate(resolved) if not entry.item.full_context]
        reranked = await rerank_all(self._reranker, query, [hits[n] for n in searched], k)
        out = list(hits)
        for n, found in zip(searched, reranked, strict=True):
            out[n] = found
        return out

    async def _checked(
        self,
        gen: Generation,
        searched: list[ResolvedItem],
        found: list[list[Hit]],
        request: RetrievalQuery,
        k: int,
        dense: DenseVector | None,
        sparse: SparseVector | None,
    ) -> list[list[Hit]]:
        """Every hit checked against its item's files. A collection's chunks carry its id
        in their payload, written after the bucket changed: a hit of a file that left the
        collection a moment ago (or whose payload a crash left behind) is dropped, its
        payload written again, and that item searched by its list of files instead."""
        checked = list(found)
        for n, (entry, hits) in enumerate(zip(searched, found, strict=True)):
            strays = {hit.file_id for hit in hits if not entry.admits(hit.file_id)}
            if not strays:
                continue
            log.warning("collection_payload_behind", collection=entry.collection, files=len(strays))
            self._memberships.rewrite_later(strays)
            exact = msgspec.structs.replace(
                self._queries([entry], request, k, dense, sparse)[0],
                collection=None,
                exclude_file_ids=[],
                file_ids=entry.file_ids(),
            )
            checked[n] = (await self._search(gen, [exact]))[0]
        return checked

    async def _search(self, gen: Generation, queries: list[SearchQuery]) -> list[list[Hit]]:
        """The store's hits for each query (hybrid ones fused here under the trust rule)."""
        plans = [plan(query, self._rule) for query in queries]
        return collapse(plans, await gen.store.search_many(asked(plans)), self._rule)

    def _group(self, entry: ResolvedItem, hits: list[ChunkHit]) -> HitGroup:
        partial = [
            PartialFile(
                file_id=record.id,
                name=record.meta.name,
                chunks_embedded=record.data.chunks_done,
                chunks_total=record.data.chunks_total,
            )
            for record in entry.partial
        ]
        return HitGroup(
            type=entry.item.type, id=entry.item.id, name=entry.name, hits=hits, partial=partial
        )

    async def _full_context(
        self, gen: Generation, file_ids: list[str], on_metadata: MetadataFilter | None
    ) -> list[ChunkHit]:
        """Every chunk of every file (whose upload metadata passes the filter), files in
        scope order, chunks in document order."""
        chunks = await asyncio.gather(*(gen.store.get_file_chunks(fid) for fid in file_ids))
        return [
            chunk_hit(hit, score=1.0)
            for file_chunks in chunks
            for hit in file_chunks
            if matches(on_metadata, hit.payload.get(FILE_METADATA) or {})
        ]
