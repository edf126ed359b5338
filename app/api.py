"""The REST API (FastAPI): every HTTP surface goes through one :class:`Service`.

Versioned under ``/api/v1``; an OpenAI-compatible ``POST /v1/chat/completions`` sits
beside it; the Gradio UI is mounted at ``/ui`` and the widget is served at
``/widget.js`` (see :func:`create_app`). docs/api.md describes every endpoint and
docs/security.md the threat model.

Why the choices:

- Answers never wait for ingestion: an ingest job holds only the ingest lock and the
  store's short per-batch lock; the LLM backend serialises its own use (llama.cpp) or
  serves many (vLLM). An answer runs in a worker thread that owns its event stream; when
  the client goes away the run is cancelled and the model is free within one token.
- Streaming answers are server-sent events (``route``, ``sources``, ``token``,
  ``retry``, ``done``): one-way, plain HTTP, proxies and ``EventSource`` handle them.
- Errors have one JSON shape, ``{"error": {"code", "message"}}``, with the status code
  that says whose fault it is (4xx: the request; 502: the LLM server; 503: not ready).
- Who may do what (:mod:`app.security`): keys with roles and workspaces; every search,
  media file, page, job and source listing is limited to the caller's workspaces.
- Media are served only when they belong to the caller's part of the index (a source
  file, or a thumbnail / keyframe of its workspace), with range requests so a ``<video>``
  can seek; types a browser would run (HTML, SVG, ...) only as attachments, under a
  sandbox CSP. Media requests do not count toward the rate limit (they follow an answer
  and cost no model work); page renders have their own limit and a cache.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import queue
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.security import (
    API,
    UNSIGNED,
    Guard,
    GuardConfig,
    KeyRing,
    MediaLinks,
    Principal,
    RateLimiter,
    allowed_hosts,
    load_secret,
)
from app.service import (
    MAX_QUESTION_CHARS,
    DoneEvent,
    RetryEvent,
    RouteEvent,
    Service,
    SourcesEvent,
    TokenEvent,
)
from app.settings import Role, Settings
from app.uploads import Uploads, UploadTooLarge, public_message, safe_name
from generation.base import Answer
from retrieval.base import Corpus, Hit
from retrieval.errors import GenerationError, LoaderError, MmragError

log = logging.getLogger("mmrag.api")
STATIC = Path(__file__).parent / "static"
# Files a browser may show in place; anything else (HTML, SVG, XML, scripts, office files)
# is sent as an attachment, so a hostile upload never runs as a page of our origin.
INLINE_TYPES = frozenset(
    {
        "image/jpeg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/bmp",
        "video/mp4",
        "video/webm",
        "video/quicktime",
        "video/x-matroska",
        "video/x-msvideo",
        "audio/mpeg",
        "audio/wav",
        "audio/x-wav",
        "audio/ogg",
        "audio/mp4",
        "audio/flac",
        "application/pdf",
        "text/plain",
    }
)
# Shown as plain text rather than offered for download.
AS_TEXT_SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text"})
SANDBOX_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; sandbox"
JOBS_KEPT = 1000
JOB_TTL_S = 3600.0


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# --- request and response models (they make the OpenAPI document) -------------------


class AskRequest(BaseModel):
    question: str = Field(
        ..., min_length=1, max_length=MAX_QUESTION_CHARS, description="The question."
    )
    corpora: list[Corpus] | None = Field(
        None, description="Search only these corpora (default: the router decides)."
    )
    workspaces: list[str] | None = Field(
        None,
        max_length=64,
        description="Search only these of the key's workspaces (default: all of them).",
    )
    stream: bool = Field(False, description="Answer as server-sent events.")


class RouteOut(BaseModel):
    corpora: list[str]
    scores: dict[str, float]
    reason: str


class MediaOut(BaseModel):
    file: str | None = None
    thumbnail: str | None = None
    keyframes: list[str] = []
    page_image: str | None = None


class SourceOut(BaseModel):
    number: int
    corpus: str
    source: str
    title: str
    page: int | None
    heading: list[str]
    t_start: float | None = None
    t_end: float | None = None
    relevance: float | None
    cited: bool
    support: float | None = None
    text: str
    media: MediaOut


class ConflictOut(BaseModel):
    a: int
    b: int
    a_says: str
    b_says: str


class AnswerOut(BaseModel):
    answer: str
    grounded: bool
    route: RouteOut
    sources: list[SourceOut]
    invalid_markers: list[int]
    weak_citations: list[int]
    conflicts: list[ConflictOut]
    retried: bool
    injected: list[int] = []
    timings: dict[str, float]


class JobFile(BaseModel):
    path: str
    status: str
    detail: str = ""


class JobOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    progress: float = Field(..., ge=0, le=1)
    workspace: str
    files: list[JobFile] = []
    message: str = ""


class CorporaOut(BaseModel):
    corpora: dict[str, int]


class DeletedOut(BaseModel):
    source: str
    deleted: bool


class SourceEntry(BaseModel):
    source: str = Field(description="The path the source was ingested from.")
    corpora: list[str] = Field(description="Whole-file corpora holding it.")
    on_disk: bool = Field(description="Whether the file is still there.")


class SourcesOut(BaseModel):
    total: int
    sources: list[SourceEntry]


class ImageUrl(BaseModel):
    url: str = Field(..., min_length=1)
    detail: str | None = None


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ImageUrlPart(BaseModel):
    type: Literal["image_url"]
    image_url: ImageUrl


ContentPart = Annotated[TextPart | ImageUrlPart, Field(discriminator="type")]


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class ChatRequest(BaseModel):
    """The OpenAI chat request; sampling fields are accepted and the settings' used."""

    model: str = Field("mmrag", max_length=200)
    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None


