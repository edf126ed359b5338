"""The LangGraph pipeline: route -> retrieve -> select -> generate -> check.

One typed state flows through thin nodes that call the stages' own functions. Tokens
leave the ``generate`` node through LangGraph's custom stream as they are produced, so
every surface (CLI, REST, UI) streams the same way.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypedDict

from generation.answer import Draft, check_answer, write_answer
from generation.base import Answer, Generator, Source
from generation.conflicts import disagree
from generation.prompt import NO_ANSWER_TEXT
from generation.rerank import Reranker
from retrieval.base import Corpus, Hit, Scope, SearchMode
from retrieval.index import Index
from retrieval.select import SelectConfig, select_hits
from router.base import FixedRouter, Route, Router, with_image


class State(TypedDict, total=False):
    question: str
    image: Any  # a PIL image asked with the question: also searched by its pixels
    workspaces: Scope  # the caller's workspaces: every count and search is limited to them
    cancel: Any  # a threading.Event: set when the asker went away; generation stops
    route: Route
    available: dict[Corpus, int]
    hits: dict[Corpus, list[Hit]]
    selected: list[Hit]
    draft: Draft
    answer: Answer
    timings: Annotated[dict[str, float], operator.or_]


@dataclass(frozen=True)
class PipelineConfig:
    """The knobs the nodes need (taken from Settings by the service)."""

    search_mode: SearchMode = "hybrid"
    search_limit: int = 20
    select: SelectConfig = field(default_factory=SelectConfig)
    rerank_candidates: int = 8
    max_images: int = 4
    no_route_probe: float = 0.5
    max_tokens: int = 384
    temperature: float = 0.1
    filter_instructions: bool = True


def probe_no_route(
    route: Route,
    question: str,
    index: Index,
    available: Mapping[Corpus, int],
    threshold: float,
    workspaces: Scope = None,
) -> Route:
    """Search passages after all when the router said ``no`` but one is close.

    The router judges the question alone; it cannot know that an exam-style question
    ("What is X's FY2017 DPO? DPO is defined as ...") is about a filing in the index. One
    dense search of the passages (a few ms) decides: a passage at cosine >= ``threshold``
    means the index can answer, and it is searched (the reason says so).
    """
    if available.get(Corpus.PARAGRAPH, 0) <= 0:
        return route
    hits = index.search(question, [Corpus.PARAGRAPH], limit=1, mode="dense", workspaces=workspaces)
    best = hits.get(Corpus.PARAGRAPH, [])
    cosine = best[0].relevance if best and best[0].relevance is not None else 0.0
    if cosine < threshold:
        return route
    why = f"{route.reason}; but a passage is close (cosine {cosine:.2f} >= {threshold:.2f})"
    return Route((Corpus.PARAGRAPH,), route.scores, why)


def build_graph(
    router: Router,
    index: Index,
    generator_factory: Callable[[], Generator],
    config: PipelineConfig,
    reranker: Reranker | None = None,
) -> Any:
    """Compile the graph; ``generator_factory`` loads the LLM on first use only."""
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    def timed(name: str, start: float) -> dict[str, float]:
        return {name: round((time.perf_counter() - start) * 1000, 2)}

    def route(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        available = index.counts(state.get("workspaces"))
        r = router.route(state["question"], available)
        forced = isinstance(router, FixedRouter)
        if state.get("image") is not None and not forced:
            r = with_image(r, available)
        if not r.corpora and not forced and config.no_route_probe > 0:
            r = probe_no_route(
                r,
                state["question"],
                index,
                available,
                config.no_route_probe,
                state.get("workspaces"),
            )
        get_stream_writer()({"route": r})
        return {"route": r, "available": available, "timings": timed("route_ms", start)}

    def retrieve(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        # A corpus with no items is never searched.
        available = state.get("available", {})
        searchable = [c for c in state["route"].corpora if available.get(c, 0) > 0]
        if (
            Corpus.DOCUMENT in searchable
            and Corpus.PARAGRAPH not in searchable
            and available.get(Corpus.PARAGRAPH, 0) > 0
            and not isinstance(router, FixedRouter)
        ):
            # A whole-document item shows the model only a document's opening; its
            # passages cite pages. Select keeps a document's passages when found and
            # the document item only where none of its passages was.
            searchable.append(Corpus.PARAGRAPH)
        hits = index.search(
            state["question"],
            searchable,
            limit=config.search_limit,
            mode=config.search_mode,
            image=state.get("image"),
            workspaces=state.get("workspaces"),
        )
        return {"hits": hits, "timings": timed("retrieve_ms", start)}

    def select(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        llm = generator_factory()
        counter = getattr(llm, "count_tokens", None)
        hits = state.get("hits", {})
        if reranker is None:
            chosen = select_hits(hits, config.select, count_tokens=counter, disagree=disagree)
        else:
            # The reranker judges more candidates than will be used, then keeps the best.
            wide = replace(config.select, top_k=config.rerank_candidates, keep_ratio=0.0)
            candidates = select_hits(hits, wide, count_tokens=counter, disagree=disagree)
            chosen = reranker.rerank(state["question"], candidates)[: config.select.top_k]
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
            return {"draft": Draft(text), "timings": timed("generate_ms", start)}
        sources = [Source(n, h) for n, h in enumerate(selected, 1)]
        draft = write_answer(
            generator_factory(),
            state["question"],
            sources,
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            max_images=config.max_images,
            on_token=lambda text: write({"token": text}),
            on_retry=lambda reason: write({"retry": reason}),
            should_stop=cancel.is_set if (cancel := state.get("cancel")) is not None else None,
            filter_instructions=config.filter_instructions,
        )
        out = timed("generate_ms", start)
        if draft.first_token_s is not None:
            out["first_token_ms"] = round(draft.first_token_s * 1000, 2)
        return {"draft": draft, "timings": out}

    def check(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        sources = [Source(n, h) for n, h in enumerate(state.get("selected", []), 1)]
        answer = check_answer(state.get("draft") or Draft(""), sources)
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
