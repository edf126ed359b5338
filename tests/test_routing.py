"""Routing in the product: the shared decision rule, the LLM router, the fallback, the
image rule, the settings, and end to end over real material from ../shared/eval.

The end-to-end test ingests a real SEC filing, the scikit-image photos and a real video,
then asks the four kinds of question the issue names; every part is real (embedded
Qdrant, MiniLM, the packaged CNN/OCR/whisper, the 0.5B LLM, the shipped router).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from app.service import DoneEvent, RouteEvent, Service
from app.settings import Settings
from generation.llamacpp import LlamaCppGenerator
from ingest.images.describe import CnnImageAnalyzer
from ingest.media import CnnImageEncoder
from ingest.video.analyzer import PyAVVideoAnalyzer
from ingest.video.speech import SpeechRecognizer
from retrieval.base import Corpus
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from router import (
    LABELS,
    AllCorporaRouter,
    FallbackRouter,
    FixedRouter,
    LlmRouter,
    TrainedRouter,
    decide,
    with_image,
)
from router.llm import EXAMPLES, messages, parse

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
FILING = EVAL / "documents" / "financebench" / "pdfs" / "FOOTLOCKER_2022_8K_dated-2022-05-20.pdf"
PHOTOS = EVAL / "images" / "skimage" / "images"
PANCAKE = EVAL / "video" / "files" / "flipping_a_pancake.mkv"
EVERYTHING = dict.fromkeys(Corpus, 3)


def scores(**given: float) -> dict[str, float]:
    return {label: given.get(label, 0.0) for label in LABELS}


# --- the decision rule ------------------------------------------------------------------


def test_decide_keeps_every_label_that_passes_its_own_threshold() -> None:
    route = decide(
        scores(image=0.6, clip=0.35, paragraph=0.2),
        EVERYTHING,
        threshold={"image": 0.5, "clip": 0.3, "paragraph": 0.3},
    )
    assert route.corpora == (Corpus.IMAGE, Corpus.CLIP)


def test_decide_searches_one_granularity_of_each_modality() -> None:
    route = decide(scores(paragraph=0.55, document=0.6, video=0.7, clip=0.8), EVERYTHING)
    assert route.corpora == (Corpus.DOCUMENT, Corpus.CLIP)


def test_decide_no_only_when_nothing_else_passes() -> None:
    assert decide(scores(no=0.9, image=0.1), EVERYTHING).corpora == ()
    assert decide(scores(no=0.9, image=0.6), EVERYTHING).corpora == (Corpus.IMAGE,)


def test_decide_takes_the_top_label_when_nothing_passes() -> None:
    assert decide(scores(video=0.3, no=0.2), EVERYTHING).corpora == (Corpus.VIDEO,)
    assert decide(scores(no=0.3, video=0.2), EVERYTHING).corpora == ()


def test_decide_never_searches_an_empty_corpus() -> None:
    only_text = {Corpus.PARAGRAPH: 5, Corpus.DOCUMENT: 1}
    route = decide(scores(image=0.9, clip=0.6), only_text)
    assert route.corpora == (Corpus.PARAGRAPH,)  # best non-empty: the reason says why
    assert "empty" in route.reason
    mixed = decide(scores(image=0.9, paragraph=0.7), {Corpus.PARAGRAPH: 5})
    assert mixed.corpora == (Corpus.PARAGRAPH,) and "image" in mixed.reason


def test_decide_over_an_empty_index_keeps_text_so_the_answer_can_say_so() -> None:
    route = decide(scores(document=0.7, image=0.8), {})
    assert route.corpora == (Corpus.DOCUMENT,) and "nothing is ingested" in route.reason


# --- the image rule and forced corpora -----------------------------------------------------


def test_a_question_with_an_image_also_searches_the_visual_corpora() -> None:
    text_only = decide(scores(paragraph=0.9), EVERYTHING)
    both = with_image(text_only, EVERYTHING)
    assert both.corpora == (Corpus.PARAGRAPH, Corpus.IMAGE, Corpus.CLIP)
    assert "image given" in both.reason
    assert with_image(decide(scores(no=0.9), EVERYTHING), {Corpus.IMAGE: 2}).corpora == (
        Corpus.IMAGE,
    )
    # Nothing visual ingested: nothing to add.
    assert with_image(text_only, {Corpus.PARAGRAPH: 2}) == text_only


def test_forced_and_all_corpora_routers() -> None:
    assert FixedRouter((Corpus.VIDEO,)).route("anything", EVERYTHING).corpora == (Corpus.VIDEO,)
    some = {Corpus.IMAGE: 1, Corpus.PARAGRAPH: 2}
    assert set(AllCorporaRouter().route("q", some).corpora) == {Corpus.IMAGE, Corpus.PARAGRAPH}


# --- the LLM router ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("image", "image"),
        ("Image.", "image"),
        (" clips\n", "clip"),
        ("The answer is: document", "document"),
        ("No", "no"),
        ("I think paragraphs", "paragraph"),
        ("I cannot tell", None),
        ("", None),
    ],
)
def test_llm_reply_parsing(reply: str, label: str | None) -> None:
    assert parse(reply) == label


def test_llm_prompt_has_definitions_examples_then_the_question() -> None:
    chat = messages("  What colour is the   car in the photo? ")
    assert chat[0].role == "system" and all(label in chat[0].content for label in LABELS)
    assert [m.role for m in chat[1:-1]] == ["user", "assistant"] * len(EXAMPLES)
    assert {m.content for m in chat[2:-1:2]} <= set(LABELS)
    assert chat[-1].content == "What colour is the car in the photo?"


def test_llm_router_routes_with_the_real_model(llm: LlamaCppGenerator) -> None:
    router = LlmRouter(llm)
    route = router.route("Is the cat in the photo asleep or awake?", EVERYTHING)
    assert route.corpora == (Corpus.IMAGE,), route.reason
    assert route.scores["image"] == 1.0 and "the model said image" in route.reason


def test_llm_router_refuses_an_unknown_fallback(llm: LlamaCppGenerator) -> None:
    with pytest.raises(ValueError, match="unknown fallback"):
        LlmRouter(llm, fallback="pictures")


# --- the fallback ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(encoder: SentenceTransformerEncoder) -> TrainedRouter:
    return TrainedRouter(encoder)


def test_fallback_is_asked_only_when_the_trained_router_is_unsure(
    trained: TrainedRouter,
) -> None:
    # FixedRouter stands in for the slow router: it shows which of the two decided.
    router = FallbackRouter(trained, FixedRouter((Corpus.VIDEO,)))
    sure = router.route("show me a picture of a cat", EVERYTHING)
    assert sure.corpora == (Corpus.IMAGE,)
    unsure_question = "hello"
    assert trained.is_unsure(trained.route(unsure_question, EVERYTHING))
    unsure = router.route(unsure_question, EVERYTHING)
    assert unsure.corpora == (Corpus.VIDEO,)
    assert "trained unsure" in unsure.reason and "forced" in unsure.reason
    # The trained router's probabilities stay the scores shown to the user.
    assert unsure.scores == trained.route(unsure_question, EVERYTHING).scores


# --- settings -> the service's router --------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, TrainedRouter),
        ({"MMRAG_ROUTER": "all"}, AllCorporaRouter),
        ({"MMRAG_ROUTER": "llm"}, LlmRouter),
        ({"MMRAG_ROUTER_LLM_FALLBACK": "true"}, FallbackRouter),
    ],
)
def test_settings_choose_the_router(
    env: dict[str, str],
    kind: type,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    store = EdgeStore(tmp_path / "store")
    service = Service(Settings(data_dir=tmp_path), index=Index(store, encoder), generator=llm)
    assert isinstance(service.router, kind)
    store.close()


def test_a_bad_router_setting_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MMRAG_ROUTER", "magic")
    with pytest.raises(ValueError, match="router"):
        Settings()


# --- end to end over ../shared/eval ----------------------------------------------------------


@pytest.fixture(scope="module")
def service(
    tmp_path_factory: pytest.TempPathFactory,
    encoder: SentenceTransformerEncoder,
    llm: LlamaCppGenerator,
) -> Service:
    if not (FILING.is_file() and PHOTOS.is_dir() and PANCAKE.is_file()):
        pytest.skip("../shared/eval is absent")
    root = tmp_path_factory.mktemp("routing")
    analyzer = CnnImageAnalyzer()
    store = EdgeStore(root / "store")
    settings = Settings(data_dir=root / "data", max_tokens=64, temperature=0.0)
    service = Service(
        settings,
        index=Index(store, encoder, visual=CnnImageEncoder(lambda: analyzer)),
        generator=llm,
    )
    service.__dict__["image_analyzer"] = analyzer
    service.__dict__["video_analyzer"] = PyAVVideoAnalyzer(SpeechRecognizer())
    report = service.ingest([FILING, PHOTOS, PANCAKE])
    assert report.ok, report
    counts = service.collections()
    assert all(counts[c] > 0 for c in (Corpus.PARAGRAPH, Corpus.IMAGE, Corpus.CLIP))
    return service


def ask(service: Service, question: str) -> tuple[RouteEvent, DoneEvent]:
    events = list(service.ask(question))
    first, last = events[0], events[-1]
    assert isinstance(first, RouteEvent) and isinstance(last, DoneEvent)
    assert last.route == first.route  # what was streamed first is what the answer used
    return first, last


def test_a_factual_question_routes_to_text_and_cites_the_passage(service: Service) -> None:
    route, done = ask(
        service, "Whom did the Foot Locker board designate as audit committee financial expert?"
    )
    assert Corpus.PARAGRAPH in route.route.corpora and Corpus.IMAGE not in route.route.corpora
    cited = [c.source.hit.item for c in done.answer.citations]
    assert any(i.source == str(FILING) and i.page == 3 for i in cited), [
        (i.source, i.page, i.text[:80]) for i in cited
    ]
    assert "Nicosia" in done.answer.text


def test_show_me_a_picture_routes_to_images(service: Service) -> None:
    route, done = ask(service, "Show me a picture of a rocket on a launchpad")
    assert route.route.corpora == (Corpus.IMAGE,)
    assert Path(done.answer.sources[0].hit.item.source).name == "rocket.jpg"


def test_what_happens_in_the_video_routes_to_clips(service: Service) -> None:
    route, done = ask(service, "What happens in the video when the pancake is flipped?")
    assert route.route.corpora == (Corpus.CLIP,)
    top = done.answer.sources[0].hit.item
    assert top.corpus is Corpus.CLIP and top.source == str(PANCAKE)
    assert 0 <= top.extra["t_start"] < top.extra["t_end"]


def test_general_knowledge_routes_to_no_and_answers_without_sources(service: Service) -> None:
    route, done = ask(service, "Explain why the sky is blue.")
    assert route.route.corpora == () and route.route.scores["no"] > 0.5
    assert done.answer.sources == () and done.answer.citations == ()
    assert len(done.answer.text.split()) > 5  # the model answered from what it knows
    assert "retrieve_ms" not in done.timings  # nothing was searched


def test_a_photo_with_the_question_adds_the_visual_corpora(
    service: Service, tmp_path: Path
) -> None:
    photo = tmp_path / "mine.png"
    Image.open(PHOTOS / "chelsea.png").convert("RGB").save(photo)
    events = list(service.ask("Explain why this animal purrs.", image=photo))
    route = events[0]
    assert isinstance(route, RouteEvent)
    assert {Corpus.IMAGE, Corpus.CLIP} <= set(route.route.corpora)
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert Path(done.answer.sources[0].hit.item.source).name == "chelsea.png"
