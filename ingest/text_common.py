"""What the format loaders share: decoding text bytes, building a document's text with
the offset of every section, heading paths and titles.

Every loader keeps the offset invariant of :class:`ingest.base.Section`
(``doc.page_text(s.page)[s.char_start:s.char_start + len(s.text)] == s.text``), because
citations highlight passages by their character span; :class:`TextBuilder` keeps it for
formats whose text is assembled from blocks (DOCX, HTML), and the text formats slice the
decoded file itself.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
from collections.abc import Sequence
from pathlib import Path

from ingest.base import ParsedDocument, Section
from ingest.limits import DEFAULT_MAX_BYTES, DEFAULT_MAX_CHARS, chars_over, positive, read_bytes
from retrieval.errors import EmptyDocumentError, LoaderError


class TextFormatLoader:
    """Shared reading and decoding for formats that arrive as text bytes (plain text,
    Markdown, HTML); a subclass parses the decoded text in ``_parse``."""

    suffixes: frozenset[str] = frozenset()
    media_type: str = "text/plain"

    def __init__(
        self, *, max_bytes: int = DEFAULT_MAX_BYTES, max_chars: int = DEFAULT_MAX_CHARS
    ) -> None:
        positive(max_bytes=max_bytes, max_chars=max_chars)
        self.max_bytes = max_bytes
        self.max_chars = max_chars

    def load(self, path: Path) -> ParsedDocument:
        text, warning = decode(path, read_bytes(path, max_bytes=self.max_bytes))
        # Checked before parsing: the parsers' cost grows with the source, not the text.
        if len(text) > self.max_chars:
            raise chars_over(path, len(text), self.max_chars)
        if not text.strip():
            raise EmptyDocumentError(f"{path}: empty file (only whitespace)")
        doc = self._parse(path, text)
        if warning:
            doc = dataclasses.replace(doc, warnings=(warning, *doc.warnings))
        return doc

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        raise NotImplementedError


class TextBuilder:
    """Builds a document's text from extracted blocks, recording each block's offset.

    Stops with a ``LimitError`` as soon as the text passes ``max_chars``, so a file
    that expands (a DOCX bomb) costs no more than the limit. ``texts[0]`` of the
    document is the blocks joined by blank lines.
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
            raise chars_over(self._path, None, self._max_chars)

    def document(self, path: Path, title: str, media_type: str) -> ParsedDocument:
        return document(path, title, media_type, tuple(self.sections), "".join(self._parts))


def document(
    path: Path, title: str, media_type: str, sections: Sequence[Section], text: str
) -> ParsedDocument:
    """A one-text document (every format but PDF); refused when no section has text."""
    if not sections:
        raise EmptyDocumentError(f"{path}: no text found")
    return ParsedDocument(
        source=str(path),
        title=title,
        media_type=media_type,
        sections=tuple(sections),
        texts=(text,),
    )


class HeadingPath:
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


def clean_title(title: str) -> str:
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


def trim(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` narrowed to exclude surrounding whitespace; None if all blank."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def caption(parts: Sequence[str]) -> str:
    """Distinct non-empty parts, whitespace collapsed, joined as sentences."""
    kept = dict.fromkeys(" ".join(p.split()) for p in parts if p and p.strip())
    return ". ".join(kept)


# --- decoding ---------------------------------------------------------------------------


def decode(path: Path, data: bytes) -> tuple[str, str | None]:
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
