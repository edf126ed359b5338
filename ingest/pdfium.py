"""Every use of pdfium (pypdfium2) in mmrag, behind its one lock.

pdfium is not thread-safe: two threads inside it at once corrupt its state (a crash, not
an exception). In one server process an upload job ingests PDFs (text, figures, scanned
pages rendered for OCR) while requests render cited pages for people to see, so every
call into pdfium (opening, reading, rendering, closing) holds :data:`PDFIUM_LOCK`. A
document may stay open between calls without it (a scan stays open while its pages are
read by OCR, seconds each). No other module imports pypdfium2; ``tests/test_pdfium.py``
checks that, and renders pages through the API while PDFs are ingested.

What leaves this module is plain: strings, PIL images, PNG bytes and our own errors
(``retrieval.errors.LoaderError`` and its subclasses here). pypdfium2 is imported inside
the functions, so ``import ingest`` stays fast.

- :func:`read_text`: the metadata title and each page's raw text (the PDF loader).
- :func:`figures`: the large enough images embedded in each page (``image`` items).
- :func:`inked_pages`: the untexted pages rendered for OCR, blank sheets skipped.
- :func:`render_page`: one page as an image (the OCR benchmark).
- :func:`render_png`: one page as a PNG of bounded size (the API's page images).
"""

from __future__ import annotations

import io
import math
import re
import threading
from collections.abc import Collection, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ingest.images.decode import MAX_IMAGE_PIXELS
from ingest.limits import SETTING_MAX_PAGES, over_limit
from retrieval.errors import LoaderError

PDFIUM_LOCK = threading.Lock()
"""Held by every call into pdfium (see the module docstring)."""

DEFAULT_MAX_PAGE_PIXELS = 2400 * 2400
"""A page rendered for OCR has at most this many pixels and a longer side of at most its
square root: a Letter page at 200 dpi (1700 x 2200) fits, a poster is scaled down."""


class PageOutOfRangeError(LoaderError):
    """A page number past the end of the PDF; ``pages`` is how many it has."""

    def __init__(self, message: str, pages: int) -> None:
        super().__init__(message)
        self.pages = pages


class PageRenderError(LoaderError):
    """pdfium opened the PDF but could not render the page."""


@dataclass(frozen=True)
class PdfText:
    """A PDF's metadata title (as stored, "" if none) and the text of each page as
    pdfium gives it, a line per visual line ("" for a page it cannot read)."""

    title: str
    pages: tuple[str, ...]


