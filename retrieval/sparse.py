"""BM25-style sparse vectors whose IDF is applied by Qdrant.

A document's vector holds, per term, the BM25 term-frequency part
``tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))``; a query's vector holds 1 per
distinct term. The collection's sparse vector is created with ``Modifier.IDF``, so
Qdrant multiplies each query term by its inverse document frequency over the live
collection: the dot product is then the BM25 score, and IDF stays right as files are
added and removed, with no vocabulary or statistics to keep on our side.

Terms are hashed (murmur3, 32 bits) to indices so no vocabulary needs storing; with
tens of thousands of distinct terms, collisions are rare and harmless for ranking.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence

import mmh3

from retrieval.base import EncoderInfo, SparseVector

_TOKEN = re.compile(r"\w+", re.UNICODE)


def _stopwords() -> frozenset[str]:
    # bm25s ships the Lucene English list; sharing it keeps our sparse retrieval and the
    # bm25s baseline of the evaluation comparable.
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


class BM25Encoder:
    """Tokenise, drop stop words, stem (Snowball English), weight terms BM25-style.

    ``avgdl`` is the expected document length in tokens for the corpus this encoder
    fills: passages are short, whole documents long. It is part of the encoder's version
    string, so a collection filled with other parameters is refused.
    """

    def __init__(self, *, k1: float = 1.2, b: float = 0.75, avgdl: float = 120.0) -> None:
        import Stemmer

        self._stem = Stemmer.Stemmer("english").stemWord
        self._stop = _stopwords()
        self._cache: dict[str, int | None] = {}
        self.k1, self.b, self.avgdl = k1, b, avgdl
        self.info = EncoderInfo(
            name="bm25",
            version=f"k1={k1},b={b},avgdl={avgdl:g},snowball-en,murmur3",
            dim=0,
        )

    def terms(self, text: str) -> list[int]:
        """Hashed, stemmed, stop-word-free term ids of ``text`` in order."""
        return list(self._terms(text))

    def _terms(self, text: str) -> Iterator[int]:
        # One token at a time: a whole document's sparse vector counts millions of
        # tokens, and lists of them all took gigabytes.
        cache = self._cache
        for match in _TOKEN.finditer(text.lower()):
            token = match.group()
            term = cache.get(token, -1)
            if term == -1:
                # Cached per distinct surface form: stemming and hashing dominate the cost.
                term = None if token in self._stop else mmh3.hash(self._stem(token), signed=False)
                if len(cache) < 500_000:
                    cache[token] = term
            if term is not None:
                yield term

    def encode(self, texts: Sequence[str], *, query: bool = False) -> list[SparseVector]:
        vectors = []
        k1, b, avgdl = self.k1, self.b, self.avgdl
        for text in texts:
            counts = Counter(self._terms(text))
            if query:
                items = sorted(counts)
                vectors.append(SparseVector(tuple(items), tuple(1.0 for _ in items)))
                continue
            norm = k1 * (1.0 - b + b * sum(counts.values()) / avgdl)
            ordered = sorted(counts.items())
            vectors.append(
                SparseVector(
                    tuple(t for t, _ in ordered),
                    tuple(tf * (k1 + 1.0) / (tf + norm) for _, tf in ordered),
                )
            )
        return vectors
