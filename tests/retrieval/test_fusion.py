"""Which hybrid queries the dense model can read (the rest run on BM25 alone)."""

from __future__ import annotations

import pytest

from retrieval.fusion import dense_reads, parse_scripts

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
