"""Hybrid queries fused here rather than in the engine: each side's candidates are fetched
in the same store call, then weighed per query (`fusion.fuse`), and every hit says how.

A query the engine fuses (`rrf`, `dbsf`) or that is single-mode stays one store query;
a hybrid query under the `trust` rule becomes two (dense, BM25), fused after the search.
Every hit's payload gains `mode` (what ran: dense, sparse or hybrid) and, for a fused
hybrid, `fusion`, `dense_weight`, `sparse_weight` and its own `dense_score` and
`sparse_score` (absent: that side did not find it among its candidates).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from retrieval.fusion import Candidate, FusionRule, fuse
from vectorstore.points import Hit, SearchQuery
from vectorstore.store import prefetch_limit


@dataclass(frozen=True)
class Plan:
    """One item's store queries: the query itself, or its dense and BM25 sides."""

    query: SearchQuery
    sides: tuple[SearchQuery, SearchQuery] | None = None

    @property
    def asked(self) -> list[SearchQuery]:
        return list(self.sides) if self.sides is not None else [self.query]


def plan(query: SearchQuery, rule: FusionRule | None) -> Plan:
    """Split a hybrid query in two when `rule` (not the engine) fuses it."""
    mode = query.effective_mode()
    has_terms = query.sparse is not None and bool(query.sparse.indices)
    if rule is None or mode != "hybrid" or not has_terms:
        return Plan(query)
    candidates = prefetch_limit(query.limit)
    dense = msgspec.structs.replace(query, mode="dense", limit=candidates)
    # a threshold is on cosine similarity: it never applies to BM25 scores
    sparse = msgspec.structs.replace(query, mode="sparse", limit=candidates, score_threshold=None)
    return Plan(query, (dense, sparse))


def asked(plans: Sequence[Plan]) -> list[SearchQuery]:
    """Every store query of these plans, in order (one store call for all)."""
    return [query for p in plans for query in p.asked]


def collapse(
    plans: Sequence[Plan], found: Sequence[list[Hit]], rule: FusionRule | None
) -> list[list[Hit]]:
    """Each plan's hits from the store's answers to `asked(plans)`: fused where split."""
    answers = iter(found)
    out: list[list[Hit]] = []
    for p in plans:
        if p.sides is None:
            mode = p.query.effective_mode()
            out.append([_explained(hit, {"mode": mode}) for hit in next(answers)])
            continue
        assert rule is not None
        dense_hits, sparse_hits = next(answers), next(answers)
        out.append(_fused(p.query, dense_hits, sparse_hits, rule))
    return out


def _fused(query: SearchQuery, dense: list[Hit], sparse: list[Hit], rule: FusionRule) -> list[Hit]:
    by_id = {hit.id: hit for hit in (*sparse, *dense)}
    dense_scores = {hit.id: hit.score for hit in dense}
    sparse_scores = {hit.id: hit.score for hit in sparse}
    terms = len(query.sparse.indices) if query.sparse is not None else 0
    result = fuse(
        [Candidate(hit.id, hit.score) for hit in dense],
        [Candidate(hit.id, hit.score) for hit in sparse],
        query.limit,
        rule,
        query_terms=terms,
    )
    common = {
        "mode": "hybrid",
        "fusion": rule.kind,
        "dense_weight": round(result.dense_weight, 4),
        "sparse_weight": round(result.sparse_weight, 4),
    }
    hits = []
    for candidate in result.hits:
        own = dict(common)
        if candidate.key in dense_scores:
            own["dense_score"] = dense_scores[candidate.key]
        if candidate.key in sparse_scores:
            own["sparse_score"] = sparse_scores[candidate.key]
        hit = by_id[candidate.key]
        hits.append(Hit(id=hit.id, score=candidate.score, payload={**hit.payload, **own}))
    return hits


def _explained(hit: Hit, extra: dict[str, object]) -> Hit:
    return Hit(id=hit.id, score=hit.score, payload={**hit.payload, **extra})
