"""Character chunks with overlap, cut at paragraph, then line, sentence, word boundaries.

Like LangChain's RecursiveCharacterTextSplitter (what Open WebUI uses): pieces that fit
are packed greedily up to `chunk_size`; a piece too big is split at the next finer
boundary. Offsets into the text are kept throughout, so every chunk knows its span.
Structured text (Markdown headings) is first cut into sections; small sections are
packed together and every chunk carries the heading path it sits under.
"""

from __future__ import annotations

import bisect
import re
import unicodedata

import msgspec

from ingestion.documents import Chunk, ExtractedText, Metadata, Span
from ingestion.sections import Section, markdown_sections

# Cut points are the ends of these matches, finest last; a bare character cut comes after.
_PARAGRAPH = re.compile(r"\n[ \t]*\n\s*")
_LINE = re.compile(r"\n")
_SENTENCE = re.compile(r"[.!?…]+[\"'”’)\]]*\s+|[。！？؟۔]+[\"'”’」』）)]*\s*")  # noqa: RUF001
_WORD = re.compile(r"\s+")
_LEVELS = (_PARAGRAPH, _LINE, _SENTENCE, _WORD)
_PATH_SEPARATOR = " > "


class ChunkingOptions(msgspec.Struct, frozen=True, kw_only=True):
    chunk_size: int = 1000  # characters, Open WebUI's default
    chunk_overlap: int = 100

    def __post_init__(self) -> None:
        if self.chunk_size < 50:
            raise ValueError("chunk_size must be at least 50 characters")
        if not 0 <= self.chunk_overlap < self.chunk_size // 2:
            raise ValueError("chunk_overlap must be between 0 and half of chunk_size")


def chunk_text(document: ExtractedText, options: ChunkingOptions) -> list[Chunk]:
    """Cut a document into chunks; the same input always gives the same chunks."""
    text = document.text
    whole = [Section(start=0, end=len(text))]
    sections = markdown_sections(text) if document.structured else whole
    drafts = _Drafts(text, options)
    group: list[Section] = []
    for section in sections:
        if group and drafts.fits(group[0], section.end):
            group.append(section)
            continue
        if group and all(_is_bare(text, member) for member in group):
            # Headings with no text of their own stay with the text that follows them.
            drafts.split(group[0], section)
            group = []
            continue
        drafts.whole(group)
        group = []
        if drafts.fits(section, section.end):
            group = [section]
        else:
            drafts.split(section, section)
    drafts.whole(group)
    return _finish(text, drafts.items, document.spans, options.chunk_size)


class _Draft(msgspec.Struct, frozen=True):
    start: int
    end: int
    prefix: tuple[str, ...]  # headings written in front of the text
    path: tuple[str, ...]  # the heading path the chunk starts under


