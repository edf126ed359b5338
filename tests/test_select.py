"""Evidence selection across corpora (pure: hits are built by hand)."""

from __future__ import annotations

from generation.conflicts import disagree
from retrieval.base import Corpus, Hit, Item, item_id
from retrieval.select import SelectConfig, calibrate, select_hits

WIDE = SelectConfig(top_k=5, min_relevance=0.2, keep_ratio=0.0, budget_tokens=10_000)


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
    # Fused rank, not cosine, orders passages; the document fills the slot left.
    assert names(select_hits(hits, WIDE)) == ["p1", "p2", "docB"]


def test_document_with_found_passages_is_dropped() -> None:
    hits = {
        Corpus.PARAGRAPH: [hit("p1", Corpus.PARAGRAPH, 0.03, 0.5, parent="docA")],
        Corpus.DOCUMENT: [hit("docA", Corpus.DOCUMENT, 0.05, 0.6)],
    }
    assert names(select_hits(hits, WIDE)) == ["p1"]


def test_threshold_top_k_duplicates_and_budget() -> None:
    same = "the same passage text, ingested twice from two copies of a file"
    hits = {
        Corpus.PARAGRAPH: [
            hit("a", Corpus.PARAGRAPH, 0.09, 0.8, text=same),
            hit("b", Corpus.PARAGRAPH, 0.08, 0.8, text=same + " again"),  # a near-copy
            hit("c", Corpus.PARAGRAPH, 0.07, 0.1),  # under the threshold
            hit("d", Corpus.PARAGRAPH, 0.06, 0.5, text="x " * 300),  # over the budget
            hit("e", Corpus.PARAGRAPH, 0.05, 0.5),
            hit("f", Corpus.PARAGRAPH, 0.04, 0.5),
        ]
    }
    words = SelectConfig(top_k=2, min_relevance=0.2, keep_ratio=0.0, budget_tokens=60)
    chosen = select_hits(hits, words, count_tokens=lambda text: len(text.split()))
    assert names(chosen) == ["a", "e"]
    strict = SelectConfig(top_k=5, min_relevance=0.95, keep_ratio=0.0, budget_tokens=60)
    assert select_hits(hits, strict) == []


def test_calibration_puts_each_corpus_on_one_scale() -> None:
    # Images searched by three lists reach higher fused scores than passages by two.
    passages = [hit("p", Corpus.PARAGRAPH, 2 / 61, 0.6), hit("p2", Corpus.PARAGRAPH, 1 / 61, 0.5)]
    images = [hit("i", Corpus.IMAGE, 3 / 61, 0.4), hit("i2", Corpus.IMAGE, 1 / 61, 0.3)]
    scale = calibrate({Corpus.PARAGRAPH: passages, Corpus.IMAGE: images})
    assert scale[passages[0].item.id] == scale[images[0].item.id] == 1.0
    assert scale[passages[1].item.id] == 0.5 and abs(scale[images[1].item.id] - 1 / 3) < 1e-9
    # On one scale, the second passage now outranks the second image.
    chosen = select_hits({Corpus.PARAGRAPH: passages, Corpus.IMAGE: images}, WIDE)
    assert names(chosen)[2:] == ["p2", "i2"]


def test_adaptive_k_keeps_what_stays_close_to_the_best_not_a_fixed_number() -> None:
    # p1 and p2 are near the top of both lists; the rest were found by one list, far down.
    hits = {
        Corpus.PARAGRAPH: [
            hit("p1", Corpus.PARAGRAPH, 2 / 61, 0.70),
            hit("p2", Corpus.PARAGRAPH, 1 / 62 + 1 / 63, 0.66),
            *[hit(f"t{i}", Corpus.PARAGRAPH, 1 / (70 + i), 0.4) for i in range(8)],
        ]
    }
    adaptive = SelectConfig(top_k=5, min_relevance=0.2, keep_ratio=0.5, budget_tokens=10_000)
    assert names(select_hits(hits, adaptive)) == ["p1", "p2"]  # not 5: the rest trail away
    assert len(select_hits(hits, WIDE)) == 5  # keep_ratio 0: a fixed k


def test_a_strong_document_hit_does_not_push_out_the_passages() -> None:
    # Calibration and the cut are per corpus: a whole document at the top of its own
    # list says nothing about how good the passages are.
    documents = [hit("doc", Corpus.DOCUMENT, 2 / 61, 0.80)]
    passages = [
        hit("p1", Corpus.PARAGRAPH, 1 / 61 + 1 / 64, 0.55, parent="other"),
        hit("p2", Corpus.PARAGRAPH, 1 / 62 + 1 / 63, 0.52, parent="other"),
    ]
    adaptive = SelectConfig(top_k=5, min_relevance=0.2, keep_ratio=0.5, budget_tokens=10_000)
    chosen = select_hits({Corpus.DOCUMENT: documents, Corpus.PARAGRAPH: passages}, adaptive)
    assert names(chosen) == ["p1", "p2", "doc"]


def test_near_duplicates_that_disagree_are_both_kept() -> None:
    tampa = (
        "Super Bowl LV was the 55th Super Bowl. The game was played on February 7, 2021, "
        "at Raymond James Stadium in Tampa, Florida, the home stadium of the Buccaneers, "
        "marking the first time a team played a Super Bowl in its home stadium, before a "
        "crowd of 24,835 because of the pandemic."
    )
    glendale = tampa.replace("Tampa, Florida", "Glendale, Arizona")
    hits = {
        Corpus.PARAGRAPH: [
            hit("true", Corpus.PARAGRAPH, 0.05, 0.7, text=tampa),
            hit("copy", Corpus.PARAGRAPH, 0.04, 0.7, text=tampa + " "),
            hit("fake", Corpus.PARAGRAPH, 0.03, 0.7, text=glendale),
        ]
    }
    # Without a conflict check a changed copy is just a near-duplicate...
    assert names(select_hits(hits, WIDE)) == ["true"]
    # ...with it, the disagreement survives for the prompt to name; the exact copy does not.
    assert names(select_hits(hits, WIDE, disagree=disagree)) == ["true", "fake"]