class ErrorOut(BaseModel):
    error: dict[str, str]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    422: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


# --- the pieces -----------------------------------------------------------------------


@dataclass
class Job:
    id: str
    files: list[Path]
    workspace: str
    status: Literal["queued", "running", "done", "failed"] = "queued"
    progress: float = 0.0
    results: list[JobFile] = field(default_factory=list)
    message: str = ""
    finished: float | None = None

    def out(self) -> JobOut:
        return JobOut(
            id=self.id,
            status=self.status,
            progress=round(self.progress, 4),
            workspace=self.workspace,
            files=self.results,
            message=self.message,
        )


class Jobs:
    """Ingest jobs by id: bounded, finished ones forgotten after an hour."""

    def __init__(self, limit: int = JOBS_KEPT, ttl_s: float = JOB_TTL_S) -> None:
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self.limit, self.ttl_s = limit, ttl_s

    def add(self, job: Job) -> None:
        with self._lock:
            now = time.monotonic()
            for key in [
                k for k, j in self._jobs.items() if j.finished and now - j.finished > self.ttl_s
            ]:
                del self._jobs[key]
            if len(self._jobs) >= self.limit:
                done = [k for k, j in self._jobs.items() if j.finished]
                if not done:
                    raise ApiError(
                        429, "busy", "too many ingest jobs are waiting; retry when some finish"
                    )
                del self._jobs[done[0]]
            self._jobs[job.id] = job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)


def source_json(
    n: int,
    hit: Hit,
    cited: bool,
    support: float | None = None,
    links: MediaLinks = UNSIGNED,
) -> SourceOut:
    item = hit.item
    extra = item.extra
    t_start, t_end = extra.get("t_start"), extra.get("t_end")
    original = extra.get("file") if isinstance(extra.get("file"), str) else item.source
    is_pdf = item.source.lower().endswith(".pdf") and item.page is not None
    return SourceOut(
        number=n,
        corpus=item.corpus.value,
        source=item.source,
        title=item.title,
        page=item.page,
        heading=list(item.heading),
        t_start=float(t_start) if isinstance(t_start, int | float) else None,
        t_end=float(t_end) if isinstance(t_end, int | float) else None,
        relevance=hit.relevance,
        cited=cited,
        support=support,
        text=item.text,
        media=MediaOut(
            file=links.media(original),
            thumbnail=links.media(
                extra.get("thumbnail") if isinstance(extra.get("thumbnail"), str) else None
            ),
            keyframes=[u for k in extra.get("keyframes") or [] if (u := links.media(str(k)))],
            page_image=links.page(item.source, item.page)
            if is_pdf and item.page is not None
            else None,
        ),
    )


