"""Turning the model's ``[n]`` markers into citations, and hiding the ones that point nowhere.

Models write markers in many shapes: ``[2]``, ``[1, 3]``, ``[1][3]``, ``[1-3]``,
``[Source 2]``, ``[^2]``, fullwidth ``【2】``. All of them are accepted. In the returned
text every marker is rewritten in one canonical form, ``[n]`` per cited source (so
``[1-3]`` becomes ``[1][2][3]``), which is the only form a UI needs to render as a link.
Numbers that match no source are dropped from the text and reported as
``invalid_markers``. Each valid marker is checked against the clause it ends
(:mod:`generation.support`): a marker whose source lacks the claim's words while
another source has them is moved there (small models often cite the neighbouring
source), and weakly supported citations are reported. Markers inside Markdown code
(fenced blocks or inline backticks) are left alone: there ``[1]`` is a list, not a
citation.

Before markers are read, the text loses what must never reach a reader: active markup
(images, raw HTML; :mod:`generation.markup`) and any payload of an instruction found
in the sources (an attacker's URL, e-mail address or canary word, given as
``payloads``; :mod:`generation.injection`), which becomes ``[removed]``.

:func:`resolve_citations` works on a finished answer; :class:`MarkerFilter` does the same
on a stream of deltas, so a CLI or an SSE endpoint never shows an invalid marker, and the
text it lets through adds up to ``resolve_citations(...).text``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from generation.base import Answer, Citation, Source
from generation.injection import find_payloads, pending_payload
from generation.markup import pending_markup, strip_markup
from generation.support import WEAK, content_words, reattribute

REDACTED = "[removed]"
"""What a payload of an instruction hidden in a source becomes in the answer."""

_OPEN = "[【［"
# Spaces but no newlines: a marker never spans lines, which lets MarkerFilter decide at
# the end of a line.
_WORD = r"(?:(?:sources?|refs?|references?|docs?|documents?)[ \t]*:?[ \t]*)?[#^]?"
_ITEM = _WORD + r"\d{1,4}(?:[ \t]*[-–—][ \t]*" + _WORD + r"\d{1,4})?"
_SEP = r"(?:[ \t]*(?:[,;&]|\band\b)[ \t]*|[ \t]+)"
_MARKER = re.compile(
    r"[\[【［][ \t]*(" + _ITEM + "(?:" + _SEP + _ITEM + r")*)[ \t]*[\]】］]", re.IGNORECASE
)
_NUMBER_OR_RANGE = re.compile(r"(\d{1,4})(?:[ \t]*[-–—][^\d\n]*?(\d{1,4}))?")
# Unclosed fences and inline spans count as code up to the end, so that a half-streamed
# code block is treated the same way as the finished one. (Markers only: what counts as
# code for removing markup follows CommonMark, generation.markup.)
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*(?:`|\Z)", re.DOTALL)
# A range wider than this is more likely a typo or a year span than a citation.
_MAX_RANGE = 20
# Longer bracketed text is never a marker, so MarkerFilter can stop holding it back.
_MAX_MARKER_CHARS = 80


def resolve_citations(
    text: str, sources: Sequence[Source], *, payloads: frozenset[str] = frozenset()
) -> Answer:
    """Map the markers of ``text`` to ``sources`` (by ``Source.number``).

    Citations come in order of first appearance, each source once. The answer is
    ``grounded`` when sources were given, whether or not the model cited them; a caller
    that wants to flag uncited answers checks ``citations``. Markup is stripped and
    ``payloads`` are redacted first (see the module docstring).
    """
    by_number: dict[int, Source] = {}
    for source in sources:
        if source.number in by_number:
            raise ValueError(f"two sources share the number {source.number}")
        by_number[source.number] = source
    result = _rewrite(clean(text, payloads), _words(sources))
    return Answer(
        # Once more after the markers: dropping "[9]" from "[9][r]: http://..." makes a
        # reference definition of the line.
        text=strip_markup(result.text),
        sources=tuple(sources),
        citations=tuple(Citation(n, by_number[n], result.support.get(n)) for n in result.cited),
        invalid_markers=result.invalid,
        grounded=bool(sources),
        weak_citations=tuple(n for n in result.cited if result.support.get(n, 1.0) < WEAK),
        moved=result.moved,
    )


def clean(text: str, payloads: frozenset[str] = frozenset(), *, final: bool = True) -> str:
    """``text`` with every payload replaced by :data:`REDACTED`, then without active
    markup (in that order: "!PWNED(http://...)" must not become an image).

    Redaction repeats until no payload is left: removing one can make another whole
    ("PWNEDevil.example" hides a host that "[removed]evil.example" shows).
    """
    for _ in range(len(payloads) + 1):
        spans = find_payloads(text, payloads)
        if not spans:
            break
        out: list[str] = []
        pos = 0
        for start, end in spans:
            out += [text[pos:start], REDACTED]
            pos = end
        text = "".join(out) + text[pos:]
    return strip_markup(text, final=final)


def _words(sources: Sequence[Source]) -> dict[int, set[str]]:
    """Each source's content words: what a citing clause is checked against."""
    return {s.number: content_words(s.hit.item.text) for s in sources}


