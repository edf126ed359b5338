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


# Of each pair only the stronger is searched: the same content at two granularities.
EXCLUSIVE: tuple[tuple[Corpus, Corpus], ...] = (
    (Corpus.PARAGRAPH, Corpus.DOCUMENT),
    (Corpus.CLIP, Corpus.VIDEO),
)


def decide(
    scores: Mapping[str, float],
    available: Mapping[Corpus, int],
    *,
    threshold: float | Mapping[str, float] = 0.5,
    reason: str = "",
) -> Route:
    """The multi-label decision every scoring router shares.

    A label is chosen when its score passes its threshold; of paragraph/document and of
    clip/video the stronger is kept; ``no`` only when nothing else is chosen; nothing
    passing -> the top label. Then what exists: a corpus with no items is never
    searched. If every chosen corpus is empty, the best-scoring non-empty corpus is
    searched instead; if everything is empty, the stronger text corpus is kept, so the
    answer can say that nothing has been ingested.
    """

    def passes(label: str) -> bool:
        limit = threshold if isinstance(threshold, float | int) else threshold.get(label, 0.5)
        return scores.get(label, 0.0) >= limit

    ranked = sorted(LABELS, key=lambda label: -scores.get(label, 0.0))
    chosen = [c for c in Corpus if passes(c.value)]
    for a, b in EXCLUSIVE:
        if a in chosen and b in chosen:
            chosen.remove(b if scores.get(a.value, 0.0) >= scores.get(b.value, 0.0) else a)
    if not chosen and (passes(NO_RETRIEVAL) or ranked[0] == NO_RETRIEVAL):
        why = reason or f"{NO_RETRIEVAL} {scores.get(NO_RETRIEVAL, 0.0):.2f}"
        return Route((), dict(scores), why)
    if not chosen:
        chosen = [Corpus(ranked[0])]
    wanted = ", ".join(f"{c.value} {scores.get(c.value, 0.0):.2f}" for c in chosen)
    present = [c for c in chosen if available.get(c, 0) > 0]
    if present:
        dropped = [c.value for c in chosen if c not in present]
        note = f" ({', '.join(dropped)} empty)" if dropped else ""
        return Route(tuple(present), dict(scores), f"{reason or wanted}{note}")
    others = [Corpus(label) for label in ranked if label != NO_RETRIEVAL]
    nonempty = [c for c in others if available.get(c, 0) > 0]
    if nonempty:
        return Route(
            (nonempty[0],),
            dict(scores),
            f"{reason or wanted}; empty, so the best non-empty corpus: {nonempty[0].value}",
        )
    text = max(TEXT_CORPORA, key=lambda c: scores.get(c.value, 0.0))
    return Route((text,), dict(scores), f"{reason or wanted}; nothing is ingested yet")


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


class Unsure(Protocol):
    """A router that can tell when its own route is a guess."""

    name: str

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route: ...

    def is_unsure(self, route: Route) -> bool: ...


class FallbackRouter:
    """Asks ``fallback`` (typically the LLM router) only when ``primary`` is unsure.

    The fast router answers most questions alone; the slow one pays its model call only
    on the few that the fast one finds ambiguous. The route's reason says which decided.
    """

    def __init__(self, primary: Unsure, fallback: Router) -> None:
        self.primary = primary
        self.fallback = fallback
        self.name = f"{primary.name}+{fallback.name}"

    def route(self, question: str, available: Mapping[Corpus, int]) -> Route:
        first = self.primary.route(question, available)
        if not self.primary.is_unsure(first):
            return first
        second = self.fallback.route(question, available)
        top = max(first.scores.values(), default=0.0)
        why = f"{self.primary.name} unsure (top {top:.2f}); {self.fallback.name}: {second.reason}"
        # Keep the primary's probabilities: they are the informative scores to show.
        return Route(second.corpora, first.scores, why)


def with_image(route: Route, available: Mapping[Corpus, int]) -> Route:
    """A question that comes with an image also searches the visual corpora that exist."""
    visual = [c for c in (Corpus.IMAGE, Corpus.CLIP) if available.get(c, 0) > 0]
    added = tuple(c for c in visual if c not in route.corpora)
    if not added:
        return route
    names = ", ".join(c.value for c in added)
    return Route((*route.corpora, *added), route.scores, f"{route.reason}; image given: +{names}")


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
