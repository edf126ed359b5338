"""The router's value type and protocol.

A :class:`Route` says which corpora a question should search (several, or none), with
a score per label so the UI and the API can show why. The label ``no`` means "answer
from the model alone".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from retrieval.base import TEXT_CORPORA, Corpus

NO_RETRIEVAL = "no"
LABELS: tuple[str, ...] = (NO_RETRIEVAL, *(c.value for c in Corpus))


@dataclass(frozen=True)
class Route:
    """The chosen corpora (empty: no retrieval), every label's score, and the reason."""

    corpora: tuple[Corpus, ...]
    scores: Mapping[str, float]
    reason: str

    @property
    def retrieve(self) -> bool:
        return bool(self.corpora)

    @property
    def label(self) -> str:
        return "+".join(c.value for c in self.corpora) or NO_RETRIEVAL


class Router(Protocol):
    """Decides which corpora to search; ``available`` gives each corpus' item count."""

    name: str

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route: ...


class AllCorporaRouter:
    """Routes every question to every non-empty corpus (until a trained router ships).

    When all corpora are empty the route keeps the text corpora, so the answer can say
    that nothing has been ingested yet rather than answer from the model alone.
    """

    name = "all"

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route:
        chosen = tuple(c for c in Corpus if available.get(c, 0) > 0) or TEXT_CORPORA
        scores = {label: (1.0 if label in {c.value for c in chosen} else 0.0) for label in LABELS}
        return Route(chosen, scores, "every non-empty corpus")


class FixedRouter:
    """Searches the corpora the user forced (those that have items)."""

    name = "forced"

    def __init__(self, corpora: tuple[Corpus, ...]) -> None:
        self.corpora = corpora

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route:
        scores = {
            label: (1.0 if label in {c.value for c in self.corpora} else 0.0) for label in LABELS
        }
        return Route(self.corpora, scores, "forced by the user")
