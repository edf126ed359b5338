"""``mmrag eval documents``: FinanceBench end to end (ingest the filings, ask, check).

The folder has ``pdfs/`` and ``questions.jsonl`` (``doc_name``, ``question``, ``answer``,
``evidence[].evidence_page_num``, zero-based). The filings are ingested with the app's
own pipeline into a store folder (kept, so a second run skips unchanged files), then
every question goes through :meth:`Service.ask` with the default router. Measured:

- **page Recall@5, retrieval** (success@5 of each question): one of the 5 best passages
  of a plain hybrid search of the paragraph corpus is on an evidence page of the right
  filing;
- **page Recall@5, sources**: the same for the first 5 sources the answer was given
  (after routing and selection), i.e. whether the model saw the evidence;
- **answer correctness** (:func:`correct`): a number of the answer within 1% of the gold
  answer's number, or the gold answer's key span present (see there); yes/no must agree.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from app.service import DoneEvent, Service, SourcesEvent
from evals.base import Report, read_jsonl, service_with
from evals.metrics import success_at
from retrieval.base import Corpus, Hit
from retrieval.errors import MmragError

# A number stands alone: not the digits of "FY2023Q1" or "Q2".
_NUMBER = re.compile(r"(?<![\w.])-?\$?\d[\d,]*(?:\.\d+)?(?![\w])")
_NAME = re.compile(r"(?:[A-Z][\w.&'-]*\s?){1,5}")
_POLARITY = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def _numbers(text: str) -> list[float]:
    out = []
    for token in _NUMBER.findall(text):
        try:
            out.append(float(token.replace("$", "").replace(",", "")))
        except ValueError:
            continue
    return out


def _is_year(x: float) -> bool:
    return x.is_integer() and 1900 <= x <= 2100


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s.%-]", " ", text.lower()).split())


def key_facts(gold: str) -> tuple[str | None, list[float], list[str]]:
    """What an answer must contain: its yes/no, its numbers (not years), its names."""
    head = _POLARITY.match(gold.strip())
    polarity = head.group(1).lower() if head else None
    numbers = [x for x in _numbers(gold) if not _is_year(x)]
    names = [
        m.strip()
        for m in _NAME.findall(gold)
        if len(m.strip()) > 3 and m.strip().lower() not in {"yes", "no"} and " " in m.strip()
    ]
    return polarity, numbers, names


def correct(answer: str, gold: str) -> bool:
    """Gold's yes/no agrees (if it has one), and then: a number within 1% of one of
    gold's numbers (years aside); or, for a gold answer without numbers, one of its
    multi-word names present; or, failing both, the whole gold answer present."""
    polarity, numbers, names = key_facts(gold)
    if polarity is not None:
        said = _POLARITY.search(answer)
        if said is None or said.group(1).lower() != polarity:
            return False
    if numbers:
        return any(
            abs(x - want) <= 0.01 * abs(want) if want else x == 0
            for want in numbers
            for x in _numbers(answer)
        )
    if names:
        have = _norm(answer)
        return any(_norm(n) in have for n in names)
    return polarity is not None or _norm(gold) in _norm(answer)


def _on_evidence(hits: Sequence[Hit], doc: str, pages: set[int]) -> bool:
    """A hit among the first 5 is on one of the filing's evidence ``pages`` (zero-based;
    an item's page is one-based)."""
    found = [(Path(h.item.source).stem, h.item.page) for h in hits]
    evidence: dict[tuple[str, int | None], int] = {(doc, page + 1): 1 for page in pages}
    return bool(success_at(found, evidence, 5))


def evaluate_documents(
    folder: Path, service: Service, *, console: Console | None = None
) -> dict[str, Any]:
    questions_file = folder / "questions.jsonl"
    if not questions_file.is_file() or not (folder / "pdfs").is_dir():
        raise MmragError(f"{folder} needs pdfs/ and questions.jsonl (FinanceBench layout)")
    rows = read_jsonl(questions_file, lambda _, row: dict(row), kind="evaluation")
    report = service.ingest([folder / "pdfs"])
    if console:
        console.print("ingested" if report.ok else "ingested, some files failed")
    results = []
    for i, row in enumerate(rows, 1):
        doc = row["doc_name"]
        pages = {int(e["evidence_page_num"]) for e in row["evidence"]}
        retrieved = service.index.search(row["question"], [Corpus.PARAGRAPH], limit=5)
        sources: list[Hit] = []
        done = None
        for event in service.ask(row["question"]):
            if isinstance(event, SourcesEvent):
                sources = list(event.hits)
            elif isinstance(event, DoneEvent):
                done = event
        assert done is not None
        results.append(
            {
                "id": row.get("financebench_id", str(i)),
                "doc": doc,
                "question": row["question"],
                "gold": row["answer"],
                "answer": done.answer.text,
                "route": done.route.label,
                "retrieval_hit": _on_evidence(retrieved[Corpus.PARAGRAPH], doc, pages),
                "sources_hit": _on_evidence(sources, doc, pages),
                "correct": correct(done.answer.text, row["answer"]),
                "first_token_ms": done.timings.get("first_token_ms"),
            }
        )
        if console:
            console.print(f"{i}/{len(rows)} {doc}: correct={results[-1]['correct']}")
    n = max(len(results), 1)
    return {
        "data": str(folder),
        "n": len(results),
        "page_recall5_retrieval": round(sum(r["retrieval_hit"] for r in results) / n, 4),
        "page_recall5_sources": round(sum(r["sources_hit"] for r in results) / n, 4),
        "answer_correct": round(sum(r["correct"] for r in results) / n, 4),
        "model": service.generator.name,
        "questions": results,
    }


def documents_table(results: dict[str, Any]) -> Table:
    table = Table(title=f"FinanceBench end to end ({results['n']} questions, {results['model']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row(
        "page Recall@5, retrieval (paragraph, hybrid)", str(results["page_recall5_retrieval"])
    )
    table.add_row("page Recall@5, sources given to the model", str(results["page_recall5_sources"]))
    table.add_row("answer correct", str(results["answer_correct"]))
    return table


def documents_report(folder: Path, store: Path, *, console: Console | None = None) -> Report:
    """``mmrag eval documents``: the configured service on the evaluation's own data folder
    ``store`` (kept between runs, so a second run skips the unchanged filings)."""
    from app.settings import Settings

    service = service_with(Settings(), data_dir=store)
    try:
        results = evaluate_documents(folder, service, console=console)
    finally:
        service.close()
    return Report(results, documents_table(results), ensure_ascii=False)
