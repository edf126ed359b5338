"""The service facade: one object that every surface (CLI, REST, UI, widget) goes through.

It builds the parts from :class:`Settings` once, lazily (the LLM loads on the first
question that needs it, not on ``mmrag collections``), and exposes three verbs:
:meth:`Service.ingest`, :meth:`Service.ask` (a stream of events) and
:meth:`Service.collections`.
"""

from __future__ import annotations

import collections.abc
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from app.pipeline import PipelineConfig, Retrieved, build_graph, find_sources
from app.settings import Settings
from generation.base import Answer, Generator
from generation.rerank import Reranker
from ingest.base import ImageAnalyzer, IngestReport, ProgressFn, StepFn, VideoAnalyzer
from ingest.pipeline import Ingestor
from retrieval.base import DEFAULT_WORKSPACE, Corpus, Hit, ImageEncoder, Scope, Store
from retrieval.index import Index
from retrieval.select import SelectConfig
from retrieval.store import QdrantStore
from router.base import AllCorporaRouter, FallbackRouter, FixedRouter, Route, Router


@dataclass(frozen=True)
class SourceInfo:
    """One source of the index: which whole-file corpora hold it (a PDF with figures is
    in ``document`` and ``image``), and whether its file is still on disk."""

    source: str
    corpora: tuple[Corpus, ...]
    on_disk: bool


@dataclass(frozen=True)
class RouteEvent:
    route: Route


@dataclass(frozen=True)
class SourcesEvent:
    hits: tuple[Hit, ...]


@dataclass(frozen=True)
class TokenEvent:
    text: str


@dataclass(frozen=True)
class RetryEvent:
    """The draft streamed so far is withdrawn; the tokens that follow are the new answer."""

    reason: str


@dataclass(frozen=True)
class DoneEvent:
    """The last event of an answer: the checked answer, its route and the timings (ms)."""

    answer: Answer
    route: Route
    timings: dict[str, float] = field(default_factory=dict)


Event = RouteEvent | SourcesEvent | TokenEvent | RetryEvent | DoneEvent

MAX_QUESTION_CHARS = 1000
"""Longest question accepted: the prompt keeps ~600 tokens for its fixed text and the
question, the rest of the window for sources and the answer."""


