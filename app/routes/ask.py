"""``POST /api/v1/ask`` and ``/api/v1/ask/image``: cited answers, whole or streamed."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Request, UploadFile

from app.deps import App, Parts, Reader, scope_of
from app.errors import ApiError
from app.render import answer_json
from app.schemas import ERRORS, AnswerOut, AskRequest, ErrorOut
from app.security import API
from app.service import MAX_QUESTION_CHARS
from app.streaming import collect, run_in_worker, sse_events, sse_response
from retrieval.base import Corpus

router = APIRouter(tags=["ask"])


def ask_events(
    parts: Parts,
    question: str,
    corpora: list[Corpus] | None,
    image: Path | None,
    workspaces: tuple[str, ...] | None,
    cancel: threading.Event,
) -> AsyncIterator[Any]:
    """The answer's events, produced in a worker thread and cancelled with ``cancel``."""
    events = parts.service.ask(
        question, corpora=corpora, image=image, workspaces=workspaces, cancel=cancel
    )
    return run_in_worker(events, cancel)


async def answer(
    request: Request,
    parts: Parts,
    question: str,
    corpora: list[Corpus] | None,
    stream: bool,
    workspaces: tuple[str, ...] | None,
    cleanup: ExitStack,
    image: Path | None = None,
) -> Any:
    if not question.strip():
        cleanup.close()
        raise ApiError(422, "invalid_request", "question: the question is empty")
    cancel = threading.Event()
    events = ask_events(parts, question, corpora, image, workspaces, cancel)
    if stream:
        return sse_response(sse_events(events, cleanup, parts.links))
    with cleanup:
        done = await collect(request, events, cancel)
    return answer_json(done, parts.links)


@router.post(
    f"{API}/ask",
    response_model=AnswerOut,
    responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}, 502: {"model": ErrorOut}},
)
async def ask(request: Request, body: AskRequest, who: Reader, parts: App) -> Any:
    """Answer a question with cited sources; ``stream: true`` gives server-sent events
    ``route``, ``sources``, ``token``..., (``retry``), ``done``."""
    scope = scope_of(who, body.workspaces)
    return await answer(
        request, parts, body.question, body.corpora, body.stream, scope, ExitStack()
    )


@router.post(
    f"{API}/ask/image",
    response_model=AnswerOut,
    responses={**ERRORS, 413: {"model": ErrorOut}, 502: {"model": ErrorOut}},
)
async def ask_image(
    request: Request,
    who: Reader,
    parts: App,
    question: Annotated[str, Form(min_length=1, max_length=MAX_QUESTION_CHARS)],
    image: Annotated[UploadFile, File(description="A photo asked with the question.")],
    stream: Annotated[bool, Form()] = False,
    corpora: Annotated[list[Corpus] | None, Form()] = None,
    workspaces: Annotated[list[str] | None, Form(max_length=64)] = None,
) -> Any:
    """Ask with an attached image: images and clips are also searched by its pixels.
    The photo is deleted when the answer ends."""
    scope = scope_of(who, workspaces)
    cleanup = ExitStack()
    path = cleanup.enter_context(parts.uploads.temporary(image.file, image.filename))
    return await answer(request, parts, question, corpora, stream, scope, cleanup, path)
