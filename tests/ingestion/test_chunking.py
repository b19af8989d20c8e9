"""Chunking: sizes and overlaps, preferred boundaries, Markdown headings, unicode."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from ingestion.chunking import ChunkingOptions, chunk_text
from ingestion.documents import Chunk, ExtractedText, Span

WORDS = [
    "tide",
    "moon",
    "harbour",
    "gull",
    "cliff",
    "wave",
    "salt",
    "anchor",
    "rope",
    "keel",
    "sail",
    "storm",
]


def prose(seed: int, paragraphs: int, sentences: tuple[int, int] = (1, 8)) -> str:
    rng = random.Random(seed)

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 18))).capitalize() + "."

    return "\n\n".join(
        " ".join(sentence() for _ in range(rng.randint(*sentences))) for _ in range(paragraphs)
    )


def chunks_of(text: str, size: int = 1000, overlap: int = 100, structured: bool = False,
              spans: list[Span] | None = None) -> list[Chunk]:  # fmt: skip
    document = ExtractedText(text=text, kind="markdown" if structured else "text",
                             structured=structured, spans=spans or [])  # fmt: skip
    return chunk_text(document, ChunkingOptions(chunk_size=size, chunk_overlap=overlap))


def test_plain_chunks_are_spans_of_the_text_within_the_size_and_cover_it_all() -> None:
    text = prose(1, 60)
    chunks = chunks_of(text)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert all(c.text == text[c.start : c.end] for c in chunks)
    assert all(len(c.text) <= 1000 for c in chunks)
    assert sum(len(c.text) for c in chunks) / len(chunks) > 600  # packed, not fragmented
    covered = "".join(text[a.end : b.start] for a, b in itertools.pairwise(chunks))
    assert covered.strip() == ""  # nothing between consecutive chunks but whitespace
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_chunks_end_at_paragraph_ends_when_paragraphs_fit() -> None:
    text = prose(2, 40, sentences=(2, 4))
    paragraph_ends = {m.start() for m in re.finditer(r"\n\n", text)} | {len(text)}
    chunks = chunks_of(text)
    assert len(chunks) > 5
    assert all(c.end in paragraph_ends for c in chunks)


def test_consecutive_chunks_overlap_by_at_most_the_overlap_starting_at_a_word() -> None:
    text = " ".join(prose(3, 1, sentences=(200, 200)).split(". "))  # one paragraph, few stops
    chunks = chunks_of(text, size=300, overlap=60)
    overlaps = [a.end - b.start for a, b in itertools.pairwise(chunks)]
    assert all(0 < overlap <= 60 for overlap in overlaps)
    assert all(text[c.start - 1] == " " for c in chunks[1:])  # no chunk starts mid-word
    assert all(text[c.end] == " " for c in chunks[:-1])  # nor ends mid-word


def test_a_long_paragraph_is_cut_after_a_sentence() -> None:
    text = prose(4, 1, sentences=(80, 80))
    chunks = chunks_of(text, size=500, overlap=0)
    assert len(chunks) > 3
    assert all(c.text.endswith(".") for c in chunks)


def test_zero_overlap_gives_disjoint_chunks() -> None:
    chunks = chunks_of(prose(5, 30), size=400, overlap=0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))


def test_chunking_is_deterministic() -> None:
    text = "# Guide\n\n" + prose(6, 30)
    assert chunks_of(text, structured=True) == chunks_of(text, structured=True)


def test_small_text_is_one_chunk_and_whitespace_is_trimmed() -> None:
    assert chunks_of("\n\n  Short note.  \n") == [
        Chunk(
            index=0,
            text="Short note.",
            start=4,
            end=15,
            metadata={"start_index": 4, "end_index": 15},
        )
    ]


MARKDOWN = f"""# Sailing guide

Welcome aboard.

## Knots

{prose(7, 12)}

## Weather

Watch the sky.

### Storms

Reef early.