def read_text(data: bytes, path: Path, *, max_pages: int) -> PdfText:
    """The text of a PDF held in ``data`` (``path`` names it in errors).

    Raises ``LoaderError`` for a PDF pdfium cannot open (saying so when it wants a
    password) and ``LimitError`` when it has more than ``max_pages`` pages, checked
    before any page is read. A broken page costs that page, not the document.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    with PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as e:
            if getattr(e, "err_code", None) == pdfium_c.FPDF_ERR_PASSWORD:
                raise LoaderError(
                    f"{path}: the PDF is encrypted with a password; "
                    "save an unprotected copy and ingest that"
                ) from e
            raise LoaderError(f"{path}: not a readable PDF ({_reason(e)})") from e
        try:
            pages = len(pdf)
            if pages > max_pages:
                raise over_limit(
                    path, f"{pages:,} pages", f"{max_pages:,} pages", SETTING_MAX_PAGES
                )
            title = str(pdf.get_metadata_dict().get("Title", ""))
            texts = tuple(_page_text(pdf, index, pdfium.PdfiumError) for index in range(pages))
        finally:
            pdf.close()
    return PdfText(title, texts)


def _open(path: Path) -> Any:
    """The PDF at ``path``, open (the caller holds the lock and closes it), or a
    ``LoaderError`` naming it."""
    import pypdfium2 as pdfium

    try:
        return pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as e:
        raise LoaderError(f"{path}: not a readable PDF ({e})") from e


def _page_text(pdf: Any, index: int, pdfium_error: type[Exception]) -> str:
    try:
        page = pdf[index]
        try:
            textpage = page.get_textpage()
            try:
                raw = str(textpage.get_text_range())
            finally:
                textpage.close()
        finally:
            page.close()
    except pdfium_error:
        return ""
    return raw


def _reason(error: Exception) -> str:
    match = re.search(r"PDFium: ([^)]+)", str(error))
    return match.group(1).rstrip(".") if match else str(error)


def figures(path: Path, min_side: int, warnings: list[str]) -> list[tuple[int, Image.Image]]:
    """(1-based page, RGB image) for each image object of a PDF at least ``min_side``
    pixels on both sides (smaller ones are logos, rules, bullets).

    An image over ``MAX_IMAGE_PIXELS`` (a few KB can decode to GBs), one pdfium cannot
    decode, and a page it cannot read are skipped with a line in ``warnings``; a PDF it
    cannot open is a ``LoaderError``.
    """
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    out: list[tuple[int, Image.Image]] = []
    with PDFIUM_LOCK:
        pdf = _open(path)
        try:
            for index in range(len(pdf)):
                # A broken page costs its pictures, not the file's (nor, escaping as a
                # vendor error, the rest of the ingest run).
                try:
                    page = pdf[index]
                except pdfium.PdfiumError as e:
                    warnings.append(f"page {index + 1}: not read for pictures ({e})")
                    continue
                try:
                    out += _page_images(page, index + 1, min_side, warnings, pdfium_c)
                finally:
                    page.close()
        finally:
            pdf.close()
    return out


def _page_images(
    page: Any, number: int, min_side: int, warnings: list[str], pdfium_c: Any
) -> list[tuple[int, Image.Image]]:
    out: list[tuple[int, Image.Image]] = []
    for obj in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
        width, height = obj.get_px_size()
        if min(width, height) < min_side:
            continue
        if width * height > MAX_IMAGE_PIXELS:
            warnings.append(
                f"page {number}: an image of {width} x {height} pixels skipped "
                f"(over the limit of {MAX_IMAGE_PIXELS:,} pixels per picture)"
            )
            continue
        try:
            image = obj.get_bitmap(render=False).to_pil().convert("RGB")
        except Exception as e:  # odd colour spaces and filters: skip that one
            warnings.append(f"page {number}: an image could not be decoded ({e})")
            continue
        out.append((number, image))
    return out


def inked_pages(
    path: Path,
    pages: Collection[int],
    *,
    dpi: float = 200,
    max_pixels: int = DEFAULT_MAX_PAGE_PIXELS,
) -> Generator[tuple[int, Image.Image | None], None, None]:
    """(page, RGB render) for each of ``pages`` (1-based), in order, for OCR; the image
    is None for a blank sheet or a page pdfium cannot render. Nothing for a PDF it
    cannot open.

    The PDF is opened once and the lock is held per page, never while the caller reads
    a page (seconds of OCR). Blank sheets cost next to nothing: a page that draws nothing
    is not rendered at all, and the others are first judged on a greyscale render (a
    fifth of the cost of a colour one); a PDF of 5,000 empty pages took 150 s to render
    page by page.
    """

    with PDFIUM_LOCK:
        try:
            pdf = _open(path)
        except LoaderError:
            return
    try:
        for page in pages:
            with PDFIUM_LOCK:
                image = _render(pdf, page, dpi, max_pixels, inked_only=True)
            yield page, image
    finally:
        with PDFIUM_LOCK:
            pdf.close()


def render_page(
    path: Path,
    page: int,
    *,
    dpi: float = 200,
    max_pixels: int = DEFAULT_MAX_PAGE_PIXELS,
    grey: bool = False,
) -> Image.Image | None:
    """Page ``page`` (1-based) as an RGB image (``grey``: greyscale, as a scanner makes
    it) at ``dpi`` within ``max_pixels``, or None if pdfium cannot render it."""
    with PDFIUM_LOCK:
        try:
            pdf = _open(path)
        except LoaderError:
            return None
        try:
            return _render(pdf, page, dpi, max_pixels, inked_only=False, grey=grey)
        finally:
            pdf.close()


def _render(
    pdf: Any,
    page: int,
    dpi: float,
    max_pixels: int,
    *,
    inked_only: bool,
    grey: bool = False,
) -> Image.Image | None:
    """One page of an open PDF, or None; the caller holds ``PDFIUM_LOCK``."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as pdfium_c

    try:
        handle = pdf[page - 1]
    except (pdfium.PdfiumError, IndexError):
        return None
    try:
        if (
            inked_only
            and pdfium_c.FPDFPage_CountObjects(handle.raw) == 0
            and pdfium_c.FPDFPage_GetAnnotCount(handle.raw) == 0
        ):
            return None  # draws nothing
        width, height = handle.get_size()  # points, 1/72 inch
        if not (math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
            return None
        # Within max_pixels, and its square root on the longer side: a page whose sides are
        # far apart (a 200-inch strip) is bounded too.
        scale = min(
            _scale(width, height, dpi / 72, max_pixels), math.isqrt(max_pixels) / max(width, height)
        )
        if grey:
            return handle.render(scale=scale, grayscale=True).to_pil()
        if inked_only and _blank_grey(handle.render(scale=scale, grayscale=True).to_numpy()):
            return None
        return handle.render(scale=scale).to_pil().convert("RGB")
    except (pdfium.PdfiumError, ValueError, OverflowError):
        return None
    finally:
        handle.close()


def _scale(width: float, height: float, max_scale: float, max_pixels: int) -> float:
    """The render scale (pixels per point) that keeps a page of ``width`` x ``height``
    points within ``max_pixels``, chosen before rendering: pages can be declared any
    size (14400 pt squares exist), and memory and time must stay bounded."""
    return min(max_scale, math.sqrt(max_pixels / max(width * height, 1.0)))


def render_png(path: Path, page: int, *, max_pixels: int, max_scale: float = 1.5) -> bytes:
    """Page ``page`` (1-based) as PNG bytes, at most ``max_pixels`` pixels and
    ``max_scale`` pixels per point (108 dpi at 1.5: readable on a screen).

    Raises ``LoaderError`` for a PDF pdfium cannot open, ``PageOutOfRangeError`` past
    its last page and ``PageRenderError`` when the page cannot be drawn.
    """
    import pypdfium2 as pdfium

    with PDFIUM_LOCK:
        document = _open(path)
        try:
            if page > len(document):
                raise PageOutOfRangeError(
                    f"{path}: has {len(document)} pages, not {page}", len(document)
                )
            handle = document[page - 1]
            try:
                width, height = handle.get_size()
                bitmap = handle.render(scale=_scale(width, height, max_scale, max_pixels))
                image: Image.Image = bitmap.to_pil()
            finally:
                handle.close()
        except pdfium.PdfiumError as e:
            raise PageRenderError(f"{path}: page {page} cannot be rendered ({_reason(e)})") from e
        finally:
            document.close()
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def is_blank(image: Image.Image, ink: float = 0.001) -> bool:
    """Whether a rendered page is an empty sheet: under 0.1 % of its pixels dark.

    Filings and scans are full of them (a page left blank on purpose, a scanned back
    side); OCR would spend seconds on each to find nothing.
    """
    return _blank_grey(np.asarray(image.convert("L")), ink)


def _blank_grey(grey: np.ndarray, ink: float = 0.001) -> bool:
    return bool(grey.size == 0 or (grey < 128).mean() < ink)
