"""The REST API's request and response models: they validate input and make the
OpenAPI document (``/api/v1/openapi.json``); docs/api.md describes them for people."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from app.service import MAX_QUESTION_CHARS
from retrieval.base import Corpus


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
    char_start: int | None = Field(
        None, description="Where the passage starts in its page's text (characters)."
    )
    char_end: int | None = None
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
    moved_citations: list[list[int]] = Field(
        [], description="(written, now) citation markers moved to the source that holds the claim."
    )
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
    503: {"model": ErrorOut},
}
"""The error responses every route may give (each adds its own extra statuses)."""
