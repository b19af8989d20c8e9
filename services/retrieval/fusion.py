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
