"""From an exception to an HTTP answer, in one table.

The REST handlers, the answer stream (SSE ``error`` events) and the OpenAI-compatible
stream all answer errors through :func:`classify`, so a failure has the same status and
code wherever it surfaces. Whose fault it is decides the status:

- the request's (bad input, a file over a limit, an unknown id): 4xx, the message says
  what to change;
- a service we depend on (the Qdrant store down or locked, a model that does not load,
  a misconfigured server): 503, the message carries the hint that fixes it; the LLM
  server behind us failing is 502 (we are its gateway);
- our own bug: 500 with nothing about the server in it (no paths, no exception text);
  the traceback goes to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.uploads import UploadTooLarge, public_message
from retrieval.errors import (
    ConfigError,
    EncoderMismatchError,
    GenerationError,
    MmragError,
    ModelError,
    StoreError,
)

log = logging.getLogger("mmrag.api")


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers


# Most specific first: the first row whose type matches decides.
ERROR_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (UploadTooLarge, 413, "too_large"),
    (GenerationError, 502, "llm_unavailable"),
    (StoreError, 503, "store_unavailable"),
    (ModelError, 503, "model_unavailable"),
    (EncoderMismatchError, 503, "index_mismatch"),
    (ConfigError, 503, "misconfigured"),
    (MmragError, 400, "bad_input"),
)
INTERNAL = (500, "internal", "an unexpected error; it was logged on the server")


def classify(error: BaseException) -> tuple[int, str, str]:
    """``(status, code, message)`` for any exception; unexpected ones are logged."""
    if isinstance(error, ApiError):
        return error.status, error.code, error.message
    for kind, status, code in ERROR_TABLE:
        if isinstance(error, kind):
            return status, code, public_message(str(error))
    log.error("unexpected error", exc_info=error)
    return INTERNAL


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def stream_error(error: BaseException) -> dict[str, str]:
    """The payload of an error met after a stream has started (its status is sent)."""
    _, code, message = classify(error)
    return {"code": code, "message": message}


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in the one JSON shape, by the table."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError) -> JSONResponse:
        return error_response(e.status, e.code, e.message, e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first: dict[str, Any] = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}".strip(": ")
        return error_response(422, "invalid_request", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            e.status_code, "http_error"
        )
        return error_response(e.status_code, code, str(e.detail))

    @app.exception_handler(MmragError)
    async def _mmrag(request: Request, e: MmragError) -> JSONResponse:
        return error_response(*classify(e))
