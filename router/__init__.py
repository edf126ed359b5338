"""Query -> Route: which corpora a question should search."""

from __future__ import annotations

from router.base import LABELS, NO_RETRIEVAL, AllCorporaRouter, FixedRouter, Route, Router

__all__ = ["LABELS", "NO_RETRIEVAL", "AllCorporaRouter", "FixedRouter", "Route", "Router"]
