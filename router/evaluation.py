"""How good is a router: accuracy, macro-F1, confusion, multi-label hits, latency.

Pure functions over labelled questions (JSON lines ``{"id", "query", "label"}``, as in
``shared/eval/router/train.jsonl``); printing and flags belong to the CLI. Two entry
points:

- :func:`cross_validate`: k-fold stratified cross-validation of the trained router's
  *recipe* (:func:`router.trained.fit`, scored by the same numpy arithmetic that ships)
  next to a TF-IDF + logistic regression baseline, on the same folds. The labelled data
  is all there is, so this is how the recipe is judged.
- :func:`score`: any :class:`~router.base.Router` (the shipped trained one, the LLM one)
  on any labelled file, one question at a time, so the latency is what a user waits for
  (embedding included).

The predicted label of a route is its top-scoring label: that is what accuracy and the
confusion matrix count. The multi-label rule is judged apart (:class:`RouteMetrics`):
how often the route *includes* the true label, and how many corpora it searches.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.base import Corpus, TextEncoder
from retrieval.errors import MmragError
from router.base import LABELS, NO_RETRIEVAL, Route, Router, decide
from router.trained import DEFAULT_UNSURE_BELOW, embed_questions, fit

BASELINE = "tfidf+logreg"
TRAINED = "trained"


@dataclass(frozen=True)
class LabelledQuestion:
    """One routing example: a question and the label it should get."""

    id: str
    query: str
    label: str


@dataclass(frozen=True)
class Metrics:
    """Single-label quality; ``confusion[i][j]``: true ``labels[i]`` predicted ``labels[j]``."""

    n: int
    accuracy: float
    macro_f1: float
    f1: Mapping[str, float]
    confusion: tuple[tuple[int, ...], ...]
    labels: tuple[str, ...] = LABELS


@dataclass(frozen=True)
class RouteMetrics:
    """Multi-label quality: routes that include the true label, corpora searched per route."""

    hit_rate: float
    mean_corpora: float


@dataclass(frozen=True)
class Latency:
    """Milliseconds per question, one question at a time (nearest-rank percentiles)."""

    n: int
    p50_ms: float
    p95_ms: float
    max_ms: float


@dataclass(frozen=True)
class Unsure:
    """How the "unsure" flag splits the questions: share flagged, accuracy of each side."""

    below: float
    share: float
    accuracy_unsure: float
    accuracy_sure: float


@dataclass(frozen=True)
class CrossValidation:
    """k-fold results of each method on the same folds (``methods``: name -> metrics).

    ``routes`` and ``unsure`` are the trained recipe's, out of fold.
    """

    k: int
    seed: int
    n: int
    methods: Mapping[str, Metrics]
    routes: RouteMetrics
    unsure: Unsure

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class RouterScore:
    """One router on one labelled file."""

    router: str
    metrics: Metrics
    routes: RouteMetrics
    latency: Latency

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses and mappings to dicts, tuples to lists."""
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def load_labelled(path: Path) -> list[LabelledQuestion]:
    """Read a JSON-lines file of labelled questions; a bad line is a clear error."""
    if not path.is_file():
        raise MmragError(f"missing router evaluation file: {path}")
    rows: list[LabelledQuestion] = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                row = LabelledQuestion(
                    str(record.get("id", number)), str(record["query"]), str(record["label"])
                )
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise MmragError(f"{path}:{number}: not a labelled question ({e})") from e
            if row.label not in LABELS:
                raise MmragError(
                    f"{path}:{number}: unknown label {row.label!r} (one of {', '.join(LABELS)})"
                )
            rows.append(row)
    if not rows:
        raise MmragError(f"no labelled questions in {path}")
    return rows


def stratified_sample(
    rows: Sequence[LabelledQuestion], n: int, *, seed: int = 0
) -> list[LabelledQuestion]:
    """About ``n`` rows with the label proportions of ``rows`` (for quick runs and tests)."""
    rng = np.random.default_rng(seed)
    share = min(1.0, n / max(len(rows), 1))
    picked: list[LabelledQuestion] = []
    for label in LABELS:
        members = [r for r in rows if r.label == label]
        take = min(len(members), max(1, round(share * len(members)))) if members else 0
        picked += [members[i] for i in sorted(rng.choice(len(members), take, replace=False))]
    return picked


def metrics(true: Sequence[str], predicted: Sequence[str]) -> Metrics:
    """Accuracy, per-label and macro F1 (over the labels present in ``true``), confusion."""
    if len(true) != len(predicted):
        raise ValueError("true and predicted labels differ in length")
    index = {label: i for i, label in enumerate(LABELS)}
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    for t, p in zip(true, predicted, strict=True):
        confusion[index[t], index[p]] += 1
    f1: dict[str, float] = {}
    for i, label in enumerate(LABELS):
        tp, support, guessed = confusion[i, i], confusion[i].sum(), confusion[:, i].sum()
        if support:
            f1[label] = round(float(2 * tp / (support + guessed)), 4)
    n = len(true)
    return Metrics(
        n=n,
        accuracy=round(float(np.trace(confusion)) / n, 4) if n else 0.0,
        macro_f1=round(sum(f1.values()) / len(f1), 4) if f1 else 0.0,
        f1=f1,
        confusion=tuple(tuple(int(v) for v in row) for row in confusion),
    )


def top_label(route: Route) -> str:
    """The label a route is scored as: its top score (ties: the first label chosen)."""
    first = route.corpora[0].value if route.corpora else NO_RETRIEVAL
    return max(LABELS, key=lambda label: (route.scores.get(label, 0.0), label == first))


