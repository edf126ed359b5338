"""Sources that disagree: two versions of the same passage that differ in a fact.

Retrieved evidence often holds copies of one text (syndicated news, mirrors, edited
wikis); when a copy was changed, the copies agree word for word except where the fact
was replaced: "... at Raymond James Stadium in **Tampa, Florida** ..." against "... in
**Glendale, Arizona** ...". That is the conflict this module finds, cheaply, before the
model writes: a word-level alignment (difflib) of every pair of sources; a pair that is
mostly shared text with a short replaced span holding a number or a content word is a
conflict. The prompt then names both versions and asks the model to say so and cite
both (a 0.5B model does not notice a disagreement on its own), and the answer carries
the conflict for the UI to show whatever the model wrote.

Disagreements between differently worded texts ("opened in 1932" vs "the 1934
opening") are not found: that needs a model that reads both; a reranker-class model or
the generator could do it at a cost per pair. Stated in docs/architecture.md.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from difflib import SequenceMatcher

from generation.base import Conflict, Source
from generation.support import content_words
from retrieval.base import Hit

# The pair must share most of its words to be two versions of one text.
MIN_SHARED = 0.6
# A replaced span longer than this (in words) is a rewrite, not a changed fact.
MAX_SPAN_WORDS = 8

_WORDS = re.compile(r"\S+")


def find_conflicts(sources: Sequence[Source]) -> list[Conflict]:
    """Every pair of sources that are versions of one text with a fact replaced."""
    words = {s.number: _WORDS.findall(s.hit.item.text) for s in sources}
    found: list[Conflict] = []
    for i, first in enumerate(sources):
        for second in sources[i + 1 :]:
            conflict = _compare(
                first.number, words[first.number], second.number, words[second.number]
            )
            if conflict is not None:
                found.append(conflict)
    return found


def disagree(a: Hit, b: Hit) -> bool:
    """Whether two hits are versions of one text that differ in a fact."""
    wa, wb = _WORDS.findall(a.item.text), _WORDS.findall(b.item.text)
    return _compare(1, wa, 2, wb) is not None


def _bare(word: str) -> str:
    return word.strip(".,;:!?\"'()[]").lower()


def _compare(a: int, wa: list[str], b: int, wb: list[str]) -> Conflict | None:
    if not wa or not wb:
        return None
    matcher = SequenceMatcher(None, [_bare(w) for w in wa], [_bare(w) for w in wb], autojunk=False)
    shared = sum(block.size for block in matcher.get_matching_blocks())
    if shared / min(len(wa), len(wb)) < MIN_SHARED:
        return None
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op != "replace" or i2 - i1 > MAX_SPAN_WORDS or j2 - j1 > MAX_SPAN_WORDS:
            continue
        a_says = " ".join(wa[i1:i2]).strip(".,;:")
        b_says = " ".join(wb[j1:j2]).strip(".,;:")
        # A changed fact carries a number or a content word on both sides; a changed
        # "the" for "a" is not a disagreement.
        if content_words(a_says) and content_words(b_says):
            return Conflict(a, b, a_says, b_says)
    return None


def conflict_note(conflicts: Sequence[Conflict]) -> str:
    """The prompt's instruction for the conflicts found ("" when there are none)."""
    if not conflicts:
        return ""
    lines = [
        f'Sources [{c.a}] and [{c.b}] disagree: [{c.a}] says "{c.a_says}", '
        f'[{c.b}] says "{c.b_says}".'
        for c in conflicts
    ]
    return (
        "\n".join(lines)
        + "\nIf this matters for the question, say that the sources disagree, give both "
        "versions, and cite both sources."
    )