class Service:
    """mmrag as a library: ingest, ask, list corpora."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        index: Index | None = None,
        generator: Generator | None = None,
    ) -> None:
        """Parts not given are built from ``settings`` on first use (tests and embedders
        pass already-loaded ones)."""
        self.settings = settings or Settings()
        self._known: dict[tuple[str, Scope], bool] = {}
        # One ingest at a time (the API's jobs, the UI, the CLI); answers never take it.
        self._ingest_lock = threading.Lock()
        if index is not None:
            self.__dict__["index"] = index
            self.__dict__["store"] = index.store
        if generator is not None:
            self.__dict__["generator"] = generator

    # -- parts, built on first use -------------------------------------------------

    @cached_property
    def store(self) -> Store:
        s = self.settings
        if s.qdrant_url:
            return QdrantStore(
                url=s.qdrant_url,
                api_key=s.qdrant_api_key,
                prefix=s.collection_prefix,
                shards=s.qdrant_shards,
                replication=s.qdrant_replication,
            )
        if s.qdrant_engine == "edge":
            from retrieval.edge_store import EdgeStore

            return EdgeStore(s.store_path, prefix=s.collection_prefix)
        return QdrantStore(path=s.store_path, prefix=s.collection_prefix)

    @cached_property
    def index(self) -> Index:
        from retrieval.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(
            self.settings.text_model, batch_size=self.settings.embed_batch_size
        )
        return Index(
            self.store,
            encoder,
            visual=self.visual_encoder,
            rrf_k=self.settings.rrf_k,
            dense_weight=self.settings.dense_weight,
        )

    @cached_property
    def visual_encoder(self) -> ImageEncoder:
        """CLIP-family when a model folder is configured, else the packaged CNN's features."""
        if self.settings.clip_model is not None:
            from retrieval.clip_encoder import ClipEncoder

            return ClipEncoder(self.settings.clip_model, batch_size=self.settings.embed_batch_size)
        from ingest.media import CnnImageEncoder

        return CnnImageEncoder(lambda: self.image_analyzer)

    @cached_property
    def image_analyzer(self) -> ImageAnalyzer:
        from ingest.images.describe import CnnImageAnalyzer

        return CnnImageAnalyzer(threads=self.settings.llm_threads)

    @cached_property
    def video_analyzer(self) -> VideoAnalyzer:
        from ingest.video.analyzer import PyAVVideoAnalyzer
        from ingest.video.speech import SpeechRecognizer

        return PyAVVideoAnalyzer(SpeechRecognizer(cpu_threads=self.settings.llm_threads))

    @cached_property
    def generator(self) -> Generator:
        s = self.settings
        if s.generator == "openai":
            from generation.openai_compat import OpenAIGenerator

            return OpenAIGenerator(
                s.openai_base_url,
                s.openai_model,
                api_key=s.openai_api_key,
                timeout=s.openai_timeout,
                context_window=s.llm_context,
                supports_images=s.llm_vision,
                image_max_side=s.llm_image_max_side,
            )
        from generation.llamacpp import LlamaCppGenerator, ensure_gguf

        path = s.llm_model_path or ensure_gguf(s.models_dir)
        return LlamaCppGenerator(path, n_ctx=s.llm_context, n_threads=s.llm_threads)

    @cached_property
    def ingestor(self) -> Ingestor:
        s = self.settings
        from ingest.loaders import default_loaders
        from ingest.media import MediaIngest

        media = MediaIngest(
            s.data_dir / "media",
            image_analyzer=lambda: self.image_analyzer,
            video_analyzer=lambda: self.video_analyzer,
            # The CNN's features come free with its tags; only another model needs a call.
            visual_encoder=(lambda: self.visual_encoder) if s.clip_model is not None else None,
            max_page_pixels=s.ingest_max_page_pixels,
        )
        loaders = default_loaders(
            max_bytes=s.ingest_max_text_mb * 2**20,
            max_chars=s.ingest_max_chars,
            max_pages=s.ingest_max_pages,
            max_unpacked_bytes=s.ingest_max_unpacked_mb * 2**20,
        )
        return Ingestor(
            self.index,
            loaders=loaders,
            batch_size=s.ingest_batch_size,
            target_words=s.chunk_target_words,
            max_words=s.chunk_max_words,
            media=media,
        )

    @cached_property
    def router(self) -> Router:
        """The router the settings name (the trained one shares the retrieval encoder)."""
        s = self.settings
        if s.router == "all":
            return AllCorporaRouter()
        from router.llm import LlmRouter
        from router.trained import TrainedRouter

        if s.router == "llm":
            return LlmRouter(self.generator)
        trained = TrainedRouter(self.index.dense, unsure_below=s.router_unsure_below)
        if s.router_llm_fallback:
            return FallbackRouter(trained, LlmRouter(self.generator))
        return trained

    @cached_property
    def pipeline_config(self) -> PipelineConfig:
        """The pipeline's knobs, from the settings."""
        s = self.settings
        return PipelineConfig(
            search_mode=s.search_mode,
            search_limit=s.search_limit,
            select=SelectConfig(
                top_k=s.top_k,
                min_relevance=s.min_relevance,
                keep_ratio=s.keep_ratio,
                corpus_gap=s.corpus_gap,
                budget_tokens=s.evidence_budget,
            ),
            rerank_candidates=s.rerank_candidates,
            max_images=s.llm_max_images,
            no_route_probe=s.router_probe,
            router_probes=s.router_probes,
            calibrate_corpora=s.calibrate_corpora,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            filter_instructions=s.injection_filter,
        )

    @cached_property
    def reranker(self) -> Reranker | None:
        """The reranker the settings name, if any (it judges with the generator)."""
        if self.settings.reranker == "llm":
            from generation.rerank import LlmJudgeReranker

            return LlmJudgeReranker(self.generator)
        return None

    def _graph(self, router: Router) -> Any:
        return build_graph(
            router, self.index, lambda: self.generator, self.pipeline_config, self.reranker
        )

    @cached_property
    def _default_graph(self) -> Any:
        return self._graph(self.router)

    # -- verbs ---------------------------------------------------------------------

    def ingest(
        self,
        paths: Sequence[Path | str],
        progress: ProgressFn | None = None,
        step: StepFn | None = None,
        *,
        prune: bool = False,
        workspace: str | None = None,
    ) -> IngestReport:
        """Ingest files and folders into ``workspace`` (default: the setting's)."""
        with self._ingest_lock:
            try:
                return self.ingestor.ingest(
                    paths, progress, step, prune=prune, workspace=workspace or self.workspace
                )
            finally:
                self._known.clear()

    @property
    def workspace(self) -> str:
        return self.settings.workspace

    def delete_source(self, source: str, workspaces: Scope = None) -> bool:
        """Remove every item of ``source`` (in ``workspaces``; None: the setting's) from
        every corpus, and the thumbnails and keyframes made for it; False if it had none."""
        with self._ingest_lock:
            try:
                return self.ingestor.remove_source(source, self._scope(workspaces))
            finally:
                self._known.clear()

    def _scope(self, workspaces: Scope) -> tuple[str, ...]:
        return (self.workspace,) if workspaces is None else tuple(workspaces)

    def is_source(self, path: str, workspaces: Scope = None) -> bool:
        """Whether ``path`` is a source in ``workspaces`` (None: any), cached until the
        index changes."""
        key = (path, None if workspaces is None else tuple(workspaces))
        if key not in self._known:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[key] = any(
                self.store.exists(c) and bool(self.store.items_of(c, path, workspaces))
                for c in Corpus
            )
        return self._known[key]

    @property
    def media_root(self) -> Path:
        """Where thumbnails and keyframes are written (per workspace below it)."""
        return self.settings.data_dir / "media"

    def owns_media(self, path: Path, workspaces: Scope = None) -> bool:
        """Whether ``path`` (resolved) is a thumbnail or keyframe of ``workspaces``."""
        root = self.media_root.resolve()
        if not path.is_relative_to(root):
            return False
        workspace = media_workspace(path.relative_to(root))
        return workspaces is None or workspace in workspaces

    def ask(
        self,
        question: str,
        *,
        corpora: Sequence[Corpus] | None = None,
        image: Path | None = None,
        workspaces: Scope = None,
        cancel: threading.Event | None = None,
    ) -> collections.abc.Generator[Event, None, None]:
        """Answer a question as a stream: route, sources, tokens..., done.

        A ``RetryEvent`` among the tokens withdraws what was streamed before it (the
        draft cited no source and is being written again).

        With ``image`` (a file), images and clips are also searched by its pixels. Only
        items of ``workspaces`` are searched (None: every workspace). Setting ``cancel``
        (or closing this iterator) stops the answer at the next token and frees the model.
        """
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        graph = self._graph(FixedRouter(tuple(corpora))) if corpora else self._default_graph
        start = time.perf_counter()
        cancel = cancel or threading.Event()
        state: dict[str, Any] = {"question": question, "workspaces": workspaces, "cancel": cancel}
        if image is not None:
            from ingest.images.decode import open_image

            state["image"] = open_image(image)
        final: dict[str, Any] = {}
        stream = graph.stream(state, stream_mode=["custom", "values"])
        try:
            for mode, chunk in stream:
                if mode == "values":
                    final = chunk
                    continue
                if "route" in chunk:
                    yield RouteEvent(chunk["route"])
                elif "sources" in chunk:
                    yield SourcesEvent(tuple(chunk["sources"]))
                elif "token" in chunk:
                    yield TokenEvent(chunk["token"])
                elif "retry" in chunk:
                    yield RetryEvent(chunk["retry"])
        except GeneratorExit:
            cancel.set()  # the consumer went away: the generate node stops at once
            raise
        finally:
            stream.close()
        timings = dict(final.get("timings", {}))
        timings["total_ms"] = round((time.perf_counter() - start) * 1000, 2)
        yield DoneEvent(final["answer"], final["route"], timings)

    def answer(
        self,
        question: str,
        *,
        corpora: Sequence[Corpus] | None = None,
        image: Path | None = None,
        workspaces: Scope = None,
    ) -> DoneEvent:
        """Like :meth:`ask`, without streaming."""
        done = None
        for event in self.ask(question, corpora=corpora, image=image, workspaces=workspaces):
            if isinstance(event, DoneEvent):
                done = event
        assert done is not None
        return done

    def find(
        self,
        question: str,
        *,
        router: Router | None = None,
        image: Path | None = None,
        workspaces: Scope = None,
    ) -> Retrieved:
        """The sources :meth:`ask` would answer from, without answering: route, retrieve
        and select, by the configured router or ``router`` (a
        :class:`~router.base.FixedRouter` forces corpora as ``ask(corpora=...)`` does).
        The generator is loaded for its tokenizer only (select fits sources to its window).
        """
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        picture = None
        if image is not None:
            from ingest.images.decode import open_image

            picture = open_image(image)
        return find_sources(
            question,
            router or self.router,
            self.index,
            lambda: self.generator,
            self.pipeline_config,
            self.reranker,
            image=picture,
            workspaces=workspaces,
        )

    def collections(self, workspaces: Scope = None) -> dict[Corpus, int]:
        """Item counts per corpus (of ``workspaces``; None: all)."""
        return self.store.counts(workspaces)

    def sources(self, workspaces: Scope = None) -> list[SourceInfo]:
        """Every source of the index (of ``workspaces``; None: all), sorted by path."""
        kinds: dict[str, list[Corpus]] = {}
        for corpus in (Corpus.DOCUMENT, Corpus.IMAGE, Corpus.VIDEO):
            if self.store.exists(corpus):
                for source in self.store.source_hashes(corpus, workspaces):
                    kinds.setdefault(source, []).append(corpus)
        return [
            SourceInfo(source, tuple(found), Path(source).exists())
            for source, found in sorted(kinds.items())
        ]

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()


def media_workspace(relative: Path) -> str:
    """The workspace of a file under the media folder: ``ws/<name>/...`` or the default."""
    parts = relative.parts
    return parts[1] if len(parts) > 2 and parts[0] == "ws" else DEFAULT_WORKSPACE
