"""Both store engines give the same answers, after qdrant-client's congruence tests.

One real ingest goes into a Qdrant Edge shard and into qdrant-client's local mode: some
of the project's own docs through the Ingestor (loaders, chunker, MiniLM, BM25) into two
workspaces, pictures through the media pipeline (the packaged CNN's visual features),
and a few passages that stand for items stored before workspaces existed. Every kind of
search then runs on both (dense, sparse, hybrid, limited to workspaces and to sources,
by image) and must return the same hits in the same order: ids, items and relevance
equal, scores within 1e-4 of their order of magnitude, as qdrant-client's
``tests/congruence_tests/test_common.py`` compares its local mode with a server.

Ties are the one allowance. Hits with exactly the same score have no defined order: the
engines order them differently (qdrant-client's local mode keeps the order in which it
met them; Qdrant Edge's order even varies from one process to the next), so within a
tie the ids are compared as a set. A tie inside one of the
lists a hybrid search fuses (two passages with the same BM25 score) goes further: the
engines give the two different ranks, so their fused scores differ. Such a search is
checked list by list (each must agree, ties as sets) instead of by its fused result;
every test asserts that most of its searches were compared whole.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw

from ingest.images.decode import open_image
from ingest.images.describe import CnnImageAnalyzer
from ingest.media import CnnImageEncoder, MediaIngest
from ingest.pipeline import Ingestor
from retrieval.base import (
    DEFAULT_WORKSPACE,
    Corpus,
    Hit,
    Item,
    Scope,
    SearchMode,
    SparseVector,
    Store,
    Vectors,
    item_id,
)
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from retrieval.store import QdrantStore

REPO = Path(__file__).resolve().parents[1]
RESEARCH = "research"
DOCS = {DEFAULT_WORKSPACE: ("configuration.md", "security.md"), RESEARCH: ("api.md", "widget.md")}
# Passages without a workspace, like those of an index made before workspaces existed:
# they belong to the default workspace (the IsEmpty branch of the workspace filter).
LEGACY = (
    "The pump housing gasket must be replaced every two thousand operating hours.",
    "Quarterly revenue rose by four percent thanks to subscription sales.",
    "Answers cite their sources with page numbers so that a reader can check them.",
)
QUESTIONS = (
    "how do answers cite their sources",
    "which setting points the app at a Qdrant server",
    "MMRAG_QDRANT_URL",
    "how is the chat widget embedded in another site",
    "what does the prompt injection filter remove",
    "when must the gasket be replaced",
    "the of and",  # stop words only: sparse search has nothing to look for
)
PICTURE_QUESTIONS = ("a red circle", "a screenshot of a chat window", "black and white")
SCOPES: dict[str, Scope] = {
    "all": None,
    "default": [DEFAULT_WORKSPACE],
    "research": [RESEARCH],
    "both": [DEFAULT_WORKSPACE, RESEARCH],
    "none": [],
}
MODES: tuple[SearchMode, ...] = ("dense", "sparse", "hybrid")
LIMIT = 8


@dataclass(frozen=True)
class Query:
    """A question or a picture, encoded once for both engines."""

    dense: Vectors
    sparse: SparseVector
    visual: Vectors | None = None


@dataclass
class Engines:
    """The same ingest in each engine, and the queries to ask them."""

    indexes: dict[str, Index]
    questions: dict[str, Query]
    pictures: dict[str, Query]
    picture_files: dict[str, Path]

    def search(self, corpus: Corpus, query: Query, **kw: Any) -> list[list[Hit]]:
        """``Store.search`` on each engine, the query's vectors as the index gives them."""
        return [
            index.store.search(
                corpus, dense=query.dense, sparse=query.sparse, visual=query.visual, **kw
            )
            for index in self.indexes.values()
        ]

    def each(self, call: Callable[[Index], Any]) -> list[Any]:
        return [call(index) for index in self.indexes.values()]

    def fused_lists_agree(self, corpus: Corpus, query: Query, limit: int, **kw: Any) -> bool:
        """Whether the engines return the lists a hybrid search fuses (as deep as it
        prefetches them) in the same order. Either way they must agree up to ties."""
        depth = kw.get("prefetch_limit") or max(2 * limit, 50)  # as plan_search's
        modes: list[SearchMode] = ["dense"]
        if query.sparse.indices:
            modes.append("sparse")
        if query.visual is not None:
            modes.append("visual")
        same = True
        for mode in modes:
            found = self.search(corpus, query, **{**kw, "mode": mode, "limit": depth})
            assert_congruent(found, limit=depth)
            same = same and [h.item.id for h in found[0]] == [h.item.id for h in found[1]]
        return same

    def compare(self, corpus: Corpus, query: Query, mode: SearchMode, **kw: Any) -> bool:
        """Assert that both engines answer alike; False when a hybrid search could only be
        compared list by list (a tie in a fused list, see the module docstring)."""
        if mode == "hybrid" and not self.fused_lists_agree(corpus, query, LIMIT, **kw):
            return False
        assert_congruent(self.search(corpus, query, mode=mode, limit=LIMIT, **kw))
        return True


