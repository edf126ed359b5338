"""``mmrag eval mixed``: routing measured end to end on one index of every kind of source.

UniversalRAG's claim is that routing a question to the right corpora beats searching
one index of everything, and comes close to an oracle that knows the right corpora.
This evaluation measures it on a folder (``shared/eval/mixed``, or a user's own, see
docs/evaluation.md) that holds:

- ``manifest.json``: ``{"ingest": [folders or files, relative to the manifest]}``;
- ``queries.jsonl``: one ``{"id", "question", "label", "gold"}`` per line. ``label`` is
  the corpora a correct route may pick (``["no"]``: none), ``gold`` the files that
  answer, relative to the folder, each with an optional 1-based ``page``. A question's
  *kind* is its ``kind`` field, else ``no`` for a ``["no"]`` label, else the id up to
  its first ``-`` or ``_`` (``cranfield-12``, ``financebench_id_00438``).

Everything in the manifest is ingested by the app's own pipeline into one index in a
data folder of the evaluation's own, named by a fingerprint of the files' contents and
of the settings that shape the index, so a second run only queries (and an interrupted
first run is completed by the ingest's own change detection). Then every question runs
through :meth:`app.service.Service.find`, the pipeline up to the selected sources
(route, retrieve, select; no generation), in each mode:

- ``routed``: the configured router, as ``mmrag ask`` uses it (with the passage probe
  and the paragraph-with-document rule);
- ``all``: every non-empty corpus, fused and cut by the same selection;
- ``oracle``: exactly the non-empty corpora of the question's label;
- ``llm``: the LLM router (one generation per question; slow on a CPU).

Measured per mode, over all questions and per kind: **success@5** (a gold file, on its
page where one is given, among the first 5 selected sources), **MRR** (1 / rank of the
first gold source among the selected, 0 if none), both over the questions that have
gold; **retrieved nothing** (the share whose selection is empty: what a ``no`` question
should get); **corpora** (mean corpora searched per question; the probe's one-passage
look is not counted, its time is); **latency** p50/p95 in ms of route + retrieve +
select, after one untimed warm-up question per mode (model loads are not latency).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from evals.base import Report, read_jsonl, service_with
from evals.metrics import percentiles, reciprocal_rank, success_at
from retrieval.base import Corpus, Hit
from retrieval.errors import MmragError
from router.base import NO_RETRIEVAL, AllCorporaRouter, FixedRouter, Router

if TYPE_CHECKING:
    from app.service import Service
    from app.settings import Settings

MODES = ("routed", "all", "oracle", "llm")
DEFAULT_MODES = ("routed", "all", "oracle")
K = 5
# Settings that change what the index holds for the same files, or how it is stored
# (an Edge folder and a local-mode folder are not the same format): the fingerprint's part.
INDEX_SETTINGS = (
    "qdrant_engine",
    "text_model",
    "clip_model",
    "chunk_target_words",
    "chunk_max_words",
)


@dataclass(frozen=True)
class Gold:
    """A file that answers a question (resolved path), on ``page`` (1-based) if given."""

    file: str
    page: int | None = None


@dataclass(frozen=True)
class MixedQuestion:
    """One line of ``queries.jsonl``: ``label`` the corpora a correct route may pick
    (``("no",)``: none), ``gold`` the sources that answer it (empty for ``no``)."""

    id: str
    kind: str
    question: str
    label: tuple[str, ...]
    gold: tuple[Gold, ...]

    @property
    def corpora(self) -> tuple[Corpus, ...]:
        """The label's corpora (none for ``no``): the oracle's route."""
        return tuple(Corpus(x) for x in self.label if x != NO_RETRIEVAL)


@dataclass(frozen=True)
class MixedData:
    """An evaluation folder: the paths its manifest ingests (resolved) and its questions."""

    folder: Path
    ingest: tuple[Path, ...]
    questions: tuple[MixedQuestion, ...]


def question_kind(qid: str, label: Sequence[str]) -> str:
    """``no`` for a no-retrieval label, else the id up to its first ``-`` or ``_``."""
    if tuple(label) == (NO_RETRIEVAL,):
        return NO_RETRIEVAL
    return re.split(r"[-_]", qid, maxsplit=1)[0]


def _question(folder: Path, row: Any) -> MixedQuestion:
    label = tuple(str(x) for x in row["label"])
    unknown = [x for x in label if x != NO_RETRIEVAL and x not in {c.value for c in Corpus}]
    if not label or unknown:
        raise ValueError(f"label must name corpora or 'no', got {list(label)}")
    gold = tuple(
        Gold(str((folder / g["file"]).resolve()), None if g.get("page") is None else int(g["page"]))
        for g in row.get("gold") or ()
    )
    qid = str(row["id"])
    kind = str(row.get("kind") or question_kind(qid, label))
    return MixedQuestion(qid, kind, str(row["question"]), label, gold)


def load_mixed(folder: Path) -> MixedData:
    """The manifest's paths (resolved) and the questions; a malformed file is one sentence."""
    manifest = folder / "manifest.json"
    try:
        paths = json.loads(manifest.read_text(encoding="utf-8"))["ingest"]
    except FileNotFoundError:
        raise MmragError(f"missing manifest file: {manifest}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise MmragError(f"{manifest}: not a manifest with an 'ingest' list ({e})") from e
    if not isinstance(paths, list) or not paths:
        raise MmragError(f"{manifest}: 'ingest' must list at least one folder or file")
    ingest = tuple((folder / str(p)).resolve() for p in paths)
    missing = [str(p) for p in ingest if not p.exists()]
    if missing:
        raise MmragError(f"{manifest}: no such folder or file: {', '.join(missing)}")
    questions = read_jsonl(
        folder / "queries.jsonl",
        lambda _, row: _question(folder, row),
        kind="queries",
        row="a question with id, question, label and gold",
    )
    return MixedData(folder, ingest, tuple(questions))


def limit_per_kind(questions: Sequence[MixedQuestion], n: int | None) -> list[MixedQuestion]:
    """The first ``n`` questions of each kind, in file order (all with ``None``)."""
    if n is None:
        return list(questions)
    taken: dict[str, int] = {}
    out = []
    for q in questions:
        if taken.get(q.kind, 0) < n:
            taken[q.kind] = taken.get(q.kind, 0) + 1
            out.append(q)
    return out


def fingerprint(paths: Sequence[Path], settings: Settings) -> str:
    """sha256 of every file's path and content under ``paths`` and of the settings that
    shape the index: the same material always finds its index again, other material
    never does."""
    from ingest.images.describe import RECIPE
    from ingest.images.people import available
    from ingest.pipeline import file_sha256, walk

    digest = hashlib.sha256()
    for name in INDEX_SETTINGS:
        digest.update(f"{name}={getattr(settings, name)}\n".encode())
    # The image text's recipe is code, not a setting: a new one needs a new index.
    digest.update(f"image_text={RECIPE} people={available()}\n".encode())
    for path in walk(paths):
        if path.is_file():
            digest.update(f"{path.resolve()}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def score(question: MixedQuestion, selected: Sequence[Hit]) -> tuple[float, float] | None:
    """success@5 and reciprocal rank of the selected sources; None without gold.

    Sources are keyed by (file, page) where the gold names a page of that file (another
    page of it is not gold) and by (file, None) elsewhere (any part of the file is)."""
    if not question.gold:
        return None
    gains = {(g.file, g.page): 1 for g in question.gold}
    paged = {g.file for g in question.gold if g.page is not None}
    ranked = [(h.item.source, h.item.page if h.item.source in paged else None) for h in selected]
    return success_at(ranked, gains, K), reciprocal_rank(ranked, gains)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def summarise(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """One mode's figures over ``rows`` (per-question results of that mode)."""
    gold = [r for r in rows if r["success"] is not None]
    return {
        "questions": len(rows),
        "gold_questions": len(gold),
        "success@5": _mean([r["success"] for r in gold]),
        "mrr": _mean([r["rr"] for r in gold]),
        "retrieved_nothing": _mean([float(not r["sources"]) for r in rows]),
        "corpora": _mean([len(r["searched"]) for r in rows]),
        "latency_ms": percentiles(r["ms"] for r in rows),
    }


def check_modes(modes: Sequence[str]) -> None:
    """One sentence naming the modes there are, for an unknown one or none."""
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise MmragError(
            f"unknown mode {', '.join(unknown) or '(none)'}; modes: {', '.join(MODES)}"
        )


def mode_routers(service: Service, modes: Sequence[str]) -> dict[str, Router | None]:
    """Each mode's router; None for the oracle, whose route is each question's label."""
    check_modes(modes)
    made: dict[str, Router | None] = {}
    for mode in modes:
        if mode == "routed":
            made[mode] = service.router
        elif mode == "all":
            made[mode] = AllCorporaRouter()
        elif mode == "llm":
            from router.llm import LlmRouter

            made[mode] = LlmRouter(service.generator)
        else:
            made[mode] = None
    return made


def evaluate_mixed(
    data: MixedData,
    service: Service,
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    limit: int | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Ingest ``data`` into ``service``'s index (unchanged files are skipped) and run
    every question in every mode; the figures as ``mmrag eval mixed --json`` writes them."""
    routers = mode_routers(service, modes)
    ingest = ingest_manifest(data, service, console=console)
    questions = limit_per_kind(data.questions, limit)
    if not questions:
        raise MmragError(f"{data.folder / 'queries.jsonl'} has no questions")
    for router in routers.values():
        service.find(questions[0].question, router=router or FixedRouter(questions[0].corpora))
    results: list[dict[str, Any]] = []
    for i, q in enumerate(questions, 1):
        per_mode: dict[str, dict[str, Any]] = {}
        for mode, router in routers.items():
            # Each mode encodes the question itself: none may time the previous one's.
            service.index.forget_queries()
            start = time.perf_counter()
            found = service.find(q.question, router=router or FixedRouter(q.corpora))
            ms = (time.perf_counter() - start) * 1000
            scored = score(q, found.selected)
            per_mode[mode] = {
                "route": found.route.label,
                "searched": [c.value for c in found.searched],
                "sources": [
                    {"file": os.path.relpath(h.item.source, data.folder), "page": h.item.page}
                    for h in found.selected
                ],
                "success": None if scored is None else scored[0],
                "rr": None if scored is None else round(scored[1], 4),
                "ms": round(ms, 2),
            }
        results.append({"id": q.id, "kind": q.kind, "modes": per_mode})
        if console and (i % 25 == 0 or i == len(questions)):
            console.print(f"[dim]{i}/{len(questions)} questions[/]")
    kinds = sorted(
        {q.kind for q in questions}, key=lambda k: (k == NO_RETRIEVAL, _first(k, questions))
    )
    figures: dict[str, Any] = {}
    for mode in routers:
        rows = [r["modes"][mode] for r in results]
        figures[mode] = {
            "overall": summarise(rows),
            "kinds": {
                kind: summarise([r["modes"][mode] for r in results if r["kind"] == kind])
                for kind in kinds
            },
        }
    s = service.settings
    return {
        "data": str(data.folder),
        "date": date.today().isoformat(),
        "n": len(questions),
        "kinds": {kind: sum(1 for q in questions if q.kind == kind) for kind in kinds},
        "ingest": ingest,
        "settings": {
            "router": service.router.name,
            "router_probe": s.router_probe,
            "router_probes": s.router_probes,
            "calibrate_corpora": s.calibrate_corpora,
            "corpus_gap": s.corpus_gap,
            "search_mode": s.search_mode,
            "search_limit": s.search_limit,
            "top_k": s.top_k,
            "min_relevance": s.min_relevance,
            "keep_ratio": s.keep_ratio,
            "reranker": s.reranker,
        },
        "modes": figures,
        "questions": results,
    }


def _first(kind: str, questions: Sequence[MixedQuestion]) -> int:
    return next(i for i, q in enumerate(questions) if q.kind == kind)


def ingest_manifest(
    data: MixedData, service: Service, *, console: Console | None = None
) -> dict[str, Any]:
    """Ingest the manifest's paths; what it cost (nothing embedded when reused)."""
    from ingest.pipeline import FileStatus

    done = 0

    def progress(result: Any) -> None:
        nonlocal done
        done += 1
        if console and result.status is FileStatus.FAILED:
            console.print(f"[red]failed[/] {result.message}")
        elif console and done % 200 == 0:
            console.print(f"[dim]ingest: {done} files[/]")

    report = service.ingest(list(data.ingest), progress)
    counts = {c.value: n for c, n in service.collections().items()}
    if console:
        console.print(
            f"[dim]ingested {len(report.files)} files in {report.seconds:.1f} s, "
            f"{report.embedded} items embedded; corpora {counts}[/]"
        )
    return {
        "folder": str(service.settings.data_dir),
        "files": len(report.files),
        "failed": [f.message for f in report.files if f.status is FileStatus.FAILED],
        "embedded": report.embedded,
        "seconds": round(report.seconds, 1),
        "corpora": counts,
    }


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def mixed_table(results: Mapping[str, Any]) -> Table:
    """The modes side by side: success@5 and MRR overall and per kind, ``no`` questions
    that retrieved nothing, corpora searched, latency."""
    modes = list(results["modes"])
    table = Table(title=f"Routing on one mixed index ({results['n']} questions, {results['data']})")
    table.add_column("measure")
    for mode in modes:
        table.add_column(mode, justify="right")
    first = results["modes"][modes[0]]

    def row(name: str, kind: str | None, measure: str) -> None:
        figures = [results["modes"][m] for m in modes]
        scoped = [f["overall"] if kind is None else f["kinds"][kind] for f in figures]
        table.add_row(name, *(_cell(f[measure]) for f in scoped))

    for measure, title in (("success@5", "success@5"), ("mrr", "MRR")):
        row(f"{title}, questions with gold ({first['overall']['gold_questions']})", None, measure)
        for kind, f in first["kinds"].items():
            if f["gold_questions"]:
                row(f"  {kind} ({f['questions']})", kind, measure)
    if NO_RETRIEVAL in first["kinds"]:
        n = first["kinds"][NO_RETRIEVAL]["questions"]
        row(f"no: retrieved nothing ({n})", NO_RETRIEVAL, "retrieved_nothing")
    row("corpora searched per question", None, "corpora")
    for p in ("p50", "p95"):
        table.add_row(
            f"latency {p} ms (route + retrieve + select)",
            *(f"{results['modes'][m]['overall']['latency_ms'][p]:.0f}" for m in modes),
        )
    return table


def mixed_report(
    folder: Path,
    *,
    modes: Sequence[str] = DEFAULT_MODES,
    limit: int | None = None,
    settings: Settings | None = None,
    console: Console | None = None,
) -> Report:
    """``mmrag eval mixed``: the configured service on a data folder of the evaluation's
    own, ``<data_dir>/eval-mixed/<fingerprint>``; always the embedded store (never a
    configured Qdrant server's collections), and the configured LLM file for the
    tokenizer, so the evaluation's folder gets no copy of the model."""
    from app.settings import Settings

    check_modes(modes)
    base = settings or Settings()
    data = load_mixed(folder)
    changes: dict[str, Any] = {
        "data_dir": base.data_dir / "eval-mixed" / fingerprint(data.ingest, base)[:16],
        "qdrant_url": None,
        "qdrant_path": None,
    }
    if base.generator == "llamacpp" and base.llm_model_path is None:
        from generation.llamacpp import ensure_gguf

        changes["llm_model_path"] = ensure_gguf(base.models_dir)
    service = service_with(base, **changes)
    try:
        results = evaluate_mixed(data, service, modes=modes, limit=limit, console=console)
    finally:
        service.close()
    return Report(results, mixed_table(results))
