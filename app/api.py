"""The REST API (FastAPI): every HTTP surface goes through one :class:`Service`.

Versioned under ``/api/v1``; an OpenAI-compatible ``POST /v1/chat/completions`` sits
beside it; the Gradio UI is mounted at ``/ui`` and the widget is served at
``/widget.js`` (see :func:`create_app`). docs/api.md describes every endpoint.

Why the choices:

- One lock serialises model work (answers and ingestion): llama.cpp and the embedded
  Qdrant are not made for concurrent use from threads, and two cores gain nothing from
  it. Requests queue; health and media stay free.
- Streaming answers are server-sent events (``route``, ``sources``, ``token``,
  ``retry``, ``done``): one-way, plain HTTP, proxies and ``EventSource`` handle them.
- Errors have one JSON shape, ``{"error": {"code", "message"}}``, with the status code
  that says whose fault it is (4xx: the request; 502: the LLM server; 503: not ready).
- Media are served only when they belong to the index (a source file, or a thumbnail /
  keyframe under the data folder), with HTTP range requests so a ``<video>`` can seek.
  With API keys on, the media links of an answer are signed (:class:`MediaLinks`):
  ``<img>`` and ``<video>`` cannot send a Bearer header, and a signed link lets the
  browser stream and seek a video instead of downloading it whole first. Media requests
  do not count toward the rate limit: they follow an answer and cost no model work.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import json
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlparse

from fastapi import Depends, FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.service import DoneEvent, RetryEvent, RouteEvent, Service, SourcesEvent, TokenEvent
from app.settings import Settings
from generation.base import Answer
from retrieval.base import Corpus, Hit
from retrieval.errors import GenerationError, MmragError

API = "/api/v1"
STATIC = Path(__file__).parent / "static"


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
    question: str = Field(..., min_length=1, max_length=1000, description="The question.")
    corpora: list[Corpus] | None = Field(
        None, description="Search only these corpora (default: the router decides)."
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


class ChatMessage(BaseModel):
    role: str
    content: str | list[dict[str, Any]]


class ChatRequest(BaseModel):
    """The OpenAI chat request; sampling fields are accepted and the settings' used."""

    model: str = "mmrag"
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    max_tokens: int | None = None
    temperature: float | None = None


class ErrorOut(BaseModel):
    error: dict[str, str]


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    422: {"model": ErrorOut},
    429: {"model": ErrorOut},
}


# --- the pieces -----------------------------------------------------------------------


@dataclass
class Job:
    id: str
    files: list[Path]
    status: Literal["queued", "running", "done", "failed"] = "queued"
    progress: float = 0.0
    results: list[JobFile] = field(default_factory=list)
    message: str = ""

    def out(self) -> JobOut:
        return JobOut(
            id=self.id,
            status=self.status,
            progress=round(self.progress, 4),
            files=self.results,
            message=self.message,
        )


