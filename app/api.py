"""The REST API (FastAPI): every HTTP surface goes through one :class:`Service`.

Versioned under ``/api/v1``, with an OpenAI-compatible ``POST /v1/chat/completions``
beside it and the widget at ``/widget.js``. ``mmrag serve`` mounts the Gradio UI at
``/ui`` on the same app (:func:`app.ui.mount_ui`). docs/api.md describes every endpoint
and docs/security.md the threat model.

The app is assembled here from small parts, each in its own module:

- routes by concern (:mod:`app.routes`): ask, OpenAI chat, ingest jobs, corpora and
  sources, media and pages, health and static files;
- :mod:`app.schemas` (request and response models), :mod:`app.render` (an answer and
  its sources, for every surface), :mod:`app.streaming` (answers in a worker thread,
  cancelled when the client leaves), :mod:`app.errors` (one table from an exception to a
  status), :mod:`app.deps` (who is calling, rate limits, the shared parts);
- :class:`~app.security.Guard` in front of everything: Host and Origin checks, body
  limits, security headers.

Answers never wait for ingestion: an ingest job holds only the ingest lock and the
store's short per-batch lock; the LLM backend serialises its own use (llama.cpp) or
serves many (vLLM).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from app import errors
from app.deps import Gate, Parts
from app.jobs import Jobs
from app.pages import PageRenders
from app.routes import ask, corpora, ingest, media, openai, site
from app.security import API, Guard, GuardConfig, allowed_hosts
from app.service import Service
from app.uploads import Uploads


def create_app(service: Service | None = None) -> FastAPI:
    """The HTTP API over ``service`` (default: one built from the settings)."""
    svc = service or Service()
    s = svc.settings
    app = FastAPI(
        title="mmrag",
        version="1",
        summary="Multimodal retrieval-augmented generation: ask, ingest, browse sources.",
        openapi_url=f"{API}/openapi.json",
        docs_url=f"{API}/docs",
        redoc_url=None,
    )
    gate = Gate(s)
    uploads = Uploads(s.data_dir / "uploads", s.max_upload_mb * 1024 * 1024)
    uploads.clear_staging()
    app.state.parts = Parts(
        service=svc,
        gate=gate,
        uploads=uploads,
        jobs=Jobs(),
        ingest_worker=ThreadPoolExecutor(max_workers=1, thread_name_prefix="mmrag-ingest"),
        pages=PageRenders(),
    )
    errors.install(app)
    for module in (site, ask, openai, ingest, corpora, media):
        app.include_router(module.router)

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
    return app