def mostly(whole: Sequence[bool]) -> None:
    """Most searches were compared whole: ties in fused lists are the exception."""
    assert whole and sum(whole) >= 0.8 * len(whole), f"{sum(whole)} of {len(whole)}"


def _draw_pictures(folder: Path) -> list[Path]:
    """Pictures told apart by their pixels only (their names say nothing)."""
    shapes: list[Callable[[ImageDraw.ImageDraw], object]] = [
        lambda d: d.ellipse((40, 40, 200, 200), fill="red"),
        lambda d: d.rectangle((50, 50, 190, 190), fill="navy"),
        lambda d: [d.rectangle((x, 0, x + 15, 239), fill="green") for x in range(0, 240, 30)],
        lambda d: [
            d.rectangle((x, y, x + 29, y + 29), fill="black")
            for x in range(0, 240, 30)
            for y in range(0, 240, 30)
            if (x + y) // 30 % 2 == 0
        ],
    ]
    paths = []
    for n, draw in enumerate(shapes):
        image = Image.new("RGB", (240, 240), "white")
        draw(ImageDraw.Draw(image))
        paths.append(folder / f"picture-{n}.png")
        image.save(paths[-1])
    return paths


def _inputs(root: Path) -> dict[str, Path]:
    """A folder per workspace: two docs, two drawn pictures and one UI screenshot each."""
    drawn = _draw_pictures(root)
    shots = sorted((REPO / "docs" / "img").glob("*.png"))
    folders = {}
    for n, (workspace, docs) in enumerate(DOCS.items()):
        folder = folders[workspace] = root / workspace
        folder.mkdir()
        for name in docs:
            shutil.copy(REPO / "docs" / name, folder / name)
        for picture in (*drawn[2 * n : 2 * n + 2], shots[n]):
            shutil.copy(picture, folder / picture.name)
    return folders


@pytest.fixture(scope="module")
def engines(
    tmp_path_factory: pytest.TempPathFactory, encoder: SentenceTransformerEncoder
) -> Iterator[Engines]:
    root = tmp_path_factory.mktemp("congruence")
    folders = _inputs(root)
    analyzer = CnnImageAnalyzer(ocr=False)  # tags and visual features suffice here
    visual = CnnImageEncoder(lambda: analyzer)
    stores: dict[str, Store] = {
        "edge": EdgeStore(root / "edge"),
        "local": QdrantStore(path=root / "local"),
    }
    indexes = {}
    for name, store in stores.items():
        index = indexes[name] = Index(store, encoder, visual=visual)
        # One media folder for both: items name their thumbnails, and the two ingests
        # (one after the other) write the same files there.
        media = MediaIngest(
            root / "media",
            image_analyzer=lambda: analyzer,
            video_analyzer=lambda: pytest.fail("no video here"),
        )
        ingestor = Ingestor(index, media=media)
        for workspace, folder in folders.items():
            report = ingestor.ingest([folder], workspace=workspace)
            assert report.ok, [f.message for f in report.files]
        legacy = [
            Item(item_id("legacy", n), Corpus.PARAGRAPH, text, f"legacy-{n}.txt", "h")
            for n, text in enumerate(LEGACY)
        ]
        index.add([replace(i, workspace=None) for i in legacy])  # type: ignore[arg-type]

    # Encoded as Index.search encodes them (the query-side sparse weights are the same
    # for every corpus).
    sparse = indexes["edge"].sparse[Corpus.PARAGRAPH]

    def query(text: str, picture: Path | None = None) -> Query:
        visual_q = None if picture is None else visual.encode_images([open_image(picture)])[0]
        dense_q = encoder.encode([text], query=True)[0]
        return Query(dense_q, sparse.encode([text], query=True)[0], visual_q)

    files = {p.name: p for f in folders.values() for p in f.glob("*.png")}
    yield Engines(
        indexes,
        {q: query(q) for q in (*QUESTIONS, *PICTURE_QUESTIONS)},
        {name: query("which picture is this", path) for name, path in files.items()},
        files,
    )
    for store in stores.values():
        store.close()