class RateLimiter:
    """At most ``per_minute`` requests per key (or client address) in any 60 s window."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def check(self, who: str) -> float | None:
        """None if allowed; otherwise the seconds until the next request is allowed."""
        if self.per_minute <= 0:
            return None
        now = time.monotonic()
        with self._lock:
            window = self._seen[who]
            while window and now - window[0] >= 60:
                window.popleft()
            if len(window) >= self.per_minute:
                return 60 - (now - window[0])
            window.append(now)
        return None


class MediaLinks:
    """The URLs of a source's media; signed when the API has keys.

    A signed link carries ``exp`` (unix seconds) and ``sig``, an HMAC-SHA256 of the
    endpoint, path, page and expiry under a secret derived from the API keys: the same on
    every replica configured with the same keys, void as soon as the keys change, and
    never the key itself (a link can be shared in a page without leaking the key). Expiry
    is rounded up to a whole ``ttl_s`` period and lies between one and two of them ahead,
    so links to the same file stay identical for a while and the browser's cache works.
    """

    def __init__(
        self, keys: Iterable[str] = (), ttl_s: int = 3600, clock: Callable[[], float] = time.time
    ) -> None:
        ordered = sorted(set(keys))
        self._secret = (
            hashlib.sha256("\n".join(["mmrag-media-v1", *ordered]).encode()).digest()
            if ordered
            else None
        )
        self.ttl_s = max(60, ttl_s)
        self._clock = clock

    @property
    def signed(self) -> bool:
        return self._secret is not None

    def _sig(self, endpoint: str, path: str, page: int | str | None, exp: int) -> str:
        assert self._secret is not None
        message = f"{endpoint}\n{path}\n{'' if page is None else page}\n{exp}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    def _url(self, endpoint: str, path: str, page: int | None = None) -> str:
        url = f"{API}/{endpoint}?path={quote(path, safe='')}"
        if page is not None:
            url += f"&page={page}"
        if self._secret is not None:
            exp = (int(self._clock()) // self.ttl_s + 2) * self.ttl_s
            url += f"&exp={exp}&sig={self._sig(endpoint, path, page, exp)}"
        return url

    def media(self, path: str | None) -> str | None:
        return self._url("media", path) if path else None

    def page(self, path: str, page: int) -> str:
        return self._url("page", path, page)

    def valid(self, endpoint: str, path: str, page: int | str | None, exp: int, sig: str) -> bool:
        """Whether ``sig`` signs this request and has not expired."""
        if self._secret is None or exp < self._clock():
            return False
        return hmac.compare_digest(sig, self._sig(endpoint, path, page, exp))


UNSIGNED = MediaLinks()


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
    lock = threading.Lock()  # model work, one at a time (see the module docstring)
    app.state.model_lock = lock  # the UI, mounted in the same process, shares it
    jobs: dict[str, Job] = {}
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrag-ingest")
    limiter = RateLimiter(s.rate_limit_per_minute)
    keys = set(s.api_keys)
    links = MediaLinks(keys, s.media_link_ttl_s)
    app.state.media_links = links  # the UI signs its source cards with the same links
    allowed = set(s.cors_origins)
    upload_dir = s.data_dir / "uploads"

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
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        return _error(e.status_code, code, str(e.detail))

    @app.exception_handler(GenerationError)
    async def _llm(request: Request, e: GenerationError) -> JSONResponse:
        return _error(502, "llm_unavailable", str(e))

    @app.exception_handler(MmragError)
    async def _mmrag(request: Request, e: MmragError) -> JSONResponse:
        return _error(400, "bad_input", str(e))

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> JSONResponse:
        return _error(500, "internal", f"{type(e).__name__}: {e}")

    if allowed:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=sorted(allowed),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "Range"],
            expose_headers=["Content-Range", "Accept-Ranges", "Retry-After"],
        )

    # -- origins: refused unless allowed. Added after the CORS middleware so that it runs
    # first (the last added runs outermost): a refused preflight gets our 403 JSON, not
    # Starlette's plain-text 400.

    @app.middleware("http")
    async def _origins(request: Request, call_next: Any) -> Response:
        origin = request.headers.get("origin")
        # Same host is the app's own page (the UI, /demo); the scheme is not compared,
        # since behind a TLS proxy the app sees http while the page is https.
        own = urlparse(origin).netloc == request.headers.get("host") if origin else True
        if origin and not own and "*" not in allowed and origin not in allowed:
            return _error(403, "origin_not_allowed", f"origin {origin} is not allowed")
        response: Response = await call_next(request)
        return response

    # -- auth and rate limit ------------------------------------------------------------

    def authenticated(request: Request) -> str:
        """Who is asking: ``key:...``, or ``ip:...`` when the API has no keys."""
        if keys:
            header = request.headers.get("authorization", "")
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or token not in keys:
                raise ApiError(
                    401,
                    "unauthorized",
                    "a valid API key is required: Authorization: Bearer <key>",
                    {"WWW-Authenticate": "Bearer"},
                )
            return f"key:{token}"
        return f"ip:{request.client.host if request.client else '?'}"

    def client(request: Request) -> str:
        who = authenticated(request)
        wait = limiter.check(who)
        if wait is not None:
            raise ApiError(
                429,
                "rate_limited",
                f"more than {limiter.per_minute} requests a minute; retry in {wait:.0f} s",
                {"Retry-After": str(max(1, round(wait)))},
            )
        return who

    guarded = [Depends(client)]

    def media_client(
        request: Request,
        exp: Annotated[int | None, Query(description="Expiry of a signed link.")] = None,
        sig: Annotated[str | None, Query(description="Signature of a signed link.")] = None,
    ) -> None:
        """A media request passes with a valid signed link or a key; no rate limit."""
        q = request.query_params
        endpoint = request.url.path.rsplit("/", 1)[-1]
        target = (endpoint, q.get("path", ""), q.get("page", ""))
        if keys and exp is not None and sig and links.valid(*target, exp, sig):
            return
        authenticated(request)

    media_guarded = [Depends(media_client)]

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

    def run_ask(question: str, corpora: list[Corpus] | None, image: Path | None) -> Iterator[Any]:
        with lock:
            yield from svc.ask(question, corpora=corpora, image=image)

    def stream_events(events: Iterator[Any]) -> Iterator[str]:
        try:
            for event in events:
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
            yield sse("error", {"code": code, "message": str(e)})

    def answer(
        question: str, corpora: list[Corpus] | None, stream: bool, image: Path | None
    ) -> Any:
        if not question.strip():
            raise ApiError(422, "invalid_request", "question: the question is empty")
        events = run_ask(question, corpora, image)
        if stream:
            return StreamingResponse(
                stream_events(events),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        done = [e for e in events if isinstance(e, DoneEvent)]
        return answer_json(done[-1], links)

    @app.post(
        f"{API}/ask",
        tags=["ask"],
        response_model=AnswerOut,
        dependencies=guarded,
        responses={**ERRORS, 200: {"content": {"text/event-stream": {}}}, 502: {"model": ErrorOut}},
    )
    def ask(body: AskRequest) -> Any:
        """Answer a question with cited sources; ``stream: true`` gives server-sent events
        ``route``, ``sources``, ``token``..., (``retry``), ``done``."""
        return answer(body.question, body.corpora, body.stream, None)

    @app.post(
        f"{API}/ask/image",
        tags=["ask"],
        response_model=AnswerOut,
        dependencies=guarded,
        responses={**ERRORS, 413: {"model": ErrorOut}, 502: {"model": ErrorOut}},
    )
    def ask_image(
        question: Annotated[str, Form(min_length=1, max_length=1000)],
        image: Annotated[UploadFile, File(description="A photo asked with the question.")],
        stream: Annotated[bool, Form()] = False,
        corpora: Annotated[list[Corpus] | None, Form()] = None,
    ) -> Any:
        """Ask with an attached image: images and clips are also searched by its pixels."""
        folder = upload_dir / "questions"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}-{_upload_name(image.filename, 'photo')}"
        _save(image, path, s.max_upload_mb)
        return answer(question, corpora, stream, path)

    # -- OpenAI-compatible chat ---------------------------------------------------------

    def last_question(messages: list[ChatMessage]) -> tuple[str, Path | None]:
        for m in reversed(messages):
            if m.role != "user":
                continue
            if isinstance(m.content, str):
                return m.content, None
            texts = [p.get("text", "") for p in m.content if p.get("type") == "text"]
            image = next((p for p in m.content if p.get("type") == "image_url"), None)
            path = _data_url_file(image, upload_dir / "questions") if image else None
            return " ".join(texts), path
        raise ApiError(422, "invalid_request", "messages: no user message")

    @app.post("/v1/chat/completions", tags=["openai"], dependencies=guarded, responses=ERRORS)
    def chat_completions(body: ChatRequest) -> Any:
        """OpenAI-compatible chat over the RAG pipeline: the last user message is the
        question; the answer's sources come in ``sources`` (and in the last chunk)."""
        question, image = last_question(body.messages)
        if not question.strip():
            raise ApiError(422, "invalid_request", "messages: the last user message is empty")
        created = int(time.time())
        cid = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        events = run_ask(question, None, image)

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

            def chunks() -> Iterator[str]:
                yield chunk({"role": "assistant"})
                try:
                    for e in events:
                        if isinstance(e, TokenEvent):
                            yield chunk({"content": e.text})
                        elif isinstance(e, DoneEvent):
                            out = answer_json(e, links)
                            yield chunk({}, "stop", sources=[x.model_dump() for x in out.sources])
                except MmragError as err:
                    yield f"data: {json.dumps({'error': {'message': str(err)}})}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(chunks(), media_type="text/event-stream")
        done = [e for e in events if isinstance(e, DoneEvent)][-1]
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
                    detail="; ".join(filter(None, [result.message, *result.warnings])),
                )
            )
            job.progress = min(len(job.results) / total, 1.0)

        def on_step(_path: str, fraction: float) -> None:
            # Within a long file (a video, a scanned PDF): progress moves before it ends.
            job.progress = min((len(job.results) + fraction) / total, 0.999)

        try:
            with lock:
                svc.ingest(job.files, progress=on_file, step=on_step)
            job.status, job.progress = "done", 1.0
        except Exception as e:  # the job reports it; the server goes on
            job.status, job.message = "failed", f"{type(e).__name__}: {e}"

    @app.post(
        f"{API}/ingest",
        tags=["ingest"],
        status_code=202,
        response_model=JobOut,
        dependencies=guarded,
        responses={**ERRORS, 413: {"model": ErrorOut}, 415: {"model": ErrorOut}},
    )
    def ingest(
        files: Annotated[list[UploadFile], File(description="Documents, images, videos.")],
    ) -> JobOut:
        """Upload files to ingest; returns a job to poll (``GET /api/v1/jobs/{id}``)."""
        supported = svc.ingestor.suffixes
        for f in files:
            suffix = Path(_upload_name(f.filename, "upload")).suffix.lower()
            if suffix not in supported:
                raise ApiError(
                    415,
                    "unsupported_type",
                    f"{f.filename}: unsupported file type '{suffix or 'none'}' "
                    f"(supported: {', '.join(sorted(supported))})",
                )
        job = Job(uuid.uuid4().hex, [])
        folder = upload_dir / job.id
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            path = folder / _upload_name(f.filename, "upload")
            _save(f, path, s.max_upload_mb)
            job.files.append(path)
        jobs[job.id] = job
        worker.submit(run_job, job)
        return job.out()

    @app.get(
        f"{API}/jobs/{{job_id}}",
        tags=["ingest"],
        response_model=JobOut,
        dependencies=guarded,
        responses={**ERRORS, 404: {"model": ErrorOut}},
    )
    def job_status(job_id: str) -> JobOut:
        """An ingest job: status, progress (0-1) and each file's outcome."""
        job = jobs.get(job_id)
        if job is None:
            raise ApiError(404, "not_found", f"no job {job_id}")
        return job.out()

    # -- corpora and sources ----------------------------------------------------------------

    @app.get(f"{API}/corpora", tags=["corpora"], response_model=CorporaOut, dependencies=guarded)
    def corpora() -> CorporaOut:
        """Item counts per corpus."""
        return CorporaOut(corpora={c.value: n for c, n in svc.collections().items()})

    @app.get(f"{API}/sources", tags=["corpora"], response_model=SourcesOut, dependencies=guarded)
    def list_sources(
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> SourcesOut:
        """The sources of the index, sorted by path, a page at a time."""
        with lock:
            found = svc.sources()
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
        dependencies=guarded,
        responses={**ERRORS, 404: {"model": ErrorOut}},
    )
    def delete_source(
        source: str = Query(..., min_length=1, description="The source path."),
    ) -> DeletedOut:
        """Remove every item of one source from every corpus."""
        with lock:
            found = svc.delete_source(source)
        if not found:
            raise ApiError(404, "not_found", f"no source {source} in the index")
        return DeletedOut(source=source, deleted=True)

    # -- media ---------------------------------------------------------------------------

    def allowed_path(path: str) -> Path:
        if "\x00" in path:  # the OS refuses it; say so rather than fail inside resolve()
            raise ApiError(422, "invalid_request", "path: contains a NUL character")
        try:
            target = Path(path).resolve()
        except (OSError, RuntimeError) as e:  # symlink loops, names too long
            raise ApiError(404, "not_found", f"{path} is not a file of the index") from e
        media_root = (s.data_dir / "media").resolve()
        if target.is_relative_to(media_root) or svc.is_source(str(path)):
            if target.is_file():
                return target
            raise ApiError(404, "not_found", f"{path} is gone from disk")
        raise ApiError(404, "not_found", f"{path} is not a file of the index")

    @app.get(
        f"{API}/media",
        tags=["media"],
        dependencies=media_guarded,
        responses={**ERRORS, 404: {"model": ErrorOut}, 206: {"description": "A byte range."}},
    )
    def media(path: Annotated[str, Query(min_length=1)]) -> FileResponse:
        """A source file, thumbnail or keyframe; honours ``Range`` (video seeking)."""
        return FileResponse(allowed_path(path))

    @app.get(
        f"{API}/page",
        tags=["media"],
        dependencies=media_guarded,
        responses={**ERRORS, 404: {"model": ErrorOut}, 200: {"content": {"image/png": {}}}},
    )
    def page_image(
        path: Annotated[str, Query(min_length=1)], page: Annotated[int, Query(ge=1)]
    ) -> Response:
        """One page of a PDF source as a PNG (for showing a cited page)."""
        target = allowed_path(path)
        return Response(_render_page(target, page), media_type="image/png")

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


