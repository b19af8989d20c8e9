"""Which hybrid queries the dense model can read (the rest run on BM25 alone)."""

from __future__ import annotations

import pytest

from retrieval.fusion import Candidate, FusionRule, dense_reads, fuse, parse_scripts

LATIN = parse_scripts("latin")


@pytest.mark.parametrize(
    ("text", "readable"),
    [
        ("what is the capital of France?", True),
        ("Qual é a capital do Brasil?", True),
        ("ما هي عاصمة فرنسا؟", False),
        ("東京の人口は", False),
        ("COVID-19 في مصر", True),  # half the letters are Latin: keep fusing
        ("2024 — 42", True),  # no letters: nothing to judge by
    ],
)
def test_a_query_is_dense_readable_when_most_letters_are_in_the_models_scripts(
    text: str, readable: bool
) -> None:
    assert dense_reads(text, LATIN) is readable


def test_no_scripts_configured_means_every_query_is_fused() -> None:
    assert parse_scripts(" ") == frozenset()
    assert dense_reads("ما هي عاصمة فرنسا؟", parse_scripts(""))


def test_scripts_are_parsed_case_insensitively() -> None:
    assert parse_scripts("Latin, arabic") == {"LATIN", "ARABIC"}
    assert dense_reads("ما هي عاصمة فرنسا؟", parse_scripts("latin,arabic"))


def test_a_plain_ascii_query_is_latin_for_a_model_without_latin() -> None:
    arabic_only = parse_scripts("arabic")
    assert not dense_reads("what is the capital of France?", arabic_only)
    assert dense_reads("2024 - 42", arabic_only)  # no letters: nothing to judge by
    assert dense_reads("ما هي عاصمة فرنسا؟", arabic_only)


def candidates(*scores: float, prefix: str = "c") -> list[Candidate]:
    return [Candidate(f"{prefix}{n}", score) for n, score in enumerate(scores)]


def test_bm25_weighs_in_when_its_top_agrees_with_dense_and_not_when_it_does_not() -> None:
    dense = candidates(0.9, 0.8, 0.7, 0.6, 0.5, 0.4)
    agreeing = candidates(9.0, 8.0, 7.0, 1.0, 0.5, 0.2)  # the same chunks on top
    unrelated = candidates(9.0, 8.0, 7.0, 1.0, 0.5, 0.2, prefix="s")
    agreed = fuse(dense, agreeing, 3, FusionRule(agreement_top=3), query_terms=5)
    disagreed = fuse(dense, unrelated, 3, FusionRule(agreement_top=3), query_terms=5)
    assert agreed.sparse_weight == pytest.approx(0.5)
    assert disagreed.sparse_weight == 0.0 and disagreed.dense_weight == 1.0
    assert [c.key for c in disagreed.hits] == ["c0", "c1", "c2"]


def test_a_chunk_both_sides_rank_high_comes_first() -> None:
    dense = [Candidate("a", 0.8), Candidate("b", 0.79), Candidate("c", 0.3), Candidate("d", 0.2)]
    sparse = [Candidate("b", 9.0), Candidate("e", 8.0), Candidate("a", 1.0), Candidate("f", 0.5)]
    assert fuse(dense, sparse, 4, FusionRule(), query_terms=4).hits[0].key == "b"


def test_bm25_of_a_one_word_query_weighs_less_than_of_a_longer_one() -> None:
    dense = candidates(0.9, 0.5, 0.4, 0.3, 0.2)
    sparse = candidates(9.0, 5.0, 4.0, 3.0, 2.0)
    one = fuse(dense, sparse, 3, FusionRule(), query_terms=1)
    many = fuse(dense, sparse, 3, FusionRule(), query_terms=6)
    assert one.sparse_weight < many.sparse_weight


def test_rrf_ranks_by_reciprocal_rank_with_equal_weights() -> None:
    dense = [Candidate("a", 0.9), Candidate("b", 0.8)]
    sparse = [Candidate("b", 3.0), Candidate("c", 2.0)]
    fused = fuse(dense, sparse, 3, FusionRule(kind="rrf"), query_terms=2)
    assert [c.key for c in fused.hits] == ["b", "a", "c"]
    assert (fused.dense_weight, fused.sparse_weight) == (0.5, 0.5)
