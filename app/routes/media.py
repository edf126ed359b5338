"""``GET /api/v1/media`` and ``/api/v1/page``: the files behind citations.

Media are served only when they belong to the caller's part of the index (a source
file, or a thumbnail / keyframe of its workspace), with range requests so a ``<video>``
can seek; types a browser would run (HTML, SVG, ...) only as attachments, under a
sandbox CSP. Media requests do not count toward the rate limit (they follow an answer
and cost no model work); page renders have their own limit and a cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

from app.deps import App, MediaCaller, Parts, limited
from app.errors import ApiError
from app.pages import render_page
from app.schemas import ERRORS, ErrorOut
from app.security import API, Principal

router = APIRouter(tags=["media"])

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


def allowed_path(parts: Parts, path: str, who: Principal | None) -> Path:
    """``path`` resolved, if it is a file of the caller's part of the index."""
    if "\x00" in path:  # the OS refuses it; say so rather than fail inside resolve()
        raise ApiError(422, "invalid_request", "path: contains a NUL character")
    missing = ApiError(404, "not_found", "not a file of the index")
    try:
        target = Path(path).resolve()
    except (OSError, RuntimeError, ValueError) as e:  # loops, names too long
        raise missing from e
    scope = None if who is None else who.scope
    svc = parts.service
    if not svc.owns_media(target, scope) and not svc.is_source(str(target), scope):
        raise missing
    if not target.is_file():
        raise ApiError(404, "not_found", "the file is gone from disk")
    return target


@router.get(
    f"{API}/media",
    responses={**ERRORS, 404: {"model": ErrorOut}, 206: {"description": "A byte range."}},
)
def media(
    path: Annotated[str, Query(min_length=1, max_length=4096)], who: MediaCaller, parts: App
) -> FileResponse:
    """A source file, thumbnail or keyframe; honours ``Range`` (video seeking).
    Types a browser would run as a page are sent as attachments, sandboxed."""
    target = allowed_path(parts, path, who)
    response = FileResponse(target)
    kind = response.media_type or "application/octet-stream"
    if target.suffix.lower() in AS_TEXT_SUFFIXES:
        response.media_type = "text/plain; charset=utf-8"
        response.headers["content-type"] = "text/plain; charset=utf-8"
    elif kind.split(";")[0] not in INLINE_TYPES:
        response.headers["content-type"] = "application/octet-stream"
        response.headers["content-disposition"] = (
            f"attachment; filename*=utf-8''{quote(target.name, safe='')}"
        )
    if not kind.startswith("application/pdf"):
        # A PDF viewer cannot run sandboxed; every other type can.
        response.headers["content-security-policy"] = SANDBOX_CSP
    return response


@router.get(
    f"{API}/page",
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
    parts: App,
    path: Annotated[str, Query(min_length=1, max_length=4096)],
    page: Annotated[int, Query(ge=1, le=100_000)],
) -> Response:
    """One page of a PDF source as a PNG (for showing a cited page); rendered pages
    are cached, and renders are rate limited."""
    target = allowed_path(parts, path, who)
    if target.suffix.lower() != ".pdf":
        raise ApiError(415, "unsupported_type", f"{target.name} is not a PDF")
    max_pixels = parts.settings.max_page_pixels
    stat = target.stat()
    key = (str(target), stat.st_mtime_ns, stat.st_size, page, max_pixels)
    png = parts.pages.get(key)
    if png is None:
        gate = parts.gate
        if (wait := gate.renders.check(gate.bucket(request, who))) is not None:
            raise limited(
                f"more than {gate.renders.per_minute} page renders a minute; retry in {wait:.0f} s",
                wait,
            )
        png = render_page(target, page, max_pixels)
        parts.pages.put(key, png)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})
