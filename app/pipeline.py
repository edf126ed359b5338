"""The LangGraph pipeline: route -> retrieve -> select -> generate -> check.

One typed state flows through thin nodes that call the stages' own functions. Tokens
leave the ``generate`` node through LangGraph's custom stream as they are produced, so
every surface (CLI, REST, UI) streams the same way.

The first three steps are public functions (:func:`route_question`,
:func:`retrieve_hits`, :func:`select_sources`); :func:`find_sources` runs them in a row
without generating, so what ``mmrag eval mixed`` measures is what the graph does.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, TypedDict

from generation.answer import Draft, check_answer, write_answer
from generation.base import Answer, Generator, Source
from generation.conflicts import disagree
from generation.prompt import NO_ANSWER_TEXT
from generation.rerank import Reranker
from retrieval.base import Corpus, Hit, Scope, SearchMode
from retrieval.calibration import Null, strengths
from retrieval.index import Index
from retrieval.select import SelectConfig, select_hits
from router.base import AllCorporaRouter, FixedRouter, Route, Router, with_image
from router.probe import weigh


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
    router_probes: bool = True
    calibrate_corpora: bool = True
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


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


@dataclass(frozen=True)
class Retrieved:
    """What a question finds before any answer is written: the route, the item count of
    every corpus (what the router saw), the corpora actually searched (empty ones are
    not; the paragraph-with-document rule may add one), each searched corpus' hits, the
    selected sources in the order the generator would number them, and the time each
    step took (``route_ms``, ``retrieve_ms``, ``select_ms``)."""

    route: Route
    available: Mapping[Corpus, int]
    searched: tuple[Corpus, ...]
    hits: Mapping[Corpus, list[Hit]]
    selected: tuple[Hit, ...]
    timings: Mapping[str, float]


def route_question(
    router: Router,
    index: Index,
    question: str,
    config: PipelineConfig,
    *,
    image: Any = None,
    workspaces: Scope = None,
) -> tuple[Route, dict[Corpus, int]]:
    """The route step: the router's call on what the index holds, then (unless the user
    forced the corpora, or every corpus is searched anyway) the visual corpora for a
    question with an image, the router's call weighed with a top-1 probe of every
    non-empty corpus (:func:`router.probe.weigh`), and the passage probe when the route
    is still ``no``. Returns the route and the corpus counts."""
    available = index.counts(workspaces)
    r = router.route(question, available)
    judged = not isinstance(router, FixedRouter | AllCorporaRouter)
    if image is not None and judged:
        r = with_image(r, available)
    if judged and config.router_probes:
        present = [c for c in Corpus if available.get(c, 0) > 0]
        best = index.probe(question, present, workspaces=workspaces)
        r = weigh(r, strengths(best, index.nulls()))
    if not r.corpora and judged and config.no_route_probe > 0:
        r = probe_no_route(r, question, index, available, config.no_route_probe, workspaces)
    return r, available


def corpora_to_search(
    route: Route, available: Mapping[Corpus, int], *, forced: bool
) -> tuple[Corpus, ...]:
    """The route's corpora that have items, and passages with a document route.

    A whole-document item shows the model only a document's opening; its passages cite
    pages. So a routed (not forced) search of documents also searches passages; select
    keeps a document's passages when found and the document item only where none of its
    passages was.
    """
    searchable = [c for c in route.corpora if available.get(c, 0) > 0]
    if (
        Corpus.DOCUMENT in searchable
        and Corpus.PARAGRAPH not in searchable
        and available.get(Corpus.PARAGRAPH, 0) > 0
        and not forced
    ):
        searchable.append(Corpus.PARAGRAPH)
    return tuple(searchable)


def retrieve_hits(
    index: Index,
    question: str,
    route: Route,
    available: Mapping[Corpus, int],
    config: PipelineConfig,
    *,
    forced: bool,
    image: Any = None,
    workspaces: Scope = None,
) -> tuple[tuple[Corpus, ...], dict[Corpus, list[Hit]]]:
    """The retrieve step: the corpora searched (:func:`corpora_to_search`) and their hits."""
    searched = corpora_to_search(route, available, forced=forced)
    hits = index.search(
        question,
        searched,
        limit=config.search_limit,
        mode=config.search_mode,
        image=image,
        workspaces=workspaces,
    )
    return searched, hits


def select_sources(
    question: str,
    hits: Mapping[Corpus, Sequence[Hit]],
    config: PipelineConfig,
    generator: Generator,
    reranker: Reranker | None = None,
    nulls: Mapping[Corpus, Null] | None = None,
) -> list[Hit]:
    """The select step: calibrate (across corpora with their ``nulls``), cut and order
    the hits (counting tokens with the generator's tokenizer when it has one), or let the
    reranker judge a wider pool."""
    counter = getattr(generator, "count_tokens", None)
    if reranker is None:
        return select_hits(
            hits, config.select, count_tokens=counter, disagree=disagree, nulls=nulls
        )
    # The reranker judges more candidates than will be used, then keeps the best.
    wide = replace(config.select, top_k=config.rerank_candidates, keep_ratio=0.0)
    candidates = select_hits(hits, wide, count_tokens=counter, disagree=disagree, nulls=nulls)
    return reranker.rerank(question, candidates)[: config.select.top_k]


def find_sources(
    question: str,
    router: Router,
    index: Index,
    generator_factory: Callable[[], Generator],
    config: PipelineConfig,
    reranker: Reranker | None = None,
    *,
    image: Any = None,
    workspaces: Scope = None,
) -> Retrieved:
    """Route, retrieve and select without generating: what :func:`build_graph`'s first
    three nodes do, through the same functions (for measuring routing end to end, and
    for callers that want the sources alone). The generator is asked for its tokenizer
    only, as in the graph."""
    forced = isinstance(router, FixedRouter)
    start = time.perf_counter()
    route, available = route_question(
        router, index, question, config, image=image, workspaces=workspaces
    )
    timings = {"route_ms": _ms(start)}
    if not route.retrieve:
        return Retrieved(route, available, (), {}, (), timings)
    start = time.perf_counter()
    searched, hits = retrieve_hits(
        index, question, route, available, config, forced=forced, image=image, workspaces=workspaces
    )
    timings["retrieve_ms"] = _ms(start)
    start = time.perf_counter()
    nulls = index.nulls() if config.calibrate_corpora else None
    selected = select_sources(question, hits, config, generator_factory(), reranker, nulls)
    timings["select_ms"] = _ms(start)
    return Retrieved(route, available, searched, hits, tuple(selected), timings)


def build_graph(
    router: Router,
    index: Index,
    generator_factory: Callable[[], Generator],
    config: PipelineConfig,
    reranker: Reranker | None = None,
) -> Any:
    """Compile the graph; ``generator_factory`` loads the LLM on first use only.

    The route, retrieve and select nodes are :func:`find_sources`' steps, each streaming
    what it found (the route before the search, the sources before the first token).
    """
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    forced = isinstance(router, FixedRouter)

    def timed(name: str, start: float) -> dict[str, float]:
        return {name: _ms(start)}

    def route(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        r, available = route_question(
            router,
            index,
            state["question"],
            config,
            image=state.get("image"),
            workspaces=state.get("workspaces"),
        )
        get_stream_writer()({"route": r})
        return {"route": r, "available": available, "timings": timed("route_ms", start)}

    def retrieve(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        _, hits = retrieve_hits(
            index,
            state["question"],
            state["route"],
            state.get("available", {}),
            config,
            forced=forced,
            image=state.get("image"),
            workspaces=state.get("workspaces"),
        )
        return {"hits": hits, "timings": timed("retrieve_ms", start)}

    def select(state: State) -> dict[str, Any]:
        start = time.perf_counter()
        hits = state.get("hits", {})
        nulls = index.nulls() if config.calibrate_corpora else None
        chosen = select_sources(
            state["question"], hits, config, generator_factory(), reranker, nulls
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
