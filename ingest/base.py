"""Value types and the loader protocol of the ingest stage.

A loader turns one file into a :class:`ParsedDocument`: its text as a list of
:class:`Section` (a run of text with its page and heading path). The chunker turns
sections into :class:`Passage` objects of a searchable size; the ingest pipeline turns
passages into ``retrieval.Item`` objects and stores them.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Section:
    """A contiguous piece of a document's text.

    ``page`` is 1-based for paged formats (PDF) and ``None`` otherwise. ``char_start``
    is the offset of ``text`` in the document's text for that page (PDF: the page's
    extracted text; other formats: the whole extracted text of the file), so that
    ``ParsedDocument.page_text(page)[char_start:char_start + len(text)] == text``.
    """

    text: str
    page: int | None
    heading: tuple[str, ...]
    char_start: int


@dataclass(frozen=True)
class ImageRef:
    """A picture a document shows (HTML ``<img>``, Markdown ``![alt](src)``).

    ``src`` is as written in the document (usually relative to it); ``caption`` gathers
    what the document says about the picture: alt text, title and figure caption.
    """

    src: str
    caption: str


@dataclass(frozen=True)
class ParsedDocument:
    """One file's extracted text, split into sections, plus what is known about it.

    ``texts`` holds the extracted text per page for paged formats (``texts[0]`` is page 1)
    and a single entry for the others. ``warnings`` carries non-fatal notes for the
    ingest report (e.g. "decoded as cp1252", "3 pages had no text layer").
    """

    source: str
    title: str
    media_type: str
    sections: tuple[Section, ...]
    texts: tuple[str, ...]
    page_count: int | None = None
    warnings: tuple[str, ...] = ()
    images: tuple[ImageRef, ...] = ()
    # 1-based pages with no text layer (scans): the ingest pipeline OCRs them.
    untexted_pages: tuple[int, ...] = ()

    def page_text(self, page: int | None) -> str:
        return self.texts[0] if page is None else self.texts[page - 1]


@dataclass(frozen=True)
class Passage:
    """A chunk of ~100-300 words that keeps where it came from."""

    text: str
    page: int | None
    heading: tuple[str, ...]
    char_start: int
    char_end: int


class Loader(Protocol):
    """Turns files of some types into a ParsedDocument.

    ``suffixes`` are lower-case file suffixes including the dot. ``load`` raises a
    ``retrieval.errors.LoaderError`` subclass with a message naming the file and the
    problem when the file cannot be read (corrupt, empty, undecodable).
    """

    suffixes: frozenset[str]
    media_type: str

    def load(self, path: Path) -> ParsedDocument: ...


def loaders_by_suffix(loaders: Sequence[Loader]) -> dict[str, Loader]:
    return {s: loader for loader in loaders for s in loader.suffixes}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is either the old file or the whole new one.

    Thumbnails and keyframes are written before the items that point at them; a crash
    mid-write must not leave a torn JPEG under a name a stored item uses. The bytes go
    to a temporary file beside ``path``, are synced, and are renamed into place.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; served files are not
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
