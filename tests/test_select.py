"""Evidence selection across corpora (pure: hits are built by hand)."""

from __future__ import annotations

from app.pipeline import select_hits
from retrieval.base import Corpus, Hit, Item, item_id


def hit(
    name: str, corpus: Corpus, score: float, relevance: float, *, parent: str = "", text: str = ""
) -> Hit:
    item = Item(
        id=item_id(name),
        corpus=corpus,
        text=text or f"text of {name}",
        source=f"{name}.pdf",
        content_hash="h",
        parent_id=item_id(parent) if parent else None,
    )
    return Hit(item, score, relevance)


def names(hits: list[Hit]) -> list[str]:
    return [h.item.source.removesuffix(".pdf") for h in hits]


def test_passages_in_fused_order_then_documents() -> None:
    hits = {
        Corpus.PARAGRAPH: [
            hit("p1", Corpus.PARAGRAPH, 0.03, 0.4, parent="docA"),
            hit("p2", Corpus.PARAGRAPH, 0.02, 0.7, parent="docA"),
        ],
        Corpus.DOCUMENT: [
            hit("docB", Corpus.DOCUMENT, 0.05, 0.9),
        ],
    }
    chosen = select_hits(hits, top_k=5, min_relevance=0.2, context_chars=10_000)
    # Fused rank, not cosine, orders passages; the document fills the slot left.
    assert names(chosen) == ["p1", "p2", "docB"]


def test_document_with_found_passages_is_dropped() -> None:
    hits = {
        Corpus.PARAGRAPH: [hit("p1", Corpus.PARAGRAPH, 0.03, 0.5, parent="docA")],
        Corpus.DOCUMENT: [hit("docA", Corpus.DOCUMENT, 0.05, 0.6)],
    }
    assert names(select_hits(hits, top_k=5, min_relevance=0.2, context_chars=10_000)) == ["p1"]


def test_threshold_top_k_duplicates_and_budget() -> None:
    same = "the same passage text, ingested twice from two copies of a file"
    hits = {
        Corpus.PARAGRAPH: [
            hit("a", Corpus.PARAGRAPH, 0.09, 0.8, text=same),
            hit("b", Corpus.PARAGRAPH, 0.08, 0.8, text=same),
            hit("c", Corpus.PARAGRAPH, 0.07, 0.1),  # under the threshold
            hit("d", Corpus.PARAGRAPH, 0.06, 0.5, text="x" * 500),  # over the budget
            hit("e", Corpus.PARAGRAPH, 0.05, 0.5),
            hit("f", Corpus.PARAGRAPH, 0.04, 0.5),
        ]
    }
    chosen = select_hits(hits, top_k=2, min_relevance=0.2, context_chars=200)
    assert names(chosen) == ["a", "e"]
    assert select_hits(hits, top_k=5, min_relevance=0.95, context_chars=200) == []
