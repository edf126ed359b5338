"""Sections to passages of a searchable size (the ``paragraph`` corpus unit).

:func:`chunk` packs consecutive sections that share a page and a heading path into
passages of about ``target_words`` words. A passage never spans two pages or two heading
paths, so its page and heading are exact; and its text is exactly
``doc.page_text(page)[char_start:char_end]``, so a citation can highlight it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Sequence

from ingest.base import ParsedDocument, Passage, Section

# A sentence ends at . ! ? (and any closing quotes or brackets) before whitespace and
# a capital or digit; a line break inside a section (list items, table rows, code) is a
# boundary too. The gap is whitespace that belongs to neither side. A line break is
# only looked for from the start of a run of blanks: from inside one, each of its
# characters would rescan the run (quadratic: a run of 40,000 spaces took 10 s).
_BOUNDARY = re.compile(
    r"(?<=[.!?])[\"'”’)\]]*(?P<gap>\s+)(?=[\"'“‘(\[]?[A-Z0-9])"
    r"|(?P<line>(?<![^\S\n])[^\S\n]*\n\s*)"
)
_WORD = re.compile(r"\S+")

# (start, end, words): a span of the page text that the packer treats as indivisible.
_Span = tuple[int, int, int]


def chunk(
    doc: ParsedDocument,
    *,
    target_words: int = 180,
    max_words: int = 300,
    min_words: int = 40,
) -> list[Passage]:
    """Split ``doc`` into passages of about ``target_words`` words, in document order.

    Each run of sections with the same page and heading is cut into the number of
    passages closest to ``words / target_words`` (at least enough to keep each within
    ``max_words``), with sizes evened out, so a 270-word run gives two passages of ~135
    rather than 180 + 90. A section longer than ``max_words`` is cut at sentence ends (at
    word boundaries if a single sentence is too long). A passage under ``min_words`` is
    merged into the previous passage of the same page and heading when the result stays
    within ``max_words``; a page or heading with little text under it still gives a short
    passage. Runs in time linear in the text.
    """
    if not 0 < min_words <= target_words <= max_words:
        raise ValueError(
            "chunk sizes must satisfy 0 < min_words <= target_words <= max_words, got "
            f"min_words={min_words}, target_words={target_words}, max_words={max_words}"
        )
    passages: list[Passage] = []
    for (page, heading), sections in itertools.groupby(
        doc.sections, key=lambda s: (s.page, s.heading)
    ):
        text = doc.page_text(page)
        units = list(_units(sections, target_words, max_words))
        for start, end, _ in _pack(text, units, target_words, max_words, min_words):
            passages.append(Passage(text[start:end], page, heading, start, end))
    return passages


def _word_count(text: str, start: int, end: int, limit: int) -> int:
    """Words in ``text[start:end]``, counted only as far as ``limit + 1``.

    Enough to compare with ``limit`` without a list of every word: a one-line file of
    50 MB is 8 M words, and ``split()`` of it alone took gigabytes.
    """
    if end - start <= 100_000:
        return len(text[start:end].split())
    count = 0
    for count, _ in enumerate(_WORD.finditer(text, start, end), 1):
        if count > limit:
            break
    return count


def _units(sections: Iterable[Section], target_words: int, max_words: int) -> Iterator[_Span]:
    """Sections as spans, with sections over ``max_words`` cut into sentences."""
    for section in sections:
        words = _word_count(section.text, 0, len(section.text), max_words)
        if words <= max_words:
            yield section.char_start, section.char_start + len(section.text), words
        else:
            yield from _sentences(section, target_words, max_words)


def _sentences(section: Section, target_words: int, max_words: int) -> Iterator[_Span]:
    text = section.text
    offset = section.char_start
    start = 0
    for match in _BOUNDARY.finditer(text):
        end = match.start("gap") if match.group("gap") is not None else match.start()
        if end > start:
            yield from _sentence(text, start, end, offset, target_words, max_words)
        start = match.end()
    if start < len(text):
        yield from _sentence(text, start, len(text), offset, target_words, max_words)


def _sentence(
    text: str, start: int, end: int, offset: int, target_words: int, max_words: int
) -> Iterator[_Span]:
    words = _word_count(text, start, end, max_words)
    if words <= max_words:
        yield offset + start, offset + end, words
        return
    # A "sentence" this long is a table or a list without punctuation: cut by words,
    # as they are found (never a list of them all).
    count = first = last = 0
    for match in _WORD.finditer(text, start, end):
        if not count:
            first = match.start()
        count, last = count + 1, match.end()
        if count == target_words:
            yield offset + first, offset + last, count
            count = 0
    if count:
        yield offset + first, offset + last, count


def _pack(
    text: str, units: Sequence[_Span], target_words: int, max_words: int, min_words: int
) -> list[_Span]:
    """Greedy packing of consecutive units into passages (as spans of ``text``)."""
    total = sum(unit[2] for unit in units)
    count = max(1, round(total / target_words), -(-total // max_words))
    goal = total / count
    packed: list[_Span] = []

    def joined(first: _Span, second: _Span) -> _Span:
        # Text between units is usually whitespace, but a loader may skip a block
        # (Markdown's raw HTML); its words still end up in the passage.
        gap = len(text[first[1] : second[0]].split())
        return first[0], second[1], first[2] + gap + second[2]

    def close(span: _Span) -> None:
        if span[2] < min_words and packed:
            merged = joined(packed[-1], span)
            if merged[2] <= max_words:
                packed[-1] = merged
                return
        packed.append(span)

    current: _Span | None = None
    for unit in units:
        if current is None:
            current = unit
            continue
        extended = joined(current, unit)
        # Stop at whichever side of the goal is nearer.
        if extended[2] > max_words or extended[2] - goal > goal - current[2]:
            close(current)
            current = unit
        else:
            current = extended
    if current is not None:
        close(current)
    return packed
