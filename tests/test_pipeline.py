"""The whole pipeline through the service facade: real Qdrant, MiniLM and the 0.5B LLM."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.service import DoneEvent, RouteEvent, Service, SourcesEvent, TokenEvent
from app.settings import Settings
from generation.llamacpp import LlamaCppGenerator
from generation.prompt import NO_ANSWER_TEXT
from retrieval.base import Corpus
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from retrieval.store import QdrantStore
from tests.helpers import write_pdf


@pytest.fixture()
def service(tmp_path: Path, encoder: SentenceTransformerEncoder, llm: LlamaCppGenerator) -> Service:
    settings = Settings(data_dir=tmp_path / "data", max_tokens=96, temperature=0.0)
    return Service(settings, index=Index(QdrantStore(memory=True), encoder), generator=llm)


@pytest.fixture()
def ingested(service: Service, tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    write_pdf(
        docs / "plant-history.pdf",
        [
            ["The Vellmar valley has mild winters and wet springs."],
            [
                "The Zorblax reactor was commissioned in 1987 in Tromsø.",
                "It was built by the Nordlys Energy cooperative.",
            ],
            ["Visitors can tour the control room on Saturdays."],
        ],
    )
    (docs / "recipes.md").write_text(
        "# Recipes\n\n## Bread\n\nMix flour, water, salt and yeast; bake at 230 degrees.\n",
        encoding="utf-8",
    )
    assert service.ingest([docs]).ok
    return docs


def test_answer_streams_and_cites_file_and_page(service: Service, ingested: Path) -> None:
    events = list(service.ask("When was the Zorblax reactor commissioned?"))
    assert isinstance(events[0], RouteEvent)
    assert events[0].route.corpora == (Corpus.PARAGRAPH,)  # the trained router's choice
    assert any(isinstance(e, SourcesEvent) and e.hits for e in events)
    tokens = [e.text for e in events if isinstance(e, TokenEvent)]
    assert len(tokens) > 3  # streamed, not delivered in one piece
    done = events[-1]
    assert isinstance(done, DoneEvent)
    answer = done.answer
    assert "1987" in answer.text
    # What was streamed is exactly the checked answer (invalid markers held back).
    assert "".join(tokens) == answer.text
    cited = [c.source.hit.item for c in answer.citations]
    assert cited, answer.text
    assert any(Path(i.source).name == "plant-history.pdf" and i.page == 2 for i in cited)
    assert done.timings["retrieve_ms"] > 0 and done.timings["first_token_ms"] > 0


def test_no_relevant_source_says_it_does_not_know(service: Service, ingested: Path) -> None:
    done = service.answer("Who won the 1966 football world cup final?")
    assert done.answer.text == NO_ANSWER_TEXT
    assert done.answer.sources == () and not done.answer.grounded


def test_empty_index_says_nothing_was_ingested(service: Service) -> None:
    done = service.answer("When was the Zorblax reactor commissioned?")
    assert "Nothing has been ingested yet" in done.answer.text
    assert done.answer.sources == ()


def test_forced_corpus_limits_the_search(service: Service, ingested: Path) -> None:
    events = list(service.ask("When was the Zorblax reactor built?", corpora=[Corpus.DOCUMENT]))
    sources = next(e for e in events if isinstance(e, SourcesEvent))
    assert sources.hits and {h.item.corpus for h in sources.hits} == {Corpus.DOCUMENT}


def test_empty_question_is_refused(service: Service) -> None:
    with pytest.raises(ValueError, match="empty"):
        list(service.ask("   "))


def test_a_no_route_searches_after_all_when_a_passage_is_close(
    service: Service, ingested: Path
) -> None:
    # Exam-style wording makes the router say "no"; the index has the answer.
    question = "In which year was the Zorblax reactor commissioned? (A) 1977 (B) 1987 (C) 1997"
    events = list(service.ask(question))
    route = events[0]
    assert isinstance(route, RouteEvent)
    assert route.route.scores["no"] > 0.5  # the router's own call...
    assert route.route.corpora == (Corpus.PARAGRAPH,)  # ...overruled by the probes
    assert "paragraph holds a close match" in route.route.reason
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert any(Path(s.hit.item.source).name == "plant-history.pdf" for s in done.answer.sources)


def test_a_document_route_also_searches_passages(
    service: Service, ingested: Path, llm: LlamaCppGenerator
) -> None:
    # "Explain" makes it a whole-document question; the passage with the fact cites its
    # page. The router's call alone (with the probes, the passage's match wins outright).
    alone = Service(
        service.settings.model_copy(update={"router_probes": False}),
        index=service.index,
        generator=llm,
    )
    question = "The Zorblax reactor in Tromsø was commissioned in which year? Explain."
    events = list(alone.ask(question))
    route = events[0]
    assert isinstance(route, RouteEvent) and route.route.corpora == (Corpus.DOCUMENT,)
    sources = next(e for e in events if isinstance(e, SourcesEvent))
    assert sources.hits[0].item.corpus is Corpus.PARAGRAPH and sources.hits[0].item.page == 2
    stream = iter(service.ask(question))
    probed = next(stream)
    stream.close()  # the route is all this needs; closing releases the stream's parts
    assert isinstance(probed, RouteEvent) and probed.route.corpora == (Corpus.PARAGRAPH,)
    assert "the index answers: paragraph" in probed.route.reason
