"""Corpora, encoders, the Qdrant store and hybrid search.

``import retrieval`` stays light: the encoders and the store import torch and
qdrant-client lazily, when they are constructed.
"""

from __future__ import annotations

from retrieval.base import (
    TEXT_CORPORA,
    Corpus,
    EncoderInfo,
    Hit,
    Item,
    SparseEncoder,
    SparseVector,
    TextEncoder,
    item_id,
)
from retrieval.errors import MmragError

__all__ = [
    "TEXT_CORPORA",
    "Corpus",
    "EncoderInfo",
    "Hit",
    "Item",
    "MmragError",
    "SparseEncoder",
    "SparseVector",
    "TextEncoder",
    "item_id",
]
