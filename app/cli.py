"""The ``mmrag`` command line: ingest, ask, collections, eval, bench.

Commands parse their options and call one function; ``eval`` and ``bench`` runs live in
``evals/`` and hand back a :class:`~evals.base.Report` that :func:`_report` prints.

Errors of our own (``MmragError``) are printed as one red sentence with exit code 2;
an ingest run in which some file failed exits with 1 after storing the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from retrieval.base import Corpus
from retrieval.errors import MmragError

if TYPE_CHECKING:
    # Evaluation is imported by the commands that run one, never by `mmrag serve`.
    from evals.base import Report

app = typer.Typer(
    name="mmrag",
    help="Multimodal RAG: ingest documents, ask questions, get cited answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
eval_app = typer.Typer(help="Measure retrieval and answer quality on labelled data.")
bench_app = typer.Typer(help="Measure speed; figures go to docs/benchmarks.md.")
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(fn: Callable[[], T], passing: type[Exception] | None = None) -> T:
    try:
        return fn()
    except MmragError as e:
        if passing is not None and isinstance(e, passing):
            raise
        err.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(2) from None


def _service() -> Any:
    from app.service import Service
    from app.settings import Settings

    return _run(lambda: Service(Settings()))


class _Remote:
    """The ``mmrag serve`` that holds the data folder, asked over its API instead.

    The embedded store allows one process per folder; read-only commands (collections,
    sources, ask) still work while a server runs, through the URL and local token the
    server left in the folder (readable by its owner only).
    """

    def __init__(self, url: str, token: str | None, workspace: str) -> None:
        import httpx

        self.workspace = workspace
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=600)

    @classmethod
    def of(cls, service: Any) -> _Remote | None:
        from retrieval.folder_lock import holder

        info = holder(service.settings.store_path) or {}
        if not info.get("url"):
            return None
        return cls(str(info["url"]), info.get("token"), service.settings.workspace)

    def get(self, path: str, **params: Any) -> Any:
        response = self.http.get(path, params={**params, "workspaces": [self.workspace]})
        return self._json(response)

    @staticmethod
    def _json(response: Any) -> Any:
        from retrieval.errors import MmragError

        if response.status_code >= 400:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise MmragError(f"the running server answered {response.status_code}: {message}")
        return response.json()


def _local_or_remote(service: Any, local: Callable[[], T], remote: Callable[[_Remote], T]) -> T:
    """Run ``local``; if another process holds the data folder and it is a server, ask it.
    Our errors are one sentence and exit code 2, as everywhere (:func:`_run`)."""
    import httpx

    from retrieval.errors import StoreLockedError

    try:
        return _run(local, passing=StoreLockedError)
    except StoreLockedError as e:
        server = _Remote.of(service)
        if server is None:
            err.print(f"[bold red]error:[/] {e}")
            raise typer.Exit(2) from None
        err.print(f"[dim]the data folder is held by the server at {server.http.base_url}[/]")
        try:
            return _run(lambda: remote(server))
        except httpx.HTTPError as failure:
            err.print(f"[bold red]error:[/] {e} (and it did not answer: {failure})")
            raise typer.Exit(2) from None


@app.command()
def ingest(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (walked recursively).")],
    prune: Annotated[
        bool,
        typer.Option(help="Also remove indexed files that are gone from these folders."),
    ] = False,
) -> None:
    """Ingest documents, images and videos into the index."""
    from ingest.base import FileResult, FileStatus
    from ingest.roots import walk

    service = _service()
    _ = _run(lambda: service.store)  # a folder held by another process: say so before the bars
    total = sum(1 for _ in walk(paths))
    with Progress(
        TextColumn("[bold]ingest"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[passages]} items"),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=err,
        transient=False,
    ) as progress:
        task = progress.add_task("loading models...", total=total, passages=0)
        passages = 0

        def on_file(r: FileResult) -> None:
            nonlocal passages
            passages += r.passages
            progress.update(task, advance=1, passages=passages, description=Path(r.path).name)
            if r.status is FileStatus.FAILED:
                progress.console.print(f"[red]failed[/] {r.message}")

        current: dict[str, Any] = {}

        def on_step(path: str, fraction: float) -> None:
            # One bar per long file (a video), removed when the file is done.
            if current.get("path") != path:
                if "task" in current:
                    progress.remove_task(current["task"])
                current["path"] = path
                current["task"] = progress.add_task(Path(path).name, total=1.0, passages=0)
            progress.update(current["task"], completed=fraction)

        _ = service.index  # load the encoder while the bar says so
        progress.update(task, description="")
        report = _run(lambda: service.ingest(paths, on_file, on_step, prune=prune))
        if "task" in current:
            progress.remove_task(current["task"])
    _ingest_summary(report)
    service.close()
    if not report.ok:
        raise typer.Exit(1)


def _ingest_summary(report: Any) -> None:
    from ingest.base import FileStatus

    table = Table(title="Ingest summary")
    table.add_column("status")
    table.add_column("files", justify="right")
    table.add_column("items", justify="right")
    for status in FileStatus:
        files = [f for f in report.files if f.status is status]
        if files:
            table.add_row(status.value, str(len(files)), str(sum(f.passages for f in files)))
    console.print(table)
    rate = report.embedded / report.seconds if report.seconds else 0.0
    console.print(
        f"{len(report.files)} files in {report.seconds:.1f} s; "
        f"{report.embedded} items embedded ({rate:.0f}/s)"
    )
    for f in report.files:
        for w in f.warnings:
            console.print(f"[yellow]warning[/] {Path(f.path).name}: {w}")
        if f.status is FileStatus.FAILED:
            console.print(f"[red]failed[/] {f.message}")
        elif f.status in (FileStatus.SKIPPED, FileStatus.REMOVED):
            console.print(f"[dim]{f.message}[/]")


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    corpus: Annotated[
        list[Corpus] | None,
        typer.Option("--corpus", "-c", help="Search only these corpora (repeatable)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    image: Annotated[
        Path | None,
        typer.Option("--image", help="A photo asked with the question: also search by it."),
    ] = None,
) -> None:
    """Answer a question from the ingested sources, streaming, with cited sources."""
    from app.service import DoneEvent, RetryEvent, RouteEvent, TokenEvent

    service = _service()

    def run() -> dict[str, Any]:
        from app.render import answer_json

        done = None
        for event in service.ask(
            question, corpora=corpus, image=image, workspaces=[service.settings.workspace]
        ):
            if isinstance(event, RouteEvent) and not as_json:
                err.print(f"[dim]route: {event.route.label} ({event.route.reason})[/]")
            elif isinstance(event, TokenEvent) and not as_json:
                console.print(event.text, end="", markup=False, highlight=False)
            elif isinstance(event, RetryEvent) and not as_json:
                err.print(f"\n[yellow]{event.reason}[/]")
            elif isinstance(event, DoneEvent):
                done = event
        assert done is not None
        return answer_json(done).model_dump()

    def remote(server: _Remote) -> dict[str, Any]:
        return _ask_remote(server, question, corpus, image, as_json)

    answer = _local_or_remote(service, run, remote)
    service.close()
    if as_json:
        console.print_json(json.dumps(answer))
        return
    _print_answer(answer)


def _ask_remote(
    server: _Remote, question: str, corpora: Any, image: Path | None, quiet: bool
) -> dict[str, Any]:
    """Ask the running server, streaming its events as a local answer would."""
    body: dict[str, Any] = {
        "question": question,
        "stream": True,
        "workspaces": [server.workspace],
        **({"corpora": [c.value for c in corpora]} if corpora else {}),
    }
    if image is not None:
        with image.open("rb") as f:
            files = {"image": (image.name, f.read())}
        form = {"question": question, "stream": "true"}
        request = server.http.build_request("POST", "/api/v1/ask/image", data=form, files=files)
    else:
        request = server.http.build_request("POST", "/api/v1/ask", json=body)
    response = server.http.send(request, stream=True)
    if response.status_code >= 400:
        response.read()
        return dict(_Remote._json(response))
    done: dict[str, Any] | None = None
    event = ""
    for line in response.iter_lines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            data = json.loads(line[6:])
            if event == "route" and not quiet:
                err.print(f"[dim]route: {'+'.join(data['corpora']) or 'no'} ({data['reason']})[/]")
            elif event == "token" and not quiet:
                console.print(data["text"], end="", markup=False, highlight=False)
            elif event == "retry" and not quiet:
                err.print(f"\n[yellow]{data['reason']}[/]")
            elif event == "error":
                from retrieval.errors import MmragError

                raise MmragError(data["message"])
            elif event == "done":
                done = data
    response.close()
    if done is None:
        from retrieval.errors import MmragError

        raise MmragError("the running server ended the answer without a result")
    return done


def _print_answer(answer: dict[str, Any]) -> None:
    """The end of an answer in the terminal: notes, the sources table, timings."""
    from app.render import answer_notes
    from app.schemas import AnswerOut

    console.print()
    for note in answer_notes(AnswerOut.model_validate(answer)):
        err.print(note, style="yellow", markup=False, highlight=False)
    if answer["sources"]:
        table = Table(title="Sources")
        for col in ("#", "file", "page", "section", "relevance", "cited"):
            table.add_column(col)
        for s in answer["sources"]:
            relevance = s["relevance"]
            table.add_row(
                str(s["number"]),
                Path(s["source"]).name,
                "" if s["page"] is None else str(s["page"]),
                " > ".join(s["heading"])[:40],
                "" if relevance is None else f"{relevance:.3f}",
                "yes" if s["cited"] else "",
            )
        console.print(table)
    t = answer["timings"]
    err.print(
        f"[dim]retrieve {t.get('retrieve_ms', 0):.0f} ms, first token "
        f"{t.get('first_token_ms', 0):.0f} ms, total {t.get('total_ms', 0):.0f} ms[/]"
    )


@app.command()
def collections() -> None:
    """Item counts per corpus (of MMRAG_WORKSPACE)."""
    service = _service()
    workspace = service.settings.workspace
    counts = _local_or_remote(
        service,
        lambda: {c.value: n for c, n in service.collections([workspace]).items()},
        lambda server: dict(server.get("/api/v1/corpora")["corpora"]),
    )
    table = Table(title="Corpora")
    table.add_column("corpus")
    table.add_column("items", justify="right")
    for corpus, n in counts.items():
        table.add_row(corpus, str(n))
    console.print(table)
    service.close()


@app.command()
def sources() -> None:
    """The files in the index (of MMRAG_WORKSPACE), with their corpora and whether they
    are still on disk."""
    service = _service()
    workspace = service.settings.workspace

    def local() -> list[tuple[str, str, bool]]:
        found = service.sources([workspace])
        return [(x.source, ", ".join(c.value for c in x.corpora), x.on_disk) for x in found]

    def remote(server: _Remote) -> list[tuple[str, str, bool]]:
        rows: list[tuple[str, str, bool]] = []
        while True:
            page = server.get("/api/v1/sources", limit=1000, offset=len(rows))
            rows += [(x["source"], ", ".join(x["corpora"]), x["on_disk"]) for x in page["sources"]]
            if not page["sources"] or len(rows) >= page["total"]:
                return rows

    found = _local_or_remote(service, local, remote)
    table = Table(title=f"Sources ({len(found)})")
    table.add_column("source", overflow="fold")
    table.add_column("corpora")
    table.add_column("on disk")
    for source, kinds, on_disk in found:
        table.add_row(source, kinds, "yes" if on_disk else "[red]gone[/]")
    console.print(table)
    service.close()


@app.command()
def delete(
    paths: Annotated[list[Path], typer.Argument(help="Files to remove from the index.")],
) -> None:
    """Remove files from the index (their items, thumbnails and keyframes; never the file)."""
    service = _service()
    missing = 0
    for path in paths:
        source = str(path.resolve())
        if _run(partial(service.delete_source, source, [service.settings.workspace])):
            console.print(f"deleted {source}")
        else:
            missing += 1
            console.print(f"[red]not in the index[/] {source}")
    service.close()
    if missing:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address (default MMRAG_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default MMRAG_PORT).")] = None,
) -> None:
    """REST API, web UI (/ui), widget (/widget.js, demo at /demo), all on one port."""
    import uvicorn

    from app.api import create_app
    from app.ui import mount_ui

    service = _service()
    s = service.settings.model_copy(update={k: v for k, v in (("host", host), ("port", port)) if v})
    service.settings = s
    store = _run(lambda: service.store)  # take the data folder now, or say who holds it
    app_ = _run(lambda: mount_ui(create_app(service), service))
    where = f"http://{s.host}:{s.port}"
    lock = getattr(store, "lock", None)
    if lock is not None:
        # Read-only commands on this folder will ask this server (see _Remote).
        local = s.host if s.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        token = lock.announce(f"http://{'[' + local + ']' if ':' in local else local}:{s.port}")
        keyring = app_.state.parts.keys
        if keyring.enabled:
            keyring.add_local(token)
    err.print(f"mmrag serving on {where}  (UI {where}/ui, API docs {where}/api/v1/docs)")
    uvicorn.run(app_, host=s.host, port=s.port, log_level="warning")
    service.close()


keys_app = typer.Typer(help="API keys: make one, print its configuration entry.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="Who holds it (also the UI login's user name).")],
    role: Annotated[str, typer.Option(help="read, ingest or admin.")] = "read",
    workspace: Annotated[
        list[str] | None, typer.Option("--workspace", "-w", help="Workspaces it sees ('*': all).")
    ] = None,
) -> None:
    """A new random key: give the key to its holder, put the printed entry (which holds
    only its SHA-256) in MMRAG_API_KEYS."""
    from pydantic import ValidationError

    from app.security import new_key
    from app.settings import ApiKey

    key, sha = new_key()
    try:
        entry = ApiKey.model_validate(
            {"name": name, "key_sha256": sha, "role": role, "workspaces": workspace or []}
        )
    except ValidationError as e:
        err.print(f"[bold red]error:[/] {e.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    err.print("[bold]key[/] (shown once; give it to its holder):")
    console.print(key, markup=False, highlight=False)
    err.print("[bold]entry[/] for MMRAG_API_KEYS:")
    console.print(entry.model_dump_json(exclude_none=True), markup=False, highlight=False)


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
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Text->image and image->text Recall@1/5/10: tags, OCR, their fusion, a labels baseline."""
    from evals.images import images_report

    _report(lambda: images_report(data, console=err), json_out)


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


def main() -> None:
    from retrieval import folder_lock

    folder_lock.COMMAND = " ".join(["mmrag", *sys.argv[1:]])
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
