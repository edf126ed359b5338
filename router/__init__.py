"""Query -> Route: which corpora a question should search."""

from __future__ import annotations

from router.base import LABELS, NO_RETRIEVAL, FixedRouter, Route, Router, TextCorporaRouter

__all__ = ["LABELS", "NO_RETRIEVAL", "FixedRouter", "Route", "Router", "TextCorporaRouter"]