class MarkerFilter:
    """Streams deltas through, holding back a possible marker until it is complete.

    Feed each delta from ``Generator.stream`` to :meth:`feed` and show what it returns;
    call :meth:`flush` at the end. A partial ``[..`` is held until its closing bracket
    arrives (or it clearly is not a marker), and trailing spaces are held too, because
    dropping an invalid marker also drops the space before it. Concatenating all the
    returned pieces gives exactly ``resolve_citations(full_text, sources).text``::

        filt = MarkerFilter(sources)
        for delta in generator.stream(messages):
            print(filt.feed(delta), end="", flush=True)
        print(filt.flush())
    """

    def __init__(
        self, sources: Sequence[Source], *, payloads: frozenset[str] = frozenset()
    ) -> None:
        self._valid = _words(sources)
        self._payloads = payloads
        self._raw = ""
        self._shown = ""

    def feed(self, delta: str) -> str:
        self._raw += delta
        return self._emit(self._raw[: self._stable_end()])

    def flush(self) -> str:
        return self._emit(self._raw, final=True)

    def _emit(self, raw_prefix: str, *, final: bool = False) -> str:
        cleaned = clean(raw_prefix, self._payloads, final=final)
        if not final:
            # What may still become markup waits, judged on the cleaned text: removing
            # one construct can assemble the start of another ("<<b>img").
            cleaned = cleaned[: pending_markup(cleaned)].rstrip(" \t")
        shown = strip_markup(_rewrite(cleaned, self._valid).text, final=final)
        # Cleaning a longer prefix almost always appends: markers, spaces and markup
        # whose fate depends on what follows are never part of the stable prefix. When
        # it does not (markup built to confuse: "<b>[1]<b>..."), nothing more is shown
        # until it appends again; what was shown is never taken back or repeated.
        if not shown.startswith(self._shown):
            return ""
        new = shown[len(self._shown) :]
        self._shown = shown
        return new

    def _stable_end(self) -> int:
        raw = self._raw
        # Markup and payloads are removed whole: what may still become one waits.
        end = min(pending_markup(raw), pending_payload(raw, self._payloads))
        opening = max(raw.rfind(ch) for ch in _OPEN)
        if opening >= 0:
            tail = raw[opening:]
            undecided = not any(ch in tail for ch in "]】］\n") and len(tail) <= _MAX_MARKER_CHARS
            if undecided:
                end = min(end, opening)
        # An inline code span still open at the end may turn out to be prose once a
        # newline arrives, which would change the meaning of a marker inside it.
        spans = list(_CODE.finditer(raw))
        if spans and spans[-1].end() == len(raw) and _is_open_inline(spans[-1].group()):
            end = min(end, spans[-1].start())
        # A complete marker at the end waits for what follows: whether words follow it
        # decides whether it is checked against the clause before it.
        settled = raw[:end].rstrip(" \t")
        markers = list(_MARKER.finditer(settled))
        if markers and markers[-1].end() == len(settled):
            end = markers[-1].start()
        return len(raw[:end].rstrip(" \t"))


def _is_open_inline(span: str) -> bool:
    return not span.startswith("```") and (len(span) == 1 or not span.endswith("`"))


@dataclass(frozen=True)
class _Rewritten:
    text: str
    cited: tuple[int, ...]
    invalid: tuple[int, ...]
    support: dict[int, float]
    moved: tuple[tuple[int, int], ...]