def answer_json(done: DoneEvent, links: MediaLinks = UNSIGNED) -> AnswerOut:
    a: Answer = done.answer
    support = {c.number: c.support for c in a.citations}
    return AnswerOut(
        answer=a.text,
        grounded=a.grounded,
        route=RouteOut(
            corpora=[c.value for c in done.route.corpora],
            scores=dict(done.route.scores),
            reason=done.route.reason,
        ),
        sources=[
            source_json(s.number, s.hit, s.number in support, support.get(s.number), links)
            for s in a.sources
        ],
        invalid_markers=list(a.invalid_markers),
        weak_citations=list(a.weak_citations),
        conflicts=[
            ConflictOut(a=c.a, b=c.b, a_says=c.a_says, b_says=c.b_says) for c in a.conflicts
        ],
        retried=a.retried,
        injected=list(a.injected),
        timings=done.timings,
    )


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


class Gate:
    """Who is asking and whether they may: keys, roles, rate limits (one per app)."""

    def __init__(self, settings: Settings) -> None:
        self.keys = KeyRing(settings.api_keys, settings.workspace)
        # Signed only with keys: without them media need no signature.
        secret = load_secret(settings) if self.keys.enabled else None
        self.links = MediaLinks(secret, settings.media_link_ttl_s)
        self.limiter = RateLimiter(settings.rate_limit_per_minute)
        self.failures = RateLimiter(settings.auth_failures_per_minute)
        self.renders = RateLimiter(settings.page_renders_per_minute)
        # Without keys, every client is an admin of the configured workspace.
        self.anonymous = Principal("anonymous", "admin", frozenset({settings.workspace}))

    def caller(self, request: Request) -> Principal:
        if not self.keys.enabled:
            return self.anonymous
        address = _address(request)
        if (wait := self.failures.blocked(address)) is not None:
            raise _limited(f"too many requests with a wrong key; retry in {wait:.0f} s", wait)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        who = None
        if scheme.lower() == "bearer" and token.strip():
            who = self.keys.authenticate(token.strip())
        if who is None:
            self.failures.record(address)
            raise ApiError(
                401,
                "unauthorized",
                "a valid API key is required: Authorization: Bearer <key>",
                {"WWW-Authenticate": "Bearer"},
            )
        return who

    def check(self, request: Request, role: Role) -> Principal:
        who = self.caller(request)
        if not who.allows(role):
            raise ApiError(403, "forbidden", f"this key's role ({who.role}) may not do this")
        if (wait := self.limiter.check(self.bucket(request, who))) is not None:
            raise _limited(
                f"more than {self.limiter.per_minute} requests a minute; retry in {wait:.0f} s",
                wait,
            )
        return who

    def bucket(self, request: Request, who: Principal | None) -> str:
        if self.keys.enabled and who is not None:
            return f"key:{who.key_id}"
        return f"ip:{_address(request)}"


def _address(request: Request) -> str:
    return request.client.host if request.client else "?"


def _limited(message: str, wait: float) -> ApiError:
    return ApiError(429, "rate_limited", message, {"Retry-After": str(max(1, round(wait)))})


def _gate(request: Request) -> Gate:
    gate: Gate = request.app.state.gate
    return gate


def _reader(request: Request) -> Principal:
    return _gate(request).check(request, "read")


def _ingester(request: Request) -> Principal:
    return _gate(request).check(request, "ingest")


def _admin(request: Request) -> Principal:
    return _gate(request).check(request, "admin")


def _media_caller(
    request: Request,
    exp: Annotated[int | None, Query(description="Expiry of a signed link.")] = None,
    sig: Annotated[
        str | None, Query(max_length=64, description="Signature of a signed link.")
    ] = None,
) -> Principal | None:
    """A valid signed link (None: it was issued to someone who may see the file) or a
    caller; media are not rate limited."""
    gate = _gate(request)
    q = request.query_params
    endpoint = request.url.path.rsplit("/", 1)[-1]
    target = (endpoint, q.get("path", ""), q.get("page", ""))
    if gate.keys.enabled and exp is not None and sig and gate.links.valid(*target, exp, sig):
        return None
    return gate.caller(request)


Reader = Annotated[Principal, Depends(_reader)]
Ingester = Annotated[Principal, Depends(_ingester)]
Admin = Annotated[Principal, Depends(_admin)]
MediaCaller = Annotated[Principal | None, Depends(_media_caller)]
Workspaces = Annotated[
    list[str] | None,
    Query(max_length=64, description="Only these of the key's workspaces (default: all)."),
]


def scope_of(who: Principal, wanted: list[str] | None) -> tuple[str, ...] | None:
    """The workspaces a request reads: the key's, or the asked ones it may see."""
    if not wanted:
        return who.scope
    hidden = [w for w in wanted if not who.sees(w)]
    if hidden:
        raise ApiError(403, "forbidden", f"this key does not see workspace {hidden[0]!r}")
    return tuple(sorted(set(wanted)))


