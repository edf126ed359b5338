"""One scale for every corpus: how unusual a match is *for that corpus*.

A cosine means different things in different corpora. Photos are found by their image
text (tag lists and OCR), abstracts by their prose, whole documents by their opening;
a large corpus has a near neighbour for anything, a small one does not. So the best
cosine a question reaches in a corpus is judged against what that corpus gives
questions that have nothing to do with it: the *null* distribution of its top-1 cosine
over :data:`BACKGROUND` questions (225 questions of every kind, from UniversalRAG's
router set, about nothing a user ingests; ``retrieval/data/background.txt``).

A match's **z** is ``(cosine - median) / scale`` with the null's median and its robust
spread (1.4826 x the median absolute deviation, so a few background questions that do
happen to match cannot widen it). z = 3 means "better than almost any unrelated question
gets here", in every corpus alike. This is the score-distribution view of the modality
gap (GR-CLIP centres each modality's scores before comparing them): the router weighs
corpora by it and the select step cuts corpora that trail the best one by it.

The null depends on what the corpus holds, so it is measured on the live index: one
dense top-1 search per background question and corpus (about 0.2 s per corpus on the
embedded store), again when a corpus' count has moved by more than
:data:`REFRESH_CHANGE` since. It is measured over the whole corpus, not per workspace:
it describes the encoder and the material, not who may read it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from retrieval.base import Corpus, Vectors

# A corpus' null is measured again when its item count has moved by this fraction.
REFRESH_CHANGE = 0.1
# The robust spread never goes below this (a corpus of one item gives every question
# nearly the same best cosine; a zero spread would make every z infinite).
MIN_SCALE = 0.02
MAD_TO_SIGMA = 1.4826


def background_questions() -> list[str]:
    """The shipped background questions, one per line."""
    text = resources.files("retrieval").joinpath("data/background.txt").read_text("utf-8")
    return [line for line in text.splitlines() if line.strip()]


@dataclass(frozen=True)
class Null:
    """A corpus' best cosine for unrelated questions: median, robust spread, and the
    item count it was measured at."""

    median: float
    scale: float
    count: int

    def z(self, cosine: float) -> float:
        return (cosine - self.median) / self.scale

    @classmethod
    def of(cls, best: Sequence[float], count: int) -> Null:
        values = np.asarray(best, dtype=np.float64)
        if values.size == 0:
            return cls(0.0, 1.0, count)
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        return cls(round(median, 4), round(max(MAD_TO_SIGMA * mad, MIN_SCALE), 4), count)


class Calibration:
    """The nulls of an index' corpora, measured on first use and kept while the corpora'
    counts stay within :data:`REFRESH_CHANGE` of what they were measured at.

    ``best(corpus, vectors)`` runs the top-1 searches: one dense search per vector,
    returning the best cosine (None for an empty corpus). Thread-safe: concurrent
    questions share one measurement.
    """

    def __init__(
        self,
        background: Callable[[], Vectors],
        best: Callable[[Corpus, Vectors], list[float]],
    ) -> None:
        self._background = background
        self._best = best
        self._vectors: Vectors | None = None
        self._nulls: dict[Corpus, Null] = {}
        self._lock = threading.Lock()

    def nulls(self, counts: Mapping[Corpus, int]) -> dict[Corpus, Null]:
        """The null of every corpus that has items (measured or refreshed as needed)."""
        with self._lock:
            for corpus, count in counts.items():
                if count <= 0:
                    continue
                known = self._nulls.get(corpus)
                if known is not None and abs(count - known.count) <= REFRESH_CHANGE * known.count:
                    continue
                if self._vectors is None:
                    self._vectors = self._background()
                self._nulls[corpus] = Null.of(self._best(corpus, self._vectors), count)
            return {c: n for c, n in self._nulls.items() if counts.get(c, 0) > 0}

    def forget(self) -> None:
        """Drop every measurement (after a reset or a large delete)."""
        with self._lock:
            self._nulls.clear()


def strengths(
    best: Mapping[Corpus, float | None], nulls: Mapping[Corpus, Null]
) -> dict[Corpus, float]:
    """Each corpus' z for its best cosine (corpora without a null or a hit are left out)."""
    return {
        c: round(nulls[c].z(cosine), 3)
        for c, cosine in best.items()
        if cosine is not None and c in nulls
    }
