"""``POST /v1/chat/completions``: the RAG pipeline behind the OpenAI chat API, so any
OpenAI client can ask; the last user message is the question, sources come along."""

from __future__ import annotations

import base64
import binascii
import io
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request

from app.deps import App, Reader
from app.errors import ApiError, stream_error
from app.render import answer_json
from app.routes.ask import ask_events
from app.schemas import ERRORS, ChatMessage, ChatRequest, ImageUrlPart, TextPart
from app.service import MAX_QUESTION_CHARS, DoneEvent, TokenEvent
from app.streaming import collect, sse_response
from app.uploads import Uploads

router = APIRouter(tags=["openai"])


@contextmanager
def _data_url_file(url: str, uploads: Uploads) -> Iterator[Path]:
    """A ``data:`` image URL from an OpenAI image part, as a file deleted afterwards."""
    if not url.startswith("data:") or "," not in url:
        raise ApiError(422, "invalid_request", "image_url: only data: URLs are accepted")
    header, data = url.split(",", 1)
    try:
        raw = base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error) as e:
        raise ApiError(422, "invalid_request", "image_url: not valid base64") from e
    suffix = ".png" if "png" in header else ".jpg"
    with uploads.temporary(io.BytesIO(raw), f"image{suffix}") as path:
        yield path


def last_question(
    messages: list[ChatMessage], uploads: Uploads, cleanup: ExitStack
) -> tuple[str, Path | None]:
    """The last user message's text and its first image (kept until ``cleanup``)."""
    for m in reversed(messages):
        if m.role != "user":
            continue
        if m.content is None or isinstance(m.content, str):
            text, image = m.content or "", None
        else:
            text = " ".join(p.text for p in m.content if isinstance(p, TextPart))
            first = next((p for p in m.content if isinstance(p, ImageUrlPart)), None)
            image = (
                cleanup.enter_context(_data_url_file(first.image_url.url, uploads))
                if first
                else None
            )
        if len(text) > MAX_QUESTION_CHARS:
            raise ApiError(
                422,
                "invalid_request",
                f"messages: the last user message is over {MAX_QUESTION_CHARS} characters",
            )
        return text, image
    raise ApiError(422, "invalid_request", "messages: no user message")


@router.post("/v1/chat/completions", responses=ERRORS)
async def chat_completions(request: Request, body: ChatRequest, who: Reader, parts: App) -> Any:
    """OpenAI-compatible chat over the RAG pipeline: the last user message is the
    question; the answer's sources come in ``sources`` (and in the last chunk)."""
    cleanup = ExitStack()
    try:
        question, image = last_question(body.messages, parts.uploads, cleanup)
    except BaseException:
        cleanup.close()
        raise
    if not question.strip():
        cleanup.close()
        raise ApiError(422, "invalid_request", "messages: the last user message is empty")
    created = int(time.time())
    cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
    cancel = threading.Event()
    events = ask_events(parts, question, None, image, who.scope, cancel)

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        payload = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": body.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **more,
        }
        return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

    if body.stream:

        async def chunks() -> AsyncIterator[str]:
            with cleanup:
                yield chunk({"role": "assistant"})
                try:
                    async for e in events:
                        if isinstance(e, TokenEvent):
                            yield chunk({"content": e.text})
                        elif isinstance(e, DoneEvent):
                            out = answer_json(e, parts.links)
                            yield chunk({}, "stop", sources=[x.model_dump() for x in out.sources])
                except Exception as err:  # the status is sent: the error goes in a chunk
                    yield f"data: {json.dumps({'error': stream_error(err)})}\n\n"
                finally:
                    await events.aclose()  # type: ignore[attr-defined]
                yield "data: [DONE]\n\n"

        return sse_response(chunks())
    with cleanup:
        done = await collect(request, events, cancel)
    out = answer_json(done, parts.links)
    return {
        "id": cid,
        "object": "chat.completion",
        "created": created,
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": out.answer},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        "sources": [x.model_dump() for x in out.sources],
    }
