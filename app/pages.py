"""Rendered PDF pages for citations: a byte-bounded cache in front of the renderer.

A cited page is usually opened several times (the UI, the widget, reloads), and a
render costs up to ``max_page_pixels`` of memory and a few hundred ms, so renders are
cached and rate limited (see ``routes/media.py``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from app.errors import ApiError
from retrieval.errors import LoaderError


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
    """One page of a PDF as PNG bytes, at most ``max_pixels`` pixels
    (:func:`ingest.pdfium.render_png`, under pdfium's lock: ingestion may be inside it)."""
    from ingest import pdfium

    try:
        return pdfium.render_png(pdf, page, max_pixels=max_pixels, max_scale=max_scale)
    except pdfium.PageOutOfRangeError as e:
        raise ApiError(404, "not_found", f"{pdf.name} has {e.pages} pages, not {page}") from e
    except pdfium.PageRenderError as e:
        raise ApiError(422, "unreadable", f"page {page} of {pdf.name} cannot be rendered") from e
    except LoaderError as e:
        raise ApiError(422, "unreadable", f"{pdf.name} is not a readable PDF") from e
