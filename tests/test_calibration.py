"""Scores on one scale across corpora, and the router weighed with what the index answers."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from retrieval.base import Corpus, EncoderInfo, Hit, Item, Vectors, item_id
from retrieval.calibration import MIN_SCALE, Calibration, Null, background_questions
from retrieval.encoders import RecentQueries, SentenceTransformerEncoder
from retrieval.index import Index
from retrieval.select import SelectConfig, select_hits
from retrieval.store import QdrantStore
from router.base import LABELS, Route
from router.probe import MATCH_Z, NO_OVERRIDE_Z, weigh


def test_null_is_robust_to_a_few_matches() -> None:
    unrelated = [0.30, 0.31, 0.29, 0.30, 0.32, 0.28, 0.31, 0.30, 0.29]
    null = Null.of([*unrelated, 0.95], count=10)  # one background question matches
    assert null.median == pytest.approx(0.30, abs=0.005)
    assert null.scale < 0.05  # the outlier does not widen the spread
    assert null.z(0.30) == pytest.approx(0.0, abs=0.3)
    assert null.z(0.60) > 5


def test_null_spread_has_a_floor() -> None:
    null = Null.of([0.5] * 20, count=1)
    assert null.scale == MIN_SCALE
    assert np.isfinite(null.z(0.9))


def test_background_questions_ship_with_the_package() -> None:
    questions = background_questions()
    assert len(questions) >= 200
    assert all(q.strip() == q and q for q in questions)


def test_calibration_measures_once_and_again_when_a_corpus_grows() -> None:
    calls: list[Corpus] = []

    def best(corpus: Corpus, vectors: Vectors) -> list[float]:
        calls.append(corpus)
        return [0.2, 0.3, 0.25]

    cal = Calibration(lambda: np.zeros((3, 4), dtype=np.float32), best)
    nulls = cal.nulls({Corpus.PARAGRAPH: 100, Corpus.IMAGE: 0})
    assert set(nulls) == {Corpus.PARAGRAPH}  # an empty corpus has no null
    cal.nulls({Corpus.PARAGRAPH: 105})  # within 10%: the measurement stands
    assert calls == [Corpus.PARAGRAPH]
    cal.nulls({Corpus.PARAGRAPH: 150})
    assert calls == [Corpus.PARAGRAPH, Corpus.PARAGRAPH]
    cal.forget()
    cal.nulls({Corpus.PARAGRAPH: 150})
    assert len(calls) == 3


class CountingEncoder:
    """A TextEncoder that counts the texts it encodes (each text -> a fixed vector)."""

    info = EncoderInfo("counting", "1", 4)

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        self.seen.extend(texts)
        return np.array([[len(t), 1, 0, 0] for t in texts], dtype=np.float32)


def test_recent_queries_encode_a_question_once() -> None:
    inner = CountingEncoder()
    cached = RecentQueries(inner, size=2)
    first = cached.encode(["why?"], query=True)
    first[0, 0] = 99  # a caller changing its copy must not change the memory
    again = cached.encode(["why?"], query=True)
    assert inner.seen == ["why?"] and again[0, 0] == 4
    cached.encode(["a", "b"], query=True)  # batches always reach the model
    cached.encode(["why?"], query=False)  # so do document-side encodings
    assert inner.seen == ["why?", "a", "b", "why?"]
    cached.encode(["one"], query=True)
    cached.encode(["two"], query=True)
    cached.encode(["why?"], query=True)  # pushed out by two newer questions
    assert inner.seen[-1] == "why?" and len(inner.seen) == 7


def route(*corpora: Corpus, **scores: float) -> Route:
    return Route(corpora, {label: scores.get(label, 0.0) for label in LABELS}, "test")


def test_weigh_keeps_the_route_when_nothing_stands_out() -> None:
    r = route(Corpus.VIDEO, video=0.7, paragraph=0.2)
    assert weigh(r, {Corpus.PARAGRAPH: MATCH_Z - 0.5, Corpus.VIDEO: 0.1}) is r


def test_weigh_moves_a_route_to_the_corpus_that_answers() -> None:
    r = route(Corpus.VIDEO, video=0.7, paragraph=0.2)
    moved = weigh(r, {Corpus.PARAGRAPH: 6.0, Corpus.VIDEO: 0.5})
    assert moved.corpora == (Corpus.PARAGRAPH,)
    assert "paragraph z 6.0" in moved.reason


def test_weigh_keeps_a_second_corpus_only_when_close() -> None:
    r = route(Corpus.IMAGE, image=0.6, clip=0.3)
    both = weigh(r, {Corpus.IMAGE: 5.0, Corpus.CLIP: 4.8})
    assert set(both.corpora) == {Corpus.IMAGE, Corpus.CLIP}
    one = weigh(r, {Corpus.IMAGE: 8.0, Corpus.CLIP: 3.5})
    assert one.corpora == (Corpus.IMAGE,)


def test_weigh_searches_one_granularity_of_a_pair() -> None:
    r = route(Corpus.PARAGRAPH, paragraph=0.5, document=0.4)
    out = weigh(r, {Corpus.PARAGRAPH: 5.0, Corpus.DOCUMENT: 5.0})
    assert out.corpora == (Corpus.PARAGRAPH,)


def test_weigh_overturns_no_only_on_a_strong_match() -> None:
    r = route(no=0.9)
    assert weigh(r, {Corpus.PARAGRAPH: NO_OVERRIDE_Z - 0.5}) is r
    assert weigh(r, {Corpus.PARAGRAPH: NO_OVERRIDE_Z + 0.5}).corpora == (Corpus.PARAGRAPH,)


def hit(corpus: Corpus, n: int, score: float, cosine: float) -> Hit:
    item = Item(
        id=f"{corpus.value}-{n}",
        corpus=corpus,
        source=f"/s/{corpus.value}{n}",
        text=f"{corpus.value} text number {n} " * 3,
        content_hash="0" * 64,
    )
    return Hit(item, score, cosine)


def test_select_drops_a_corpus_that_trails_on_the_common_scale() -> None:
    hits = {
        Corpus.IMAGE: [hit(Corpus.IMAGE, i, 0.03 - i * 0.001, 0.55 - i * 0.01) for i in range(3)],
        Corpus.PARAGRAPH: [hit(Corpus.PARAGRAPH, i, 0.03 - i * 0.001, 0.5) for i in range(3)],
    }
    nulls = {Corpus.IMAGE: Null(0.2, 0.05, 10), Corpus.PARAGRAPH: Null(0.45, 0.05, 10)}
    config = SelectConfig(top_k=5, keep_ratio=0.0)
    chosen = select_hits(hits, config, nulls=nulls)
    # image: z 7 for its best; paragraph: z 1, more than 3 behind -> only the photos.
    assert {h.item.corpus for h in chosen} == {Corpus.IMAGE}
    # Without the nulls every corpus' best counts the same and passages join in.
    uncalibrated = select_hits(hits, config)
    assert Corpus.PARAGRAPH in {h.item.corpus for h in uncalibrated}


@pytest.fixture(scope="module")
def probed_index(encoder: SentenceTransformerEncoder) -> Index:
    index = Index(QdrantStore(memory=True), encoder)
    texts = {
        Corpus.PARAGRAPH: [
            "The Zorblax reactor was commissioned in 1987 in Tromso by a cooperative.",
            "Boundary layer transition on a heated flat plate at supersonic speed.",
            "Mix flour, water, salt and yeast; bake the bread at 230 degrees.",
        ],
        Corpus.VIDEO: ["A cat chases a red laser dot across a kitchen floor."],
    }
    for corpus, rows in texts.items():
        index.add(
            [
                Item(
                    id=item_id(corpus.value, i),
                    corpus=corpus,
                    source=f"/d/{corpus.value}{i}.txt",
                    text=t,
                    content_hash="0" * 64,
                )
                for i, t in enumerate(rows)
            ]
        )
    return index


def test_probe_finds_the_corpus_that_answers(probed_index: Index) -> None:
    question = "When was the Zorblax reactor commissioned in Tromso?"
    best = probed_index.probe(question, [Corpus.PARAGRAPH, Corpus.VIDEO, Corpus.IMAGE])
    assert best[Corpus.IMAGE] is None  # nothing stored there
    nulls = probed_index.nulls()
    assert set(nulls) == {Corpus.PARAGRAPH, Corpus.VIDEO}
    assert best[Corpus.PARAGRAPH] is not None and best[Corpus.VIDEO] is not None
    z_text = nulls[Corpus.PARAGRAPH].z(best[Corpus.PARAGRAPH])
    z_video = nulls[Corpus.VIDEO].z(best[Corpus.VIDEO])
    assert z_text > MATCH_Z > z_video
    # A router that took it for a how-to video is overruled by the index.
    guess = route(Corpus.VIDEO, video=0.8, paragraph=0.1)
    moved = weigh(guess, {Corpus.PARAGRAPH: z_text, Corpus.VIDEO: z_video})
    assert moved.corpora == (Corpus.PARAGRAPH,)
