"""The trained router: shipped weights, the decision rule, real routes, a small CV run.

The decision-rule tests give the real router fixed probabilities through real
:class:`RouterWeights` whose every weight is zero but the meta model's intercept (the
log of the wanted probabilities), so the rule is tested apart from what the model
learned; the rest runs the shipped weights on the packaged MiniLM.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from evals.router import (
    BASELINE,
    TRAINED,
    LabelledQuestion,
    cross_validate,
    load_labelled,
    metrics,
    score,
    stratified_sample,
)
from retrieval.base import TEXT_CORPORA, Corpus, EncoderInfo, Vectors
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.errors import MmragError, ModelError
from router.base import LABELS, NO_RETRIEVAL, Router
from router.trained import (
    SHAPE_FEATURES,
    Linear,
    RouterWeights,
    TrainedRouter,
    Vocabulary,
)

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "eval" / "router" / "train.jsonl"
EVERYTHING = dict.fromkeys(Corpus, 10)


def fixed(probabilities: Mapping[str, float], thresholds: float = 0.3) -> RouterWeights:
    """Weights that give every question the same probabilities."""
    p = np.array([probabilities.get(label, 0.0) for label in LABELS]) + 1e-9
    zeros = np.zeros(len(LABELS))
    return RouterWeights(
        encoder_name="all-MiniLM-L6-v2",
        words=Vocabulary({}, np.zeros(0)),
        chars=Vocabulary({}, np.zeros(0)),
        lexical=Linear(np.zeros((0, len(LABELS))), zeros),
        semantic=Linear(np.zeros((384, len(LABELS))), zeros),
        shape_mean=np.zeros(len(SHAPE_FEATURES)),
        shape_scale=np.ones(len(SHAPE_FEATURES)),
        shape=Linear(np.zeros((len(SHAPE_FEATURES), len(LABELS))), zeros),
        meta=Linear(np.zeros((3 * len(LABELS), len(LABELS))), np.log(p / p.sum())),
        thresholds={**dict.fromkeys(LABELS, thresholds), NO_RETRIEVAL: 0.5},
    )


@pytest.fixture(scope="module")
def router(encoder: SentenceTransformerEncoder) -> TrainedRouter:
    return TrainedRouter(encoder)


def route_with(
    encoder: SentenceTransformerEncoder,
    probabilities: Mapping[str, float],
    available: Mapping[Corpus, int] = EVERYTHING,
) -> tuple[Corpus, ...]:
    return TrainedRouter(encoder, fixed(probabilities)).route("any", available).corpora


# --- the shipped weights ------------------------------------------------------------


def test_weights_ship_in_the_package_small_and_without_pickle() -> None:
    folder = resources.files("router") / "model"
    files = {
        p.name: p for p in (Path(str(folder)) / name for name in ("router.npz", "router.json"))
    }
    assert all(p.is_file() for p in files.values())
    assert sum(p.stat().st_size for p in files.values()) < 5_000_000
    with np.load(files["router.npz"], allow_pickle=False) as npz:  # raises on object arrays
        assert npz["meta_coef"].shape == (3 * len(LABELS), len(LABELS))
    meta = json.loads(files["router.json"].read_text(encoding="utf-8"))
    assert meta["labels"] == list(LABELS)
    assert meta["info"]["cv"]["methods"]["trained"]["accuracy"] >= 0.92


def test_router_loads_the_packaged_weights(router: TrainedRouter) -> None:
    assert router.name == "trained"
    assert set(router.thresholds) == set(LABELS)
    assert all(0.0 < t <= 1.0 for t in router.thresholds.values())
    as_router: Router = router  # mypy checks that it obeys the protocol
    assert as_router.name == "trained"


def test_probabilities_are_batched_rows_over_labels(router: TrainedRouter) -> None:
    p = router.probabilities(["Who wrote Hamlet?", "Is the dog in the photo wearing a collar?"])
    assert p.shape == (2, len(LABELS))
    assert np.allclose(p.sum(axis=1), 1.0)
    assert router.probabilities([]).shape == (0, len(LABELS))
    single = router.probabilities(["Who wrote Hamlet?"])[0]
    assert np.allclose(single, p[0], atol=1e-5)  # batching does not change the answer


@pytest.mark.parametrize(
    ("question", "allowed"),
    [
        ("show me a picture of a red bus", {Corpus.IMAGE}),
        ("what happens in the video when the chef flips the pancake", {Corpus.CLIP, Corpus.VIDEO}),
        ("What colour is the roof of the Sydney Opera House?", {Corpus.IMAGE}),
        ("Were the directors of Alien and Jaws born in the same country?", set(TEXT_CORPORA)),
    ],
)
def test_obvious_questions_route_right(
    router: TrainedRouter, question: str, allowed: set[Corpus]
) -> None:
    route = router.route(question, EVERYTHING)
    assert route.corpora and set(route.corpora) <= allowed, route


def test_arithmetic_needs_no_media(router: TrainedRouter) -> None:
    route = router.route("what is 7 times 8?", EVERYTHING)
    assert set(route.corpora) <= set(TEXT_CORPORA), route  # no retrieval, or text at most


# --- the decision rule --------------------------------------------------------------


def test_a_label_is_chosen_when_it_passes_and_the_reason_says_so(
    encoder: SentenceTransformerEncoder,
) -> None:
    route = TrainedRouter(encoder, fixed({"image": 0.9, "paragraph": 0.1})).route("q", EVERYTHING)
    assert route.corpora == (Corpus.IMAGE,)
    assert route.reason == "image 0.90 >= 0.30"
    assert set(route.scores) == set(LABELS)
    assert math.isclose(sum(route.scores.values()), 1.0, abs_tol=1e-3)


def test_two_modalities_can_both_be_searched(encoder: SentenceTransformerEncoder) -> None:
    chosen = route_with(encoder, {"image": 0.5, "paragraph": 0.4, "no": 0.1})
    assert set(chosen) == {Corpus.IMAGE, Corpus.PARAGRAPH}


def test_of_paragraph_and_document_only_the_stronger(encoder: SentenceTransformerEncoder) -> None:
    assert route_with(encoder, {"paragraph": 0.45, "document": 0.4}) == (Corpus.PARAGRAPH,)
    assert route_with(encoder, {"paragraph": 0.35, "document": 0.55}) == (Corpus.DOCUMENT,)


def test_of_clip_and_video_only_the_stronger(encoder: SentenceTransformerEncoder) -> None:
    assert route_with(encoder, {"clip": 0.35, "video": 0.45, "image": 0.2}) == (Corpus.VIDEO,)


def test_no_retrieval_only_alone(encoder: SentenceTransformerEncoder) -> None:
    assert route_with(encoder, {"no": 0.9, "paragraph": 0.1}) == ()
    # "no" passes its threshold but so does a corpus: the corpus is searched.
    assert route_with(encoder, {"no": 0.55, "paragraph": 0.45}) == (Corpus.PARAGRAPH,)


def test_nothing_passing_takes_the_top_label(encoder: SentenceTransformerEncoder) -> None:
    spread = {"no": 0.1, "paragraph": 0.2, "document": 0.15, "image": 0.25, "clip": 0.15}
    router = TrainedRouter(encoder, fixed({**spread, "video": 0.15}))
    route = router.route("q", EVERYTHING)
    assert route.corpora == (Corpus.IMAGE,)
    assert "none reaches" in route.reason


def test_empty_corpora_are_never_chosen(encoder: SentenceTransformerEncoder) -> None:
    probabilities = {"image": 0.58, "document": 0.32, "paragraph": 0.05, "no": 0.05}
    available = {**EVERYTHING, Corpus.IMAGE: 0}
    chosen = route_with(encoder, probabilities, available)
    assert Corpus.IMAGE not in chosen
    assert chosen == (Corpus.DOCUMENT,)  # passes on its own
    # Nothing chosen is ingested: the best-scoring non-empty corpus instead.
    only_video = {**dict.fromkeys(Corpus, 0), Corpus.VIDEO: 4}
    assert route_with(encoder, probabilities, only_video) == (Corpus.VIDEO,)


def test_all_empty_keeps_the_stronger_text_corpus(encoder: SentenceTransformerEncoder) -> None:
    nothing = dict.fromkeys(Corpus, 0)
    assert route_with(encoder, {"image": 0.9, "document": 0.08}, nothing) == (Corpus.DOCUMENT,)
    route = TrainedRouter(encoder, fixed({"clip": 0.9})).route("q", {})
    assert route.corpora[0] in TEXT_CORPORA
    assert "nothing is ingested" in route.reason


def test_unsure_flags_a_weak_top_label(encoder: SentenceTransformerEncoder) -> None:
    weak = TrainedRouter(encoder, fixed({"paragraph": 0.4, "document": 0.35, "image": 0.25}))
    assert weak.is_unsure(weak.route("q", EVERYTHING))
    strong = TrainedRouter(encoder, fixed({"image": 0.95, "paragraph": 0.05}))
    assert not strong.is_unsure(strong.route("q", EVERYTHING))
    picky = TrainedRouter(encoder, fixed({"image": 0.95, "video": 0.05}), unsure_below=0.99)
    assert picky.is_unsure(picky.route("q", EVERYTHING))
    with pytest.raises(ValueError, match="unsure_below"):
        TrainedRouter(encoder, fixed({"image": 1.0}), unsure_below=1.5)


def test_weights_round_trip_through_files(
    encoder: SentenceTransformerEncoder, router: TrainedRouter, tmp_path: Path
) -> None:
    router.weights.save(tmp_path)
    again = TrainedRouter(encoder, RouterWeights.load(tmp_path))
    questions = ["How do I repot a cactus?", "Who founded the company that makes the iPhone?"]
    assert np.allclose(again.probabilities(questions), router.probabilities(questions), atol=1e-6)
    assert again.thresholds == router.thresholds


def test_missing_weights_are_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="train_router"):
        RouterWeights.load(tmp_path)


class OtherEncoder:
    """A stand-in text encoder of another model (same dimension, other space)."""

    info = EncoderInfo(name="other-model", version="1", dim=384)

    def encode(self, texts: Sequence[str], *, query: bool = False) -> Vectors:
        return np.ones((len(texts), 384), dtype=np.float32) / np.sqrt(384)


def test_an_encoder_of_another_model_is_refused() -> None:
    with pytest.raises(ModelError, match="other-model"):
        TrainedRouter(OtherEncoder())


# --- evaluation ---------------------------------------------------------------------


def test_metrics_by_hand() -> None:
    m = metrics(["image", "image", "clip", "no"], ["image", "clip", "clip", "no"])
    assert m.accuracy == 0.75
    assert m.f1 == {"no": 1.0, "image": round(2 / 3, 4), "clip": round(2 / 3, 4)}
    assert m.macro_f1 == round((1 + 2 / 3 + 2 / 3) / 3, 4)
    image, clip = LABELS.index("image"), LABELS.index("clip")
    assert m.confusion[image][clip] == 1
    assert sum(map(sum, m.confusion)) == 4


def test_score_routes_one_question_at_a_time(router: TrainedRouter, tmp_path: Path) -> None:
    data = tmp_path / "routes.jsonl"
    rows = [
        ("Is the dog in the photo wearing a collar?", "image"),
        ("What are the steps to repaint a garden fence?", "video"),
        ("Who was the first president of Kenya?", "paragraph"),
    ]
    lines = [json.dumps({"id": str(i), "query": q, "label": y}) for i, (q, y) in enumerate(rows)]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = score(load_labelled(data), router)
    assert result.router == "trained"
    assert result.metrics.n == result.latency.n == 3
    assert 0 < result.latency.p50_ms <= result.latency.p95_ms <= result.latency.max_ms
    assert 0.0 <= result.routes.hit_rate <= 1.0
    assert json.loads(json.dumps(result.to_dict()))["metrics"]["labels"] == list(LABELS)


def test_bad_labelled_files_are_clear_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "1", "query": "q", "label": "podcast"}\n', encoding="utf-8")
    with pytest.raises(MmragError, match="unknown label 'podcast'"):
        load_labelled(bad)
    with pytest.raises(MmragError, match="missing"):
        load_labelled(tmp_path / "absent.jsonl")


@pytest.mark.skipif(not TRAIN.is_file(), reason="shared/eval/router/train.jsonl is absent")
def test_cross_validation_on_a_small_stratified_subset(encoder: SentenceTransformerEncoder) -> None:
    rows: list[LabelledQuestion] = stratified_sample(load_labelled(TRAIN), 300, seed=0)
    assert {r.label for r in rows} == set(LABELS)
    cv = cross_validate(rows, encoder, k=3, seed=0)
    assert cv.n == len(rows)
    trained, baseline = cv.methods[TRAINED], cv.methods[BASELINE]
    assert trained.accuracy > 0.6  # chance is about 0.25 (the largest class)
    assert trained.macro_f1 > 0.5
    assert baseline.n == trained.n == sum(map(sum, trained.confusion))
    assert 0.0 <= cv.unsure.share <= 1.0
    assert json.dumps(cv.to_dict())
