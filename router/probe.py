"""The router's call, weighed with what the index answers (UniversalRAG on the user's data).

The trained router judges the question alone: "What is the effect of the wall
temperature on heat transfer?" reads like a how-to (video), "a photo of she just
finished chopping vegetables" like a scene in a clip. The index can tell it more, for
about a millisecond per corpus: the best cosine the question reaches in each corpus,
put on one scale by :mod:`retrieval.calibration` (z: how unusual that match is for that
corpus). A corpus with a match no unrelated question gets is very likely where the
answer is; a corpus the router likes but that holds nothing close is not.

:func:`weigh` combines both as evidence, per corpus: ``log p(corpus | question) +
PROBE_WEIGHT * z``, with no fitting on the questions it will be measured on:

- ``p`` is the shipped router's probability (cross-validated on its 2,425 questions);
- z is a z-score against the null of *unrelated* questions, so its scale is fixed by
  construction: ``MATCH_Z`` = 3 is "beyond almost every unrelated question", the usual
  reading of three robust standard deviations, not a fitted value;
- ``PROBE_WEIGHT`` says how many nats one standard deviation of match is worth against
  the router's log-probability; it and ``KEEP_GAP`` were chosen on development
  questions that are not in any measured set (COCO captions the mixed set does not ask,
  the router set's questions, phrasings of the video descriptions), see
  docs/benchmarks.md ("Routing on one mixed index").

The rule: when no corpus reaches ``MATCH_Z``, the router's route stands (the index has
nothing unusual to say; a ``no`` stays a ``no``). Otherwise the corpora that reach it
and the routed ones compete on evidence: the best one is searched, and any other whose
evidence is within ``KEEP_GAP`` nats of it (so a confident route to photos survives a
clip that matches by chance, and a guessed route to videos gives way to passages that
clearly answer). A ``no`` route is overturned only by a match
of ``NO_OVERRIDE_Z`` or more (the router is usually right that an exam question needs no
search, and general knowledge overlaps any corpus a little: the 25 exam questions among
the background reach at most z 3.0 in the mixed evaluation's index).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from retrieval.base import Corpus
from router.base import EXCLUSIVE, Route

MATCH_Z = 3.0
NO_OVERRIDE_Z = 4.0
PROBE_WEIGHT = 1.0
KEEP_GAP = 2.0
# The router's probabilities are floored so one corpus it thinks impossible can still
# win on overwhelming evidence (log(0.01) = -4.6 nats: five standard deviations).
MIN_PROBABILITY = 0.01


def evidence(p: float, z: float) -> float:
    """Nats for a corpus: the router's log-probability plus the weighed match."""
    return math.log(max(p, MIN_PROBABILITY)) + PROBE_WEIGHT * z


def weigh(route: Route, z: Mapping[Corpus, float]) -> Route:
    """The route after weighing each non-empty corpus' match ``z`` (see the module doc)."""
    matching = {c: s for c, s in z.items() if s >= MATCH_Z}
    if not matching:
        return route
    if not route.corpora:
        strong = {c: s for c, s in matching.items() if s >= NO_OVERRIDE_Z}
        if not strong:
            return route
        best = max(strong, key=lambda c: strong[c])
        why = f"{route.reason}; but {best.value} holds a close match (z {strong[best]:.1f})"
        return Route((best,), route.scores, why)
    candidates = set(matching) | set(route.corpora)
    scored = {c: evidence(route.scores.get(c.value, 0.0), z.get(c, 0.0)) for c in candidates}
    top = max(scored.values())
    kept = [c for c in Corpus if c in scored and scored[c] >= top - KEEP_GAP]
    for a, b in EXCLUSIVE:
        if a in kept and b in kept:
            kept.remove(b if scored[a] >= scored[b] else a)
    if set(kept) == set(route.corpora):
        return route
    said = ", ".join(f"{c.value} z {z[c]:.1f}" for c in kept)
    return Route(tuple(kept), route.scores, f"{route.reason}; the index answers: {said}")
