"""Query -> Route: which corpora a question should search.

``TrainedRouter`` (the default: a shipped linear model, milliseconds on a CPU),
``LlmRouter`` (training-free, asks the generator), ``FallbackRouter`` (the trained one,
and the LLM only when it is unsure), ``AllCorporaRouter`` and ``FixedRouter`` (what the
user forced). ``decide`` is the multi-label rule they share.
"""

from __future__ import annotations

from router.base import (
    LABELS,
    NO_RETRIEVAL,
    AllCorporaRouter,
    FallbackRouter,
    FixedRouter,
    Route,
    Router,
    decide,
    with_image,
)
from router.llm import LlmRouter
from router.trained import TrainedRouter

__all__ = [
    "LABELS",
    "NO_RETRIEVAL",
    "AllCorporaRouter",
    "FallbackRouter",
    "FixedRouter",
    "LlmRouter",
    "Route",
    "Router",
    "TrainedRouter",
    "decide",
    "with_image",
]
