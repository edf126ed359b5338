"""Value types and the generator protocol of the generation stage.

Generation knows hits only as data (``retrieval.Hit``); it never searches. A backend
implements one verb, :meth:`Generator.stream`, over our own :class:`Message` type;
the OpenAI and llama.cpp message formats stay inside their backend modules.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from retrieval.base import Hit

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Source:
    """A hit as the model sees it: numbered from 1 in the prompt."""

    number: int
    hit: Hit


@dataclass(frozen=True)
class Citation:
    """A valid ``[n]`` marker of the answer, resolved to its source."""

    number: int
    source: Source


@dataclass(frozen=True)
class Answer:
    """The final answer: its text, the citations that resolved, the markers that did not."""

    text: str
    sources: tuple[Source, ...]
    citations: tuple[Citation, ...]
    invalid_markers: tuple[int, ...] = ()
    grounded: bool = True  # False when the answer was given without usable sources


@runtime_checkable
class Generator(Protocol):
    """A chat LLM that streams text.

    Capabilities are attributes: ``supports_images`` says whether image parts can be
    sent, ``context_window`` is the model's context size in tokens.
    """

    name: str
    supports_images: bool
    context_window: int

    def stream(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int = 512,
        temperature: float = 0.1,
    ) -> Iterator[str]: ...
