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
``UnsupportedTypeError`` and ``EmptyDocumentError``) with a message that names the file
and says what is wrong; vendor exceptions are chained as ``__cause__``. The parsing
libraries are imported inside the loaders so ``import ingest`` stays fast.
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
from retrieval.errors import EmptyDocumentError, LoaderError, UnsupportedTypeError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024
"""Text-like files above this size are refused: they are almost always logs or dumps."""

_MEDIA_PDF = "application/pdf"
_MEDIA_DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def default_loaders(*, max_bytes: int = DEFAULT_MAX_BYTES) -> list[Loader]:
    """One loader per supported format; ``max_bytes`` caps the size of text-like files."""
    return [
        PdfLoader(),
        DocxLoader(),
        MarkdownLoader(max_bytes=max_bytes),
        HtmlLoader(max_bytes=max_bytes),
        TextLoader(max_bytes=max_bytes),
    ]


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
                metadata_title = str(pdf.get_metadata_dict().get("Title", ""))
                texts, missing = _pdf_page_texts(pdf, pdfium.PdfiumError)
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

    def load(self, path: Path) -> ParsedDocument:
        import io

        import docx
        from docx.table import Table

        data = _read_bytes(path, max_bytes=None)
        try:
            document = docx.Document(io.BytesIO(data))
            blocks = list(document.iter_inner_content())
        # A damaged package surfaces as any of zipfile, KeyError, lxml or python-docx
        # errors depending on which part is broken; all mean the same to the user.
        except Exception as e:
            raise LoaderError(f"{path}: not a readable Word document ({e})") from e

        builder = _TextBuilder()
        headings = _HeadingPath()
        first_title = ""
        for block in blocks:
            if isinstance(block, Table):
                for row in _docx_rows(block):
                    builder.add(row, headings.path)
                continue
            text = block.text.strip()
            if not text:
                continue
            style = block.style.name if block.style is not None else None
            level = _docx_heading_level(style or "")
            if level is None:
                builder.add(text, headings.path)
                continue
            heading = " ".join(text.split())
            headings.enter(level, heading)
            if not first_title and level <= 1:
                first_title = heading

        title = _clean_title(document.core_properties.title or "") or first_title or path.stem
        return builder.document(path, title, self.media_type)


class _TextFormatLoader:
    """Shared reading and decoding for formats that arrive as text bytes."""

    suffixes: frozenset[str] = frozenset()
    media_type: str = "text/plain"

    def __init__(self, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes

    def load(self, path: Path) -> ParsedDocument:
        text, warning = _decode(path, _read_bytes(path, max_bytes=self.max_bytes))
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

        soup = BeautifulSoup(text, "lxml")
        builder = _TextBuilder()
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
            raise LoaderError(
                f"{path}: {size / 1e6:.1f} MB is over the {max_bytes / 1e6:.1f} MB limit "
                "for this file type (raise max_bytes to load it)"
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
_NUMBER = re.compile(r"(?<!\S)(?:[$€£(]*[-—–]?[\d,.]*\d[\d,.]*%?\)?|[$€£—–-])(?!\S)")


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


_PARAGRAPH = re.compile(r"[^\n]*\S[^\n]*(?:\n[^\n]*\S[^\n]*)*")


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
    """Every ``<img src>`` of a page with its alt text, title and ``<figcaption>``."""
    found: list[ImageRef] = []
    for img in soup.find_all("img", src=True):
        if img.find_parent(list(_HTML_DROP)) is not None:
            continue
        if any(_html_hidden(node) for node in (img, *img.parents)):
            continue
        figure = img.find_parent("figure")
        figcaption = figure.find("figcaption") if figure is not None else None
        words = (
            str(img.get("alt") or ""),
            str(img.get("title") or ""),
            figcaption.get_text(" ", strip=True) if figcaption is not None else "",
        )
        found.append(ImageRef(str(img["src"]), _caption(words)))
    return tuple(found)


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
_HTML_BLOCK_NAMES = sorted(_HTML_BLOCKS)  # bs4's find() wants a list
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
    A cell with only inline content is gathered into its row instead.
    """
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    headings = _HeadingPath()
    first_h1 = ""
    buffer: list[str] = []
    rows: list[list[str]] = []  # a stack: tables nest inside cells
    inline_cells: set[int] = set()
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
            continue
        if name in _HTML_DROP or _html_hidden(node):
            continue
        if name in ("header", "footer") and node.find_parent(("article", "main")) is None:
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
        elif name in _HTML_CELLS and rows and node.find(_HTML_BLOCK_NAMES) is None:
            inline_cells.add(id(node))
        elif name in _HTML_BLOCKS:
            flush()
        if name == "pre":
            pre_depth += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return first_h1


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
    """Builds a document's text from extracted blocks, recording each block's offset."""

    _SEPARATOR = "\n\n"

    def __init__(self) -> None:
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
