"""File loaders: one class per format, each obeying :class:`ingest.base.Loader`.

Use :func:`default_loaders` to get one loader per supported format and :func:`load_file`
to load a path with the loader its suffix calls for::

    loaders = loaders_by_suffix(default_loaders())
    doc = load_file(Path("report.pdf"), loaders)

Every loader keeps the offset invariant of :class:`ingest.base.Section`
(``doc.page_text(s.page)[s.char_start:s.char_start + len(s.text)] == s.text``), because
citations highlight passages by their character span. Where text is cleaned up (PDF
line joining, HTML whitespace), the cleaning happens in the stored page text itself.

Failures raise :class:`retrieval.errors.LoaderError` (or its subclasses
``UnsupportedTypeError``, ``EmptyDocumentError`` and ``LimitError``) with a message that
names the file and says what is wrong; vendor exceptions are chained as ``__cause__``.
The parsing libraries are imported inside the loaders so ``import ingest`` stays fast.

Hostile files are normal input, so what one file may cost is bounded before the costly
part starts: bytes on disk for text formats, the unpacked size of a zip-based format
(read from its directory, nothing decompressed), the page count of a PDF, and the
characters extracted (counted as they are extracted, so a huge file stops early). Each
limit is a setting; the ``LimitError`` names it.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ingest.base import ImageRef, Loader, ParsedDocument, Section
from retrieval.errors import EmptyDocumentError, LimitError, LoaderError, UnsupportedTypeError

# The defaults refuse no normal file: the largest FinanceBench filing (140 pages, 0.43 M
# characters) sits 14 and 47 times under the page and character limits, a long book
# (War and Peace: ~3.2 M characters) 6 times, and a Word report's XML is 1-20 MB. What
# they refuse cost minutes and GBs (docs/benchmarks.md, "Hostile files").
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Text-like files above this size are refused: they are almost always logs or dumps."""
DEFAULT_MAX_CHARS = 20_000_000
"""Characters extracted from one file: ~6,000 dense pages."""
DEFAULT_MAX_PAGES = 2_000
"""Pages of one PDF: every page is parsed, and a scanned one read by OCR (~10 s)."""
DEFAULT_MAX_UNPACKED_BYTES = 256 * 1024 * 1024
"""What a zip-based file (DOCX) may unpack to: pictures stay about their packed size, so
only a bomb (kilobytes of XML that unpack to hundreds of MB) comes near it."""
XML_SHARE = 8
"""Of that, at most an eighth (32 MB by default) may be XML: parsing costs ~10 bytes of
memory and ~1 µs per byte of it, and a long report's XML is 1-20 MB."""

# The setting (environment variable) that raises each limit, named in its message.
SETTING_MAX_BYTES = "MMRAG_INGEST_MAX_TEXT_MB"
SETTING_MAX_CHARS = "MMRAG_INGEST_MAX_CHARS"
SETTING_MAX_PAGES = "MMRAG_INGEST_MAX_PAGES"
SETTING_MAX_UNPACKED = "MMRAG_INGEST_MAX_UNPACKED_MB"

_MEDIA_PDF = "application/pdf"
_MEDIA_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def default_loaders(
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_pages: int = DEFAULT_MAX_PAGES,
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
) -> list[Loader]:
    """One loader per supported format, with the limits of one file.

    ``max_bytes`` caps the size of text-like files on disk, ``max_chars`` the text
    extracted from any file, ``max_pages`` the pages of a PDF and ``max_unpacked_bytes``
    what a DOCX unpacks to. A file over a limit is refused with a ``LimitError``.
    """
    text = {"max_bytes": max_bytes, "max_chars": max_chars}
    return [
        PdfLoader(max_pages=max_pages, max_chars=max_chars),
        DocxLoader(max_unpacked_bytes=max_unpacked_bytes, max_chars=max_chars),
        MarkdownLoader(**text),
        HtmlLoader(**text),
        TextLoader(**text),
    ]


def _positive(**limits: int) -> None:
    for name, value in limits.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def _over_limit(path: Path, found: str, limit: str, setting: str) -> LimitError:
    return LimitError(f"{path}: {found}, over the limit of {limit} (raise {setting} to ingest it)")


def _chars_over(path: Path, count: int | None, limit: int) -> LimitError:
    """``count`` None: extraction stopped as soon as the text passed the limit."""
    if count is None:
        return LimitError(
            f"{path}: its text runs past the limit of {limit:,} characters per file "
            f"(raise {SETTING_MAX_CHARS} to ingest it)"
        )
    found = f"{count:,} characters of text"
    return _over_limit(path, found, f"{limit:,} characters per file", SETTING_MAX_CHARS)


