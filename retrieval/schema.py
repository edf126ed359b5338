"""What a corpus' collection holds, the same in every engine.

A collection (a Qdrant collection, or a Qdrant Edge shard) has three named vectors:
``dense`` (cosine), ``sparse`` (with Qdrant's IDF modifier) and, for the image and clip
corpora, ``visual`` (cosine). It records which encoders filled it, so that opening it
with others fails with a clear message instead of silently mixing incomparable
vectors. Each point's payload is its :class:`Item` without the texts only the encoders
see. The stores keep this shape in one place so that a corpus written by one engine
reads the same in the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from typing import Any, Final, Literal

import numpy as np

from retrieval.base import DEFAULT_WORKSPACE, Corpus, EncoderInfo, Item, SparseVector, Vectors
from retrieval.errors import EncoderMismatchError

VectorName = Literal["dense", "sparse", "visual"]
DENSE: Final = "dense"
SPARSE: Final = "sparse"
VISUAL: Final = "visual"

# The payload fields ``source_hashes`` reads.
HASH_FIELDS = ["source", "content_hash", "parent_id"]


def encoder_metadata(
    dense: EncoderInfo, sparse: EncoderInfo, visual: EncoderInfo | None = None
) -> dict[str, Any]:
    """What a collection records about the encoders that fill it."""
    meta = {"dense_encoder": asdict(dense), "sparse_encoder": asdict(sparse)}
    if visual is not None:
        meta["visual_encoder"] = asdict(visual)
    return meta


def check_encoders(
    corpus: Corpus,
    name: str,
    meta: Mapping[str, Any],
    dense: EncoderInfo,
    sparse: EncoderInfo,
    visual: EncoderInfo | None = None,
) -> None:
    """Raise EncoderMismatchError unless ``meta`` records exactly these encoders."""
    wanted = [("dense_encoder", dense), ("sparse_encoder", sparse)]
    if visual is not None:
        wanted.append(("visual_encoder", visual))
    for key, info in wanted:
        stored = meta.get(key)
        if stored != asdict(info):
            have = EncoderInfo(**stored).describe() if stored else "an unknown encoder"
            raise EncoderMismatchError(
                f"the {corpus.value} collection '{name}' was filled by {have}, but the "
                f"configured encoder is {info.describe()}; vectors of different "
                "encoders cannot be compared. Use the encoder it was built with, or "
                "ingest into a new data folder or collection prefix "
                "(MMRAG_DATA_DIR / MMRAG_COLLECTION_PREFIX)."
            )


def check_batch(
    items: Sequence[Item],
    dense: Vectors,
    sparse: Sequence[SparseVector],
    visual: Sequence[Vectors | None] | None,
) -> Corpus | None:
    """The one corpus of a batch to upsert (None if empty); lengths must agree."""
    if not (len(items) == len(dense) == len(sparse)) or (
        visual is not None and len(visual) != len(items)
    ):
        raise ValueError("items and their vectors must have the same length")
    if not items:
        return None
    corpus = items[0].corpus
    if any(i.corpus is not corpus for i in items):
        raise ValueError("upsert takes items of one corpus at a time")
    return corpus


def flat(vector: Vectors) -> list[float]:
    """A vector as the plain list both engines take."""
    return np.asarray(vector, dtype=np.float32).ravel().tolist()


def visual_part(visual: Sequence[Vectors | None] | None, i: int) -> dict[str, list[float]]:
    """The ``visual`` entry of point ``i``'s vectors; none for an item without a picture."""
    v = None if visual is None else visual[i]
    return {} if v is None else {VISUAL: flat(v)}


def payload_of(item: Item) -> dict[str, Any]:
    return {
        "source": item.source,
        "content_hash": item.content_hash,
        "title": item.title,
        "text": item.text,
        "page": item.page,
        "heading": list(item.heading),
        "char_start": item.char_start,
        "char_end": item.char_end,
        "parent_id": item.parent_id,
        "extra": dict(item.extra),
        "workspace": item.workspace,
    }


def item_from(corpus: Corpus, point_id: Any, payload: Mapping[str, Any]) -> Item:
    return Item(
        id=str(point_id),
        corpus=corpus,
        text=payload.get("text", ""),
        source=payload.get("source", ""),
        content_hash=payload.get("content_hash", ""),
        title=payload.get("title", ""),
        page=payload.get("page"),
        heading=tuple(payload.get("heading") or ()),
        char_start=payload.get("char_start"),
        char_end=payload.get("char_end"),
        parent_id=payload.get("parent_id"),
        extra=payload.get("extra") or {},
        # Items stored before workspaces existed carry none: they are the default's.
        workspace=payload.get("workspace") or DEFAULT_WORKSPACE,
    )


def hashes_by_source(
    points: Iterable[tuple[Any, Mapping[str, Any]]], *, whole_files: bool = False
) -> dict[str, set[str]]:
    """Group (id, payload) pairs into source -> the content hashes its items carry
    (with ``whole_files``, of the items without a ``parent_id`` only)."""
    out: dict[str, set[str]] = {}
    for _, payload in points:
        if not (whole_files and payload.get("parent_id")):
            out.setdefault(payload["source"], set()).add(payload["content_hash"])
    return out
