"""The store, the sparse encoder and hybrid search, on real embedded Qdrant and MiniLM."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from retrieval.base import Corpus, EncoderInfo, Hit, Item, Store, item_id
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import ConfigError, EncoderMismatchError, StoreError
from retrieval.index import Index
from retrieval.sparse import BM25Encoder
from retrieval.store import QdrantStore

# A small corpus in which one passage can only be found by its exact rare term
# (a part number no encoder has seen), and one only by its meaning (no word shared
# with the question beyond stop words).
PASSAGES = {
    "lexical": "Replace the gasket kit XQ-7731-B before the pump housing is reassembled.",
    "semantic": "Felines often sleep for most of the day and hunt at dusk.",
    "d1": "The quarterly revenue rose by four percent thanks to strong subscription sales.",
    "d2": "Rainfall in the northern valley was below the seasonal average this spring.",
    "d3": "The committee approved the new parking regulations for the downtown district.",
    "d4": "Our support team answers tickets within two business days.",
    "d5": "Solar panels on the warehouse roof now cover half of its electricity use.",
    "d6": "The recipe calls for two cups of flour, one egg and a pinch of salt.",
}


def _items(corpus: Corpus = Corpus.PARAGRAPH) -> list[Item]:
    return [
        Item(id=item_id(k), corpus=corpus, text=t, source=f"{k}.txt", content_hash="h")
        for k, t in PASSAGES.items()
    ]


def _top(index: Index, query: str, mode: str) -> str:
    hits = index.search(query, [Corpus.PARAGRAPH], limit=3, mode=mode)[Corpus.PARAGRAPH]  # type: ignore[arg-type]
    return hits[0].item.source


def test_hybrid_finds_passage_only_its_exact_terms_match(index: Index) -> None:
    index.add(_items())
    query = "which part is XQ-7731-B"
    assert _top(index, query, "sparse") == "lexical.txt"
    assert _top(index, query, "hybrid") == "lexical.txt"


def test_hybrid_finds_passage_only_its_meaning_matches(index: Index) -> None:
    index.add(_items())
    query = "how long do cats nap"
    # No content word is shared: sparse search cannot find it at all...
    sparse = index.search(query, [Corpus.PARAGRAPH], mode="sparse")[Corpus.PARAGRAPH]
    assert "semantic.txt" not in {h.item.source for h in sparse}
    # ...but dense, and so hybrid, ranks it first.
    assert _top(index, query, "dense") == "semantic.txt"
    assert _top(index, query, "hybrid") == "semantic.txt"


def test_hybrid_hits_carry_cosine_relevance(index: Index) -> None:
    index.add(_items())
    hits = index.search("how long do cats nap", [Corpus.PARAGRAPH])[Corpus.PARAGRAPH]
    relevances = [h.relevance for h in hits]
    assert all(r is not None and -1.0 <= r <= 1.0 for r in relevances)
    assert hits[0].relevance == max(r for r in relevances if r is not None)


def test_payload_round_trips(index: Index) -> None:
    item = Item(
        id=item_id("x"),
        corpus=Corpus.PARAGRAPH,
        text="Pumps move fluids.",
        source="/docs/manual.pdf",
        content_hash="abc",
        title="Manual",
        page=3,
        heading=("Maintenance", "Pumps"),
        char_start=10,
        char_end=28,
        parent_id=item_id("doc"),
        extra={"n": 4},
    )
    index.add([item])
    hit = index.search("fluid pumps", [Corpus.PARAGRAPH])[Corpus.PARAGRAPH][0]
    assert hit.item == item


def test_search_of_empty_or_missing_corpus_returns_nothing(index: Index) -> None:
    assert index.search("anything", [Corpus.PARAGRAPH, Corpus.DOCUMENT]) == {
        Corpus.PARAGRAPH: [],
        Corpus.DOCUMENT: [],
    }


OnDisk = Callable[[Path], Store]
ON_DISK: dict[str, OnDisk] = {
    "edge": lambda p: EdgeStore(p),
    "local": lambda p: QdrantStore(path=p),
}


@pytest.mark.parametrize("open_store", ON_DISK.values(), ids=ON_DISK.keys())
def test_encoder_mismatch_is_refused(
    tmp_path: Path, encoder: SentenceTransformerEncoder, open_store: OnDisk
) -> None:
    store = open_store(tmp_path / "q")
    Index(store, encoder).add(_items())
    other = EncoderInfo(name="other-model", version="1", dim=384)
    with pytest.raises(EncoderMismatchError, match="other-model") as e:
        store.ensure(Corpus.PARAGRAPH, other, BM25Encoder().info)
    assert "all-MiniLM-L6-v2" in str(e.value)
    # Different BM25 parameters are refused too: the stored weights depend on them.
    with pytest.raises(EncoderMismatchError, match="bm25"):
        store.ensure(Corpus.PARAGRAPH, encoder.info, BM25Encoder(k1=2.0).info)
    store.close()
    # The check survives a reopen: it is stored with the collection, not in memory.
    reopened = open_store(tmp_path / "q")
    assert reopened.count(Corpus.PARAGRAPH) == len(PASSAGES)
    with pytest.raises(EncoderMismatchError):
        reopened.ensure(Corpus.PARAGRAPH, other, BM25Encoder().info)
    reopened.close()


def test_store_needs_exactly_one_location(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="path, url"):
        QdrantStore(path=tmp_path, url="http://localhost:6333")
    with pytest.raises(ConfigError, match="none"):
        QdrantStore()


@pytest.mark.parametrize("open_store", ON_DISK.values(), ids=ON_DISK.keys())
def test_second_process_on_same_folder_is_a_clear_error(
    tmp_path: Path, encoder: SentenceTransformerEncoder, open_store: OnDisk
) -> None:
    first = open_store(tmp_path / "q")
    Index(first, encoder).add(_items())  # the Edge store opens (locks) existing shards
    with pytest.raises(StoreError, match="another mmrag process"):
        open_store(tmp_path / "q")
    first.close()


def test_unreachable_server_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match=r"http://127\.0\.0\.1:9"):
        QdrantStore(url="http://127.0.0.1:9", timeout=2)


def test_delete_stale_keeps_current_version(index: Index) -> None:
    old = Item(item_id("o"), Corpus.PARAGRAPH, "old text about turbines", "f.txt", "v1")
    new = Item(item_id("n"), Corpus.PARAGRAPH, "new text about turbines", "f.txt", "v2")
    other = Item(item_id("x"), Corpus.PARAGRAPH, "other file on turbines", "g.txt", "v1")
    index.add([old, new, other])
    index.store.delete_stale(Corpus.PARAGRAPH, "f.txt", keep_hash="v2")
    assert index.store.source_hashes(Corpus.PARAGRAPH) == {"f.txt": {"v2"}, "g.txt": {"v1"}}


def test_bm25_weights() -> None:
    enc = BM25Encoder(k1=1.2, b=0.75, avgdl=4)
    (doc,) = enc.encode(["Turbine turbines turbine blades"])
    (query,) = enc.encode(["turbine blades?"], query=True)
    weights = dict(zip(doc.indices, doc.values, strict=True))
    stem = {t: w for t, w in weights.items()}
    # "turbine"/"turbines" stem to one term with tf=3; "blades" has tf=1.
    assert sorted(round(w, 4) for w in stem.values()) == [
        round(1 * 2.2 / (1 + 1.2), 4),
        round(3 * 2.2 / (3 + 1.2), 4),
    ]
    assert set(query.indices) == set(doc.indices)
    assert query.values == (1.0, 1.0)
    # Stop words carry no weight.
    assert enc.encode(["the and of"])[0].indices == ()


def test_dense_vectors_are_normalised(encoder: SentenceTransformerEncoder) -> None:
    vectors = encoder.encode(["a", "a much longer sentence about aerodynamics"])
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_search_by_image_uses_the_visual_vectors(
    store: Store, encoder: SentenceTransformerEncoder
) -> None:
    visual_info = EncoderInfo("cnn-features", "1", 4)
    bm25 = BM25Encoder()
    store.ensure(Corpus.IMAGE, encoder.info, bm25.info, visual_info)
    # Three photos whose text says the same: only their pixels tell them apart.
    items = [
        Item(item_id(f"img{n}"), Corpus.IMAGE, "a photo of a dog", f"img{n}.jpg", "h")
        for n in range(3)
    ]
    visual = np.eye(3, 4, dtype=np.float32)
    store.upsert(
        items, encoder.encode([i.text for i in items]), bm25.encode([i.text for i in items]), visual
    )
    query = "dog photo"
    dense_q, sparse_q = encoder.encode([query])[0], bm25.encode([query], query=True)[0]

    def hits(**kw: object) -> list[Hit]:
        return store.search(Corpus.IMAGE, dense=dense_q, sparse=sparse_q, limit=3, **kw)  # type: ignore[arg-type]

    def fused_score(n: int, image: int) -> float:
        return next(h.score for h in hits(visual=visual[image]) if h.item.source == f"img{n}.jpg")

    for n in range(3):
        # Search by the image alone finds exactly the photo with those pixels...
        assert hits(visual=visual[n], mode="visual")[0].item.source == f"img{n}.jpg"
        # ...and in hybrid search the visual list adds to that photo's fused score.
        assert fused_score(n, image=n) > fused_score(n, image=(n + 1) % 3)
    # The visual encoder is recorded and checked like the others.
    with pytest.raises(EncoderMismatchError, match="cnn-features"):
        store.ensure(Corpus.IMAGE, encoder.info, bm25.info, EncoderInfo("clip", "1", 4))
    with pytest.raises(ValueError, match="same length"):
        store.upsert(items, encoder.encode(["x"] * 3), bm25.encode(["x"] * 3), visual[:2])


def test_whole_file_hashes_and_every_item_of_a_corpus(index: Index) -> None:
    """Items without a parent stand for whole files: ``whole_files`` counts only those
    (a PDF's figure is a part of the PDF, a photo file is whole)."""
    photo = Item(item_id("p"), Corpus.IMAGE, "a photo of a turbine", "photo.jpg", "v1")
    figure = Item(
        item_id("f"), Corpus.IMAGE, "a turbine figure", "report.pdf", "v2", parent_id=item_id("r")
    )
    index.add([photo, figure])
    store = index.store
    assert store.source_hashes(Corpus.IMAGE) == {"photo.jpg": {"v1"}, "report.pdf": {"v2"}}
    assert store.source_hashes(Corpus.IMAGE, whole_files=True) == {"photo.jpg": {"v1"}}
    assert {i.id for i in store.items_of(Corpus.IMAGE)} == {photo.id, figure.id}
    assert [i.id for i in store.items_of(Corpus.IMAGE, "photo.jpg")] == [photo.id]
