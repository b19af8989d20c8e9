"""How a hybrid query is fused: whether the dense model can read the query at all.

An English-only embedding model (the default, all-MiniLM-L6-v2) maps text in a script it
was not trained on to near-random vectors: on the Arabic evaluation set its dense ranking
scores nDCG@10 0.03 against BM25's 0.72, and fusing that noise into BM25 costs a third of
BM25's quality. So a hybrid query written mostly in scripts outside the model's own runs
on BM25 alone. This is a property of the model (which scripts its vocabulary was trained
on), not a threshold tuned on queries; a multilingual model lists its scripts, or none.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal

import msgspec


def parse_scripts(value: str) -> frozenset[str]:
    """`"latin, greek"` → {"LATIN", "GREEK"} (Unicode character-name prefixes)."""
    return frozenset(part.strip().upper() for part in value.split(",") if part.strip())


@lru_cache(maxsize=8192)
def _script(char: str) -> str:
    # Unicode names start with the script for letters: "LATIN SMALL LETTER A",
    # "ARABIC LETTER ALEF", "CJK UNIFIED IDEOGRAPH-4E2D", "HIRAGANA LETTER A".
    return unicodedata.name(char, "").split(" ", 1)[0]


def dense_reads(text: str, scripts: Iterable[str]) -> bool:
    """Whether most letters of `text` are in `scripts` (no scripts given: always)."""
    allowed = frozenset(scripts)
    if not allowed:
        return True
    if text.isascii():  # every ASCII letter is Latin (most queries: no per-letter lookups)
        return "LATIN" in allowed or not any(char.isalpha() for char in text)
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return True
    inside = sum(1 for char in letters if _script(char) in allowed)
    return inside * 2 >= len(letters)


# --- score fusion ----------------------------------------------------------------------


class Candidate(msgspec.Struct, frozen=True):
    """One side's candidate: an id (the same chunk has the same key on both sides) and
    that side's raw score (cosine similarity, or BM25)."""

    key: str
    score: float


class FusionRule(msgspec.Struct, frozen=True, kw_only=True):
    """How a hybrid query's two candidate lists become one ranking.

    `rrf`: reciprocal rank fusion, k=`rrf_k`, equal weights (the engine's own RRF).
    `trust`: scores min-max normalised per list and summed with per-query weights. Dense
    is trusted for any query its model reads (the script check above runs BM25 alone for
    the others). BM25 earns its share by two signs that it is informative for this
    query: its top candidates agree with dense's (two unrelated rankers rarely agree by
    chance; where they disagree, a model that reads the language is the likelier one to
    be right), and the query has enough terms (one or two words rank by little more than
    their presence). Weighing a side by how far its best candidates stand above its pool
    was measured and left out: it misleads (bench/RESULTS.md, section 6).
    """

    kind: Literal["rrf", "trust"] = "trust"
    rrf_k: int = 60
    dense_prior: float = 1.0
    sparse_prior: float = 1.0
    agreement_top: int = 10  # the top candidates compared (0: no agreement factor)
    agreement_gain: float = 2.0  # BM25 at full weight from this share of agreement on / gain
    min_terms: int = 3  # BM25 at full weight from this many query terms on


class Fused(msgspec.Struct, frozen=True):
    hits: list[Candidate]
    dense_weight: float
    sparse_weight: float


def fuse(
    dense: list[Candidate],
    sparse: list[Candidate],
    limit: int,
    rule: FusionRule,
    *,
    query_terms: int,
) -> Fused:
    """The best `limit` candidates of both lists, best first, with the weights used."""
    if rule.kind == "rrf":
        return _rrf(dense, sparse, limit, rule.rrf_k)
    dense_weight, sparse_weight = rule.dense_prior, rule.sparse_prior
    sparse_weight *= min(1.0, query_terms / rule.min_terms)
    if rule.agreement_top:
        sparse_weight *= min(
            1.0, rule.agreement_gain * agreement(dense, sparse, rule.agreement_top)
        )
    total = dense_weight + sparse_weight
    if total <= 0:  # both priors zero: plain RRF, equal weights
        return _rrf(dense, sparse, limit, rule.rrf_k)
    dense_weight, sparse_weight = dense_weight / total, sparse_weight / total
    fused: dict[str, float] = {}
    for weight, side in ((dense_weight, dense), (sparse_weight, sparse)):
        for key, value in _normalised(side).items():
            fused[key] = fused.get(key, 0.0) + weight * value
    ranked = sorted(fused.items(), key=_best_first)[:limit]
    return Fused([Candidate(k, s) for k, s in ranked], dense_weight, sparse_weight)


def agreement(dense: list[Candidate], sparse: list[Candidate], top: int) -> float:
    """The share of the top candidates both lists hold (0: none, 1: the same ones)."""
    if not dense or not sparse:
        return 0.0
    both = {c.key for c in dense[:top]} & {c.key for c in sparse[:top]}
    return len(both) / min(top, len(dense), len(sparse))


def _rrf(dense: list[Candidate], sparse: list[Candidate], limit: int, k: int) -> Fused:
    fused: dict[str, float] = {}
    for side in (dense, sparse):
        for rank, candidate in enumerate(side):
            fused[candidate.key] = fused.get(candidate.key, 0.0) + 1.0 / (k + rank + 1)
    ranked = sorted(fused.items(), key=_best_first)[:limit]
    return Fused([Candidate(key, s) for key, s in ranked], 0.5, 0.5)


def _normalised(side: list[Candidate]) -> dict[str, float]:
    """Scores mapped onto [0, 1] within the list (min-max); a flat list gives all 1."""
    if not side:
        return {}
    high = max(c.score for c in side)
    low = min(c.score for c in side)
    span = high - low
    return {c.key: (c.score - low) / span if span > 0 else 1.0 for c in side}


def _best_first(item: tuple[str, float]) -> tuple[float, str]:
    # ties in key order: the engines order tied hits (equal BM25 scores) as they come
    return -item[1], item[0]
