"""One rendering of an answer and its sources, for every surface.

The REST API returns :class:`~app.schemas.AnswerOut`; the UI draws its cards and the
CLI its table and ``--json`` from the same object, and all three show the same notes
(:func:`answer_notes`), so a field added here reaches every surface at once.
"""

from __future__ import annotations

from app.schemas import AnswerOut, ConflictOut, MediaOut, RouteOut, SourceOut
from app.security import UNSIGNED, MediaLinks
from app.service import DoneEvent
from generation.base import Answer
from retrieval.base import Hit
from router.base import Route


def route_json(route: Route) -> RouteOut:
    return RouteOut(
        corpora=[c.value for c in route.corpora],
        scores=dict(route.scores),
        reason=route.reason,
    )


def source_json(
    n: int,
    hit: Hit,
    cited: bool = False,
    support: float | None = None,
    links: MediaLinks = UNSIGNED,
) -> SourceOut:
    """Source number ``n``, with links to its file, thumbnail, keyframes or PDF page."""
    item = hit.item
    extra = item.extra
    t_start, t_end = extra.get("t_start"), extra.get("t_end")
    original = extra.get("file") if isinstance(extra.get("file"), str) else item.source
    is_pdf = item.source.lower().endswith(".pdf") and item.page is not None
    thumbnail = extra.get("thumbnail")
    return SourceOut(
        number=n,
        corpus=item.corpus.value,
        source=item.source,
        title=item.title,
        page=item.page,
        heading=list(item.heading),
        char_start=item.char_start,
        char_end=item.char_end,
        t_start=float(t_start) if isinstance(t_start, int | float) else None,
        t_end=float(t_end) if isinstance(t_end, int | float) else None,
        relevance=hit.relevance,
        cited=cited,
        support=support,
        text=item.text,
        media=MediaOut(
            file=links.media(original),
            thumbnail=links.media(thumbnail if isinstance(thumbnail, str) else None),
            keyframes=[u for k in extra.get("keyframes") or [] if (u := links.media(str(k)))],
            page_image=links.page(item.source, item.page)
            if is_pdf and item.page is not None
            else None,
        ),
    )


def hits_json(hits: tuple[Hit, ...], links: MediaLinks = UNSIGNED) -> list[SourceOut]:
    """The sources found before the answer is written (none cited yet)."""
    return [source_json(n, h, links=links) for n, h in enumerate(hits, 1)]


def answer_json(done: DoneEvent, links: MediaLinks = UNSIGNED) -> AnswerOut:
    a: Answer = done.answer
    support = {c.number: c.support for c in a.citations}
    return AnswerOut(
        answer=a.text,
        grounded=a.grounded,
        route=route_json(done.route),
        sources=[
            source_json(s.number, s.hit, s.number in support, support.get(s.number), links)
            for s in a.sources
        ],
        invalid_markers=list(a.invalid_markers),
        weak_citations=list(a.weak_citations),
        conflicts=[
            ConflictOut(a=c.a, b=c.b, a_says=c.a_says, b_says=c.b_says) for c in a.conflicts
        ],
        retried=a.retried,
        injected=list(a.injected),
        moved_citations=[list(pair) for pair in a.moved],
        timings=done.timings,
    )


def _numbers(numbers: list[int]) -> str:
    return ", ".join(f"[{n}]" for n in numbers)


def answer_notes(answer: AnswerOut) -> list[str]:
    """What a reader should know about an answer beyond its text, one line each."""
    notes = [
        f'sources disagree: [{c.a}] says "{c.a_says}", [{c.b}] says "{c.b_says}"'
        for c in answer.conflicts
    ]
    if answer.invalid_markers:
        notes.append(
            f"dropped citation markers that point to no source: {_numbers(answer.invalid_markers)}"
        )
    if answer.weak_citations:
        notes.append(
            "weakly supported (the source lacks most of the citing words): "
            + _numbers(answer.weak_citations)
        )
    if answer.injected:
        notes.append(
            f"instructions to AI assistants found in {_numbers(answer.injected)} were ignored"
        )
    return notes
