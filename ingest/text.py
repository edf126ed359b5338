"""Plain text files: paragraphs are runs of non-blank lines.

Reading, the size and character limits and decoding (UTF-8, UTF-16 with a BOM, legacy
code pages) are shared with Markdown and HTML (:class:`ingest.text_common.TextFormatLoader`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from ingest.base import ParsedDocument, Section
from ingest.text_common import TextFormatLoader, document, trim


class TextLoader(TextFormatLoader):
    """Plain text: paragraphs are runs of non-blank lines; offsets index the decoded text.

    The title is the file stem: a plain text file has no reliable title markup.
    """

    suffixes: frozenset[str] = frozenset({".txt", ".text"})
    media_type: str = "text/plain"

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        sections = tuple(
            Section(text=text[start:end], page=None, heading=(), char_start=start)
            for start, end in _paragraph_spans(text)
        )
        return document(path, path.stem, self.media_type, sections, text)


# Anchored at line starts: unanchored, a line of blanks was scanned again from each of
# its characters (quadratic: a line of 40,000 spaces took 17 s).
_PARAGRAPH = re.compile(r"^[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*", re.MULTILINE)


def _paragraph_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _PARAGRAPH.finditer(text):
        span = trim(text, match.start(), match.end())
        if span is not None:
            yield span
