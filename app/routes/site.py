"""Health checks and the static files: ``/health``, ``/ready``, ``/widget.js``, ``/demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.deps import App
from app.errors import ApiError, classify
from app.schemas import ErrorOut
from retrieval.errors import MmragError

STATIC = Path(__file__).parent.parent / "static"
router = APIRouter()


@router.get("/health", tags=["health"])
def health() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/ready", tags=["health"], responses={503: {"model": ErrorOut}})
def ready(parts: App) -> dict[str, Any]:
    """The index answers (the store opens and reports its counts)."""
    try:
        counts = parts.service.collections()
    except MmragError as e:
        _, _, message = classify(e)
        raise ApiError(503, "not_ready", message) from e
    return {"status": "ready", "items": sum(counts.values())}


@router.get("/widget.js", include_in_schema=False)
def widget() -> FileResponse:
    return FileResponse(STATIC / "widget.js", media_type="text/javascript")


@router.get("/demo", include_in_schema=False)
def demo() -> FileResponse:
    return FileResponse(STATIC / "demo.html", media_type="text/html")
