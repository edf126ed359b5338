"""``mmrag eval router``: how good is a router: accuracy, macro-F1, confusion, latency.

Labelled questions are JSON lines ``{"id", "query", "label"}``, as in
``shared/eval/router/train.jsonl``. Three methods side by side: the shipped trained
router, a word 1-2-gram TF-IDF + logistic regression baseline, and the LLM router.

- :func:`score`: any :class:`~router.base.Router` (the shipped trained one, the LLM one)
  on any labelled file, one question at a time, so the latency is what a user waits for
  (embedding included).
- :func:`cross_validate`: k-fold stratified cross-validation of the trained router's
  *recipe* (:func:`router.trained.fit`, scored by the same numpy arithmetic that ships)
  next to the baseline, on the same folds. The labelled data is all there is, so this is
  how the recipe is judged (``scripts/train_router.py`` prints it before fitting).

The command (:func:`evaluate_router`) has two modes:

- **score** (default): each method routes every question of FILE. The baseline is
  fitted on ``baseline_train`` (the training file the shipped router learnt from), so
  on a held-out FILE both are judged on unseen questions and on the training file
  itself both report fit, not generalisation.
- **cross-validation** (``cv=k``): the trained recipe and the baseline are refitted on
  k-1 folds of FILE and scored on the held-out fold.

The LLM router needs no training, so it is scored the same way in both modes, on a
stratified sample of FILE (``llm_sample`` questions): one generation per question takes
seconds on this CPU, and the whole file would take hours. The trained router's latency
is taken by routing every question of FILE with the shipped model, in both modes.

The predicted label of a route is its top-scoring label: that is what accuracy and the
confusion matrix count. The multi-label rule is judged apart (:class:`RouteMetrics`):
how often the route *includes* the true label, and how many corpora it searches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console, Group
from rich.table import Table

from evals.base import Report, read_jsonl
from evals.metrics import Classification, classification, percentiles
from generation.base import Generator
from retrieval.base import Corpus, TextEncoder
from retrieval.errors import MmragError
from router.base import LABELS, NO_RETRIEVAL, Route, Router, decide
from router.llm import LlmRouter
from router.trained import DEFAULT_UNSURE_BELOW, TrainedRouter, embed_questions, fit

BASELINE = "tfidf+logreg"
TRAINED = "trained"
LLM = "llm"


@dataclass(frozen=True)
class LabelledQuestion:
    """One routing example: a question and the label it should get."""

    id: str
    query: str
    label: str


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
    methods: Mapping[str, Classification]
    routes: RouteMetrics
    unsure: Unsure

    def to_dict(self) -> dict[str, Any]:
        return plain(asdict(self))


@dataclass(frozen=True)
class RouterScore:
    """One router on one labelled file."""

    router: str
    metrics: Classification
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

    def question(number: int, record: Any) -> LabelledQuestion:
        row = LabelledQuestion(
            str(record.get("id", number)), str(record["query"]), str(record["label"])
        )
        if row.label not in LABELS:
            raise MmragError(
                f"{path}:{number}: unknown label {row.label!r} (one of {', '.join(LABELS)})"
            )
        return row

    rows = read_jsonl(path, question, kind="router evaluation", row="a labelled question")
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


def metrics(true: Sequence[str], predicted: Sequence[str]) -> Classification:
    """Accuracy, per-label and macro F1 (over the labels present in ``true``), confusion."""
    return classification(true, predicted, LABELS)


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


def _baseline(train: Sequence[str], labels: Sequence[str]) -> Any:
    """Word 1-2-gram TF-IDF + logistic regression fitted on ``train``: the simple thing
    to beat (a scikit-learn pipeline: ``predict`` takes a list of questions)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=5000),
    )
    return model.fit(list(train), list(labels))


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
        baseline_model = _baseline([questions[i] for i in train], [labels[i] for i in train])
        predicted = [str(p) for p in baseline_model.predict(held_out)]
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


def latency(samples_s: Sequence[float]) -> Latency:
    """Nearest-rank p50/p95 and the maximum of per-question timings (seconds in, ms out)."""
    ms = [s * 1000 for s in samples_s]
    if not ms:
        return Latency(0, 0.0, 0.0, 0.0)
    p = percentiles(ms, (50, 95))
    return Latency(n=len(ms), p50_ms=p["p50"], p95_ms=p["p95"], max_ms=round(max(ms), 3))


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


def _timed_baseline(
    train: Sequence[LabelledQuestion], rows: Sequence[LabelledQuestion]
) -> dict[str, Any]:
    """The baseline fitted on ``train``, scored on ``rows`` one question at a time."""
    model = _baseline([r.query for r in train], [r.label for r in train])
    predicted: list[str] = []
    timings: list[float] = []
    for row in rows:
        start = time.perf_counter()
        predicted.append(str(model.predict([row.query])[0]))
        timings.append(time.perf_counter() - start)
    return {
        "metrics": metrics([r.label for r in rows], predicted),
        "latency": latency(timings),
        "trained_on": len(train),
    }