class _Drafts:
    """Collects chunk spans; knows the size budget and the heading prefixes."""

    def __init__(self, text: str, options: ChunkingOptions) -> None:
        self.text = text
        self.size = options.chunk_size
        self.overlap = options.chunk_overlap
        self.items: list[_Draft] = []

    def prefix_len(self, path: tuple[str, ...]) -> int:
        return len(_render_prefix(path, self.size))

    def fits(self, lead: Section, end: int) -> bool:
        return end - lead.start + self.prefix_len(lead.path[:-1]) <= self.size

    def whole(self, group: list[Section]) -> None:
        """One chunk for sections that fit together; it starts at the first one's heading."""
        if group:
            lead = group[0]
            self._add(lead.start, group[-1].end, lead.path[:-1], lead.path)

    def split(self, lead: Section, section: Section) -> None:
        """Several chunks for text from `lead`'s heading to the end of `section`."""
        first_prefix = lead.path[:-1]
        budget = self.size - max(self.prefix_len(section.path), self.prefix_len(first_prefix))
        atoms: list[tuple[int, int]] = []
        # Hard cuts leave room for the overlap, which would not fit beside a full piece.
        step = budget - min(self.overlap, budget // 2)
        _atoms(self.text, lead.start, section.end, budget, step, 0, atoms)
        for number, (start, end) in enumerate(_pack(self.text, atoms, budget, self.overlap)):
            if number == 0:
                self._add(start, end, first_prefix, lead.path)
            else:
                self._add(start, end, section.path, section.path)

    def _add(self, start: int, end: int, prefix: tuple[str, ...], path: tuple[str, ...]) -> None:
        start, end = _strip(self.text, start, end)
        if end > start and (not self.items or end > self.items[-1].end):
            self.items.append(_Draft(start, end, prefix, path))


def _atoms(
    text: str, start: int, end: int, budget: int, step: int, level: int, out: list[tuple[int, int]]
) -> None:
    """Contiguous pieces covering [start, end), each at most `budget` long."""
    if end - start <= budget:
        out.append((start, end))
        return
    if level == len(_LEVELS):
        _hard_cut(text, start, end, step, out)
        return
    cuts = [m.end() for m in _LEVELS[level].finditer(text, start, end) if start < m.end() < end]
    previous = start
    for cut in [*cuts, end]:
        if cut - previous <= budget:
            out.append((previous, cut))
        else:
            _atoms(text, previous, cut, budget, step, level + 1, out)
        previous = cut


def _hard_cut(text: str, start: int, end: int, step: int, out: list[tuple[int, int]]) -> None:
    """No boundary left (e.g. CJK without punctuation): cut by length, never inside a grapheme."""
    while end - start > step:
        cut = start + step
        while cut > start + 1 and not _can_break(text, cut):
            cut -= 1
        out.append((start, cut))
        start = cut
    out.append((start, end))


def _can_break(text: str, at: int) -> bool:
    """False inside the user-perceived characters we can recognise cheaply."""
    char, before = text[at], text[at - 1]
    code = ord(char)
    return not (
        unicodedata.category(char) in ("Mn", "Mc", "Me")  # combining marks, Arabic harakat
        or char == "\u200d"
        or before == "\u200d"  # emoji ZWJ sequences
        or 0xFE00 <= code <= 0xFE0F  # variation selectors
        or 0x1F3FB <= code <= 0x1F3FF  # skin tones
        or (before == "\r" and char == "\n")
    )


def _pack(
    text: str, atoms: list[tuple[int, int]], budget: int, overlap: int
) -> list[tuple[int, int]]:
    """Greedily join atoms into spans of at most `budget`.

    Each new span re-reads up to `overlap` characters of the previous one, starting at a
    sentence or word boundary.
    """
    spans: list[tuple[int, int]] = []
    start, end = atoms[0][0], atoms[0][0]
    for atom_start, atom_end in atoms:
        if atom_end - start <= budget:
            end = atom_end
            continue
        spans.append((start, end))
        kept_start, kept_end = _strip(text, start, end)
        resume = _overlap_start(text, kept_start, kept_end, overlap)
        start = resume if atom_end - resume <= budget else atom_start
        end = atom_end
    spans.append((start, end))
    return spans


def _overlap_start(text: str, start: int, end: int, overlap: int) -> int:
    if overlap <= 0:
        return end
    low = max(start + 1, end - overlap)
    for pattern in (_SENTENCE, _WORD):
        for match in pattern.finditer(text, low, end):
            if match.end() < end:
                return match.end()
    cut = low
    while cut < end and not _can_break(text, cut):
        cut += 1
    return cut


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _is_bare(text: str, section: Section) -> bool:
    """Only a heading line (or only whitespace)."""
    body = text[section.start : section.end]
    if section.path:
        body = body.split("\n", 1)[1] if "\n" in body else ""
    return not body.strip()


def _render_prefix(path: tuple[str, ...], size: int) -> str:
    if not path:
        return ""
    rendered = _PATH_SEPARATOR.join(path)
    limit = size // 4  # very long headings must not crowd out the text
    if len(rendered) > limit:
        rendered = rendered[: limit - 1] + "…"
    return rendered + "\n\n"


def _finish(text: str, drafts: list[_Draft], spans: list[Span], size: int) -> list[Chunk]:
    span_ends = [span.end for span in spans]
    chunks: list[Chunk] = []
    for draft in drafts:
        # where the chunk's own text lies in the extracted text (citable: `text[start:end]`)
        metadata: Metadata = {"start_index": draft.start, "end_index": draft.end}
        if spans:
            first = spans[min(bisect.bisect_right(span_ends, draft.start), len(spans) - 1)]
            last = spans[min(bisect.bisect_left(span_ends, draft.end), len(spans) - 1)]
            metadata.update(first.metadata)
            if "page" in last.metadata and last.metadata["page"] != first.metadata.get("page"):
                metadata["page_end"] = last.metadata["page"]  # it runs onto later pages
        if draft.path:
            metadata["headings"] = list(draft.path)
        body = text[draft.start : draft.end]
        chunks.append(
            Chunk(
                index=len(chunks),
                text=_render_prefix(draft.prefix, size) + body,
                start=draft.start,
                end=draft.end,
                metadata=metadata,
            )
        )
    return chunks
