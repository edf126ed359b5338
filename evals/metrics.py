"""Every measure the evaluations report, defined once.

Ranking measures take one query's ranking (best first) and its judgements as gains
(document -> gain; a gain above 0 is relevant) and follow trec_eval's definitions, so
the figures compare with published ones; ``tests/test_evaluation.py`` checks them
against trec_eval itself (pytrec_eval) on real Cranfield runs:

- :func:`ndcg_at` (trec_eval ``ndcg_cut``): DCG of the first k with the gains as given
  and a log2(rank + 1) discount, over the DCG of the ideal ordering of every judged
  document;
- :func:`recall_at` (``recall``): relevant documents among the first k over all of them;
- :func:`reciprocal_rank` (``recip_rank``): 1 / the rank of the first relevant document;
- :func:`success_at` (``success``): 1 if any relevant document is among the first k.

:func:`percentiles` are nearest-rank (numpy's ``inverted_cdf``: the smallest value with
at least p% of the values at or below it), so a latency figure is always one that was
measured; every published p50/p95 uses them. :func:`classification` gives accuracy,
per-label and macro F1 and the confusion matrix of single-label predictions (routes).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

Doc = TypeVar("Doc", bound=Hashable)


def ndcg_at(ranked: Sequence[Doc], gains: Mapping[Doc, float], k: int) -> float:
    """nDCG@k; 0 when nothing is relevant."""
    dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[Doc], gains: Mapping[Doc, float], k: int) -> float:
    """Recall@k; 0 when nothing is relevant."""
    relevant = {d for d, g in gains.items() if g > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def reciprocal_rank(ranked: Sequence[Doc], gains: Mapping[Doc, float]) -> float:
    """1 / rank of the first relevant document, 0 if the ranking has none (cut it to
    measure MRR@k)."""
    for i, d in enumerate(ranked):
        if gains.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def success_at(ranked: Sequence[Doc], gains: Mapping[Doc, float], k: int) -> float:
    """1.0 if a relevant document is among the first k, else 0.0 (hit@k; Recall@k of a
    query with one relevant document)."""
    return 1.0 if any(gains.get(d, 0) > 0 for d in ranked[:k]) else 0.0


def percentiles(values: Iterable[float], points: Sequence[float] = (50, 95)) -> dict[str, float]:
    """Nearest-rank percentiles as ``{"p50": ..., "p95": ...}``, rounded to 3 decimals
    (milliseconds to the microsecond); all 0.0 when there are no values."""
    data = np.fromiter(values, dtype=np.float64)
    if not data.size:
        return {f"p{p:g}": 0.0 for p in points}
    found = np.percentile(data, list(points), method="inverted_cdf")
    return {f"p{p:g}": round(float(v), 3) for p, v in zip(points, found, strict=True)}


@dataclass(frozen=True)
class Classification:
    """Single-label quality; ``confusion[i][j]``: true ``labels[i]`` predicted ``labels[j]``.

    ``f1`` and so ``macro_f1`` cover only the labels that occur among the true ones, so
    a label missing from a small sample neither helps nor hurts.
    """

    n: int
    accuracy: float
    macro_f1: float
    f1: Mapping[str, float]
    confusion: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...]


def classification(
    true: Sequence[str], predicted: Sequence[str], labels: Sequence[str]
) -> Classification:
    """Accuracy, per-label and macro F1, confusion (figures rounded to 4 decimals)."""
    if len(true) != len(predicted):
        raise ValueError("true and predicted labels differ in length")
    index = {label: i for i, label in enumerate(labels)}
    confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(true, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    f1: dict[str, float] = {}
    for i, label in enumerate(labels):
        tp, support, guessed = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        if support:
            f1[label] = round(float(2 * tp / (support + guessed)), 4)
    n = len(true)
    return Classification(
        n=n,
        accuracy=round(float(np.trace(confusion)) / n, 4) if n else 0.0,
        macro_f1=round(sum(f1.values()) / len(f1), 4) if f1 else 0.0,
        f1=f1,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
        labels=tuple(labels),
    )
