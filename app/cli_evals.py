"""The ``mmrag eval`` and ``mmrag bench`` commands: options in, one ``evals`` call, its
:class:`~evals.base.Report` printed (and written with ``--json``). Evaluation code is
imported inside each command, so ``mmrag serve`` never loads it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.terminal import console, err
from app.terminal import run as _run

if TYPE_CHECKING:
    from evals.base import Report

eval_app = typer.Typer(help="Measure retrieval and answer quality on labelled data.")
bench_app = typer.Typer(help="Measure speed; figures go to docs/benchmarks.md.")


def _report(make: Callable[[], Report], json_out: Path | None) -> None:
    """Run an evaluation or bench, print what it shows, write its figures with ``--json``."""
    report = _run(make)
    if isinstance(report.shown, Mapping):
        console.print_json(json.dumps(report.shown))
    else:
        console.print(report.shown)
    if json_out:
        json_out.write_text(report.saved())
    if report.failed:
        raise typer.Exit(1)


@eval_app.command("text")
def eval_text(
    data: Annotated[Path, typer.Option(help="Folder with corpus.jsonl and queries.jsonl.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """nDCG@10, Recall@100 and MRR for dense, sparse, hybrid and bm25s.

    Hybrid fusion follows the settings (MMRAG_RRF_K, MMRAG_DENSE_WEIGHT).
    """
    from evals.retrieval import text_report

    _report(lambda: text_report(data, console=err), json_out)


@eval_app.command("images")
def eval_images(
    data: Annotated[Path, typer.Option(help="Folder with images/ and captions.jsonl.")],
    cv: Annotated[
        int | None,
        typer.Option(help="Also k-fold cross-validate the text recipe's settings by photo."),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the folds.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Text->image and image->text Recall@1/5/10: tags, OCR, their fusion, a labels baseline.

    With --cv, the recipe's CV and single-split Recall@5, and its ablations.
    """
    from evals.images import images_report

    _report(lambda: images_report(data, console=err, cv=cv, seed=seed), json_out)


