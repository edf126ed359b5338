"""HTML files with BeautifulSoup and lxml: the visible text blocks under their heading
path, and the pictures the page shows (``<img>`` with alt text and ``<figcaption>``).

Pages are walked iteratively, once: hostile pages nest 100,000 deep, and any search of a
node's ancestors or descendants per node made them quadratic.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

from ingest.base import ImageRef, ParsedDocument
from ingest.limits import check_markup
from ingest.text_common import HeadingPath, TextBuilder, TextFormatLoader, caption


class HtmlLoader(TextFormatLoader):
    """HTML with BeautifulSoup and lxml: visible text blocks under their heading path.

    Scripts, styles, navigation, page-level header/footer (a header or footer inside
    ``<article>``/``<main>`` is kept: it usually holds the article's title), comments
    and elements no reader sees (``hidden``, or an inline ``display:none``,
    ``visibility:hidden`` or ``font-size:0``) are dropped. Paragraph-like elements
    become sections with whitespace collapsed (``<pre>`` keeps its layout); a table row
    of plain cells becomes one section with cells joined by " | ". ``texts[0]`` is the
    sections joined by blank lines.
    """

    suffixes: frozenset[str] = frozenset({".html", ".htm"})
    media_type: str = "text/html"

    def _parse(self, path: Path, text: str) -> ParsedDocument:
        from bs4 import BeautifulSoup

        check_markup(path, text.count("<"), "tags of HTML", self.max_chars // 40)
        soup = BeautifulSoup(text, "lxml")
        builder = TextBuilder(path, self.max_chars)
        first_h1 = _html_collect(soup.body or soup, builder)
        title_tag = soup.title.get_text(" ", strip=True) if soup.title else ""
        title = " ".join(title_tag.split()) or first_h1 or path.stem
        doc = builder.document(path, title, self.media_type)
        return dataclasses.replace(doc, images=_html_images(soup))


_HTML_DROP = frozenset(
    {"script", "style", "nav", "noscript", "template", "svg", "iframe", "head", "button"}
)
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
_HTML_BLOCKS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details",
        "dialog", "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form",
        "header", "hr", "li", "main", "ol", "p", "pre", "section", "summary", "table",
        "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_HTML_CELLS = frozenset({"td", "th"})


# Inline styles that hide an element from every reader: what no one sees is not indexed
# (hidden text is where prompt injections hide; see generation/injection.py).
_HIDDEN_STYLE = re.compile(
    r"(?:^|;)\s*(?:display\s*:\s*none|visibility\s*:\s*hidden|font-size\s*:\s*0(?![.\d]*[1-9]))",
    re.IGNORECASE,
)


def _html_hidden(node: Any) -> bool:
    return node.has_attr("hidden") or bool(_HIDDEN_STYLE.search(str(node.get("style") or "")))


def _html_collect(root: Any, builder: TextBuilder) -> str:
    """Add the visible text blocks under ``root`` to ``builder``; return the first h1.

    Walks the tree once, iteratively (deeply nested pages would overflow recursion),
    gathering text into a buffer that is flushed as a section at every block boundary.
    A cell with only inline content is gathered into its row instead. What a node's
    ancestors and descendants hold is counted on the way (open landmarks) or in one
    pass before (cells holding blocks), never searched per node: a page nested 100,000
    deep made each search as long as the page.
    """
    from bs4 import NavigableString, Tag
    from bs4.element import PreformattedString

    headings = HeadingPath()
    first_h1 = ""
    buffer: list[str] = []
    rows: list[list[str]] = []  # a stack: tables nest inside cells
    inline_cells: set[int] = set()
    holders = _with_blocks_inside(root)
    landmarks = 0  # open <article>/<main>: a header or footer inside one is kept
    pre_depth = 0
    heading_level = 0

    def take_buffer() -> str:
        raw = "".join(buffer)
        buffer.clear()
        if pre_depth:
            return raw.strip("\n").rstrip()
        return re.sub(r" *\n *", "\n", re.sub(r"[^\S\n]+", " ", raw)).strip()

    def flush() -> None:
        # Blocks inside a heading are part of the heading's text.
        if heading_level:
            return
        text = take_buffer()
        if text:
            builder.add(text, headings.path)

    # Events: (node, False) opens a node, (tag, True) closes it.
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, closing = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, PreformattedString):  # comments, CDATA, doctype
                buffer.append(str(node) if pre_depth else re.sub(r"\s+", " ", str(node)))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name
        if closing:
            if name in _HTML_HEADINGS:
                heading = " ".join(take_buffer().split())
                heading_level = 0
                if heading:
                    headings.enter(_HTML_HEADINGS[name], heading)
                    if name == "h1" and not first_h1:
                        first_h1 = heading
            elif id(node) in inline_cells and rows:
                rows[-1].append(take_buffer().replace("\n", " "))
            elif name == "tr" and rows:
                flush()
                cells = [cell for cell in rows.pop() if cell]
                if cells:
                    builder.add(" | ".join(cells), headings.path)
            elif name in _HTML_BLOCKS:
                flush()
            if name == "pre":
                pre_depth -= 1
            if name in ("article", "main"):
                landmarks -= 1
            continue
        if name in _HTML_DROP or _html_hidden(node):
            continue
        if name in ("header", "footer") and not landmarks:
            continue
        if name == "br":
            buffer.append("\n")
            continue
        if name in _HTML_HEADINGS:
            flush()
            heading_level = _HTML_HEADINGS[name]
        elif name == "tr":
            flush()
            rows.append([])
        elif name in _HTML_CELLS and rows and id(node) not in holders:
            inline_cells.add(id(node))
        elif name in _HTML_BLOCKS:
            flush()
        if name == "pre":
            pre_depth += 1
        if name in ("article", "main"):
            landmarks += 1
        stack.append((node, True))
        stack.extend((child, False) for child in reversed(node.contents))
    flush()
    return first_h1


def _with_blocks_inside(root: Any) -> set[int]:
    """The ids of the tags under ``root`` that have a block element among their
    descendants, found bottom-up in one pass (each node before its parent)."""
    from bs4 import Tag

    holders: set[int] = set()
    for node in reversed(list(root.descendants)):
        if (
            isinstance(node, Tag)
            and node.parent is not None
            and (node.name in _HTML_BLOCKS or id(node) in holders)
        ):
            holders.add(id(node.parent))
    return holders


def _html_images(soup: Any) -> tuple[ImageRef, ...]:
    """Every ``<img src>`` of a page with its alt text, title and ``<figcaption>``.

    One walk of the tree that keeps its open figures, rather than a search of each
    picture's ancestors and each figure's descendants: on a page nested 250 deep, that
    took 230 s for 100,000 pictures. A figure's caption is its first ``<figcaption>``.
    """
    from bs4 import Tag

    shown: list[tuple[Any, int | None]] = []  # (img, id of its innermost figure)
    captions: dict[int, str] = {}
    figures: list[int] = []  # open figures, innermost last
    waiting: list[int] = []  # open figures that have no caption yet
    stack: list[tuple[Any, bool]] = [(soup, False)]
    while stack:
        node, closing = stack.pop()
        if not isinstance(node, Tag):
            continue
        if closing:  # only figures are pushed to close
            figures.pop()
            if waiting and waiting[-1] == id(node):
                waiting.pop()
            continue
        name = node.name
        if name in _HTML_DROP or _html_hidden(node):
            continue  # pictures in navigation, scripts, or hidden, are not the page's
        if name == "figure":
            figures.append(id(node))
            waiting.append(id(node))
            stack.append((node, True))
        elif name == "figcaption" and waiting:
            text = _text_upto(node, 300)
            captions.update((figure, text) for figure in waiting)
            waiting.clear()
        elif name == "img" and node.has_attr("src"):
            shown.append((node, figures[-1] if figures else None))
        stack.extend((child, False) for child in reversed(node.contents))
    found: list[ImageRef] = []
    for img, figure in shown:
        words = (
            str(img.get("alt") or ""),
            str(img.get("title") or ""),
            captions.get(figure, "") if figure is not None else "",
        )
        found.append(ImageRef(str(img["src"]), caption(words)))
    return tuple(found)


def _text_upto(node: Any, limit: int) -> str:
    """``node.get_text(" ", strip=True)``, stopped once it passes ``limit`` characters
    (or ``2 * limit`` nodes). Walked by hand: bs4 finds a node's last descendant before
    yielding its first string, a walk of the whole subtree for each caption."""
    from bs4 import CData, NavigableString, Tag
    from bs4.element import PreformattedString

    parts: list[str] = []
    length = visited = 0
    stack = [node]
    while stack and length <= limit and visited < 2 * limit:
        current = stack.pop()
        visited += 1
        if isinstance(current, Tag):
            stack.extend(reversed(current.contents))
        elif isinstance(current, NavigableString) and (
            isinstance(current, CData) or not isinstance(current, PreformattedString)
        ):
            text = current.strip()
            if text:
                parts.append(text)
                length += len(text) + 1
    return " ".join(parts)