def evaluate_router(
    data: Path,
    encoder: TextEncoder,
    *,
    cv: int | None = None,
    seed: int = 0,
    baseline_train: Path | None = None,
    extra: Path | None = None,
    generator: Callable[[], Generator] | None = None,
    llm_sample: int = 60,
    console: Console | None = None,
) -> dict[str, Any]:
    """Figures for every method as plain data (see the module docstring for the modes)."""
    say = console.print if console is not None else (lambda *a, **k: None)
    rows = load_labelled(data)
    shipped = TrainedRouter(encoder)
    say(f"routing {len(rows)} questions with the shipped trained router")
    own = score(rows, shipped)
    out: dict[str, Any] = {"data": str(data), "n": len(rows), "mode": "score", "methods": {}}
    methods = out["methods"]
    if cv:
        say(f"{cv}-fold cross-validation of the trained recipe and the baseline (minutes)")
        extra_rows = load_labelled(extra) if extra is not None else []
        result = cross_validate(rows, encoder, k=cv, seed=seed, extra=extra_rows)
        out.update(mode=f"cv{cv}", seed=seed, extra=len(extra_rows), unsure=result.unsure)
        methods[TRAINED] = {
            "metrics": result.methods[TRAINED],
            "latency": own.latency,
            "routes": result.routes,
        }
        # Cross-validation gives the baseline's quality; its latency is timed on one fit.
        timed = _timed_baseline(rows, rows[: min(len(rows), 300)])
        methods[BASELINE] = {"metrics": result.methods[BASELINE], "latency": timed["latency"]}
    else:
        methods[TRAINED] = {"metrics": own.metrics, "latency": own.latency, "routes": own.routes}
        if baseline_train is not None:
            say(f"fitting the baseline on {baseline_train}")
            methods[BASELINE] = _timed_baseline(load_labelled(baseline_train), rows)
    if generator is not None and llm_sample > 0:
        sample = stratified_sample(rows, llm_sample, seed=seed)
        say(f"routing {len(sample)} sampled questions with the LLM router (seconds each)")
        llm = score(sample, LlmRouter(generator()))
        methods[LLM] = {
            "metrics": llm.metrics,
            "latency": llm.latency,
            "routes": llm.routes,
            "sample": len(sample),
        }
    return out


def router_tables(results: Mapping[str, Any]) -> Group:
    """One summary table, then a confusion matrix per method (rows: true, columns: chosen)."""
    summary = Table(title=f"Router on {results['data']} ({results['mode']}, {results['n']} q)")
    for col in ("method", "questions", "accuracy", "macro-F1", "p50 ms", "p95 ms"):
        summary.add_column(col, justify="left" if col == "method" else "right")
    for name, m in results["methods"].items():
        q = m["metrics"]
        summary.add_row(
            name,
            str(q.n),
            f"{q.accuracy:.4f}",
            f"{q.macro_f1:.4f}",
            f"{m['latency'].p50_ms:.2f}",
            f"{m['latency'].p95_ms:.2f}",
        )
    parts: list[Any] = [summary]
    for name, m in results["methods"].items():
        confusion = Table(title=f"{name}: true (rows) x chosen (columns)")
        confusion.add_column("")
        for label in LABELS:
            confusion.add_column(label, justify="right")
        for label, row in zip(LABELS, m["metrics"].confusion, strict=True):
            if any(row):
                confusion.add_row(label, *(str(v) for v in row))
        parts.append(confusion)
    return Group(*parts)


def router_report(
    data: Path,
    *,
    cv: int | None = None,
    seed: int = 0,
    baseline_train: Path | None = None,
    extra: Path | None = None,
    llm_sample: int = 60,
    console: Console | None = None,
) -> Report:
    """``mmrag eval router`` on the configured text encoder and generator. The encoder
    is built alone, not ``service.index``: scoring a router must not open the store."""
    from app.service import Service
    from app.settings import Settings
    from retrieval.encoders import SentenceTransformerEncoder

    service = Service(Settings())
    s = service.settings
    try:
        encoder = SentenceTransformerEncoder(s.text_model, batch_size=s.embed_batch_size)
        results = evaluate_router(
            data,
            encoder,
            cv=cv,
            seed=seed,
            baseline_train=baseline_train,
            extra=extra,
            generator=lambda: service.generator,
            llm_sample=llm_sample,
            console=console,
        )
    finally:
        service.close()
    return Report(plain(results), router_tables(results))
