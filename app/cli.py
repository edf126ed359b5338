"""The ``mmrag`` command line: ingest, ask, collections, eval, bench.

Commands parse their options and call one function; the ``eval`` and ``bench`` commands
are wired in :mod:`app.cli_evals` (their runs live in ``evals/``).

Errors of our own (``MmragError``) are printed as one red sentence with exit code 2;
an ingest run in which some file failed exits with 1 after storing the others.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from app.cli_evals import bench_app, eval_app
from app.terminal import console, err
from app.terminal import run as _run
from retrieval.base import Corpus

app = typer.Typer(
    name="mmrag",
    help="Multimodal RAG: ingest documents, ask questions, get cited answers.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(eval_app, name="eval")
app.add_typer(bench_app, name="bench")

T = TypeVar("T")


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


def main() -> None:
    from retrieval import folder_lock

    folder_lock.COMMAND = " ".join(["mmrag", *sys.argv[1:]])
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
