"""The document formats mmrag reads, and loading a file by its suffix.

One module per format, each with a class obeying :class:`ingest.base.Loader`:
``ingest/pdf.py``, ``ingest/docx.py``, ``ingest/markdown.py``, ``ingest/html.py`` and
``ingest/text.py``. :func:`default_loaders` is the registry: a new format is its module
and one line there (its ``suffixes`` say which files it takes). Use it with
:func:`load_file`::

    loaders = loaders_by_suffix(default_loaders())
    doc = load_file(Path("report.pdf"), loaders)

Failures raise :class:`retrieval.errors.LoaderError` (or its subclasses
``UnsupportedTypeError``, ``EmptyDocumentError`` and ``LimitError``) with a message that
names the file and says what is wrong; vendor exceptions are chained as ``__cause__``.
The parsing libraries are imported inside the loaders so ``import ingest`` stays fast.
What one file may cost is bounded by the limits of ``ingest/limits.py``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from ingest.base import Loader, ParsedDocument
from ingest.docx import DocxLoader
from ingest.html import HtmlLoader
from ingest.limits import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CHARS,
    DEFAULT_MAX_PAGES,
    DEFAULT_MAX_UNPACKED_BYTES,
)
from ingest.markdown import MarkdownLoader
from ingest.pdf import PdfLoader
from ingest.text import TextLoader
from retrieval.errors import UnsupportedTypeError


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
