"""Answers over HTTP: a blocking event stream driven from async code, as server-sent
events or collected, and always cancelled when the client goes away.

Why a worker thread per answer: the pipeline (retrieval, llama.cpp) blocks; the thread
owns its event stream from start to close, so closing never races a ``next`` in flight,
and a client that disconnects sets the cancel event, which stops generation at the next
token and frees the model (issue 10: a closed stream once held the model for minutes).
Streams are server-sent events (``route``, ``sources``, ``token``, ``retry``,
``done``, or ``error``): one-way, plain HTTP, proxies and ``EventSource`` handle them.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import StreamingResponse

from app.errors import ApiError, stream_error
from app.render import answer_json, hits_json, route_json
from app.security import MediaLinks
from app.service import DoneEvent, RetryEvent, RouteEvent, SourcesEvent, TokenEvent


def sse(event: str, data: Any) -> str:
    """One server-sent event; data is JSON on one line."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


_END = object()


async def run_in_worker(events: Iterator[Any], cancel: threading.Event) -> AsyncIterator[Any]:
    """Drive a blocking event stream in its own thread; stop it when the caller goes away.

    The worker thread owns ``events`` from start to close, so closing never races with a
    ``next`` in flight. When the consumer stops early (the client disconnected, or an
    error), ``cancel`` is set: the pipeline stops at the next token and the worker closes
    the stream, which releases the model. An exception of the stream is re-raised here.
    """
    out: queue.Queue[Any] = queue.Queue(maxsize=256)

    def produce() -> None:
        try:
            for event in events:
                if cancel.is_set():
                    break
                out.put(("event", event))
        except BaseException as e:  # handed to the consumer, which raises it
            out.put(("error", e))
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()
            out.put(("end", _END))

    worker = threading.Thread(target=produce, name="mmrag-ask", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = await anyio.to_thread.run_sync(out.get, abandon_on_cancel=True)
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        cancel.set()
        # Unblock a producer waiting on a full queue; it then sees the cancel and ends.
        while not out.empty():
            try:
                out.get_nowait()
            except queue.Empty:
                break


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body iterator on every exit path, a client disconnect included (the
    iterator's ``finally`` then cancels the answer at once, not when collected)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sse_response(body: AsyncIterator[str]) -> ClosingStreamingResponse:
    return ClosingStreamingResponse(body, media_type="text/event-stream", headers=SSE_HEADERS)


async def sse_events(
    events: AsyncIterator[Any], cleanup: ExitStack, links: MediaLinks
) -> AsyncIterator[str]:
    """An answer's events as SSE; an error after the start is an ``error`` event."""
    with cleanup:
        try:
            async for event in events:
                if isinstance(event, RouteEvent):
                    yield sse("route", route_json(event.route).model_dump())
                elif isinstance(event, SourcesEvent):
                    yield sse("sources", [x.model_dump() for x in hits_json(event.hits, links)])
                elif isinstance(event, TokenEvent):
                    yield sse("token", {"text": event.text})
                elif isinstance(event, RetryEvent):
                    yield sse("retry", {"reason": event.reason})
                elif isinstance(event, DoneEvent):
                    yield sse("done", answer_json(event, links).model_dump())
        except Exception as e:  # the status is sent: the error travels as an event
            yield sse("error", stream_error(e))
        finally:
            await events.aclose()  # type: ignore[attr-defined]


async def collect(
    request: Request, events: AsyncIterator[Any], cancel: threading.Event
) -> DoneEvent:
    """The final event of a non-streamed answer; cancelled if the client leaves."""
    done: DoneEvent | None = None

    async def watch() -> None:
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                cancel.set()
                return

    failure: Exception | None = None
    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        try:
            async for event in events:
                if isinstance(event, DoneEvent):
                    done = event
        except Exception as e:  # raised after the group, not wrapped in a group
            failure = e
        finally:
            await events.aclose()  # type: ignore[attr-defined]
            group.cancel_scope.cancel()
    if failure is not None:
        raise failure
    if done is None:
        raise ApiError(499, "cancelled", "the client went away")
    return done
