"""Markdown files with markdown-it-py: top-level blocks under their heading path, and the
pictures the file shows (``![alt](src "title")``) for the ``image`` corpus."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingest.base import ImageRef, ParsedDocument, Section
from ingest.limits import check_markup
from ingest.text_common import HeadingPath, TextFormatLoader, caption, document, trim


class MarkdownLoader(TextFormatLoader):
    """Markdown with markdown-it-py: top-level blocks under their heading path.

    ``texts[0]`` is the file's text (newlines normalised to ``\\n``) and sections are
    raw slices of it: paragraphs, whole lists, tables, block quotes and the body of code
    blocks. Headings set the path and are not sections. YAML front matter is skipped
    and raw HTML blocks are left out.
    """

    suffixes: frozenset[str] = frozenset({".md", ".markdown"})
    media_type: str = "text/markdown"

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        from markdown_it import MarkdownIt

        check_markup(path, text.count("\n"), "lines of Markdown", self.max_chars // 50)
        parser = MarkdownIt("commonmark").enable("table")
        tokens = parser.parse(_blank_front_matter(text))
        line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

        def offset(line: int) -> int:
            return line_starts[line] if line < len(line_starts) else len(text)

        headings = HeadingPath()
        first_h1 = ""
        sections: list[Section] = []
        for i, token in enumerate(tokens):
            # Nested tokens (level > 0) belong to a container that is taken whole.
            if token.level != 0 or token.map is None:
                continue
            first, last = token.map
            if token.type == "heading_open":
                heading = _inline_plain_text(tokens[i + 1])
                headings.enter(int(token.tag[1:]), heading)
                if token.tag == "h1" and not first_h1:
                    first_h1 = heading
                continue
            if token.type == "fence":
                first += 1
                closing = text[offset(last - 1) : offset(last)].strip()
                if last - 1 >= first and closing.startswith(token.markup):
                    last -= 1
            elif token.type not in _MD_BLOCKS:
                continue
            span = trim(text, offset(first), offset(last))
            if span is not None:
                start, end = span
                sections.append(Section(text[start:end], None, headings.path, start))
        doc = document(path, first_h1 or path.stem, self.media_type, tuple(sections), text)
        return dataclasses.replace(doc, images=_markdown_images(tokens))


_MD_BLOCKS = frozenset(
    {
        "paragraph_open",
        "bullet_list_open",
        "ordered_list_open",
        "blockquote_open",
        "table_open",
        "fence",
        "code_block",
    }
)


def _blank_front_matter(text: str) -> str:
    """``text`` with a leading YAML front matter block blanked, line count unchanged."""
    if not text.startswith("---"):
        return text
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        return text
    for i in range(1, len(lines)):
        if lines[i].rstrip() in ("---", "..."):
            return "\n" * i + "\n" + "\n".join(lines[i + 1 :])
    return text


def _markdown_images(tokens: Sequence[Any]) -> tuple[ImageRef, ...]:
    """Every ``![alt](src "title")`` of a parsed Markdown file, alt and title as caption."""
    found: list[ImageRef] = []
    for token in tokens:
        for child in token.children or ():
            src = child.attrGet("src") if child.type == "image" else None
            if src:
                words = (child.content, child.attrGet("title") or "")
                found.append(ImageRef(str(src), caption(words)))
    return tuple(found)


def _inline_plain_text(inline: Any) -> str:
    parts: list[str] = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())
