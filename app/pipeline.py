"""The LangGraph pipeline: route -> retrieve -> select -> generate -> check.

One typed state flows through thin nodes that call the stages' own functions. Tokens
leave the ``generate`` node through LangGraph's custom stream as they are produced, so
every surface (CLI, REST, UI) streams the same way.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypedDict

from generation.base import Answer, Generator, Source
from generation.citations import MarkerFilter, resolve_citations
from generation.prompt import NO_ANSWER_TEXT, build_messages, build_messages_without_sources
from retrieval.base import Corpus, Hit
from retrieval.index import Index
from retrieval.store import SearchMode
from router.base import Route, Router


class State(TypedDict, total=False):
    question: str
    image: Any  # a PIL image asked with the question: also searched by its pixels
    route: Route
    available: dict[Corpus, int]
    hits: dict[Corpus, list[Hit]]
    selected: list[Hit]
    draft: str
    answer: Answer
    timings: Annotated[dict[str, float], operator.or_]


@dataclass(frozen=True)
class PipelineConfig:
    """The knobs the nodes need (taken from Settings by the service)."""

    search_mode: SearchMode = "hybrid"
    search_limit: int = 20
    top_k: int = 5
    min_relevance: float = 0.2
    context_chars: int = 7000
    max_tokens: int = 384
    temperature: float = 0.1


def select_hits(
    hits: Mapping[Corpus, list[Hit]], *, top_k: int, min_relevance: float, context_chars: int
) -> list[Hit]:
    """Merge the corpora's hits into the evidence list given to the generator.

    The dense cosine of each hit is on one scale across corpora: its threshold decides
    what counts as evidence at all. Hits are ordered by their fused (hybrid) score, which
    beats the cosine alone (docs/benchmarks.md); the same RRF formula gives rank r the
    same score in every corpus, so passages, images and clips interleave by rank. Whole
    documents come last: such an item shows the model only a document's opening, while
    a passage cites its page. They fill the slots others leave, and never when passages
    of that document were found. Repeated texts are dropped; the character budget keeps the
    prompt within the model's window.
    """
    pool = [h for hs in hits.values() for h in hs if _relevance(h) >= min_relevance]
    with_passages = {h.item.parent_id for h in pool if h.item.corpus is Corpus.PARAGRAPH}
    pool = [
        h for h in pool if not (h.item.corpus is Corpus.DOCUMENT and h.item.id in with_passages)
    ]
    pool.sort(
        key=lambda h: (h.item.corpus is not Corpus.DOCUMENT, h.score, _relevance(h)),
        reverse=True,
    )
    chosen: list[Hit] = []
    seen: set[str] = set()
    used = 0
    for hit in pool:
        key = " ".join(hit.item.text.split())[:300]
        if key in seen:
            continue
        if used + len(hit.item.text) > context_chars and chosen:
            continue
        chosen.append(hit)
        seen.add(key)
        used += len(hit.item.text)
        if len(chosen) >= top_k:
            break
    return chosen


def _relevance(hit: Hit) -> float:
    return hit.relevance if hit.relevance is not None else hit.score


def build_graph(
    router: Router,
    index: Index,
    generator_factory: Callable[[], Generator],
    config: PipelineConfig,
) -> Any:
    """Compile the graph; ``generator_factory`` loads the LLM on first use only."""
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    def timed(name: str, start: float) -> dict[str, float]:
        return {name: round((time.perf_counter() - start) * 1000, 2)}

    def route(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        available = index.counts()
        r = router.route(state["question"], available)
        get_stream_writer()({"route": r})
        return {"route": r, "available": available, "timings": timed("route_ms", start)}

    def retrieve(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        # A corpus with no items is never searched.
        available = state.get("available", {})
        searchable = [c for c in state["route"].corpora if available.get(c, 0) > 0]
        hits = index.search(
            state["question"],
            searchable,
            limit=config.search_limit,
            mode=config.search_mode,
            image=state.get("image"),
        )
        return {"hits": hits, "timings": timed("retrieve_ms", start)}

    def select(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        chosen = select_hits(
            state.get("hits", {}),
            top_k=config.top_k,
            min_relevance=config.min_relevance,
            context_chars=config.context_chars,
        )
        get_stream_writer()({"sources": chosen})
        return {"selected": chosen, "timings": timed("select_ms", start)}

    def generate(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        write = get_stream_writer()
        selected = state.get("selected", [])
        if state["route"].retrieve and not selected:
            # Nothing relevant was found: say so rather than let the model invent.
            text = NO_ANSWER_TEXT
            if not any(state.get("available", {}).get(c, 0) for c in state["route"].corpora):
                names = ", ".join(c.value for c in state["route"].corpora)
                text = (
                    f"Nothing has been ingested yet ({names}: empty); "
                    "run `mmrag ingest PATH` first."
                )
            write({"token": text})
            return {"draft": text, "timings": timed("generate_ms", start)}
        sources = [Source(n, h) for n, h in enumerate(selected, 1)]
        messages = (
            build_messages(state["question"], sources)
            if sources
            else build_messages_without_sources(state["question"])
        )
        parts: list[str] = []
        first: float | None = None
        # Markers that point to no source are held back from the stream; the final
        # answer text is exactly what was streamed.
        markers = MarkerFilter(sources)
        for delta in generator_factory().stream(
            messages, max_tokens=config.max_tokens, temperature=config.temperature
        ):
            if first is None:
                first = time.perf_counter()
            parts.append(delta)
            if shown := markers.feed(delta):
                write({"token": shown})
        if rest := markers.flush():
            write({"token": rest})
        out = timed("generate_ms", start)
        if first is not None:
            out["first_token_ms"] = round((first - start) * 1000, 2)
        return {"draft": "".join(parts), "timings": out}

    def check(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        selected = state.get("selected", [])
        sources = [Source(n, h) for n, h in enumerate(selected, 1)]
        draft = state.get("draft", "")
        if not selected:
            answer = Answer(draft.strip(), (), (), (), grounded=False)
        else:
            answer = resolve_citations(draft, sources)
        return {"answer": answer, "timings": timed("check_ms", start)}

    def after_route(state: State) -> str:
        return "retrieve" if state["route"].retrieve else "generate"

    graph = StateGraph(State)
    graph.add_node("route", route)
    graph.add_node("retrieve", retrieve)
    graph.add_node("select", select)
    graph.add_node("generate", generate)
    graph.add_node("check", check)
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", after_route, ["retrieve", "generate"])
    graph.add_edge("retrieve", "select")
    graph.add_edge("select", "generate")
    graph.add_edge("generate", "check")
    graph.add_edge("check", END)
    return graph.compile()