```python
# not a heading: inside a code fence
```
"""


def test_markdown_chunks_carry_their_heading_path_and_never_start_orphaned() -> None:
    chunks = chunks_of(MARKDOWN, size=600, overlap=80, structured=True)
    assert len(chunks) > 4
    assert all(len(c.text) <= 600 for c in chunks)
    for chunk in chunks:
        path = chunk.metadata["headings"]
        assert isinstance(path, list)
        if chunk.text.startswith(" > ".join(path) + "\n\n"):
            continue  # starts below its heading: the path is written in front
        own_heading = MARKDOWN[chunk.start :].split("\n", 1)[0]
        assert own_heading == path[-1]  # otherwise it starts with its own heading
        assert chunk.text.startswith(" > ".join(path[:-1]) if len(path) > 1 else path[0])
    knots = [c for c in chunks if c.metadata["headings"] == ["# Sailing guide", "## Knots"]]
    assert len(knots) > 2
    assert knots[1].text.startswith("# Sailing guide > ## Knots\n\n")


def test_small_markdown_sections_are_packed_together_and_code_fences_are_not_headings() -> None:
    chunks = chunks_of(MARKDOWN, size=600, overlap=80, structured=True)
    last = chunks[-1]
    assert last.metadata["headings"] == ["# Sailing guide", "## Weather"]
    assert last.text.startswith("# Sailing guide\n\n## Weather\n\nWatch the sky.\n\n### Storms")
    assert last.text.endswith("# not a heading: inside a code fence\n```")


def test_a_heading_with_no_text_of_its_own_stays_with_the_text_after_it() -> None:
    text = "# Title\n\n## Part one\n\n" + prose(8, 10)
    chunks = chunks_of(text, size=500, overlap=50, structured=True)
    assert chunks[0].text.startswith("# Title\n\n## Part one\n\n")
    assert len(chunks[0].text) > 300
    assert all(c.text.startswith("# Title > ## Part one\n\n") for c in chunks[1:])


def test_chunks_take_the_metadata_of_the_span_they_start_in() -> None:
    pages = [prose(9, 3), prose(10, 3), prose(11, 3)]
    text = "\n\n".join(pages)
    spans, at = [], 0
    for number, page in enumerate(pages):
        spans.append(Span(start=at, end=at + len(page), metadata={"page": number}))
        at += len(page) + 2
    chunks = chunks_of(text, size=300, overlap=30, spans=spans)
    for chunk in chunks:
        page = next(s for s in spans if s.start <= chunk.start < s.end + 2)
        assert chunk.metadata["page"] == page.metadata["page"]
    assert {c.metadata["page"] for c in chunks} == {0, 1, 2}


@pytest.mark.parametrize(
    "unit",
    [
        "漢字仮名交じり文",  # CJK without spaces or stops: cut by length
        "بِسْمِ ٱللَّٰهِ ",  # Arabic with combining harakat
        "بِسْمِٱللَّٰهِ",  # ... and no spaces at all
        "👨‍👩‍👧‍👦🏳️‍🌈👍🏽",  # emoji ZWJ sequences, variation selectors, skin tones
    ],
)
def test_unicode_text_is_never_cut_inside_a_character(unit: str) -> None:
    text = unit * 400
    chunks = chunks_of(text, size=100, overlap=20)
    assert len(chunks) > 10
    overlaps = [a.end - b.start for a, b in itertools.pairwise(chunks)]
    assert all(0 < overlap <= 20 for overlap in overlaps)
    for chunk in chunks:
        assert chunk.text == text[chunk.start : chunk.end]
        assert len(chunk.text) <= 100
        chunk.text.encode("utf-8")  # no lone surrogates
        first, before = chunk.text[0], text[chunk.start - 1] if chunk.start else ""
        assert not (0x300 <= ord(first) <= 0x36F or 0x64B <= ord(first) <= 0x670)
        assert first not in "\u200d\ufe0f" and before != "\u200d"
        assert not 0x1F3FB <= ord(first) <= 0x1F3FF


def test_sentence_ends_in_cjk_and_arabic_are_boundaries() -> None:
    text = "潮の満ち引きは月による。" * 30 + "\n\n" + "المد والجزر يتبعان القمر؟ " * 20
    chunks = chunks_of(text, size=120, overlap=0)
    assert all(c.text[-1] in "。؟" for c in chunks)


@pytest.mark.parametrize(("size", "overlap"), [(10, 0), (1000, 600), (1000, -1)])
def test_unworkable_sizes_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="chunk_"):
        ChunkingOptions(chunk_size=size, chunk_overlap=overlap)


def test_every_chunk_knows_where_its_text_lies_in_the_extracted_text() -> None:
    text = "# Guide\n\n## Install\n\n" + prose(12, 4) + "\n\n## Use\n\n" + prose(13, 4)
    chunks = chunks_of(text, size=300, overlap=30, structured=True)
    assert len(chunks) > 3
    for chunk in chunks:
        start, end = chunk.metadata["start_index"], chunk.metadata["end_index"]
        assert (start, end) == (chunk.start, chunk.end)
        assert chunk.text.endswith(text[start:end])  # after any heading path in front


def test_a_chunk_running_onto_the_next_page_names_the_page_it_ends_on() -> None:
    pages = [prose(14, 2), prose(15, 2)]
    text = "\n".join(pages)
    spans = [
        Span(start=0, end=len(pages[0]), metadata={"page": 0}),
        Span(start=len(pages[0]) + 1, end=len(text), metadata={"page": 1}),
    ]
    chunks = chunks_of(text, size=len(text) + 10, overlap=0, spans=spans)
    assert len(chunks) == 1
    assert chunks[0].metadata["page"] == 0 and chunks[0].metadata["page_end"] == 1
