"""PDF files: the text layer of every page, wrapped lines joined into paragraphs.

pdfium reads the file (:mod:`ingest.pdfium`, behind its lock); this module turns its
per-line page text into paragraphs, one per line of the stored page text, so a page of
an SEC filing becomes a few dozen paragraphs rather than hundreds of lines. Pages
without a text layer (scans) are listed for the ingest pipeline, which reads them by OCR
and puts the text back with :func:`with_page_texts`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ingest import pdfium
from ingest.base import ParsedDocument, Section
from ingest.limits import DEFAULT_MAX_CHARS, DEFAULT_MAX_PAGES, chars_over, positive, read_bytes
from ingest.text_common import clean_title
from retrieval.errors import EmptyDocumentError

MEDIA_TYPE = "application/pdf"


class PdfLoader:
    """PDF text with pypdfium2: one text and a list of paragraphs per page.

    The page text is pdfium's text with wrapped lines joined into paragraphs (one
    paragraph per line of the stored text). Pages without a text layer (scans) are
    listed in ``untexted_pages`` and ``warnings``; the ingest pipeline reads them by
    OCR (:func:`with_page_texts`) and refuses the file if no text is found at all.
    """

    suffixes: frozenset[str] = frozenset({".pdf"})
    media_type: str = MEDIA_TYPE

    def __init__(
        self, *, max_pages: int = DEFAULT_MAX_PAGES, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        positive(max_pages=max_pages, max_chars=max_chars)
        self.max_pages = max_pages
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        found = pdfium.read_text(read_bytes(path, max_bytes=None), path, max_pages=self.max_pages)
        texts = [_join_pdf_lines(raw) for raw in found.pages]
        missing = [page for page, text in enumerate(texts, start=1) if not text]
        total = sum(map(len, texts))
        if total > self.max_chars:
            raise chars_over(path, total, self.max_chars)
        sections = tuple(
            Section(text=text[start:end], page=page, heading=(), char_start=start)
            for page, text in enumerate(texts, start=1)
            for start, end in _line_spans(text)
        )
        if not texts:
            raise EmptyDocumentError(f"{path}: the PDF has no pages")
        warnings: tuple[str, ...] = ()
        if missing:
            warnings = (_untexted_warning(missing, len(texts)),)
        # A PDF without a metadata title usually starts with boilerplate ("UNITED STATES",
        # "Table of Contents"): the file name names it better.
        title = clean_title(found.title) or path.stem
        return ParsedDocument(
            source=str(path),
            title=title,
            media_type=self.media_type,
            sections=sections,
            texts=tuple(texts),
            page_count=len(texts),
            warnings=warnings,
            untexted_pages=tuple(missing),
        )


def _untexted_warning(pages: Sequence[int], total: int) -> str:
    listed = ", ".join(map(str, pages[:10])) + (", ..." if len(pages) > 10 else "")
    return f"{len(pages)} of {total} pages had no text layer ({listed})"


def with_page_texts(doc: ParsedDocument, found: Mapping[int, str], how: str) -> ParsedDocument:
    """``doc`` with the text of some untexted pages filled in (``found``: page -> text,
    e.g. by OCR); sections stay in page order. ``how`` names the method in the warnings."""
    found = {p: t for p, t in found.items() if p in doc.untexted_pages and t.strip()}
    if not found:
        return doc
    texts = list(doc.texts)
    added = []
    for page, raw in found.items():
        texts[page - 1] = text = _join_pdf_lines(raw)
        added += [
            Section(text=text[a:b], page=page, heading=(), char_start=a)
            for a, b in _line_spans(text)
        ]
    sections = sorted((*doc.sections, *added), key=lambda x: (x.page or 0, x.char_start))
    still = [p for p in doc.untexted_pages if p not in found]
    total = len(texts)
    warnings = [w for w in doc.warnings if "had no text layer" not in w]
    warnings.append(f"{len(found)} of {total} pages read by {how}")
    if still:
        warnings.append(_untexted_warning(still, total))
    return dataclasses.replace(
        doc,
        sections=tuple(sections),
        texts=tuple(texts),
        warnings=tuple(warnings),
        untexted_pages=tuple(still),
    )


# Control characters in pdfium's text are artefacts of the PDF's fonts. (A regex, not
# str.translate: translate with a dict is slow on non-ASCII text.)
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]+")


def _join_pdf_lines(raw: str) -> str:
    """Page text with wrapped lines joined: one paragraph per line.

    pdfium breaks the text at every visual line. A line that is nearly as long as the
    page's full lines wraps into the next one unless it ends a sentence or either line is
    a table row; a short line ends a paragraph (its last line, a heading, a caption).
    Line length in characters is a good enough stand-in for width and costs nothing. A
    wrong split costs little: the chunker joins neighbouring paragraphs again.
    """
    # pdfium marks a hyphen at a line break it has already joined with U+FFFE.
    raw = _PDF_CONTROL.sub("", raw.replace("\ufffe", "-"))
    lines = [" ".join(line.split()) for line in raw.splitlines()]
    lengths = sorted(len(line) for line in lines if line)
    if not lengths:
        return ""
    full = lengths[int(0.9 * (len(lengths) - 1))]
    # Pages without prose (tables, covers) have no "full" lines to wrap.
    wrap_at = 0.75 * full if full >= 40 else float("inf")
    paragraphs: list[str] = []
    current: list[str] = []
    previous_wraps = False
    for line in lines:
        if not line:
            previous_wraps = False
            continue
        if current:
            if previous_wraps and line[0] not in _BULLETS and not _tabular(line):
                current.append(line)
                # A joined line is not a table row, so only its length and end matter.
                previous_wraps = len(line) >= wrap_at and not _SENTENCE_END.search(line)
                continue
            paragraphs.append(" ".join(current))
        current = [line]
        previous_wraps = (
            len(line) >= wrap_at and not _SENTENCE_END.search(line) and not _tabular(line)
        )
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


_BULLETS = frozenset("•●○◦▪■□–—*·")
_SENTENCE_END = re.compile(r"[.!?:][\"'”’)]*$")
# "[,.]*\d[\d,.]*" (a run with a digit) rather than "[\d,.]*\d[\d,.]*": the latter tries
# every split of a long digit run, quadratic in its length (minutes for 100k digits).
_NUMBER = re.compile(r"(?<!\S)(?:[$€£(]*[-—–]?[,.]*\d[\d,.]*%?\)?|[$€£—–-])(?!\S)")


def _tabular(line: str) -> bool:
    """Whether a line reads like a table row: mostly numbers, dashes and currency signs."""
    tokens = line.count(" ") + 1  # the line's whitespace is already single spaces
    return tokens >= 3 and len(_NUMBER.findall(line)) * 5 >= tokens * 2


def _line_spans(text: str) -> Iterator[tuple[int, int]]:
    start = 0
    for line in text.split("\n"):
        if line:
            yield start, start + len(line)
        start += len(line) + 1
