"""Markdown sections: where each ATX heading starts, and the heading path above it."""

from __future__ import annotations

import re

import msgspec

_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class Section(msgspec.Struct, frozen=True, kw_only=True):
    """`text[start:end]`: a heading line and its body (or the preamble before any heading)."""

    start: int
    end: int
    # e.g. ("# Guide", "## Install"); empty for the preamble or unstructured text
    path: tuple[str, ...] = ()


def markdown_sections(text: str) -> list[Section]:
    """Split at ATX headings outside fenced code blocks; the sections cover the whole text."""
    sections: list[Section] = []
    path: list[tuple[int, str]] = []  # (level, heading line)
    section_start = 0
    section_path: tuple[str, ...] = ()
    fence: str | None = None
    offset = 0
    for line in text.splitlines(keepends=True):
        stripped = line.rstrip("\r\n")
        fence_match = _FENCE.match(stripped)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker
            elif marker[0] == fence[0] and len(marker) >= len(fence):
                fence = None
        elif fence is None:
            heading = _HEADING.match(stripped)
            if heading:
                if offset > section_start:
                    sections.append(Section(start=section_start, end=offset, path=section_path))
                level = len(heading.group(1))
                title = " ".join((heading.group(2) or "").split())
                path = [(lvl, line_) for lvl, line_ in path if lvl < level]
                path.append((level, f"{heading.group(1)} {title}".rstrip()))
                section_start = offset
                section_path = tuple(line_ for _, line_ in path)
        offset += len(line)
    if offset > section_start or not sections:
        sections.append(Section(start=section_start, end=len(text), path=section_path))
    return sections
