"""``mmrag eval text``: text retrieval on labelled data, every search mode and a baseline.

The evaluation reads a folder in the format of ``shared/eval/text/cranfield``:
``corpus.jsonl`` (id, title, text) and ``queries.jsonl`` (qid, query, relevant: list of
{doc, grade}). Grades follow Cranfield: 1 is the most relevant, 4 the least, anything
else (-1, 5) is not relevant; nDCG uses the gain ``5 - grade``.

Each document becomes one ``paragraph`` item in a fresh embedded index; every query is
searched dense, sparse and hybrid, 100 deep, and the bm25s library ranks the same
corpus as the baseline. The measures are :mod:`evals.metrics`' (trec_eval's
definitions): nDCG@10, Recall@100, and MRR as the reciprocal rank of the first relevant
document in the top 100. The index helpers here also serve ``mmrag bench retrieval``.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from evals.base import Report, methods_table, read_jsonl
from evals.metrics import ndcg_at, recall_at, reciprocal_rank
from retrieval.base import Corpus, Item, item_id
from retrieval.errors import MmragError

METRICS = ("ndcg@10", "recall@100", "mrr")
DEPTH = 100


@dataclass(frozen=True)
class TextEvalData:
    doc_ids: list[str]
    titles: list[str]
    texts: list[str]
    queries: list[tuple[str, str]]  # (qid, text)
    qrels: dict[str, dict[str, int]]  # qid -> doc -> gain (> 0 relevant)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path, lambda _, row: dict(row), kind="evaluation")


def load_text_data(folder: Path) -> TextEvalData:
    corpus = _jsonl(folder / "corpus.jsonl")
    queries = _jsonl(folder / "queries.jsonl")
    qrels = {
        str(q["qid"]): {
            str(r["doc"]): gain
            for r in q.get("relevant", [])
            if (gain := grade_gain(int(r["grade"]))) > 0
        }
        for q in queries
    }
    return TextEvalData(
        doc_ids=[str(d["id"]) for d in corpus],
        titles=[str(d.get("title", "")) for d in corpus],
        texts=[str(d["text"]) for d in corpus],
        queries=[(str(q["qid"]), str(q["query"])) for q in queries if qrels[str(q["qid"])]],
        qrels=qrels,
    )


def grade_gain(grade: int) -> int:
    """Cranfield grade (1 best ... 4) to an nDCG gain (4 ... 1); others are 0."""
    return 5 - grade if 1 <= grade <= 4 else 0


def score_run(
    run: Mapping[str, Sequence[str]], qrels: Mapping[str, Mapping[str, int]]
) -> dict[str, float]:
    """Mean nDCG@10, Recall@100 and MRR of a run (qid -> ranked doc ids)."""
    per: dict[str, list[float]] = {m: [] for m in METRICS}
    for qid, gains in qrels.items():
        if not gains:
            continue
        ranked = list(run.get(qid, []))
        per["ndcg@10"].append(ndcg_at(ranked, gains, 10))
        per["recall@100"].append(recall_at(ranked, gains, 100))
        per["mrr"].append(reciprocal_rank(ranked[:DEPTH], gains))
    return {m: round(sum(v) / len(v), 4) if v else 0.0 for m, v in per.items()}


def bm25s_run(data: TextEvalData) -> dict[str, list[str]]:
    """The standard-library baseline: bm25s (Lucene BM25) with the same stemmer and stop words."""
    try:
        import bm25s
        import Stemmer
    except ImportError as e:
        raise MmragError("the bm25s baseline needs: pip install bm25s PyStemmer") from e
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(data.texts, stopwords="en", stemmer=stemmer, show_progress=False),
        show_progress=False,
    )
    tokens = bm25s.tokenize(
        [q for _, q in data.queries], stopwords="en", stemmer=stemmer, show_progress=False
    )
    docs, _ = retriever.retrieve(tokens, k=min(DEPTH, len(data.texts)), show_progress=False)
    return {
        qid: [data.doc_ids[int(i)] for i in row]
        for (qid, _), row in zip(data.queries, docs, strict=True)
    }


def corpus_items(data: TextEvalData) -> list[Item]:
    """Each evaluation document as one ``paragraph`` item whose source is its id."""
    return [
        Item(
            id=item_id("eval", doc_id),
            corpus=Corpus.PARAGRAPH,
            text=text,
            source=doc_id,
            content_hash="eval",
            title=title,
        )
        for doc_id, title, text in zip(data.doc_ids, data.titles, data.texts, strict=True)
    ]


def open_eval_store(engine: str, folder: Path) -> Any:
    """A fresh embedded store of the given engine (``edge`` or ``local``) in ``folder``."""
    from retrieval.edge_store import EdgeStore
    from retrieval.store import QdrantStore

    if engine == "edge":
        return EdgeStore(folder / "edge", prefix="eval")
    return QdrantStore(memory=True, prefix="eval")


def build_eval_index(
    items: Sequence[Item],
    store: Any,
    *,
    encoder: Any = None,
    vectors: Any = None,
    console: Console | None = None,
) -> Any:
    """An index on ``store`` (real encoder) filled with ``items``; pass ``vectors`` to
    reuse embeddings already computed for another store."""
    from retrieval.encoders import SentenceTransformerEncoder
    from retrieval.index import Index

    index = Index(store, encoder or SentenceTransformerEncoder())
    start = time.perf_counter()
    for lo in range(0, len(items), 512):
        batch = items[lo : lo + 512]
        index.add(batch, None if vectors is None else vectors[lo : lo + 512])
        if console:
            console.print(f"[dim]indexed {min(lo + 512, len(items))}/{len(items)}[/]")
    if console:
        console.print(f"[dim]indexed in {time.perf_counter() - start:.1f} s[/]")
    return index


def evaluate_text(
    folder: Path, progress: Console | None = None, *, rrf_k: int = 60, dense_weight: float = 1.0
) -> dict[str, Any]:
    """Index the corpus in a fresh embedded store and score every method on its queries."""
    data = load_text_data(folder)
    tmp = Path(tempfile.mkdtemp(prefix="mmrag-eval-"))
    index = build_eval_index(corpus_items(data), open_eval_store("edge", tmp), console=progress)
    index.rrf_k, index.dense_weight = rrf_k, dense_weight
    results: dict[str, Any] = {
        "data": str(folder),
        "documents": len(data.doc_ids),
        "queries": len(data.queries),
        "fusion": {"rrf_k": rrf_k, "dense_weight": dense_weight},
        "methods": {},
    }
    for mode in ("dense", "sparse", "hybrid"):
        run: dict[str, list[str]] = {}
        for qid, q in data.queries:
            hits = index.search(q, [Corpus.PARAGRAPH], limit=DEPTH, mode=mode)
            run[qid] = [h.item.source for h in hits[Corpus.PARAGRAPH]]
        results["methods"][mode] = score_run(run, data.qrels)
    results["methods"]["bm25s"] = score_run(bm25s_run(data), data.qrels)
    index.store.close()
    shutil.rmtree(tmp, ignore_errors=True)
    return results


def text_table(results: Mapping[str, Any]) -> Table:
    title = f"{results['data']}: {results['documents']} documents, {results['queries']} queries"
    return methods_table(title, results["methods"], METRICS, 4)


def text_report(folder: Path, *, console: Console | None = None) -> Report:
    """``mmrag eval text``: hybrid fusion as the settings say (MMRAG_RRF_K,
    MMRAG_DENSE_WEIGHT), so a fusion change is measured before it is made the default."""
    from app.settings import Settings

    s = Settings()
    results = evaluate_text(folder, progress=console, rrf_k=s.rrf_k, dense_weight=s.dense_weight)
    return Report(results, text_table(results))