def _check_markup(path: Path, count: int, what: str, limit: int) -> None:
    """Refuse markup whose parse tree would not fit: a token of markdown-it or a tag of
    BeautifulSoup costs ~1 KB and ~50 µs, so 2 MB of one-character list items took a
    GB and 40 s. The limit follows the character limit (a fiftieth of it in lines of
    Markdown, a fortieth in tags of HTML), which real prose stays far below."""
    if count > limit:
        setting = SETTING_MAX_CHARS
        raise LimitError(
            f"{path}: {count:,} {what}, over the limit of {limit:,} that follows from "
            f"the character limit (raise {setting} to ingest it)"
        )


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 // 10 else f"{n:,} bytes"


def load_file(
    path: Path, loaders: Mapping[str, Loader], *, also: Iterable[str] = ()
) -> ParsedDocument:
    """Load ``path`` with the loader registered for its (lower-cased) suffix.

    ``loaders`` maps suffixes to loaders, as built by ``ingest.base.loaders_by_suffix``.
    Raises ``UnsupportedTypeError`` naming the file, its suffix and the supported ones
    (``also`` adds the suffixes the caller handles elsewhere, e.g. images and videos).
    """
    suffix = path.suffix.lower()
    loader = loaders.get(suffix)
    if loader is None:
        supported = ", ".join(sorted({*loaders, *also}))
        what = f"unsupported file type '{suffix}'" if suffix else "no file suffix"
        raise UnsupportedTypeError(f"{path}: {what}; supported: {supported}")
    return loader.load(path)