# --- the app ----------------------------------------------------------------------------


def create_app(service: Service | None = None, *, ui: bool = True) -> FastAPI:
    """The whole HTTP surface on one port (the UI is mounted unless ``ui=False``)."""
    svc = service or Service()
    s: Settings = svc.settings
    app = FastAPI(
        title="mmrag",
        version="1",
        summary="Multimodal retrieval-augmented generation: ask, ingest, browse sources.",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    app.state.service = svc
    jobs = Jobs()
    # One ingest job at a time; answers never wait for it.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrag-ingest")
    pages = PageRenders()
    gate = Gate(s)
    links = gate.links
    app.state.gate = gate
    app.state.keyring = gate.keys  # the UI logs in with the same keys
    app.state.media_links = links  # the UI signs its source cards with the same links
    uploads = Uploads(s.data_dir / "uploads", s.max_upload_mb * 1024 * 1024)
    uploads.clear_staging()
    app.state.uploads = uploads

    # -- errors: one shape ---------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return _error(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return _error(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}".strip(": "))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            e.status_code, "http_error"
        )
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(UploadTooLarge)
    async def _too_large(request: Request, e: UploadTooLarge) -> JSONResponse:
        return _error(413, "too_large", public_message(str(e)))

    @app.exception_handler(GenerationError)
    async def _llm(request: Request, e: GenerationError) -> JSONResponse:
        return _error(502, "llm_unavailable", public_message(str(e)))

    @app.exception_handler(MmragError)
    async def _mmrag(request: Request, e: MmragError) -> JSONResponse:
        return _error(400, "bad_input", public_message(str(e)))

    if s.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(s.cors_origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Retry-After"],
        )
    # Added last, so it runs first: a refused host or origin never reaches CORS or a route.
    app.add_middleware(
        Guard,
        config=GuardConfig(
            hosts=allowed_hosts(s),
            origins=set(s.cors_origins),
            # A multipart body carries a little framing around the file itself.
            max_body=s.max_upload_mb * 1024 * 1024 + 64 * 1024,
            max_body_mb=s.max_upload_mb,
            login_paths=("/ui/login", "/ui/login/"),
            login_throttle=gate.failures,
        ),
    )

    # -- health ------------------------------------------------------------------------

    @app.get("/health", tags=["health"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["health"], responses={503: {"model": ErrorOut}})
    def ready() -> dict[str, Any]:
        """The index answers (the store opens and reports its counts)."""
        try:
            counts = svc.collections()
        except MmragError as e:
            raise ApiError(503, "not_ready", str(e)) from e
        return {"status": "ready", "items": sum(counts.values())}

    # -- ask -----------------------------------------------------------------------------

    def ask_events(
        question: str,
        corpora: list[Corpus] | None,
        image: Path | None,
        workspaces: tuple[str, ...] | None,
        cancel: threading.Event,
    ) -> AsyncIterator[Any]:
        events = svc.ask(
            question, corpora=corpora, image=image, workspaces=workspaces, cancel=cancel
        )
        return run_in_worker(events, cancel)

    async def sse_events(events: AsyncIterator[Any], cleanup: ExitStack) -> AsyncIterator[str]:
        with cleanup:
            try:
                async for event in events:
                    if isinstance(event, RouteEvent):
                        r = event.route
                        yield sse(
                            "route",
                            {
                                "corpora": [c.value for c in r.corpora],
                                "scores": dict(r.scores),
                                "reason": r.reason,
                            },
                        )
                    elif isinstance(event, SourcesEvent):
                        sources = [
                            source_json(n, h, False, None, links).model_dump()
                            for n, h in enumerate(event.hits, 1)
                        ]
                        yield sse("sources", sources)
                    elif isinstance(event, TokenEvent):
                        yield sse("token", {"text": event.text})
                    elif isinstance(event, RetryEvent):
                        yield sse("retry", {"reason": event.reason})
                    elif isinstance(event, DoneEvent):
                        yield sse("done", answer_json(event, links).model_dump())
            except MmragError as e:
                code = "llm_unavailable" if isinstance(e, GenerationError) else "bad_input"
                yield sse("error", {"code": code, "message": public_message(str(e))})
            except Exception:
                log.exception("an answer stream failed")
                yield sse("error", {"code": "internal", "message": "an unexpected error"})
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

    async def answer(
        request: Request,
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
        events = ask_events(question, corpora, image, workspaces, cancel)
        if stream:
            return ClosingStreamingResponse(
                sse_events(events, cleanup),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        with cleanup:
            done = await collect(request, events, cancel)
        return answer_json(done, links)

    @app.post(
        f"{API}/ask",
        tags=["ask"],
        response_model=AnswerOut,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}, 502: {"model": ErrorOut}},
    )
    async def ask(request: Request, body: AskRequest, who: Reader) -> Any:
        """Answer a question with cited sources; ``stream: true`` gives server-sent events
        ``route``, ``sources``, ``token``..., (``retry``), ``done``."""
        scope = scope_of(who, body.workspaces)
        return await answer(request, body.question, body.corpora, body.stream, scope, ExitStack())

    @app.post(
        f"{API}/ask/image",
        tags=["ask"],
        response_model=AnswerOut,
        responses={**ERRORS, 413: {"model": ErrorOut}, 502: {"model": ErrorOut}},
    )
    async def ask_image(
        request: Request,
        who: Reader,
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
        path = cleanup.enter_context(uploads.temporary(image.file, image.filename))
        return await answer(request, question, corpora, stream, scope, cleanup, path)

    # -- OpenAI-compatible chat ---------------------------------------------------------

    def last_question(messages: list[ChatMessage], cleanup: ExitStack) -> tuple[str, Path | None]:
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

    @app.post("/v1/chat/completions", tags=["openai"], responses=ERRORS)
    async def chat_completions(request: Request, body: ChatRequest, who: Reader) -> Any:
        """OpenAI-compatible chat over the RAG pipeline: the last user message is the
        question; the answer's sources come in ``sources`` (and in the last chunk)."""
        cleanup = ExitStack()
        try:
            question, image = last_question(body.messages, cleanup)
        except BaseException:
            cleanup.close()
            raise
        if not question.strip():
            cleanup.close()
            raise ApiError(422, "invalid_request", "messages: the last user message is empty")
        created = int(time.time())
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        cancel = threading.Event()
        events = ask_events(question, None, image, who.scope, cancel)

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
                                out = answer_json(e, links)
                                yield chunk(
                                    {}, "stop", sources=[x.model_dump() for x in out.sources]
                                )
                    except MmragError as err:
                        failure = {"error": {"message": public_message(str(err))}}
                        yield f"data: {json.dumps(failure)}\n\n"
                    except Exception:
                        log.exception("a chat stream failed")
                        yield f"data: {json.dumps({'error': {'message': 'unexpected error'}})}\n\n"
                    finally:
                        await events.aclose()  # type: ignore[attr-defined]
                    yield "data: [DONE]\n\n"

            return ClosingStreamingResponse(chunks(), media_type="text/event-stream")
        with cleanup:
            done = await collect(request, events, cancel)
        out = answer_json(done, links)
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

    # -- ingest --------------------------------------------------------------------------

    def run_job(job: Job) -> None:
        job.status = "running"
        total = max(len(job.files), 1)

        def on_file(result: Any) -> None:
            job.results.append(
                JobFile(
                    path=Path(result.path).name,
                    status=result.status.value,
                    detail=public_message(
                        "; ".join(filter(None, [result.message, *result.warnings]))
                    ),
                )
            )
            job.progress = min(len(job.results) / total, 1.0)
            if result.status.value == "failed":
                uploads.discard(Path(result.path))

        def on_step(_path: str, fraction: float) -> None:
            # Within a long file (a video, a scanned PDF): progress moves before it ends.
            job.progress = min((len(job.results) + fraction) / total, 0.999)

        try:
            svc.ingest(job.files, progress=on_file, step=on_step, workspace=job.workspace)
            job.status, job.progress = "done", 1.0
        except MmragError as e:
            job.status, job.message = "failed", public_message(str(e))
        except Exception:  # the job reports it; the server goes on
            log.exception("ingest job %s failed", job.id)
            job.status, job.message = "failed", "an unexpected error; it was logged on the server"
        finally:
            job.finished = time.monotonic()

    @app.post(
        f"{API}/ingest",
        tags=["ingest"],
        status_code=202,
        response_model=JobOut,
        responses={**ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
    )
    async def ingest(
        who: Ingester,
        files: Annotated[list[UploadFile], File(description="Documents, images, videos.")],
        workspace: Annotated[
            str | None, Form(description="Workspace to ingest into (default: the key's own).")
        ] = None,
    ) -> JobOut:
        """Upload files to ingest; returns a job to poll (``GET /api/v1/jobs/{id}``).
        The same file uploaded again is recognised and not stored twice."""
        target = workspace or who.home(s.workspace)
        if not who.sees(target):
            raise ApiError(403, "forbidden", f"this key does not see workspace {target!r}")
        supported = svc.ingestor.suffixes
        for f in files:
            suffix = Path(safe_name(f.filename, "upload")).suffix.lower()
            if suffix not in supported:
                raise ApiError(
                    415,
                    "unsupported_type",
                    f"{safe_name(f.filename, 'upload')}: unsupported file type "
                    f"'{suffix or 'none'}' (supported: {', '.join(sorted(supported))})",
                )
        saved: list[Path] = []
        try:
            for f in files:
                path = await anyio.to_thread.run_sync(uploads.save, f.file, f.filename, target)
                if path not in saved:
                    saved.append(path)
        except BaseException:
            for path in saved:
                if not svc.is_source(str(path.resolve()), (target,)):
                    uploads.discard(path)
            raise
        job = Job(uuid.uuid4().hex, saved, target)
        jobs.add(job)
        worker.submit(run_job, job)
        return job.out()

    @app.get(
        f"{API}/jobs/{{job_id}}",
        tags=["ingest"],
        response_model=JobOut,
        responses={**ERRORS, 404: {"model": ErrorOut}},
    )
    def job_status(job_id: str, who: Ingester) -> JobOut:
        """An ingest job: status, progress (0-1) and each file's outcome."""
        job = jobs.get(job_id)
        if job is None or not who.sees(job.workspace):
            raise ApiError(404, "not_found", f"no job {job_id[:64]}")
        return job.out()

    # -- corpora and sources ----------------------------------------------------------------

    @app.get(f"{API}/corpora", tags=["corpora"], response_model=CorporaOut)
    def corpora(who: Reader, workspaces: Workspaces = None) -> CorporaOut:
        """Item counts per corpus (of the key's workspaces)."""
        scope = scope_of(who, workspaces)
        return CorporaOut(corpora={c.value: n for c, n in svc.collections(scope).items()})

    @app.get(f"{API}/sources", tags=["corpora"], response_model=SourcesOut)
    def list_sources(
        who: Ingester,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
        workspaces: Workspaces = None,
    ) -> SourcesOut:
        """The sources of the key's workspaces, sorted by path, a page at a time."""
        found = svc.sources(scope_of(who, workspaces))
        page = found[offset : offset + limit]
        return SourcesOut(
            total=len(found),
            sources=[
                SourceEntry(
                    source=x.source, corpora=[c.value for c in x.corpora], on_disk=x.on_disk
                )
                for x in page
            ],
        )

    @app.delete(
        f"{API}/sources",
        tags=["corpora"],
        response_model=DeletedOut,
        responses={**ERRORS, 404: {"model": ErrorOut}},
    )
    def delete_source(
        who: Admin,
        source: str = Query(..., min_length=1, max_length=4096, description="The source path."),
    ) -> DeletedOut:
        """Remove every item of one source (in the key's workspaces) from every corpus."""
        if not svc.delete_source(source, who.scope):
            raise ApiError(404, "not_found", "no such source in the index")
        return DeletedOut(source=source, deleted=True)

    # -- media ---------------------------------------------------------------------------

    def allowed_path(path: str, who: Principal | None) -> Path:
        if "\x00" in path:  # the OS refuses it; say so rather than fail inside resolve()
            raise ApiError(422, "invalid_request", "path: contains a NUL character")
        missing = ApiError(404, "not_found", "not a file of the index")
        try:
            target = Path(path).resolve()
        except (OSError, RuntimeError, ValueError) as e:  # loops, names too long
            raise missing from e
        scope = None if who is None else who.scope
        if not svc.owns_media(target, scope) and not svc.is_source(str(target), scope):
            raise missing
        if not target.is_file():
            raise ApiError(404, "not_found", "the file is gone from disk")
        return target

    @app.get(
        f"{API}/media",
        tags=["media"],
        responses={**ERRORS, 404: {"model": ErrorOut}, 206: {"description": "A byte range."}},
    )
    def media(
        path: Annotated[str, Query(min_length=1, max_length=4096)], who: MediaCaller
    ) -> FileResponse:
        """A source file, thumbnail or keyframe; honours ``Range`` (video seeking).
        Types a browser would run as a page are sent as attachments, sandboxed."""
        target = allowed_path(path, who)
        response = FileResponse(target)
        kind = response.media_type or "application/octet-stream"
        if target.suffix.lower() in AS_TEXT_SUFFIXES:
            response.media_type = "text/plain; charset=utf-8"
            response.headers["content-type"] = "text/plain; charset=utf-8"
        elif kind.split(";")[0] not in INLINE_TYPES:
            response.headers["content-type"] = "application/octet-stream"
            response.headers["content-disposition"] = (
                f"attachment; filename*=utf-8''{_quote_name(target.name)}"
            )
        if not kind.startswith("application/pdf"):
            # A PDF viewer cannot run sandboxed; every other type can.
            response.headers["content-security-policy"] = SANDBOX_CSP
        return response

    @app.get(
        f"{API}/page",
        tags=["media"],
        responses={
            **ERRORS,
            404: {"model": ErrorOut},
            415: {"model": ErrorOut},
            200: {"content": {"image/png": {}}},
        },
    )
    def page_image(
        request: Request,
        who: MediaCaller,
        path: Annotated[str, Query(min_length=1, max_length=4096)],
        page: Annotated[int, Query(ge=1, le=100_000)],
    ) -> Response:
        """One page of a PDF source as a PNG (for showing a cited page); rendered pages
        are cached, and renders are rate limited."""
        target = allowed_path(path, who)
        if target.suffix.lower() != ".pdf":
            raise ApiError(415, "unsupported_type", f"{target.name} is not a PDF")
        stat = target.stat()
        key = (str(target), stat.st_mtime_ns, stat.st_size, page, s.max_page_pixels)
        png = pages.get(key)
        if png is None:
            bucket = gate.bucket(request, who)
            if (wait := gate.renders.check(bucket)) is not None:
                raise _limited(
                    f"more than {gate.renders.per_minute} page renders a minute; "
                    f"retry in {wait:.0f} s",
                    wait,
                )
            png = render_page(target, page, s.max_page_pixels)
            pages.put(key, png)
        return Response(
            png,
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    # -- static: widget and demo --------------------------------------------------------------

    @app.get("/widget.js", include_in_schema=False)
    def widget() -> FileResponse:
        return FileResponse(STATIC / "widget.js", media_type="text/javascript")

    @app.get("/demo", include_in_schema=False)
    def demo() -> FileResponse:
        return FileResponse(STATIC / "demo.html", media_type="text/html")

    if ui:
        from app.ui import mount_ui

        app = mount_ui(app, svc)
    return app


def _quote_name(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


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


class PageRenders:
    """Rendered PDF pages (PNG), least recently used dropped past a byte budget.

    Keyed by the file's path, modification time and size, so an edited file is rendered
    again. A cited page is usually opened several times (the UI, the widget, reloads).
    """

    def __init__(self, budget_bytes: int = 64 * 1024 * 1024) -> None:
        self._pages: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.budget = budget_bytes

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            png = self._pages.get(key)
            if png is not None:
                self._pages.move_to_end(key)
            return png

    def put(self, key: tuple[Any, ...], png: bytes) -> None:
        with self._lock:
            if key in self._pages:
                return
            self._pages[key] = png
            self._size += len(png)
            while self._size > self.budget and len(self._pages) > 1:
                _, old = self._pages.popitem(last=False)
                self._size -= len(old)


def render_page(pdf: Path, page: int, max_pixels: int, max_scale: float = 1.5) -> bytes:
    """One page of a PDF as PNG bytes, at most ``max_pixels`` pixels
    (:func:`ingest.pdfium.render_png`, under pdfium's lock: ingestion may be inside it)."""
    from ingest import pdfium

    try:
        return pdfium.render_png(pdf, page, max_pixels=max_pixels, max_scale=max_scale)
    except pdfium.PageOutOfRangeError as e:
        raise ApiError(404, "not_found", f"{pdf.name} has {e.pages} pages, not {page}") from e
    except pdfium.PageRenderError as e:
        raise ApiError(422, "unreadable", f"page {page} of {pdf.name} cannot be rendered") from e
    except LoaderError as e:
        raise ApiError(422, "unreadable", f"{pdf.name} is not a readable PDF") from e