@dataclass
class _Seen:
    """What rewriting has met so far (markers are decided left to right)."""

    cited: dict[int, None]
    invalid: dict[int, None]
    support: dict[int, float]
    moved: dict[tuple[int, int], None]


def _rewrite(text: str, valid: Mapping[int, set[str]]) -> _Rewritten:
    seen = _Seen({}, {}, {}, {})
    out: list[str] = []
    pos = 0
    for code in [*_CODE.finditer(text), None]:
        stop = code.start() if code else len(text)
        prose = text[pos:stop]
        line_start = pos == 0 or text[pos - 1] == "\n"
        out.append(_rewrite_prose(prose, valid, seen, line_start=line_start))
        if code is None:
            break
        out.append(code.group())
        pos = code.end()
    return _Rewritten(
        "".join(out), tuple(seen.cited), tuple(seen.invalid), seen.support, tuple(seen.moved)
    )


_CLAIM_END = " \t.!?;:\"'”’)"


def _claim(text: str, start: int, end: int) -> str:
    """The clause a marker at ``end`` closes: back to the previous marker or sentence end."""
    segment = text[start:end].rstrip(_CLAIM_END)
    cut = max(segment.rfind(b) for b in (". ", "! ", "? ", "\n"))
    return segment[cut + 1 :]


def _rewrite_prose(
    text: str,
    valid: Mapping[int, set[str]],
    seen: _Seen,
    *,
    line_start: bool,
) -> str:
    out: list[str] = []
    pos = 0
    at_line_start = line_start
    skip_indent = False
    space_due = False

    def put(piece: str) -> None:
        nonlocal at_line_start, space_due
        if piece:
            out.append(" " + piece if space_due else piece)
            at_line_start = piece.endswith("\n")
            space_due = False

    for marker in _MARKER.finditer(text):
        if len(marker.group()) > _MAX_MARKER_CHARS:
            continue
        numbers = _numbers(marker.group(1))
        # A marker that opens a clause ("..., [3] says ...": words follow it, and a
        # clause boundary or nothing precedes it) introduces what follows rather than
        # closing a claim: it is neither judged nor moved.
        before_marker = text[pos : marker.start()].rstrip(" \t")
        introduces = text[marker.end() :].lstrip(" \t")[:1].isalnum() and (
            not before_marker or before_marker[-1] in ",:;.!?\n\"'“”"
        )
        claim = "" if introduces else _claim(text, pos, marker.start())
        # A number that matches no source is moved like a wrong one when one source
        # clearly has the claim (a model shown one source may still copy "[2]" from
        # the prompt's example); otherwise it is dropped and reported.
        checked = reattribute(claim, numbers, valid)
        good = [n for n in checked.numbers if n in valid]
        for n in checked.numbers:
            if n not in valid:
                seen.invalid[n] = None
        seen.moved.update(dict.fromkeys(checked.moved))
        for n in good:
            seen.cited[n] = None
            if n in checked.support:
                seen.support[n] = max(checked.support[n], seen.support.get(n, 0.0))
        before = text[pos : marker.start()]
        if skip_indent:
            before = before.lstrip(" \t")
        after = text[marker.end() : marker.end() + 1]
        pos = marker.end()
        if good:
            put(before + "".join(f"[{n}]" for n in good))
            skip_indent = False
            continue
        kept = before.rstrip(" \t")
        put(kept)
        # A removed marker takes the space before it along, so "claim [9]." becomes
        # "claim."; one space stays when a word follows directly ("shown [9]in"), and
        # a removed marker that opened a line must not leave the line indented.
        skip_indent = at_line_start
        space_due = (space_due or kept != before) and not at_line_start
        space_due = space_due and (after.isalnum() or after in ("(", "["))
    rest = text[pos:]
    put(rest.lstrip(" \t") if skip_indent else rest)
    return "".join(out)


def _numbers(body: str) -> list[int]:
    numbers: dict[int, None] = {}
    for match in _NUMBER_OR_RANGE.finditer(body):
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) else low
        if low <= high <= low + _MAX_RANGE:
            numbers.update(dict.fromkeys(range(low, high + 1)))
        else:
            numbers.update(dict.fromkeys((low, high)))
    return list(numbers)
