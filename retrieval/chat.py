"""Chat messages and the :class:`Generator` protocol: the LLM seam two stages share.

``generation`` writes answers with a generator and ``router.llm`` asks one to pick the
corpora; both speak to it in these types. They are defined here, at the bottom beside
the other shared types and the errors, so that the two stages stay independent of each
other (the import-linter contract in pyproject.toml); ``generation.base`` re-exports
them, and the backends (llama.cpp, OpenAI-compatible) live in ``generation``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class ImagePart:
    """A picture shown to a vision model, after a text ``label`` naming its source."""

    label: str
    path: str


@dataclass(frozen=True)
class Message:
    role: Role
    content: str
    # Sent as image parts by backends whose model sees images; others ignore them
    # (the source's text, tags, OCR and transcript, stands in).
    images: tuple[ImagePart, ...] = ()


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