class PdfLoader:
    """PDF text with pypdfium2: one text and a list of paragraphs per page.

    The page text is pdfium's text with wrapped lines joined into paragraphs (one
    paragraph per line of the stored text), so a page of an SEC filing becomes a few
    dozen paragraphs rather than hundreds of lines. Pages without a text layer (scans)
    are listed in ``untexted_pages`` and ``warnings``; the ingest pipeline reads them by
    OCR (:func:`with_page_texts`) and refuses the file if no text is found at all.
    Loading is serialised by a lock because pdfium is not thread-safe.
    """

    suffixes: frozenset[str] = frozenset({".pdf"})
    media_type: str = _MEDIA_PDF

    def __init__(
        self, *, max_pages: int = DEFAULT_MAX_PAGES, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        _positive(max_pages=max_pages, max_chars=max_chars)
        self.max_pages = max_pages
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        import pypdfium2 as pdfium
        import pypdfium2.raw as pdfium_c

        data = _read_bytes(path, max_bytes=None)
        with PDFIUM_LOCK:
            try:
                pdf = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as e:
                if getattr(e, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
                    raise LoaderError(
                        f"{path}: the PDF is encrypted with a password; "
                        "save an unprotected copy and ingest that"
                    ) from e
                raise LoaderError(f"{path}: not a readable PDF ({_pdfium_reason(e)})") from e
            try:
                pages = len(pdf)
                if pages > self.max_pages:
                    raise _over_limit(
                        path, f"{pages:,} pages", f"{self.max_pages:,} pages", SETTING_MAX_PAGES
                    )
                metadata_title = str(pdf.get_metadata_dict().get("Title", ""))
                texts, missing = _pdf_page_texts(pdf, pdfium.PdfiumError)
                total = sum(map(len, texts))
                if total > self.max_chars:
                    raise _chars_over(path, total, self.max_chars)
            finally:
                pdf.close()

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
        title = _clean_title(metadata_title) or path.stem
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


class DocxLoader:
    """Word documents with python-docx: paragraphs and table rows in body order.

    Paragraphs styled "Title" (level 0) or "Heading 1".."Heading 9" set the heading path
    and are not sections themselves; each table row becomes one section with its cells
    joined by " | ". ``texts[0]`` is the sections joined by blank lines.
    """

    suffixes: frozenset[str] = frozenset({".docx"})
    media_type: str = _MEDIA_DOCX

    def __init__(
        self,
        *,
        max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES,
        max_chars: int = DEFAULT_MAX_CHARS,
    ) -> None:
        _positive(max_unpacked_bytes=max_unpacked_bytes, max_chars=max_chars)
        self.max_unpacked_bytes = max_unpacked_bytes
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        import io

        import docx
        from docx.table import Table

        data = _read_bytes(path, max_bytes=None)
        check_unpacked_size(path, data, self.max_unpacked_bytes)
        try:
            document = docx.Document(io.BytesIO(data))
            blocks = document.iter_inner_content()
            styles: dict[str | None, str] = {}
            builder = _TextBuilder(path, self.max_chars)
            headings = _HeadingPath()
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

        title = _clean_title(core_title) or first_title or path.stem
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
        raise _over_limit(
            path, f"unpacks to {_size(total)}", f"{_size(limit)} unpacked", SETTING_MAX_UNPACKED
        )
    xml = sum(i.file_size for i in entries if i.filename.lower().endswith((".xml", ".rels")))
    if xml > limit // XML_SHARE:
        raise _over_limit(
            path,
            f"its XML unpacks to {_size(xml)}",
            f"{_size(limit // XML_SHARE)} of XML, an eighth of the unpacked limit",
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


class _TextFormatLoader:
    """Shared reading and decoding for formats that arrive as text bytes."""

    suffixes: frozenset[str] = frozenset()
    media_type: str = "text/plain"

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        _positive(max_bytes=max_bytes, max_chars=max_chars)
        self.max_bytes = max_bytes
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        text, warning = _decode(path, _read_bytes(path, max_bytes=self.max_bytes))
        # Checked before parsing: the parsers' cost grows with the source, not the text.
        if len(text) > self.max_chars:
            raise _chars_over(path, len(text), self.max_chars)
        if not text.strip():
            raise EmptyDocumentError(f"{path}: empty file (only whitespace)")
        doc = self._parse(path, text)
        if warning:
            doc = dataclasses.replace(doc, warnings=(warning, *doc.warnings))
        return doc

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        raise NotImplementedError


class TextLoader(_TextFormatLoader):
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
        return _document(path, path.stem, self.media_type, sections, text)


class MarkdownLoader(_TextFormatLoader):
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

        _check_markup(path, text.count("\n"), "lines of Markdown", self.max_chars // 50)
        parser = MarkdownIt("commonmark").enable("table")
        tokens = parser.parse(_blank_front_matter(text))
        line_starts = [0, *(m.end() for m in re.finditer("\n", text))]

        def offset(line: int) -> int:
            return line_starts[line] if line < len(line_starts) else len(text)

        headings = _HeadingPath()
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
            span = _trim(text, offset(first), offset(last))
            if span is not None:
                start, end = span
                sections.append(Section(text[start:end], None, headings.path, start))
        doc = _document(path, first_h1 or path.stem, self.media_type, tuple(sections), text)
        return dataclasses.replace(doc, images=_markdown_images(tokens))


class HtmlLoader(_TextFormatLoader):
    """HTML with BeautifulSoup and lxml: visible text blocks under their heading path.

    Scripts, styles, navigation, page-level header/footer (a header or footer inside
    ``<article>``/``<main>`` is kept: it usually holds the article's title), comments
    and elements no reader sees (``hidden``, or an inline ``display:none``,
    ``visibility:hidden`` or ``font-size:0``) are dropped. Paragraph-like elements
    become sections with whitespace collapsed (``<pre>`` keeps its layout); a table row
    of plain cells becomes one section with cells joined by " | ". ``texts[0]`` is the
    sections joined by blank lines.
    """

    suffixes: frozenset[str] = frozenset({".html", ".htm"})
    media_type: str = "text/html"

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        from bs4 import BeautifulSoup

        _check_markup(path, text.count("<"), "tags of HTML", self.max_chars // 40)
        soup = BeautifulSoup(text, "lxml")
        builder = _TextBuilder(path, self.max_chars)
        first_h1 = _html_collect(soup.body or soup, builder)
        title_tag = soup.title.get_text(" ", strip=True) if soup.title else ""
        title = " ".join(title_tag.split()) or first_h1 or path.stem
        doc = builder.document(path, title, self.media_type)
        return dataclasses.replace(doc, images=_html_images(soup))


# --- reading and decoding -------------------------------------------------------------


def _read_bytes(path: Path, *, max_bytes: int | None) -> bytes:
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise _over_limit(
                path,
                _size(size),
                f"{_size(max_bytes)} for a text, Markdown or HTML file",
                SETTING_MAX_BYTES,
            )
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise LoaderError(f"{path}: no such file") from e
    except IsADirectoryError as e:
        raise LoaderError(f"{path}: is a directory, not a file") from e
    except OSError as e:
        raise LoaderError(f"{path}: cannot be read ({e.strerror or e})") from e
    if not data:
        raise EmptyDocumentError(f"{path}: empty file")
    return data


def _decode(path: Path, data: bytes) -> tuple[str, str | None]:
    """Decoded text with newlines normalised, and a warning if it was not UTF-8."""
    text: str | None = None
    encoding = "utf-8"
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        # Notepad's "Unicode"; without the BOM such files look binary (NUL bytes).
        encoding = "utf-16"
        text = _try_decode(data, "utf-16")
    elif b"\x00" not in data:
        text = _try_decode(data, "utf-8-sig")
        if text is None:
            encoding, text = _detect_legacy(data)
    if text is None or _looks_binary(text):
        raise LoaderError(f"{path}: not UTF-8 text and no text encoding could be detected")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    warning = None if encoding == "utf-8" else f"decoded as {encoding} (not UTF-8)"
    return text, warning


def _try_decode(data: bytes, encoding: str) -> str | None:
    try:
        return data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return None


def _detect_legacy(data: bytes) -> tuple[str, str | None]:
    # charset-normalizer often ranks cp1250/cp1257/hp_roman8 above cp1252 for Western
    # text (they decode the common letters identically), which garbles the rest. So take
    # cp1252 whenever it decodes and reads like a Latin-script language: non-ASCII
    # letters are a minority. Cyrillic or Greek bytes read as cp1252 are almost all
    # non-ASCII, so those fall through to the detector.
    western = _try_decode(data, "cp1252")
    if western is not None and _mostly_ascii_letters(western):
        return "cp1252", western
    import charset_normalizer

    best = charset_normalizer.from_bytes(data).best()
    if best is None:
        return "", None
    return best.encoding, _try_decode(data, best.encoding)


def _mostly_ascii_letters(text: str) -> bool:
    sample = text[:100_000]
    letters = sum(1 for ch in sample if ch.isalpha())
    foreign = sum(1 for ch in sample if ch.isalpha() and not ch.isascii())
    return letters > 0 and foreign / letters < 0.4


# ESC is allowed: logs saved with colours are full of it.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1a\x1c-\x1f\x7f-\x9f\ufffd]")


def _looks_binary(text: str) -> bool:
    # Real text has next to no control characters; random bytes have ~15%.
    sample = text[:100_000]
    return len(_CONTROL.findall(sample)) > max(2, len(sample) // 200)


# --- PDF ------------------------------------------------------------------------------

PDFIUM_LOCK = threading.Lock()

# Control characters in pdfium's text are artefacts of the PDF's fonts. (A regex, not
# str.translate: translate with a dict is slow on non-ASCII text.)
_PDF_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]+")


def _pdfium_reason(error: Exception) -> str:
    match = re.search(r"PDFium: ([^)]+)", str(error))
    return match.group(1).rstrip(".") if match else str(error)


def _pdf_page_texts(pdf: Any, pdfium_error: type[Exception]) -> tuple[list[str], list[int]]:
    """Cleaned text of every page, and the 1-based numbers of pages without text."""
    texts: list[str] = []
    missing: list[int] = []
    for index in range(len(pdf)):
        # A broken page should cost that page, not the document.
        try:
            page = pdf[index]
            try:
                textpage = page.get_textpage()
                try:
                    raw = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
        except pdfium_error:
            raw = ""
        text = _join_pdf_lines(raw)
        if not text:
            missing.append(index + 1)
        texts.append(text)
    return texts, missing


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


def _clean_title(title: str) -> str:
    """The metadata title, or "" when it is a placeholder rather than a title.

    EDGAR filings carry the accession number ("0001018724-18-000005"), generators write
    "untitled", and word processors leave the file name.
    """
    title = " ".join(title.split())
    title = re.sub(r"^Microsoft (?:Word|PowerPoint|Excel) - ", "", title)
    letters = sum(ch.isalpha() for ch in title)
    if letters < 3 or title.lower() in _PLACEHOLDER_TITLES:
        return ""
    if re.search(r"\.(?:docx?|pdf|rtf|odt|indd|tmp|txt)$", title, re.IGNORECASE):
        return ""
    return title


_PLACEHOLDER_TITLES = frozenset({"untitled", "title", "document", "untitled document"})


# Anchored at line starts: unanchored, a line of blanks was scanned again from each of
# its characters (quadratic: a line of 40,000 spaces took 17 s).
_PARAGRAPH = re.compile(r"^[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*", re.MULTILINE)


def _paragraph_spans(text: str) -> Iterator[tuple[int, int]]:
    for match in _PARAGRAPH.finditer(text):
        span = _trim(text, match.start(), match.end())
        if span is not None:
            yield span


def _trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` narrowed to exclude surrounding whitespace; None if all blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


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
                found.append(ImageRef(str(src), _caption(words)))
    return tuple(found)


def _html_images(soup: Any) -> tuple[ImageRef, ...]:
    """Every ``<img src>`` of a page with its alt text, title and ``<figcaption>``.

    One walk of the tree that keeps its open figures, rather than a search of each
    picture's ancestors and each figure's descendants: on a page nested 250 deep, that
    took 230 s for 100,000 pictures. A figure's caption is its first ``<figcaption>``.
    """
    from bs4 import Tag

    shown: list[tuple[Any, int | None]] = []  # (img, id of its innermost figure)
    captions: dict[int, str] = {}
    figures: list[int] = []  # open figures, innermost last
    waiting: list[int] = []  # open figures that have no caption yet
    stack: list[tuple[Any, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if not isinstance(node, Tag):
            continue
        if closing:  # only figures are pushed to close
            figures.pop()
            if waiting and waiting[-1] == id(node):
                waiting.pop()
            continue
        name = node.name
        if name in _HTML_DROP or _html_hidden(node):
            continue  # pictures in navigation, scripts, or hidden, are not the page's
        if name == "figure":
            figures.append(id(node))
            waiting.append(id(node))
            stack.append((node, True))
        elif name == "figcaption" and waiting:
            text = _text_upto(node, 300)
            captions.update((figure, text) for figure in waiting)
            waiting.clear()
        elif name == "img" and node.has_attr("src"):
            shown.append((node, figures[-1] if figures else None))
        stack.extend((child, False) for child in reversed(node.contents))
    found: list[ImageRef] = []
    for img, figure in shown:
        words = (
            str(img.get("alt") or ""),
            str(img.get("title") or ""),
            captions.get(figure, "") if figure is not None else "",
        )
        found.append(ImageRef(str(img["src"]), _caption(words)))
    return tuple(found)


def _text_upto(node: Any, limit: int) -> str:
    """``node.get_text(" ", strip=True)``, stopped once it passes ``limit`` characters
    (or ``2 * limit`` nodes). Walked by hand: bs4 finds a node's last descendant before
    yielding its first string, a walk of the whole subtree for each caption."""
    from bs4 import CData, NavigableString, Tag
    from bs4.element import PreformattedString

    parts: list[str] = []
    length = visited = 0
    stack = [node]
    while stack and length <= limit and visited < 2 * limit:
        current = stack.pop()
        visited += 1
        if isinstance(current, Tag):
            stack.extend(reversed(current.contents))
        elif isinstance(current, NavigableString) and (
            isinstance(current, CData) or not isinstance(current, PreformattedString)
        ):
            text = current.strip()
            if text:
                parts.append(text)
                length += len(text) + 1
    return " ".join(parts)


def _caption(parts: Sequence[str]) -> str:
    """Distinct non-empty parts, whitespace collapsed, joined as sentences."""
    kept = dict.fromkeys(" ".join(p.split()) for p in parts if p and p.strip())
    return ". ".join(kept)


def _inline_plain_text(inline: Any) -> str:
    parts: list[str] = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


# --- HTML and DOCX --------------------------------------------------------------------

_HTML_DROP = frozenset(
    {"script", "style", "nav", "noscript", "template", "svg", "iframe", "head", "button"}
)
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "li", "main", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HTML_CELLS = frozenset({"td", "th"})


# Inline styles that hide an element from every reader: what no one sees is not indexed
# (hidden text is where prompt injections hide; see generation/injection.py).
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9]))",
    re.IGNORECASE,
)


def _html_hidden(node: Any) -> bool:
    return node.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(node.get("style") or "")))


def _html_collect(root: Any, builder: _TextBuilder) -> str:
    """Add the visible text blocks under ``root`` to ``builder``; return the first h1.

    Walks the tree once, iteratively (deeply nested pages would overflow recursion),
    gathering text into a buffer that is flushed as a section at every block boundary.
    A cell with only inline content is gathered into its row instead. What a node's
    ancestors and descendants hold is counted on the way (open landmarks) or in one
    pass before (cells holding blocks), never searched per node: a page nested 100,000
    deep made each search as long as the page.
    """
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    headings = _HeadingPath()
    first_h1 = ""
    buffer: list[str] = []
    rows: list[list[str]] = []  # a stack: tables nest inside cells
    inline_cells: set[int] = set()
    holders = _with_blocks_inside(root)
    landmarks = 0  # open <article>/<main>: a header or footer inside one is kept
    pre_depth = 0
    heading_level = 0

    def take_buffer() -> str:
        raw = "".join(buffer)
        buffer.clear()
        if pre_depth:
            return raw.strip("\n").rstrip()
        return re.sub(r" *\n *", "\n", re.sub(r"[^\S\n]+", " ", raw)).strip()

    def flush() -> None:
        # Blocks inside a heading are part of the heading's text.
        if heading_level:
            return
        text = take_buffer()
        if text:
            builder.add(text, headings.path)

    # Events: (node, False) opens a node, (tag, True) closes it.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, CDATA, doctype
                buffer.append(str(node) if pre_depth else re.sub(r"\s+", " ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if closing:
            if name in _HTML_HEADINGS:
                heading = " ".join(take_buffer().split())
                heading_level = 0
                if heading:
                    headings.enter(_HTML_HEADINGS[name], heading)
                    if name == "h1" and not first_h1:
                        first_h1 = heading
            elif id(node) in inline_cells and rows:
                rows[-1].append(take_buffer().replace("\n", " "))
            elif name == "tr" and rows:
                flush()
                cells = [cell for cell in rows.pop() if cell]
                if cells:
                    builder.add(" | ".join(cells), headings.path)
            elif name in _HTML_BLOCKS:
                flush()
            if name == "pre":
                pre_depth -= 1
            if name in ("article", "main"):
                landmarks -= 1
            continue
        if name in _HTML_DROP or _html_hidden(node):
            continue
        if name in ("header", "footer") and not landmarks:
            continue
        if name == "br":
            buffer.append("\n")
            continue
        if name in _HTML_HEADINGS:
            flush()
            heading_level = _HTML_HEADINGS[name]
        elif name == "tr":
            flush()
            rows.append([])
        elif name in _HTML_CELLS and rows and id(node) not in holders:
            inline_cells.add(id(node))
        elif name in _HTML_BLOCKS:
            flush()
        if name == "pre":
            pre_depth += 1
        if name in ("article", "main"):
            landmarks += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return first_h1


def _with_blocks_inside(root: Any) -> set[int]:
    """The ids of the tags under ``root`` that have a block element among their
    descendants, found bottom-up in one pass (each node before its parent)."""
    from bs4 import Tag

    holders: set[int] = set()
    for node in reversed(list(root.descendants)):
        if (
            isinstance(node, Tag)
            and node.parent is not None
            and (node.name in _HTML_BLOCKS or id(node) in holders)
        ):
            holders.add(id(node.parent))
    return holders


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


class _HeadingPath:
    """The current heading path: entering a heading drops those at its level or below."""

    def __init__(self) -> None:
        self._stack: list[tuple[int, str]] = []
        self.path: tuple[str, ...] = ()

    def enter(self, level: int, text: str) -> None:
        if not text:
            return
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, text))
        self.path = tuple(t for _, t in self._stack)


class _TextBuilder:
    """Builds a document's text from extracted blocks, recording each block's offset.

    Stops with a ``LimitError`` as soon as the text passes ``max_chars``, so a file
    that expands (a DOCX bomb) costs no more than the limit.
    """

    _SEPARATOR = "\n\n"

    def __init__(self, path: Path, max_chars: int = DEFAULT_MAX_CHARS) -> None:
        self._path = path
        self._max_chars = max_chars
        self._parts: list[str] = []
        self._length = 0
        self.sections: list[Section] = []

    def add(self, text: str, heading: tuple[str, ...]) -> None:
        text = text.strip()
        if not text:
            return
        if self._parts:
            self._parts.append(self._SEPARATOR)
            self._length += len(self._SEPARATOR)
        self.sections.append(Section(text, None, heading, self._length))
        self._parts.append(text)
        self._length += len(text)
        if self._length > self._max_chars:
            raise _chars_over(self._path, None, self._max_chars)

    def document(self, path: Path, title: str, media_type: str) -> ParsedDocument:
        return _document(path, title, media_type, tuple(self.sections), "".join(self._parts))


def _document(
    path: Path, title: str, media_type: str, sections: Sequence[Section], text: str
) -> ParsedDocument:
    if not sections:
        raise EmptyDocumentError(f"{path}: no text found")
    return ParsedDocument(
        source=str(path),
        title=title,
        media_type=media_type,
        sections=tuple(sections),
        texts=(text,),
    )
