"""The shared data model: corpora, items, hits, and the encoder and store protocols.

These small frozen dataclasses are the seams between packages. Vendor types (Qdrant
points, torch tensors) never cross them: a store turns its results into :class:`Hit`,
an encoder returns plain numpy arrays and :class:`SparseVector`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


class Corpus(StrEnum):
    """One Qdrant collection per modality and granularity (UniversalRAG)."""

    PARAGRAPH = "paragraph"
    DOCUMENT = "document"
    IMAGE = "image"
    CLIP = "clip"
    VIDEO = "video"


TEXT_CORPORA: tuple[Corpus, ...] = (Corpus.PARAGRAPH, Corpus.DOCUMENT)
# Corpora whose items also carry a ``visual`` vector (search by image).
VISUAL_CORPORA: tuple[Corpus, ...] = (Corpus.IMAGE, Corpus.CLIP)

DEFAULT_WORKSPACE = "default"
"""The workspace of items stored before workspaces existed, and of a setup without keys."""

Scope = Sequence[str] | None
"""The workspaces a read is limited to; None: all of them."""

# A fixed namespace so that item ids are stable across runs and machines.
_ID_NAMESPACE = uuid.UUID("6f1c6f0e-4a57-4d8e-9a43-0c5a3e1f7b21")


def item_id(*parts: object, workspace: str = DEFAULT_WORKSPACE) -> str:
    """A deterministic UUID (Qdrant point ids must be UUIDs or ints) from its parts.

    The same file in two workspaces gets two sets of ids; ids of the default workspace
    are those of the versions before workspaces, so existing indexes keep theirs.
    """
    if workspace != DEFAULT_WORKSPACE:
        parts = (f"workspace={workspace}", *parts)
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(str(p) for p in parts)))


@dataclass(frozen=True)
class Item:
    """One searchable unit of one corpus.

    ``text`` is the item's content as shown to people and to the LLM (for a passage,
    exactly ``page_text[char_start:char_end]``). ``embed_text`` (when set) is what the
    encoders see instead, e.g. the passage prefixed with its title and heading path;
    ``sparse_text`` (when set) overrides it for the sparse encoder only, so a
    ``document`` item can be matched lexically on all of its text while its dense
    vector stays focused. Neither is stored. ``page`` is 1-based. ``char_start``
    and ``char_end`` index into the text of the page (PDF) or of the file (other types).
    ``extra`` holds corpus-specific payload (pages, passage ids, time ranges...).
    ``workspace`` is the tenant it belongs to: reads are always filtered by workspace.
    """

    id: str
    corpus: Corpus
    text: str
    source: str
    content_hash: str
    title: str = ""
    page: int | None = None
    heading: tuple[str, ...] = ()
    char_start: int | None = None
    char_end: int | None = None
    parent_id: str | None = None
    embed_text: str | None = None
    sparse_text: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    workspace: str = DEFAULT_WORKSPACE


@dataclass(frozen=True)
class Hit:
    """An item returned by a search.

    ``score`` is the score of the method that found it (for hybrid search, the fused
    RRF score: a rank signal, not comparable across collections). ``relevance`` is the
    cosine similarity of the query and the item's dense vector when known: one scale
    for every corpus filled by the same encoder.
    """

    item: Item
    score: float
    relevance: float | None = None

    @property
    def corpus(self) -> Corpus:
        return self.item.corpus


@dataclass(frozen=True)
class SparseVector:
    """Term weights keyed by hashed term id (the collection applies IDF)."""

    indices: tuple[int, ...]
    values: tuple[float, ...]


@dataclass(frozen=True)
class EncoderInfo:
    """What a collection records about the encoder that filled it."""

    name: str
    version: str
    dim: int

    def describe(self) -> str:
        return f"{self.name} (version {self.version}, {self.dim} dimensions)"


Vectors = npt.NDArray[np.float32]


@runtime_checkable
class TextEncoder(Protocol):
    """Dense text embeddings: L2-normalised rows, one per input text."""

    info: EncoderInfo

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors: ...


@runtime_checkable
class SparseEncoder(Protocol):
    """Sparse term-weight vectors (documents and queries are weighted differently)."""

    info: EncoderInfo

    def encode(self, texts: Sequence[str], *, query: bool = False) -> list[SparseVector]: ...


@runtime_checkable
class ImageEncoder(Protocol):
    """Visual feature vectors of images (PIL images in, L2-normalised rows out)."""

    info: EncoderInfo

    def encode_images(self, images: Sequence[Any]) -> Vectors: ...


SearchMode = Literal["hybrid", "dense", "sparse", "visual"]
"""How a corpus is searched: dense and sparse (and visual, when given) fused by RRF, or
one of those lists alone."""


class Store(Protocol):
    """Collections of items per corpus, searched dense, sparse, visual or hybrid.

    Two backends obey it: ``retrieval.store.QdrantStore`` (qdrant-client: a Qdrant
    server, or its pure-Python local mode) and ``retrieval.edge_store.EdgeStore`` (the
    Qdrant engine in-process). Both run the same :mod:`retrieval.query` plan; the
    ``store`` fixture (tests/conftest.py) runs every store-backed test against each, and
    tests/test_store_congruence.py checks that they return the same hits.
    """

    def exists(self, corpus: Corpus) -> bool: ...

    def ensure(
        self,
        corpus: Corpus,
        dense: EncoderInfo,
        sparse: EncoderInfo,
        visual: EncoderInfo | None = None,
    ) -> None: ...

    def count(self, corpus: Corpus, workspaces: Scope = None) -> int: ...

    def counts(self, workspaces: Scope = None) -> dict[Corpus, int]: ...

    def upsert(
        self,
        items: Sequence[Item],
        dense: Vectors,
        sparse: Sequence[SparseVector],
        visual: Sequence[Vectors | None] | None = None,
    ) -> None: ...

    def delete_stale(
        self, corpus: Corpus, source: str, keep_hash: str, workspace: str = DEFAULT_WORKSPACE
    ) -> None: ...

    def delete_source(self, corpus: Corpus, source: str, workspaces: Scope = None) -> None: ...

    def source_hashes(
        self, corpus: Corpus, workspaces: Scope = None, *, whole_files: bool = False
    ) -> dict[str, set[str]]: ...

    def items_of(
        self, corpus: Corpus, source: str | None = None, workspaces: Scope = None
    ) -> list[Item]: ...

    def search(
        self,
        corpus: Corpus,
        *,
        dense: Vectors | None = None,
        sparse: SparseVector | None = None,
        visual: Vectors | None = None,
        mode: SearchMode = "hybrid",
        limit: int = 10,
        prefetch_limit: int | None = None,
        sources: Sequence[str] | None = None,
        workspaces: Scope = None,
        rrf_k: int = 60,
        dense_weight: float = 1.0,
    ) -> list[Hit]: ...

    def close(self) -> None: ...
