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
    # Share of the citing words found in the source (best use; None: too few to judge).
    support: float | None = None


@dataclass(frozen=True)
class Conflict:
    """Sources ``a`` and ``b`` are one text with a fact replaced: ``a_says`` vs ``b_says``."""

    a: int
    b: int
    a_says: str
    b_says: str


@dataclass(frozen=True)
class Answer:
    """The final answer: its text, the citations that resolved, the markers that did not.

    ``weak_citations``: cited numbers whose source barely contains the words that cite
    it (see ``generation.support``). ``moved``: (written, now) pairs of markers that
    pointed at a source without the claim and were moved to the one that has it.
    ``conflicts``: pairs of sources that disagree on a fact, whatever the model wrote.
    ``injected``: sources in which instructions to the model were found and disarmed.
    """

    text: str
    sources: tuple[Source, ...]
    citations: tuple[Citation, ...]
    invalid_markers: tuple[int, ...] = ()
    grounded: bool = True  # False when the answer was given without usable sources
    weak_citations: tuple[int, ...] = ()
    moved: tuple[tuple[int, int], ...] = ()
    conflicts: tuple[Conflict, ...] = ()  # sources that disagree (generation.conflicts)
    retried: bool = False  # the first draft cited nothing and was written again
    # Sources holding text addressed to the model (kept out of the prompt; anything it
    # asked for is removed from the answer; generation.injection).
    injected: tuple[int, ...] = ()


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
