"""The index: the store plus the encoders that fill and query it.

Ingest writes through :meth:`Index.add`; the pipeline's retrieve step reads through
:meth:`Index.search`. Keeping both here means a query is always encoded the same way
its corpus was, and the encoder check happens in one place.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from retrieval.base import (
    VISUAL_CORPORA,
    Corpus,
    Hit,
    ImageEncoder,
    Item,
    Scope,
    SearchMode,
    SparseEncoder,
    Store,
    TextEncoder,
    Vectors,
)
from retrieval.calibration import Calibration, Null, background_questions
from retrieval.encoders import RecentQueries
from retrieval.sparse import BM25Encoder

# Expected lengths (in terms, after stop words) per corpus for BM25 length
# normalisation: passages are ~100-300 words, whole documents thousands.
DEFAULT_AVGDL: Mapping[Corpus, float] = {
    Corpus.PARAGRAPH: 120.0,
    Corpus.DOCUMENT: 5000.0,
    Corpus.IMAGE: 30.0,
    Corpus.CLIP: 80.0,
    Corpus.VIDEO: 1000.0,
}


# How long the corpora' counts behind the nulls are trusted (see Index.nulls).
COUNTS_EVERY_S = 2.0

# Items nearest to a query image by pixels that are always kept as evidence.
NEAREST_BY_PIXELS = 2


def default_sparse_encoders() -> dict[Corpus, SparseEncoder]:
    return {c: BM25Encoder(avgdl=a) for c, a in DEFAULT_AVGDL.items()}


class Index:
    """Encode-and-store for ingestion, encode-and-search for questions."""

    def __init__(
        self,
        store: Store,
        dense: TextEncoder,
        sparse: Mapping[Corpus, SparseEncoder] | None = None,
        *,
        visual: ImageEncoder | None = None,
        rrf_k: int = 60,
        dense_weight: float = 1.0,
    ) -> None:
        self.store = store
        # Router, probe and search embed the same question: encode it once.
        self.dense: TextEncoder = (
            dense if isinstance(dense, RecentQueries) else RecentQueries(dense)
        )
        self.visual = visual
        self.sparse = dict(sparse or default_sparse_encoders())
        self.rrf_k = rrf_k
        self.dense_weight = dense_weight
        self._counted: tuple[float, dict[Corpus, int]] | None = None
        self.calibration = Calibration(
            lambda: self.dense.encode(background_questions(), query=True), self._best_of
        )

    def ensure(self, corpus: Corpus) -> None:
        self.store.ensure(
            corpus, self.dense.info, self.sparse[corpus].info, self._visual_info(corpus)
        )

    def _visual_info(self, corpus: Corpus) -> Any:
        return self.visual.info if self.visual is not None and corpus in VISUAL_CORPORA else None

    def check(self) -> None:
        """Fail early (EncoderMismatchError) if any existing collection has other encoders."""
        for corpus in Corpus:
            if self.store.exists(corpus):
                self.ensure(corpus)

    def embed(self, items: Sequence[Item]) -> Vectors:
        return self.dense.encode([i.embed_text or i.text for i in items])

    def add(
        self,
        items: Sequence[Item],
        dense: Vectors | None = None,
        visual: Sequence[Vectors | None] | None = None,
    ) -> Vectors:
        """Store items of one corpus; computes the dense vectors unless given. Returns them.

        ``visual`` vectors (image and clip corpora) are stored when the index has a
        visual encoder; they come from the ingest stage, which has the pixels.
        """
        if not items:
            return np.zeros((0, self.dense.info.dim), dtype=np.float32)
        corpus = items[0].corpus
        self.ensure(corpus)
        if dense is None:
            dense = self.embed(items)
        sparse = self.sparse[corpus].encode(
            [i.sparse_text or i.embed_text or i.text for i in items]
        )
        if self._visual_info(corpus) is None:
            visual = None
        elif visual is None:
            raise ValueError(f"{corpus.value} items need visual vectors")
        self.store.upsert(items, dense, sparse, visual)
        return dense

    def search(
        self,
        query: str,
        corpora: Sequence[Corpus],
        *,
        limit: int = 10,
        mode: SearchMode = "hybrid",
        image: Any = None,
        workspaces: Scope = None,
    ) -> dict[Corpus, list[Hit]]:
        """Search each corpus (in ``workspaces``; None: all) with one encoding of the query.

        With ``image`` (a PIL image) and a visual encoder, the image and clip corpora are
        also searched by the image's visual features (a third list in the fusion). A
        joint text-image visual encoder (CLIP-family) without an image puts the question
        itself into that space, so text reaches pictures by their pixels as well as by
        their tags and OCR. ``mode="visual"`` searches that list alone.
        """
        targets = [c for c in corpora if self.store.exists(c)]
        if not targets:
            return {c: [] for c in corpora}
        for c in targets:
            self.ensure(c)
        dense_q = self.dense.encode([query], query=True)[0] if mode != "sparse" else None
        # Query-side sparse weights do not depend on the corpus' length normalisation.
        sparse_q = self.sparse[targets[0]].encode([query], query=True)[0]
        visual_q = None
        if mode in ("hybrid", "visual") and any(c in VISUAL_CORPORA for c in targets):
            if image is not None and self.visual is not None:
                visual_q = self.visual.encode_images([image])[0]
            elif self.joint is not None:
                visual_q = self.joint.encode([query], query=True)[0]
            if mode == "visual" and visual_q is None:
                raise ValueError(
                    "visual search needs an image, or a joint text-image model (MMRAG_CLIP_MODEL)"
                )
        out: dict[Corpus, list[Hit]] = {c: [] for c in corpora}
        for c in targets:
            visual = visual_q if c in VISUAL_CORPORA else None
            if mode == "visual" and visual is None:
                continue  # a text corpus has no pictures to search by
            hits = self.store.search(
                c,
                dense=dense_q,
                sparse=sparse_q,
                visual=visual,
                mode=mode,
                limit=limit,
                workspaces=workspaces,
                rrf_k=self.rrf_k,
                dense_weight=self.dense_weight,
            )
            if visual is not None and image is not None:
                hits = self._nearest_by_pixels(c, visual, hits, workspaces)
            out[c] = hits
        return out

    @property
    def joint(self) -> TextEncoder | None:
        """The visual encoder's text tower when it has one (a CLIP-family model)."""
        return self.visual if isinstance(self.visual, TextEncoder) else None

    def _nearest_by_pixels(
        self, corpus: Corpus, visual: Vectors, hits: list[Hit], workspaces: Scope = None
    ) -> list[Hit]:
        """Put the items nearest to the query image by pixels first.

        In the fused list the image's own list counts as one of three, and RRF with
        k = 60 flattens its first place: a photo found only by its pixels loses to
        items whose words match the question. Searching by a photo means its nearest
        images are evidence whatever the words say, so the ``NEAREST_BY_PIXELS``
        nearest come first, scored (and judged relevant) by their visual cosine.
        """
        near = self.store.search(
            corpus, visual=visual, mode="visual", limit=NEAREST_BY_PIXELS, workspaces=workspaces
        )
        near = [Hit(h.item, h.score, h.score) for h in near]
        ids = {h.item.id for h in near}
        return near + [h for h in hits if h.item.id not in ids]

    def counts(self, workspaces: Scope = None) -> dict[Corpus, int]:
        return self.store.counts(workspaces)

    def _best_of(self, corpus: Corpus, queries: Vectors) -> list[float]:
        """The best dense cosine in ``corpus`` of each query vector (the null's sample)."""
        best = []
        for vector in queries:
            hits = self.store.search(corpus, dense=vector, mode="dense", limit=1)
            if hits:
                best.append(float(hits[0].score))
        return best

    def forget_queries(self) -> None:
        """Forget the recent query encodings, so the next search pays its own (timing)."""
        if isinstance(self.dense, RecentQueries):
            self.dense.forget()

    def nulls(self) -> dict[Corpus, Null]:
        """Every non-empty corpus' null (see :mod:`retrieval.calibration`).

        The corpora' counts, which decide whether a null is measured again, are read at
        most every :data:`COUNTS_EVERY_S` seconds: a question asks for the nulls twice
        (probe and select) and a count per corpus would cost more than the probes.
        """
        now = time.monotonic()
        if self._counted is None or now - self._counted[0] > COUNTS_EVERY_S:
            self._counted = (now, self.counts())
        return self.calibration.nulls(self._counted[1])

    def probe(
        self, query: str, corpora: Sequence[Corpus], *, workspaces: Scope = None
    ) -> dict[Corpus, float | None]:
        """The best dense cosine of ``query`` in each corpus (None: nothing there).

        One encoding (shared with the search that follows) and a top-1 search per
        corpus: about a millisecond each on the embedded store.
        """
        vector = self.dense.encode([query], query=True)[0]
        out: dict[Corpus, float | None] = {}
        for c in corpora:
            hits = (
                self.store.search(c, dense=vector, mode="dense", limit=1, workspaces=workspaces)
                if self.store.exists(c)
                else []
            )
            out[c] = float(hits[0].score) if hits else None
        return out
