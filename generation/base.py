"""Value types and the generator protocol of the generation stage.

Generation knows hits only as data (``retrieval.Hit``); it never searches. A backend
implements one verb, :meth:`Generator.stream`, over our own :class:`Message` type;
the OpenAI and llama.cpp message formats stay inside their backend modules. The
message types and the protocol are defined in :mod:`retrieval.chat` (the router's LLM
speaks them too, and router and generation must not import each other) and are
re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

from retrieval.base import Hit
from retrieval.chat import Generator, ImagePart, Message, Role

__all__ = [
    "Answer",
    "Citation",
    "Conflict",
    "Generator",
    "ImagePart",
    "Message",
    "Role",
    "Source",
]


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
