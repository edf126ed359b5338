"""What one file may cost to ingest, and the errors that say a file is over it.

Hostile files are normal input, so what one file may cost is bounded before the costly
part starts: bytes on disk for text formats, the unpacked size of a zip-based format
(read from its directory, nothing decompressed), the page count of a PDF, and the
characters extracted (counted as they are extracted, so a huge file stops early). Each
limit is a setting; the ``LimitError`` names it, so the message says how to let the
file in.

The defaults refuse no normal file: the largest FinanceBench filing (140 pages, 0.43 M
characters) sits 14 and 47 times under the page and character limits, a long book
(War and Peace: ~3.2 M characters) 6 times, and a Word report's XML is 1-20 MB. What
they refuse cost minutes and GBs (docs/benchmarks.md, "Hostile files").
"""

from __future__ import annotations

from pathlib import Path

from retrieval.errors import EmptyDocumentError, LimitError, LoaderError

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


def positive(**limits: int) -> None:
    """Refuse a limit of zero or less when a loader is built, naming it."""
    for name, value in limits.items():
        if value <= 0:
            raise ValueError(f"{name} must be positive, got {value}")


def over_limit(path: Path, found: str, limit: str, setting: str) -> LimitError:
    return LimitError(f"{path}: {found}, over the limit of {limit} (raise {setting} to ingest it)")


def chars_over(path: Path, count: int | None, limit: int) -> LimitError:
    """``count`` None: extraction stopped as soon as the text passed the limit."""
    if count is None:
        return LimitError(
            f"{path}: its text runs past the limit of {limit:,} characters per file "
            f"(raise {SETTING_MAX_CHARS} to ingest it)"
        )
    found = f"{count:,} characters of text"
    return over_limit(path, found, f"{limit:,} characters per file", SETTING_MAX_CHARS)


def check_markup(path: Path, count: int, what: str, limit: int) -> None:
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


def size_text(n: int) -> str:
    return f"{n / 2**20:,.1f} MB" if n >= 2**20 // 10 else f"{n:,} bytes"


def read_bytes(path: Path, *, max_bytes: int | None) -> bytes:
    """The file's bytes; ``max_bytes`` (text formats) is checked before anything is read."""
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise over_limit(
                path,
                size_text(size),
                f"{size_text(max_bytes)} for a text, Markdown or HTML file",
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
