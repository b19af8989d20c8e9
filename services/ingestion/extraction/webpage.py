"""HTML: the visible text only, with headings kept as Markdown lines for chunking."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ingestion.documents import ExtractedText, Metadata
from ingestion.extraction.limits import ExtractionLimits, cap_text
from ingestion.extraction.textual import decode_text

_HIDDEN = frozenset({"script", "style", "noscript", "template"})
_BLOCKS = frozenset([
    "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
    "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr",
    "html", "li", "main", "nav", "ol", "p", "pre", "section", "summary", "table", "tbody", "td",
    "tfoot", "th", "thead", "tr", "ul",
])  # fmt: skip
_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.title: list[str] = []
        self._hidden = 0
        self._pre = 0
        self._in_title = False
        self._row_cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if tag in _HIDDEN:
            self._hidden += 1
            return
        if tag in _HEADINGS:
            self.parts.append("\n\n" + "#" * _HEADINGS[tag] + " ")
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag == "tr":
            self.parts.append("\n")
            self._row_cells = 0
        elif tag in ("td", "th"):
            if self._row_cells:
                self.parts.append(" | ")
            self._row_cells += 1
        elif tag == "pre":
            self._pre += 1
            self.parts.append("\n\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n" if tag == "p" else "\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _HEADINGS or tag in ("p", "pre", "table", "ul", "ol", "blockquote"):
            if tag == "pre":
                self._pre = max(0, self._pre - 1)
            self.parts.append("\n\n")
        elif tag in _BLOCKS and tag not in ("td", "th", "li", "tr"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title.append(data)
            return
        if self._hidden:
            return
        self.parts.append(data if self._pre else _SPACES.sub(" ", data.replace("\n", " ")))


def read_html(blob: bytes, charset: str | None, limits: ExtractionLimits) -> ExtractedText:
    """Visible text of a web page: scripts and styles are dropped, the title kept apart."""
    if charset is None:
        declared = _META_CHARSET.search(blob[:2048])
        charset = declared.group(1).decode("ascii").lower() if declared else None
    # Markup outweighs the text it holds: read twice the characters the cap keeps.
    decoded = decode_text(blob, charset, limits.max_chars * 2)
    warnings = [decoded.warning] if decoded.warning else []
    if decoded.cut:
        warnings.append(f"Only the first {limits.max_chars * 2:,} characters of the page were read")
    parser = _VisibleText()
    parser.feed(decoded.text)
    parser.close()
    text = cap_text(_tidy("".join(parser.parts)), limits, warnings)
    metadata: Metadata = {"encoding": decoded.encoding}
    title = " ".join("".join(parser.title).split())
    if title:
        metadata["title"] = title
    return ExtractedText(
        text=text, kind="html", structured=True, metadata=metadata, warnings=warnings
    )


def _tidy(text: str) -> str:
    # Indentation inside <pre> is lost here; it matters little for search.
    lines = [line.strip() for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