@eval_app.command("router")
def eval_router(
    data: Annotated[Path, typer.Option(help="JSON lines of {id, query, label} questions.")],
    cv: Annotated[
        int | None, typer.Option(help="k-fold cross-validation on DATA instead of scoring.")
    ] = None,
    baseline_train: Annotated[
        Path | None,
        typer.Option(help="Fit the TF-IDF baseline on this file (score mode; default: DATA)."),
    ] = None,
    extra: Annotated[
        Path | None,
        typer.Option(help="Labelled questions added to every training fold, never scored."),
    ] = None,
    llm_sample: Annotated[
        int, typer.Option(help="Questions (stratified) for the LLM router; 0 skips it.")
    ] = 60,
    seed: Annotated[int, typer.Option(help="Seed of the folds and of the LLM sample.")] = 0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Accuracy, macro-F1, confusion and latency: trained router, TF-IDF baseline, LLM router."""
    from evals.router import router_report

    def make() -> Report:
        return router_report(
            data,
            cv=cv,
            seed=seed,
            baseline_train=baseline_train or data,
            extra=extra,
            llm_sample=llm_sample,
            console=err,
        )

    _report(make, json_out)


@eval_app.command("grounding")
def eval_grounding(
    data: Annotated[Path, typer.Option(help="RGB-style JSON lines (rgb_fact.jsonl).")],
    backend: Annotated[
        list[str] | None,
        typer.Option(
            help="llamacpp (in-process) and/or openai (MMRAG_OPENAI_BASE_URL, e.g. vLLM); "
            "repeatable. Default: llamacpp."
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Answer accuracy with clean and noisy passages; conflicts flagged and stated."""
    from evals.grounding import BACKENDS, grounding_report

    names = backend or ["llamacpp"]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        err.print(f"[red]error:[/] unknown backend {', '.join(unknown)} ({', '.join(BACKENDS)})")
        raise typer.Exit(2)
    _report(lambda: grounding_report(data, names, console=err), json_out)


@eval_app.command("documents")
def eval_documents(
    data: Annotated[Path, typer.Option(help="Folder with pdfs/ and questions.jsonl.")],
    store: Annotated[
        Path, typer.Option(help="Data folder for this evaluation's index (kept between runs).")
    ] = Path("mmrag-eval-documents"),
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Ingest the filings, ask every question: page Recall@5 and answer correctness."""
    from evals.documents import documents_report

    _report(lambda: documents_report(data, store, console=err), json_out)


@eval_app.command("mixed")
def eval_mixed(
    data: Annotated[Path, typer.Option(help="Folder with manifest.json and queries.jsonl.")],
    modes: Annotated[
        str, typer.Option(help="Comma-separated: routed, all, oracle, llm (slow).")
    ] = "routed,all,oracle",
    limit_per_kind: Annotated[
        int | None, typer.Option(min=1, help="Only the first N questions of each kind.")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """One index of every kind of source: routed vs all corpora vs the oracle route.

    The index lives in MMRAG_DATA_DIR/eval-mixed/<fingerprint of the files>, so a second
    run only queries.
    """
    from evals.mixed import mixed_report

    chosen = [m.strip() for m in modes.split(",") if m.strip()]
    _report(lambda: mixed_report(data, modes=chosen, limit=limit_per_kind, console=err), json_out)


@eval_app.command("injection")
def eval_injection(
    data: Annotated[
        Path | None,
        typer.Option(help="Injection set (JSON lines); default: the one shipped with mmrag."),
    ] = None,
    model: Annotated[
        Path | None,
        typer.Option(help="GGUF for llama.cpp; default MMRAG_LLM_MODEL_PATH or the packaged one."),
    ] = None,
    real: Annotated[
        list[Path] | None,
        typer.Option(
            help="Real documents or JSON-lines corpora without attacks: count the filter's "
            "false alarms on them (repeatable)."
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Hostile documents in a fresh index: the share of answers that obey them."""
    from evals.injection import injection_report

    _report(lambda: injection_report(data, model=model, real=real or (), console=err), json_out)


@bench_app.command("ingest")
def bench_ingest(
    data: Annotated[Path, typer.Option(help="Folder of documents to ingest.")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Ingest throughput vs raw embedding throughput, and unchanged re-ingest speed."""
    from evals.base import Report
    from evals.bench import bench_ingest as run

    _report(lambda: Report.of_figures(run(data, console=err)), json_out)


@bench_app.command("media")
def bench_media(
    images: Annotated[Path, typer.Option(help="Folder of images (searched recursively).")],
    videos: Annotated[Path, typer.Option(help="Folder of videos (searched recursively).")],
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Image and video analysis speed by stage."""
    from evals.base import Report
    from evals.bench import bench_media as run

    _report(lambda: Report.of_figures(run(images, videos, console=err)), json_out)


@bench_app.command("ocr")
def bench_ocr(
    data: Annotated[Path, typer.Option(help="Folder of PDFs with a text layer (the truth).")],
    per_pdf: Annotated[int, typer.Option(help="Pages taken from each PDF.")] = 2,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Scanned-page OCR: seconds per page, and words recovered vs the real text layer."""
    from evals.base import Report
    from evals.bench import bench_ocr as run

    _report(lambda: Report.of_figures(run(data, per_pdf=per_pdf, console=err)), json_out)


@bench_app.command("retrieval")
def bench_retrieval(
    data: Annotated[Path, typer.Option(help="Folder with corpus.jsonl and queries.jsonl.")],
    repeat: Annotated[int, typer.Option(help="Passes over the queries.")] = 3,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Per-query retrieval latency (query encoding included), p50/p95 per mode."""
    from evals.base import Report
    from evals.bench import bench_retrieval as run

    _report(lambda: Report.of_figures(run(data, repeat=repeat, console=err)), json_out)


@bench_app.command("crash")
def bench_crash(
    trials: Annotated[int, typer.Option(min=1, help="Kill-and-heal trials.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the crash points.")] = 0,
    data: Annotated[
        Path, typer.Option(help="The shared evaluation data the test folder is built from.")
    ] = Path("../shared/eval"),
    work: Annotated[
        Path | None, typer.Option(help="Keep the folders and logs here (default: a temp dir).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Kill -9 ingests at seeded points, re-run them, compare with a clean ingest."""
    from evals.crash import crash_report

    _report(lambda: crash_report(data, trials=trials, seed=seed, work=work, console=err), json_out)


@eval_app.command("all")
def eval_all(
    data: Annotated[
        Path, typer.Option(help="The shared evaluation data (text/, documents/, images/, ...).")
    ] = Path("../shared/eval"),
    out: Annotated[
        Path, typer.Option(help="Folder for every step's JSON, run.json and index.html.")
    ] = Path("report"),
    work: Annotated[
        Path | None,
        typer.Option(help="A new or empty folder for the indexes (default: a temp dir, removed)."),
    ] = None,
    only: Annotated[
        str | None, typer.Option(help="Comma-separated steps, e.g. eval-text,bench-ocr.")
    ] = None,
    page_only: Annotated[
        bool, typer.Option(help="Only make OUT/index.html again from the JSON in OUT.")
    ] = False,
) -> None:
    """Every evaluation and benchmark of the README on a fresh data folder, and one page.

    Each step's JSON (as its --json writes it) and OUT/index.html: the machine, each
    step's command, parameters, time, tables and plots. A missing input skips a step; a
    failed step is shown on the page and the command exits 1 after writing it.
    """
    import tempfile

    from evals.report import run_all, write_page

    if page_only:
        console.print(str(_run(lambda: write_page(out))))
        return
    keys = [k.strip() for k in (only or "").split(",") if k.strip()]
    with tempfile.TemporaryDirectory(prefix="mmrag-eval-all-") as tmp:
        failed = _run(lambda: run_all(data, out, work=work or Path(tmp), only=keys, console=err))
    if failed:
        raise typer.Exit(1)
