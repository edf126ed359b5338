"""The Gradio web UI, mounted at ``/ui`` on the API's app (one port, one service).

Three tabs: **Ask** (streaming chat, an optional photo with the question, the corpora to
force, the route with its scores, the sources as they are: thumbnails, a video player
that starts at the clip's time, the PDF page with the passage), **Ingest** (upload with
per-file progress) and **Corpora** (counts). It calls the :class:`Service` in-process,
as the API does; ``mmrag serve`` mounts it on the API's app. Answers and source cards
come from :mod:`app.render` (media links included), so every surface shows the same.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from fastapi import FastAPI

from app.deps import Parts
from app.render import answer_json, answer_notes, hits_json
from app.security import UNSIGNED, KeyRing, MediaLinks, Principal
from app.service import (
    MAX_QUESTION_CHARS,
    DoneEvent,
    RetryEvent,
    RouteEvent,
    Service,
    SourcesEvent,
    TokenEvent,
)
from app.uploads import Uploads, public_message
from retrieval.base import Corpus

CSS = """
#sources { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 12px; }
.mm-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px; font-size: 14px; }
.mm-card img, .mm-card video { max-width: 100%; border-radius: 6px; display: block; }
.mm-card .mm-head { font-weight: 600; margin-bottom: 6px; word-break: break-all; }
.mm-card .mm-cited { color: #1a7f37; font-weight: 600; }
.mm-route { font-size: 14px; }
@media (max-width: 640px) { #ask-row { flex-direction: column; } }
"""


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}"


def source_cards(sources: list[Any]) -> str:
    """HTML cards for the API's source objects (``app.api.SourceOut``)."""
    if not sources:
        return ""
    cards = []
    for s in sources:
        name = html.escape(Path(s.source).name)
        where = f", page {s.page}" if s.page is not None else ""
        if s.t_start is not None and s.t_end is not None:
            where += f", {_clock(s.t_start)}-{_clock(s.t_end)}"
        cited = ' <span class="mm-cited">cited</span>' if s.cited else ""
        media = s.media
        if s.corpus in ("clip", "video") and media.file:
            start = f"#t={s.t_start:.1f},{s.t_end:.1f}" if s.t_start is not None else ""
            body = (
                f'<video controls preload="metadata" src="{html.escape(media.file)}{start}" '
                f'data-start="{s.t_start or 0}"></video>'
            )
        elif media.thumbnail:
            body = f'<img alt="{name}" src="{html.escape(media.thumbnail)}">'
        elif media.page_image:
            body = f'<img alt="{name}{where}" src="{html.escape(media.page_image)}" loading="lazy">'
        else:
            body = ""
        text = html.escape(s.text[:600])
        cards.append(
            f'<div class="mm-card" data-source="{s.number}">'
            f'<div class="mm-head">[{s.number}] {name}{html.escape(where)}{cited}</div>'
            f"{body}<details><summary>passage</summary><p>{text}</p></details></div>"
        )
    return "".join(cards)


def route_text(route: Any) -> str:
    corpora = ", ".join(c.value for c in route.corpora) or "no search (model alone)"
    top = sorted(route.scores.items(), key=lambda kv: -kv[1])[:3]
    scores = ", ".join(f"{k} {v:.2f}" for k, v in top)
    return f"**Route:** {corpora} — {html.escape(route.reason)} (scores: {scores})"


def build_ui(
    service: Service,
    links: MediaLinks | None = None,
    keys: KeyRing | None = None,
    uploads: Uploads | None = None,
) -> gr.Blocks:
    """The UI's Blocks. With ``keys``, each handler acts as the logged-in key (its role and
    workspaces); without, as an admin of ``MMRAG_WORKSPACE``."""
    signer = links or UNSIGNED
    settings = service.settings
    store = uploads or Uploads(settings.data_dir / "uploads", settings.max_upload_mb * 1024 * 1024)
    anonymous = Principal("anonymous", "admin", frozenset({settings.workspace}))

    def caller(request: gr.Request | None) -> Principal:
        if keys is None or not keys.enabled:
            return anonymous
        who = keys.named((request.username if request else None) or "")
        if who is None:
            raise gr.Error("Log in with an API key first.")
        return who

    def ask(
        message: str,
        image: str | None,
        forced: list[str],
        history: list[dict[str, str]],
        request: gr.Request,
    ) -> Iterator[tuple[list[dict[str, str]], str, str, str]]:
        question = (message or "").strip()[: MAX_QUESTION_CHARS + 1]
        if not question:
            yield history, "", "", ""
            return
        if len(question) > MAX_QUESTION_CHARS:
            raise gr.Error(f"A question has at most {MAX_QUESTION_CHARS} characters.")
        who = caller(request)
        photo = Path(image) if image else None
        if photo is not None and not uploaded_by_a_client(photo):
            raise gr.Error("That photo was not uploaded here.")
        history = [*history, {"role": "user", "content": question}]
        answer = ""
        route, cards = "", ""
        corpora = [Corpus(c) for c in forced] if forced else None
        cancel = threading.Event()
        events = service.ask(
            question, corpora=corpora, image=photo, workspaces=who.scope, cancel=cancel
        )
        try:
            for event in events:
                if isinstance(event, RouteEvent):
                    route = route_text(event.route)
                elif isinstance(event, SourcesEvent):
                    cards = source_cards(hits_json(event.hits, signer))
                elif isinstance(event, TokenEvent):
                    answer += event.text
                elif isinstance(event, RetryEvent):
                    answer = ""
                elif isinstance(event, DoneEvent):
                    out = answer_json(event, signer)
                    cards = source_cards(out.sources)
                    answer = out.answer
                    if notes := answer_notes(out):
                        # Notes quote source text: escaped, so it renders as text.
                        answer += "\n\n_" + html.escape("; ".join(notes)) + "_"
                yield [*history, {"role": "assistant", "content": answer}], route, cards, ""
        finally:
            cancel.set()  # the page went away mid-answer: stop at the next token
            events.close()

    def ingest(
        files: list[str] | None, request: gr.Request, progress: gr.Progress | None = None
    ) -> str:
        who = caller(request)
        if not who.allows("ingest"):
            raise gr.Error(f"This key's role ({who.role}) may not ingest.")
        picked = [Path(f) for f in files or []]
        if not picked:
            return "Choose files first."
        # Only files a client uploaded through this UI: a crafted request naming any
        # other server path is refused here, whatever Gradio itself let through.
        if not all(uploaded_by_a_client(f) for f in picked):
            raise gr.Error("Only files uploaded here can be ingested.")
        workspace = who.home(settings.workspace)
        saved: list[Path] = []
        for f in picked:
            with f.open("rb") as stream:
                path = store.save(stream, f.name, workspace)
            if path not in saved:
                saved.append(path)
        progress = progress or gr.Progress()
        lines: list[str] = []

        def on_file(result: Any) -> None:
            name = Path(result.path).name
            detail = f": {public_message(result.message)}" if result.message else ""
            lines.append(f"- {html.escape(name)}: **{result.status.value}**{html.escape(detail)}")
            progress(len(lines) / len(saved), desc=name)
            if result.status.value == "failed":
                store.discard(Path(result.path))

        def on_step(path: str, fraction: float) -> None:  # inside a video or a scan
            progress(min((len(lines) + fraction) / len(saved), 0.999), desc=Path(path).name)

        report = service.ingest(saved, progress=on_file, step=on_step, workspace=workspace)
        head = "Ingested." if report.ok else "Ingested, with failures."
        return head + "\n\n" + "\n".join(lines)

    def corpora(request: gr.Request) -> tuple[list[list[Any]], list[list[Any]]]:
        who = caller(request)
        counts = service.collections(who.scope)
        found = service.sources(who.scope) if who.allows("ingest") else []
        files = [
            [x.source, ", ".join(c.value for c in x.corpora), "yes" if x.on_disk else "gone"]
            for x in found
        ]
        return [[c.value, n] for c, n in counts.items()], files

    with gr.Blocks(title="mmrag") as ui:
        gr.Markdown("## mmrag — ask your documents, images and videos")
        with gr.Tab("Ask"):
            chat = gr.Chatbot(label="Conversation", height=380, elem_id="chat")
            route = gr.Markdown(elem_id="route", elem_classes=["mm-route"])
            with gr.Row(elem_id="ask-row"):
                question = gr.Textbox(
                    placeholder="Ask a question and press Enter",
                    show_label=False,
                    scale=4,
                    elem_id="question",
                    autofocus=True,
                    max_length=MAX_QUESTION_CHARS,
                )
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
            with gr.Accordion("Photo and corpora", open=False):
                image = gr.Image(type="filepath", label="Photo asked with the question", height=160)
                forced = gr.CheckboxGroup(
                    [c.value for c in Corpus],
                    label="Search only these corpora (none: the router decides)",
                )
            sources = gr.HTML(elem_id="sources")
            inputs = [question, image, forced, chat]
            outputs = [chat, route, sources, question]
            question.submit(ask, inputs, outputs, concurrency_limit=1)
            send.click(ask, inputs, outputs, concurrency_limit=1)
        with gr.Tab("Ingest"):
            files = gr.File(
                file_count="multiple", label="Documents, images, videos", elem_id="files"
            )
            go = gr.Button("Ingest", variant="primary", elem_id="ingest")
            status = gr.Markdown(elem_id="ingest-status")
            go.click(ingest, [files], [status], concurrency_limit=1)
        with gr.Tab("Corpora"):
            table = gr.Dataframe(headers=["corpus", "items"], elem_id="corpora", interactive=False)
            files_table = gr.Dataframe(
                headers=["source", "corpora", "on disk"],
                label="Sources",
                elem_id="sources-list",
                interactive=False,
                wrap=True,
            )
            refresh = gr.Button("Refresh", elem_id="refresh")
            refresh.click(corpora, None, [table, files_table])
            ui.load(corpora, None, [table, files_table])
    # A bounded queue: a flood of questions from one page waits or is refused, it does
    # not pile up without end.
    ui.queue(default_concurrency_limit=1, max_size=64)
    return ui


def uploaded_by_a_client(path: Path) -> bool:
    """Whether ``path`` is a file Gradio received through its upload route: inside its
    upload folder (not a link out of it) and recorded as uploaded by a client."""
    from gradio.context import LocalContext
    from gradio.utils import get_upload_folder

    folder = Path(get_upload_folder()).resolve()
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    if path.is_symlink() or not real.is_relative_to(folder) or not real.is_file():
        return False
    blocks = LocalContext.blocks.get(None)
    recorded = getattr(blocks, "upload_file_set", None)
    return recorded is None or str(path) in recorded or str(real) in recorded


def mount_ui(app: FastAPI, service: Service) -> FastAPI:
    """Mount the UI at ``/ui``, sharing the API's keys, media links and upload folder.

    With API keys configured the UI is behind Gradio's login (the key's name as user
    name, the key as password): otherwise it would be a way round the keys. Gradio is
    told to accept, for any input, only files a client uploaded (its own check is off
    when an app is mounted rather than launched) and never to serve the data folder.
    """
    parts: Parts | None = getattr(app.state, "parts", None)
    keys = parts.keys if parts is not None else None
    links = parts.links if parts is not None else None
    uploads = parts.uploads if parts is not None else None
    settings = service.settings

    def login(user: str, password: str) -> bool:
        who = keys.authenticate(password) if keys is not None else None
        return who is not None and who.name == user

    blocks = build_ui(service, links, keys, uploads)
    mounted: FastAPI = gr.mount_gradio_app(
        app,
        blocks,
        path="/ui",
        css=CSS,
        auth=login if keys is not None and keys.enabled else None,
        auth_message=(
            "This mmrag server needs an API key: the key's name as user name "
            "(admin for a plain key), the key as password."
        ),
        allowed_paths=[],
        blocked_paths=[str(settings.data_dir.resolve())],
        max_file_size=f"{settings.max_upload_mb}mb",
    )
    # Gradio checks input file paths only in a launched app; a mounted one is served the
    # same way, so it gets the same check (only files in its upload folder).
    blocks.has_launched = True
    return mounted
