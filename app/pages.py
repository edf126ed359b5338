"""Rendered PDF pages for citations: a byte-bounded cache in front of the renderer.

A cited page is usually opened several times (the UI, the widget, reloads), and a
render costs up to ``max_page_pixels`` of memory and a few hundred ms, so renders are
cached and rate limited (see ``routes/media.py``).
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.errors import ApiError


class PageRenders:
    """Rendered PDF pages (PNG), least recently used dropped past a byte budget.

    Keyed by the file's path, modification time and size, so an edited file is rendered
    again. A cited page is usually opened several times (the UI, the widget, reloads).
    """

    def __init__(self, budget_bytes: int = 64 * 1024 * 1024) -> None:
        self._pages: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.budget = budget_bytes

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            png = self._pages.get(key)
            if png is not None:
                self._pages.move_to_end(key)
            return png

    def put(self, key: tuple[Any, ...], png: bytes) -> None:
        with self._lock:
            if key in self._pages:
                return
            self._pages[key] = png
            self._size += len(png)
            while self._size > self.budget and len(self._pages) > 1:
                _, old = self._pages.popitem(last=False)
                self._size -= len(old)


def render_page(pdf: Path, page: int, max_pixels: int, max_scale: float = 1.5) -> bytes:
    """One page of a PDF as PNG bytes, at most ``max_pixels`` pixels.

    Pages can be declared any size (14400 pt squares exist): the scale is chosen from the
    page's size before rendering, so memory and time stay bounded. pdfium is not
    thread-safe and ingestion may be inside it: its lock is held throughout.
    """
    import pypdfium2 as pdfium
    from PIL import Image

    from ingest.loaders import PDFIUM_LOCK

    with PDFIUM_LOCK:
        try:
            document = pdfium.PdfDocument(str(pdf))
        except pdfium.PdfiumError as e:
            raise ApiError(422, "unreadable", f"{pdf.name} is not a readable PDF") from e
        try:
            if page > len(document):
                raise ApiError(
                    404, "not_found", f"{pdf.name} has {len(document)} pages, not {page}"
                )
            handle = document[page - 1]
            try:
                width, height = handle.get_size()
                area = max(width * height, 1.0)
                scale = min(max_scale, math.sqrt(max_pixels / area))
                bitmap = handle.render(scale=scale)
                image: Image.Image = bitmap.to_pil()
            finally:
                handle.close()
        except pdfium.PdfiumError as e:
            raise ApiError(
                422, "unreadable", f"page {page} of {pdf.name} cannot be rendered"
            ) from e
        finally:
            document.close()
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