def _tolerance(score: float) -> float:
    """qdrant-client's: 1e-4 of the score's order of magnitude."""
    return 1e-4 * 10 ** math.floor(math.log10(abs(score))) if score else 1e-6


def _ties(hits: Sequence[Hit]) -> list[range]:
    """The positions of ``hits`` in runs of equal scores (within the tolerance)."""
    runs: list[range] = []
    for i, hit in enumerate(hits):
        if runs and abs(hits[runs[-1].start].score - hit.score) < _tolerance(hit.score):
            runs[-1] = range(runs[-1].start, i + 1)
        else:
            runs.append(range(i, i + 1))
    return runs


def assert_congruent(found: Sequence[Sequence[Hit]], limit: int = LIMIT) -> None:
    """The same hits in the same order (a tie in any order), scores within tolerance."""
    first, *others = found
    for other in others:
        assert len(other) == len(first), (len(first), len(other))
        for a, b in zip(first, other, strict=True):
            assert abs(a.score - b.score) < _tolerance(a.score), (a.item.source, a.score, b.score)
        # A run of equal scores holds the same ids on both sides, except the last run of
        # a full list: its tie may go on past the limit, and which of its members made
        # the list is the engine's choice.
        for run in _ties(first):
            cut = run.stop == len(first) == limit
            pairs = [(first[i].item.id, other[i].item.id) for i in run]
            assert cut or {a for a, _ in pairs} == {b for _, b in pairs}, pairs
        by_id = {h.item.id: h for h in other}
        for a in first:
            b = by_id.get(a.item.id)
            if b is None:
                continue  # in a tie cut by the limit
            assert a.item == b.item
            if a.relevance is None:
                assert b.relevance is None
            else:
                assert b.relevance == pytest.approx(a.relevance, abs=1e-4)


def test_the_same_ingest_is_stored_alike(engines: Engines) -> None:
    for workspaces in SCOPES.values():
        counts = engines.each(lambda i, w=workspaces: i.counts(w))
        assert counts[0] == counts[1]
    stored = engines.each(lambda i: i.counts())[0]
    assert stored[Corpus.PARAGRAPH] > 20 and stored[Corpus.IMAGE] == len(engines.picture_files)
    for corpus in (Corpus.PARAGRAPH, Corpus.DOCUMENT, Corpus.IMAGE):
        for workspaces in SCOPES.values():
            hashes = engines.each(lambda i, c=corpus, w=workspaces: i.store.source_hashes(c, w))
            assert hashes[0] == hashes[1]
        items = engines.each(lambda i, c=corpus: sorted(i.store.items_of(c), key=lambda t: t.id))
        assert items[0] == items[1]


@pytest.mark.parametrize("mode", MODES)
def test_text_searches_agree(engines: Engines, mode: SearchMode) -> None:
    mostly(
        [
            engines.compare(corpus, engines.questions[question], mode, workspaces=scope)
            for scope in SCOPES.values()
            for question in QUESTIONS
            for corpus in (Corpus.PARAGRAPH, Corpus.DOCUMENT)
        ]
    )


