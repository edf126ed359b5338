"""How well a source supports the words that cite it: a cheap lexical score.

``support(claim, source)`` is the share of the claim's content words (numbers included,
with thousands separators removed) that the source contains: 1.0 when every word the
claim rests on appears in the source, 0.0 when none does. It is crude on purpose: it
runs on every citation as the answer streams, in microseconds, with no model. What it
catches is what small models get wrong most: a citation number off by one, pointing at
the neighbouring source (CiteFix, Maheshwari et al. 2025, report the same failure and
the same cure: re-attribute by lexical overlap after generation). Paraphrase defeats
it, so a low score *flags* a citation, and a citation is only *moved* when another
source scores high and clearly better.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Under this a citation is flagged as weakly supported.
WEAK = 0.5
# A citation is moved only to a source that supports the claim at least this well and
# by this margin over the cited one.
MOVE_AT = 0.6
MOVE_MARGIN = 0.3
# Claims with fewer content words than this are not judged (too little to go on).
MIN_WORDS = 2

_TOKEN = re.compile(r"\d[\d,.]*\d|\d|\w+", re.UNICODE)
_STOP_WORDS = """\
    a an the and or but of to in on at by for with from as is are was were be been being
    it its this that these those there their they them he she his her we you your our i me
    my not no yes do does did done has have had having will would can could should
    might must shall which who whom whose what when where why how than then so such also
    into onto over under about after before between during while if because per each
    any all some most more less many much very just only same other both either neither
    according source sources said says say"""
_STOP = frozenset(_STOP_WORDS.split())


def content_words(text: str) -> set[str]:
    """Lower-cased words of three letters or more and numbers, without stop words."""
    words: set[str] = set()
    for token in _TOKEN.findall(text.lower()):
        if token[0].isdigit():
            words.add(token.replace(",", "").rstrip("."))
        elif len(token) >= 3 and token not in _STOP:
            # A plural and its singular count as one word ("reactors" / "reactor").
            words.add(token[:-1] if token.endswith("s") and len(token) > 3 else token)
    return words


def support(claim: str | set[str], source: str | set[str]) -> float | None:
    """Share of the claim's content words found in the source; None if too few to judge."""
    want = content_words(claim) if isinstance(claim, str) else claim
    if len(want) < MIN_WORDS:
        return None
    have = content_words(source) if isinstance(source, str) else source
    return len(want & have) / len(want)


@dataclass(frozen=True)
class Attribution:
    """What a claim cites after the check: numbers, their support, and the moves made."""

    numbers: list[int]
    support: dict[int, float] = field(default_factory=dict)
    moved: list[tuple[int, int]] = field(default_factory=list)


def reattribute(claim: str, cited: list[int], sources: Mapping[int, set[str]]) -> Attribution:
    """The numbers a claim should cite, and the support of each.

    A cited source that barely supports the claim (or a number that is no source's) is
    replaced by the source that supports it best, when that one clears ``MOVE_AT`` by
    ``MOVE_MARGIN``; otherwise the model's choice stands (and its low support is
    reported).
    """
    want = content_words(claim)
    if len(want) < MIN_WORDS:
        return Attribution(cited)
    scores = {n: len(want & words) / len(want) for n, words in sources.items()}
    best = max(scores, key=lambda n: scores[n], default=None)
    out: list[int] = []
    moved: list[tuple[int, int]] = []
    for n in cited:
        s = scores.get(n, 0.0)
        if (
            best is not None
            and s < WEAK
            and scores[best] >= MOVE_AT
            and scores[best] - s >= MOVE_MARGIN
        ):
            moved.append((n, best))
            n = best
        if n not in out:
            out.append(n)
    return Attribution(out, {n: scores[n] for n in out if n in scores}, moved)
