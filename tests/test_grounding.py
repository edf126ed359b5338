"""Conflicting sources, the retry of uncited answers, and grounding on RGB material."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from app.service import DoneEvent, RetryEvent, Service, TokenEvent
from app.settings import Settings
from evals.documents import correct
from evals.grounding import Case, contains, passages
from generation.base import Conflict, Message
from generation.conflicts import conflict_note, find_conflicts
from generation.llamacpp import LlamaCppGenerator
from generation.prompt import REMINDER, STRICT_REMINDER, build_messages
from generation.rerank import LlmJudgeReranker
from retrieval.edge_store import EdgeStore
from retrieval.encoders import SentenceTransformerEncoder
from retrieval.index import Index
from tests.helpers import make_source

RGB = Path(__file__).resolve().parents[2] / "shared" / "eval" / "grounding" / "rgb_fact.jsonl"

TAMPA = (
    "The game was played on February 7, 2021, at Raymond James Stadium in Tampa, Florida, "
    "the home stadium of the Buccaneers."
)
GLENDALE = TAMPA.replace("Tampa, Florida", "Glendale, Arizona")


def test_two_versions_of_a_text_with_a_fact_replaced_conflict() -> None:
    sources = [make_source(1, TAMPA), make_source(2, "Unrelated text."), make_source(3, GLENDALE)]
    assert find_conflicts(sources) == [Conflict(1, 3, "Tampa, Florida", "Glendale, Arizona")]


@pytest.mark.parametrize(
    "other",
    [
        TAMPA,  # an identical copy agrees
        TAMPA.replace("at Raymond", "in Raymond"),  # a changed function word is no fact
        "Tampa hosts many events; the Buccaneers play at Raymond James Stadium.",  # rewrite
    ],
)
def test_copies_rewrites_and_small_words_are_not_conflicts(other: str) -> None:
    assert find_conflicts([make_source(1, TAMPA), make_source(2, other)]) == []


def test_a_changed_number_is_a_conflict() -> None:
    a = "The bridge opened in 2013 and has a main span of 1,310 metres."
    b = "The bridge opened in 2015 and has a main span of 1,310 metres."
    (conflict,) = find_conflicts([make_source(1, a), make_source(2, b)])
    assert (conflict.a_says, conflict.b_says) == ("2013", "2015")


def test_a_changed_month_is_a_conflict() -> None:
    a = "The ceremony was broadcast live on January 5, 2020, from The Beverly Hilton."
    b = a.replace("January", "May")  # "may" is a month here, not a modal verb
    (conflict,) = find_conflicts([make_source(1, a), make_source(2, b)])
    assert (conflict.a_says, conflict.b_says) == ("January", "May")


def test_the_prompt_names_both_versions_before_the_reminder() -> None:
    sources = [make_source(1, TAMPA), make_source(2, GLENDALE)]
    note = conflict_note(find_conflicts(sources))
    assert '[1] says "Tampa, Florida"' in note and '[2] says "Glendale, Arizona"' in note
    user = build_messages("Where was Super Bowl 2021?", sources, note=note)[1].content
    assert user.index("Question:") < user.index("disagree") < user.index(REMINDER)
    assert conflict_note([]) == ""


@pytest.mark.skipif(not RGB.is_file(), reason="../shared/eval/grounding is absent")
def test_every_rgb_counterfactual_pair_is_found() -> None:
    rows = [json.loads(line) for line in RGB.read_text(encoding="utf-8").splitlines()]
    found = 0
    for row in rows:
        sources = [make_source(1, row["positive"][0]), make_source(2, row["positive_wrong"][0])]
        conflicts = find_conflicts(sources)
        found += bool(conflicts)
        for c in conflicts:
            assert c.a_says != c.b_says
    assert found == len(rows)


# --- the pipeline: conflicts reach the answer; uncited drafts are retried ------------------


class Scripted:
    """A Generator (the protocol) that replies with the given texts in turn.

    It stands in for a model that forgets citations on demand, which no real model
    does reliably; it records the prompts it was given.
    """

    name = "scripted"
    supports_images = False
    context_window = 4096

    def __init__(self, replies: Sequence[str]) -> None:
        self.replies = list(replies)
        self.prompts: list[list[Message]] = []

    def stream(
        self, messages: Sequence[Message], *, max_tokens: int = 512, temperature: float = 0.1
    ) -> Iterator[str]:
        self.prompts.append(list(messages))
        yield from re.findall(r"\S+\s*", self.replies.pop(0))  # word by word


@pytest.fixture()
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "superbowl.md").write_text(f"# Super Bowl LV\n\n{TAMPA}\n", encoding="utf-8")
    (folder / "mirror.md").write_text(f"# Super Bowl LV (copy)\n\n{GLENDALE}\n", encoding="utf-8")
    return folder


def service_with(
    generator: object, tmp_path: Path, encoder: SentenceTransformerEncoder
) -> tuple[Service, EdgeStore]:
    store = EdgeStore(tmp_path / "store")
    settings = Settings(data_dir=tmp_path / "data", max_tokens=96, temperature=0.0)
    return Service(settings, index=Index(store, encoder), generator=generator), store  # type: ignore[arg-type]


def test_an_uncited_draft_is_retried_once_and_the_stream_says_so(
    docs: Path, tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    llm = Scripted(["It was in Florida.", "It was played in Tampa, Florida [1]."])
    service, store = service_with(llm, tmp_path, encoder)
    assert service.ingest([docs / "superbowl.md"]).ok
    events = list(service.ask("Where was the Super Bowl 2021 game played?"))
    retry = next(i for i, e in enumerate(events) if isinstance(e, RetryEvent))
    after = "".join(e.text for e in events[retry:] if isinstance(e, TokenEvent))
    done = events[-1]
    assert isinstance(done, DoneEvent)
    assert done.answer.retried and done.answer.text == after
    assert [c.number for c in done.answer.citations] == [1]
    assert llm.prompts[1][-1].content.startswith(STRICT_REMINDER)  # the stricter instruction
    assert llm.prompts[1][-2] == Message("assistant", "It was in Florida.")
    store.close()


def test_a_cited_draft_or_a_refusal_is_not_retried(
    docs: Path, tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    llm = Scripted(["I could not find this in the ingested sources."])
    service, store = service_with(llm, tmp_path, encoder)
    assert service.ingest([docs / "superbowl.md"]).ok
    done = service.answer("Where was the Super Bowl 2021 game played?")
    assert not done.answer.retried and len(llm.prompts) == 1
    store.close()


def test_disagreeing_sources_reach_the_prompt_and_the_answer(
    docs: Path, tmp_path: Path, encoder: SentenceTransformerEncoder, llm: LlamaCppGenerator
) -> None:
    service, store = service_with(llm, tmp_path, encoder)
    assert service.ingest([docs]).ok
    done = service.answer("Where was the Super Bowl 2021 game played?")
    (conflict,) = done.answer.conflicts
    assert {conflict.a_says, conflict.b_says} == {"Tampa, Florida", "Glendale, Arizona"}
    # The real model was told; whatever it wrote, the answer carries the conflict.
    assert done.answer.citations
    store.close()


# --- the LLM-judge reranker ------------------------------------------------------------------


def test_llm_judge_drops_what_the_model_calls_irrelevant() -> None:
    hits = [make_source(n, f"passage {n}").hit for n in (1, 2, 3)]
    judge = LlmJudgeReranker(Scripted(["no", "Yes.", "maybe"]))  # type: ignore[arg-type]
    # "no" goes; "yes" stays; an unreadable verdict is not a reason to drop a source.
    assert judge.rerank("q", hits) == [hits[1], hits[2]]
    everything_no = LlmJudgeReranker(Scripted(["no", "no", "No"]))  # type: ignore[arg-type]
    assert everything_no.rerank("q", hits) == hits  # a wrong "no" for all costs nothing


def test_llm_judge_asks_the_real_model(llm: LlamaCppGenerator) -> None:
    judge = LlmJudgeReranker(llm)
    verdict = judge.judge("Where was Super Bowl LV played?", make_source(1, TAMPA).hit)
    assert verdict is True


def test_reranker_setting_puts_the_judge_in_the_pipeline(
    docs: Path, tmp_path: Path, encoder: SentenceTransformerEncoder
) -> None:
    llm = Scripted(["no", "It was played in Tampa, Florida [1]."])
    store = EdgeStore(tmp_path / "store")
    settings = Settings(data_dir=tmp_path / "data", reranker="llm", rerank_candidates=1)
    service = Service(settings, index=Index(store, encoder), generator=llm)  # type: ignore[arg-type]
    assert service.ingest([docs / "superbowl.md"]).ok
    done = service.answer("Where was the Super Bowl 2021 game played?")
    assert "Passage:" in llm.prompts[0][-1].content  # the judge was asked first
    assert [c.number for c in done.answer.citations] == [1]
    store.close()


# --- the grounding evaluation's scoring ----------------------------------------------------


def test_rgb_answers_match_by_groups_of_spellings() -> None:
    groups = [["November 18 2020", "Nov 18, 2020"]]
    assert contains("The draft was held on Nov. 18, 2020 [1].", [["Nov 18, 2020"]])
    assert contains("It was on November 18, 2020.", groups)
    assert not contains("It was on November 19, 2020.", groups)
    assert contains("Spain won.", [["Spain"]]) and not contains("Spaniards won.", [["Spain"]])


def test_rgb_conditions_are_fixed_mixes() -> None:
    case = Case("7", "q", [["a"]], "f", ["p1", "p2", "p3"], ["n1", "n2", "n3", "n4"], ["w1", "w2"])
    assert passages(case, "clean") == ["p1", "p2", "p3"]
    noisy = passages(case, "noisy")
    assert sorted(noisy) == ["n1", "n2", "n3", "p1", "p2"] and noisy == passages(case, "noisy")
    assert sorted(passages(case, "conflict")) == ["p1", "p2", "w1", "w2"]


@pytest.mark.parametrize(
    ("answer", "gold", "ok"),
    [
        ("Inventories were $5,409 million [1].", "$5409.00", True),
        ("Inventories were $5,509 million [1].", "$5409.00", False),
        ("DPO was about 93.9 days.", "93.86", True),
        ("As of FY2023Q1, by 20.2%.", "Raised guidance by 1 percentage point.", False),
        (
            "Yes, Richard A. Johnson had the most votes against.",
            "Yes, his name is Richard A. Johnson",
            True,
        ),
        ("No, it was Alan D. Feldman.", "Yes, his name is Richard A. Johnson", False),
        (
            "No: margins fell to 34.6% in FY2022.",
            "No the operating margins declined from 36.8% to 34.6%.",
            True,
        ),
    ],
)
def test_financebench_correctness(answer: str, gold: str, ok: bool) -> None:
    assert correct(answer, gold) is ok
