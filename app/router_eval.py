"""``mmrag eval router``: the shipped router, a TF-IDF baseline and the LLM router, side by side.

Two modes, as the issue asks:

- **score** (default): each method routes every question of FILE. The trained router is
  the shipped one; the baseline is fitted on ``baseline_train`` (the training file the
  shipped router learnt from), so on a held-out FILE both are judged on unseen questions
  and on the training file itself both report fit, not generalisation.
- **cross-validation** (``cv=k``): the trained *recipe* and the baseline are refitted on
  k-1 folds of FILE and scored on the held-out fold (:func:`router.evaluation.cross_validate`).

The LLM router needs no training, so it is scored the same way in both modes, on a
stratified sample of FILE (``llm_sample`` questions): one generation per question takes
seconds on this CPU, and the whole file would take hours. Latency is per question, one
at a time, embedding included (the trained router's own figure is taken by routing
every question of FILE with the shipped model, in both modes).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table

from generation.base import Generator
from retrieval.base import TextEncoder
from router.base import LABELS
from router.evaluation import (
    BASELINE,
    TRAINED,
    LabelledQuestion,
    cross_validate,
    latency,
    load_labelled,
    metrics,
    plain,
    score,
    stratified_sample,
)
from router.llm import LlmRouter
from router.trained import TrainedRouter

__all__ = ["LLM", "evaluate_router", "plain", "router_tables"]

LLM = "llm"


def _baseline(
    train: Sequence[LabelledQuestion], rows: Sequence[LabelledQuestion]
) -> dict[str, Any]:
    """The word 1-2-gram TF-IDF + logistic regression, fitted on ``train``, timed per question."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        LogisticRegression(C=10.0, max_iter=5000),
    )
    model.fit([r.query for r in train], [r.label for r in train])
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
        timed = _baseline(rows, rows[: min(len(rows), 300)])
        methods[BASELINE] = {"metrics": result.methods[BASELINE], "latency": timed["latency"]}
    else:
        methods[TRAINED] = {"metrics": own.metrics, "latency": own.latency, "routes": own.routes}
        if baseline_train is not None:
            say(f"fitting the baseline on {baseline_train}")
            methods[BASELINE] = _baseline(load_labelled(baseline_train), rows)
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
