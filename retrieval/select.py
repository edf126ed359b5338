"""Select: from every corpus' hits to the few sources the generator is given.

Steps, each for a reason:

1. **Floor.** A hit whose dense cosine is under ``min_relevance`` is not evidence at all
   (one encoder fills every corpus, so the cosine is one scale for this cut).
2. **Calibrate per corpus.** A hit's fused (RRF) score is a rank signal, but its range
   depends on the corpus: a passage found by two lists (dense, sparse) can reach 2/61,
   an image searched by three (dense, sparse, CLIP) 3/61, a corpus searched by one list
   1/61. Each hit's score is divided by its corpus' best: 1.0 for every corpus' top
   hit, and the rest by how far they trail it. The cosine (the natural candidate) was
   tried first as a robust z-score per corpus and measured worse: FinanceBench's
   evidence pages are tables whose cosine is low while BM25 ranks them high, and
   cutting or gating corpora on the cosine's z halved page Recall@5 (0.44 -> 0.24).
   Across corpora, though, the cosine is what can be put on one scale, against each
   corpus' own *null* (its best cosines for unrelated questions,
   :mod:`retrieval.calibration`): a searched corpus whose best match trails the
   strongest corpus' by more than ``corpus_gap`` robust standard deviations is dropped
   (loose passages no longer crowd out a photo that matches well), and corpora that tie
   on the within-corpus score are ordered by that strength.
3. **Adaptive k.** Keep the hits whose calibrated score is at least ``keep_ratio`` of
   their corpus' best ("Re-ranking the Context for Multimodal RAG", Mortaheb et al. 2025:
   the number of sources follows relevance, not a fixed k): a hit ranked well by only
   one list far down trails away; never more than ``top_k``.
4. **Order.** By calibrated score, so corpora interleave on one scale; whole documents
   last and never beside passages of the same document (a passage cites its page).
5. **Near-duplicates.** Two hits sharing most of their word trigrams are one source,
   unless they disagree on a fact (:mod:`generation.conflicts` must see both).
6. **Budget.** Sources are added while they fit ``budget_tokens`` (the model's window
   minus the answer and the prompt's fixed text), counted by the generator's tokenizer
   when it has one.

The most relevant source comes first: it is numbered [1] and sits closest to the rules
at the top of the prompt, where small models attend most (position bias, mRAG).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from retrieval.base import Corpus, Hit
from retrieval.calibration import Null, strengths

NEAR_DUPLICATE = 0.8  # word-trigram Jaccard above which two texts are one source


@dataclass(frozen=True)
class SelectConfig:
    top_k: int = 5
    min_relevance: float = 0.2
    keep_ratio: float = 0.5
    budget_tokens: int = 3000
    corpus_gap: float = 3.0


def relevance(hit: Hit) -> float:
    return hit.relevance if hit.relevance is not None else hit.score


def calibrate(hits: Mapping[Corpus, Sequence[Hit]]) -> dict[str, float]:
    """Each hit's fused score over its corpus' best (keyed by item id): 1.0 at the top."""
    out: dict[str, float] = {}
    for corpus_hits in hits.values():
        top = max((h.score for h in corpus_hits), default=0.0)
        for h in corpus_hits:
            out[h.item.id] = h.score / top if top > 0 else 0.0
    return out


def corpus_strengths(
    hits: Mapping[Corpus, Sequence[Hit]], nulls: Mapping[Corpus, Null]
) -> dict[Corpus, float]:
    """Each searched corpus' z: its best dense cosine against its null."""
    best = {c: max((relevance(h) for h in hs), default=None) for c, hs in hits.items()}
    return strengths(best, nulls)


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = text.lower().split()
    return {tuple(words[i : i + 3]) for i in range(max(len(words) - 2, 1))}


def _same_source(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> bool:
    return bool(a and b) and len(a & b) / len(a | b) >= NEAR_DUPLICATE


def select_hits(
    hits: Mapping[Corpus, Sequence[Hit]],
    config: SelectConfig,
    *,
    count_tokens: Callable[[str], int] | None = None,
    disagree: Callable[[Hit, Hit], bool] | None = None,
    nulls: Mapping[Corpus, Null] | None = None,
) -> list[Hit]:
    """The evidence list, most relevant first (see the module docstring for the steps).

    ``count_tokens`` defaults to a conservative 3.5 characters per token;
    ``disagree(a, b)`` keeps near-duplicates that conflict; ``nulls`` (each corpus'
    null, :mod:`retrieval.calibration`) put the corpora on one scale for step 2.
    """
    tokens = count_tokens or (lambda text: int(len(text) / 3.5) + 1)
    strength = corpus_strengths(hits, nulls) if nulls else {}
    if len(strength) > 1:
        strongest = max(strength.values())
        hits = {
            c: hs
            for c, hs in hits.items()
            if strength.get(c, strongest) >= strongest - config.corpus_gap
        }
    calibrated = calibrate(hits)
    pool = [h for hs in hits.values() for h in hs if relevance(h) >= config.min_relevance]
    if not pool:
        return []
    if config.keep_ratio > 0:
        pool = [h for h in pool if calibrated[h.item.id] >= config.keep_ratio]
    with_passages = {h.item.parent_id for h in pool if h.item.corpus is Corpus.PARAGRAPH}
    pool = [
        h for h in pool if not (h.item.corpus is Corpus.DOCUMENT and h.item.id in with_passages)
    ]
    pool.sort(
        key=lambda h: (
            h.item.corpus is not Corpus.DOCUMENT,
            calibrated[h.item.id],
            strength.get(h.item.corpus, 0.0),
            relevance(h),
        ),
        reverse=True,
    )
    chosen: list[Hit] = []
    shingles: list[set[tuple[str, ...]]] = []
    used = 0
    for hit in pool:
        grams = _trigrams(hit.item.text)
        twins = [c for c, g in zip(chosen, shingles, strict=True) if _same_source(grams, g)]
        if twins and not (disagree and any(disagree(t, hit) for t in twins)):
            continue
        cost = tokens(hit.item.text)
        if used + cost > config.budget_tokens and chosen:
            continue
        chosen.append(hit)
        shingles.append(grams)
        used += cost
        if len(chosen) >= config.top_k:
            break
    return chosen