def _upload_name(filename: str | None, default: str) -> str:
    """A client's file name made safe to write: no directories, no NUL, at most 200 bytes.

    The suffix is kept because it decides how the file is ingested.
    """
    name = Path((filename or "").replace("\x00", "")).name or default
    stem, suffix = Path(name).stem, Path(name).suffix[:20]
    while len((stem + suffix).encode()) > 200:
        stem = stem[:-1]
    return (stem + suffix) or default


def _save(upload: UploadFile, path: Path, max_mb: int) -> None:
    """Copy an upload to ``path``, refusing it (413) past ``max_mb`` megabytes."""
    limit = max_mb * 1024 * 1024
    written = 0
    try:
        with path.open("wb") as out:
            while chunk := upload.file.read(1 << 20):
                written += len(chunk)
                if written > limit:
                    raise ApiError(
                        413,
                        "too_large",
                        f"{upload.filename}: larger than the {max_mb} MB upload limit",
                    )
                out.write(chunk)
    except ApiError:
        path.unlink(missing_ok=True)
        raise


def _data_url_file(part: dict[str, Any], folder: Path) -> Path | None:
    """A ``data:`` image URL from an OpenAI image part, saved to a file."""
    url = (part.get("image_url") or {}).get("url", "")
    if not url.startswith("data:") or "," not in url:
        raise ApiError(422, "invalid_request", "image_url: only data: URLs are accepted")
    header, data = url.split(",", 1)
    try:
        raw = base64.b64decode(data, validate=True)
    except ValueError as e:
        raise ApiError(422, "invalid_request", "image_url: not valid base64") from e
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".png" if "png" in header else ".jpg"
    path = folder / f"{uuid.uuid4().hex}{suffix}"
    path.write_bytes(raw)
    return path


def _render_page(pdf: Path, page: int) -> bytes:
    import pypdfium2 as pdfium

    document = pdfium.PdfDocument(str(pdf))
    try:
        if page > len(document):
            raise ApiError(404, "not_found", f"{pdf.name} has {len(document)} pages, not {page}")
        bitmap = document[page - 1].render(scale=1.5)
        buffer = io.BytesIO()
        bitmap.to_pil().save(buffer, "PNG")
        return buffer.getvalue()
    finally:
        document.close()