def _includes(route: Route, label: str) -> bool:
    return not route.corpora if label == NO_RETRIEVAL else Corpus(label) in route.corpora


def route_metrics(routes: Sequence[Route], true: Sequence[str]) -> RouteMetrics:
    n = max(len(routes), 1)
    return RouteMetrics(
        hit_rate=round(sum(_includes(r, t) for r, t in zip(routes, true, strict=True)) / n, 4),
        mean_corpora=round(sum(len(r.corpora) for r in routes) / n, 4),
    )


def _folds(labels: Sequence[str], k: int, seed: int) -> list[tuple[list[int], list[int]]]:
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
    return [
        (train.tolist(), test.tolist())
        for train, test in splitter.split(np.zeros(len(labels)), list(labels))
    ]


def _baseline(train: Sequence[str], labels: Sequence[str], test: Sequence[str]) -> list[str]:
    """Word 1-2-gram TF-IDF + logistic regression: the simple thing to beat."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=5000),
    )
    model.fit(list(train), list(labels))
    return [str(p) for p in model.predict(list(test))]


def cross_validate(
    rows: Sequence[LabelledQuestion],
    encoder: TextEncoder,
    *,
    k: int = 5,
    seed: int = 0,
    extra: Sequence[LabelledQuestion] = (),
    unsure_below: float = DEFAULT_UNSURE_BELOW,
) -> CrossValidation:
    """k-fold stratified cross-validation of the trained recipe and of the baseline.

    Each fold fits :func:`router.trained.fit` on the other folds and scores the held-out
    fold with the shipped numpy arithmetic and that fold's thresholds. ``extra`` rows
    join every training fold and are never scored (the hand-written phrasings that
    the shipped model is also trained on), so the scores stay comparable to runs without
    them. The embeddings are computed once (they do not depend on the fold).
    """
    questions = [r.query for r in rows] + [r.query for r in extra]
    labels = [r.label for r in rows] + [r.label for r in extra]
    embeddings = embed_questions(encoder, questions)
    always = list(range(len(rows), len(questions)))
    everything = dict.fromkeys(Corpus, 1)
    trained: list[str] = [""] * len(rows)
    baseline: list[str] = [""] * len(rows)
    routes: list[Route | None] = [None] * len(rows)
    top = np.zeros(len(rows))
    for scored, test in _folds(labels[: len(rows)], k, seed):
        train = scored + always
        weights = fit(
            [questions[i] for i in train],
            [labels[i] for i in train],
            embeddings[train],
            encoder_name=encoder.info.name,
            seed=seed,
        )
        held_out = [questions[i] for i in test]
        probabilities = weights.probabilities(held_out, embeddings[test])
        for i, row in zip(test, probabilities, strict=True):
            scores = dict(zip(LABELS, (float(p) for p in row), strict=True))
            trained[i] = LABELS[int(np.argmax(row))]
            top[i] = float(row.max())
            routes[i] = decide(scores, everything, threshold=weights.thresholds)
        predicted = _baseline([questions[i] for i in train], [labels[i] for i in train], held_out)
        for i, label in zip(test, predicted, strict=True):
            baseline[i] = label
    true = labels[: len(rows)]
    right = np.array([t == p for t, p in zip(true, trained, strict=True)])
    flagged = top < unsure_below
    return CrossValidation(
        k=k,
        seed=seed,
        n=len(rows),
        methods={TRAINED: metrics(true, trained), BASELINE: metrics(true, baseline)},
        routes=route_metrics([r for r in routes if r is not None], true),
        unsure=Unsure(
            below=unsure_below,
            share=round(float(flagged.mean()), 4) if len(rows) else 0.0,
            accuracy_unsure=round(float(right[flagged].mean()), 4) if flagged.any() else 0.0,
            accuracy_sure=round(float(right[~flagged].mean()), 4) if (~flagged).any() else 0.0,
        ),
    )


def _percentile(ordered: Sequence[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]


def latency(samples_s: Sequence[float]) -> Latency:
    """Nearest-rank p50/p95 and the maximum of per-question timings (seconds in, ms out)."""
    ordered = sorted(s * 1000 for s in samples_s)
    if not ordered:
        return Latency(0, 0.0, 0.0, 0.0)
    return Latency(
        n=len(ordered),
        p50_ms=round(_percentile(ordered, 50), 3),
        p95_ms=round(_percentile(ordered, 95), 3),
        max_ms=round(ordered[-1], 3),
    )


def score(
    rows: Sequence[LabelledQuestion],
    router: Router,
    *,
    available: Mapping[Corpus, int] | None = None,
) -> RouterScore:
    """Route every question one at a time and score the routes against the labels.

    ``available`` defaults to every corpus holding items, so the score is the router's
    own choice rather than what happens to be ingested. One warm-up route runs first
    (lazy initialisation is not a user's wait).
    """
    counts = dict(available) if available is not None else dict.fromkeys(Corpus, 1)
    if rows:
        router.route(rows[0].query, counts)
    routes: list[Route] = []
    timings: list[float] = []
    for row in rows:
        start = time.perf_counter()
        routes.append(router.route(row.query, counts))
        timings.append(time.perf_counter() - start)
    labels = [r.label for r in rows]
    return RouterScore(
        router=router.name,
        metrics=metrics(labels, [top_label(r) for r in routes]),
        routes=route_metrics(routes, labels),
        latency=latency(timings),
    )