@pytest.mark.parametrize("mode", MODES)
def test_searches_limited_to_sources_agree(engines: Engines, mode: SearchMode) -> None:
    sources = sorted(engines.indexes["edge"].store.source_hashes(Corpus.PARAGRAPH))
    some = [s for s in sources if s.endswith(("security.md", "api.md", "legacy-1.txt"))]
    assert len(some) == 3
    whole = []
    for scope in SCOPES.values():
        for question in QUESTIONS:
            query = engines.questions[question]
            kw = {"workspaces": scope, "sources": some}
            whole.append(engines.compare(Corpus.PARAGRAPH, query, mode, **kw))
            found = engines.search(Corpus.PARAGRAPH, query, mode=mode, **kw)
            assert {h.item.source for h in found[0]} <= set(some)
    mostly(whole)


@pytest.mark.parametrize("mode", [*MODES, "visual"])
def test_searches_by_image_agree(engines: Engines, mode: SearchMode) -> None:
    # Every list is compared (up to ties) by compare(). Unlike the passages, the drawn
    # pictures' image texts are a few tags of plain shapes, many of them shared, so their
    # fused lists tie too often to require that most be compared whole.
    for scope in SCOPES.values():
        for query in engines.pictures.values():
            engines.compare(Corpus.IMAGE, query, mode, workspaces=scope)
    for name, query in engines.pictures.items():
        if mode == "visual":  # a picture finds itself by its pixels
            (found, _) = engines.search(Corpus.IMAGE, query, mode=mode)
            assert Path(found[0].item.source).name == name


@pytest.mark.parametrize(
    "fusion",
    [
        {"dense_weight": 3.0},
        {"dense_weight": 0.5, "rrf_k": 2},
        {"prefetch_limit": 12, "rrf_k": 10},
    ],
    ids=["dense-weighted", "sparse-weighted-qdrant-k", "shallow"],
)
def test_fusion_parameters_agree(engines: Engines, fusion: dict[str, Any]) -> None:
    """The plan's fusion (weights, RRF's k, prefetch depth) reaches both engines alike."""
    for scope in (None, [RESEARCH]):
        for query in engines.pictures.values():  # lists compared; ties (see above)
            engines.compare(Corpus.IMAGE, query, "hybrid", workspaces=scope, **fusion)
    mostly(
        [
            engines.compare(
                Corpus.PARAGRAPH, engines.questions[q], "hybrid", workspaces=scope, **fusion
            )
            for scope in (None, [RESEARCH])
            for q in QUESTIONS
        ]
    )


def test_searches_by_image_through_the_index_agree(engines: Engines) -> None:
    """Index.search also puts the picture's nearest by pixels first: alike in both."""
    for name in ("picture-0.png", "picture-3.png"):  # one of each workspace
        query = engines.pictures[name]
        photo = open_image(engines.picture_files[name])
        found = engines.each(
            lambda i, p=photo: i.search("which picture is this", [Corpus.IMAGE], image=p)[
                Corpus.IMAGE
            ]
        )
        if engines.fused_lists_agree(Corpus.IMAGE, query, 10):
            assert_congruent(found, limit=10)
        assert Path(found[0][0].item.source).name == name


@pytest.mark.parametrize("mode", MODES)
def test_text_searches_of_pictures_agree(engines: Engines, mode: SearchMode) -> None:
    mostly(
        [
            engines.compare(Corpus.IMAGE, engines.questions[question], mode, workspaces=scope)
            for scope in SCOPES.values()
            for question in PICTURE_QUESTIONS
        ]
    )


def test_filters_find_what_they_should(engines: Engines) -> None:
    """The filters compared above are not vacuous: each workspace finds its own items,
    the ones stored without a workspace count as the default's, and none finds nothing."""
    query = engines.questions["when must the gasket be replaced"]
    for scope, wanted in (([DEFAULT_WORKSPACE], DEFAULT_WORKSPACE), ([RESEARCH], RESEARCH)):
        for hits in engines.search(Corpus.PARAGRAPH, query, workspaces=scope):
            assert hits and {h.item.workspace for h in hits} == {wanted}
    for hits in engines.search(Corpus.PARAGRAPH, query, workspaces=[DEFAULT_WORKSPACE]):
        assert hits[0].item.source == "legacy-0.txt"
    for hits in engines.search(Corpus.PARAGRAPH, query, workspaces=[]):
        assert hits == []
