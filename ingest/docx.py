"""Word documents (DOCX) with python-docx: paragraphs and table rows in body order.

A DOCX is a zip of XML, so a few kilobytes can unpack to gigabytes: its unpacked size is
checked from the zip directory before anything is parsed (:func:`check_unpacked_size`),
and the text is counted as it is extracted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.base import ParsedDocument
from ingest.limits import (
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_UNPACKED_BYTES,
    SETTING_MAX_UNPACKED,
    XML_SHARE,
    over_limit,
    positive,
    read_bytes,
    size_text,
)
from ingest.text_common import HeadingPath, TextBuilder, clean_title
from retrieval.errors import LimitError, LoaderError

MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


class DocxLoader:
    """Word documents with python-docx: paragraphs and table rows in body order.

    Paragraphs styled "Title" (level 0) or "Heading 1".."Heading 9" set the heading path
    and are not sections themselves; each table row becomes one section with its cells
    joined by " | ". ``texts[0]`` is the sections joined by blank lines.
    """

    suffixes: frozenset[str] = frozenset({".docx"})
    media_type: str = MEDIA_TYPE

    def __init__(
        self,
        *,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        positive(max_unpacked_bytes=max_unpacked_bytes, max_chars=max_chars)
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        import io

        import docx
        from docx.table import Table

        data = read_bytes(path, max_bytes=None)
        check_unpacked_size(path, data, self.max_unpacked_bytes)
        try:
            document = docx.Document(io.BytesIO(data))
            blocks = document.iter_inner_content()
            styles: dict[str | None, str] = {}
            builder = TextBuilder(path, self.max_chars)
            headings = HeadingPath()
            first_title = ""
            for block in blocks:
                if isinstance(block, Table):
                    for row in _docx_rows(block):
                        builder.add(row, headings.path)
                    continue
                text = _docx_paragraph_text(block._p).strip()
                if not text:
                    continue
                level = _docx_heading_level(_docx_style_name(block, styles))
                if level is None:
                    builder.add(text, headings.path)
                    continue
                heading = " ".join(text.split())
                headings.enter(level, heading)
                if not first_title and level <= 1:
                    first_title = heading
            core_title = document.core_properties.title or ""
        except LimitError:
            raise
        # A damaged package surfaces as any of zipfile, KeyError, lxml or python-docx
        # errors depending on which part is broken; all mean the same to the user.
        except Exception as e:
            raise LoaderError(f"{path}: not a readable Word document ({e})") from e

        title = clean_title(core_title) or first_title or path.stem
        return builder.document(path, title, self.media_type)


def check_unpacked_size(path: Path, data: bytes, limit: int) -> None:
    """Refuse a zip-based file (DOCX; also XLSX, PPTX, ODT, EPUB) that unpacks to more
    than ``limit`` bytes, or to more than an eighth of that in XML (the part that is parsed).

    The sizes come from the archive's central directory and nothing is decompressed:
    zipfile never inflates an entry past the size its directory declares (a lie ends in
    a CRC error), so the sum is a true bound on what reading the file can cost. Data
    that is not a zip is left to the format's parser to report.
    """
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
    # A damaged directory raises any of BadZipFile, NotImplementedError ("zip file
    # version 25.5"), struct, OS or value errors: all are the parser's to report.
    except Exception:
        return
    total = sum(info.file_size for info in entries)
    if total > limit:
        raise over_limit(
            path,
            f"unpacks to {size_text(total)}",
            f"{size_text(limit)} unpacked",
            SETTING_MAX_UNPACKED,
        )
    xml = sum(i.file_size for i in entries if i.filename.lower().endswith((".xml", ".rels")))
    if xml > limit // XML_SHARE:
        raise over_limit(
            path,
            f"its XML unpacks to {size_text(xml)}",
            f"{size_text(limit // XML_SHARE)} of XML, an eighth of the unpacked limit",
            SETTING_MAX_UNPACKED,
        )


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_W_RUN_TEXT = tuple(_W + tag for tag in ("br", "cr", "noBreakHyphen", "ptab", "t", "tab"))


def _docx_paragraph_text(p: Any) -> str:
    """``Paragraph.text`` without its cost: python-docx compiles two XPath expressions
    per paragraph (~50 µs); walking the children is ~6 times faster. Each run part is
    still turned into text by python-docx's own element classes (``str(part)``)."""
    parts: list[str] = []
    for child in p.iterchildren(_W + "r", _W + "hyperlink"):
        runs = child.iterchildren(_W + "r") if child.tag == _W + "hyperlink" else (child,)
        for run in runs:
            parts.extend(str(part) for part in run.iterchildren(*_W_RUN_TEXT))
    return "".join(parts)


def _docx_style_name(paragraph: Any, cache: dict[str | None, str]) -> str:
    """A paragraph's style name, looked up once per style id.

    python-docx resolves ``paragraph.style`` by scanning every style of the document
    (for the default style, on each call): ~0.8 ms a paragraph, which made a DOCX of
    770,000 short paragraphs take over ten minutes before its text was even chunked.
    """
    style_id = paragraph._p.style  # the w:pStyle value, or None for the default style
    if style_id not in cache:
        style = paragraph.style
        cache[style_id] = style.name if style is not None and style.name else ""
    return cache[style_id]


def _docx_heading_level(style_name: str) -> int | None:
    name = style_name.strip().lower()
    if name == "title":
        return 0
    match = re.fullmatch(r"heading ([1-9])", name)
    return int(match.group(1)) if match else None


def _docx_rows(table: Any) -> Iterator[str]:
    for row in table.rows:
        seen: set[int] = set()
        cells: list[str] = []
        # python-docx repeats a merged cell once per grid column it spans.
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            text = " ".join(cell.text.split())
            if text:
                cells.append(text)
        if cells:
            yield " | ".join(cells)
