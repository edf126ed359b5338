"""``mmrag eval mixed`` end to end on a tiny folder in its format: real ingest (text
files, a PDF, two COCO photos), the real router, store, encoder and selection."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.settings import Settings
from evals.mixed import Gold, MixedQuestion, load_mixed, mixed_report, question_kind, score
from retrieval.base import Corpus, Hit, Item
from retrieval.errors import MmragError
from tests.helpers import write_pdf

COCO = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "coco" / "images"

TEXTS = {
    "flutter.txt": "Wing flutter at supersonic speed: panel flutter of thin plates is predicted "
    "with piston theory and checked against wind tunnel tests of heated panels.",
    "slabs.txt": "Heat conduction in composite slabs: exact solutions for two layers of "
    "different conductivity, with a contact resistance at the interface.",
    "kinetics.txt": "Chemical kinetics of dissociating air behind hypersonic shock waves: "
    "oxygen and nitrogen reaction rates for the non-equilibrium flow past a blunt body.",
}


def _question(qid: str, question: str, label: list[str], gold: list[dict[str, object]]) -> str:
    return json.dumps({"id": qid, "question": question, "label": label, "gold": gold})


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "mixed"
    (root / "docs").mkdir(parents=True)
    for name, text in TEXTS.items():
        (root / "docs" / name).write_text(text + "\n", encoding="utf-8")
    write_pdf(
        root / "docs" / "report.pdf",
        [
            ["The Vellmar cooperative was founded by dairy farmers in the valley."],
            ["The Vellmar cooperative's revenue in 2023 was 41 million euros."],
        ],
    )
    (root / "photos").mkdir()
    for photo in ("000000125870.jpg", "000000084533.jpg"):  # an airport, a motorcycle
        shutil.copy(COCO / photo, root / "photos" / photo)
    (root / "manifest.json").write_text(json.dumps({"ingest": ["docs", "photos"]}))
    questions = [
        _question(
            "text-1",
            "How is panel flutter of thin plates at supersonic speed predicted?",
            ["paragraph", "document"],
            [{"file": "docs/flutter.txt"}],
        ),
        _question(
            "text-2",
            "What are the exact solutions for heat conduction in composite slabs?",
            ["paragraph", "document"],
            [{"file": "docs/slabs.txt"}],
        ),
        _question(
            "pdf-1",
            "What was the Vellmar cooperative's revenue in 2023?",
            ["paragraph", "document"],
            [{"file": "docs/report.pdf", "page": 2}],
        ),
        _question(
            "photo-1",
            "Find the picture of a woman sitting on a motorcycle",
            ["image"],
            [{"file": "photos/000000084533.jpg"}],
        ),
        _question("mmlu_1", "What is the capital of France?", ["no"], []),
    ]
    (root / "queries.jsonl").write_text("\n".join(questions) + "\n", encoding="utf-8")
    return root


@pytest.mark.skipif(not COCO.is_dir(), reason="../shared/eval images are absent")
def test_eval_mixed_end_to_end_and_reused(folder: Path, tmp_path: Path, gguf_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", llm_model_path=gguf_path)
    report = mixed_report(folder, settings=settings)
    figures = report.figures
    assert figures["kinds"] == {"text": 2, "pdf": 1, "photo": 1, "no": 1}
    assert set(figures["modes"]) == {"routed", "all", "oracle"}
    ingest = figures["ingest"]
    assert ingest["embedded"] > 0 and not ingest["failed"]
    assert Path(ingest["folder"]).parent == tmp_path / "data" / "eval-mixed"
    present = {c for c, n in ingest["corpora"].items() if n > 0}
    assert {"paragraph", "document", "image"} <= present

    for mode in figures["modes"].values():
        overall = mode["overall"]
        assert overall["questions"] == 5 and overall["gold_questions"] == 4
        assert set(overall["latency_ms"]) == {"p50", "p95"}
        assert mode["kinds"]["no"]["success@5"] is None  # no gold: not scored

    oracle = figures["modes"]["oracle"]
    # The right corpora alone find the right file (and the PDF's right page).
    for kind in ("text", "pdf", "photo"):
        assert oracle["kinds"][kind]["success@5"] == 1.0, kind
    assert oracle["kinds"]["no"]["retrieved_nothing"] == 1.0
    # The oracle searches exactly the label's corpora; "all" every non-empty one.
    searched = {q["id"]: q["modes"] for q in figures["questions"]}
    assert searched["text-1"]["oracle"]["searched"] == ["paragraph", "document"]
    assert searched["photo-1"]["oracle"]["searched"] == ["image"]
    assert searched["mmlu_1"]["oracle"]["searched"] == []
    assert all(set(q["all"]["searched"]) == present for q in searched.values())
    assert figures["modes"]["all"]["overall"]["corpora"] == len(present)
    pdf_sources = searched["pdf-1"]["oracle"]["sources"]
    assert pdf_sources[0] == {"file": "docs/report.pdf", "page": 2}

    # The table shows the modes side by side; the file holds every figure.
    assert [c.header for c in report.shown.columns] == ["measure", "routed", "all", "oracle"]
    assert json.loads(report.saved())["n"] == 5

    # A second run finds its index by the files' fingerprint and only queries.
    again = mixed_report(folder, settings=settings, modes=["oracle"], limit=1).figures
    assert again["ingest"]["folder"] == ingest["folder"]
    assert again["ingest"]["embedded"] == 0
    assert again["n"] == 4  # the first question of each kind


def _hit(source: str, page: int | None) -> Hit:
    item = Item(
        id=f"{source}#{page}",
        corpus=Corpus.PARAGRAPH,
        text="",
        source=source,
        content_hash="",
        page=page,
    )
    return Hit(item, 1.0)


def test_a_gold_page_must_match_and_rank_counts() -> None:
    question = MixedQuestion(
        "pdf-1", "pdf", "q", ("paragraph",), (Gold("/a.pdf", 2), Gold("/b.txt"))
    )
    assert score(question, [_hit("/a.pdf", 1)]) == (0.0, 0.0)  # right file, wrong page
    assert score(question, [_hit("/c.txt", None), _hit("/a.pdf", 2)]) == (1.0, 0.5)
    assert score(question, [_hit("/b.txt", 7)]) == (1.0, 1.0)  # no page given: any page
    hits = [_hit(f"/x{i}.txt", None) for i in range(5)] + [_hit("/b.txt", None)]
    assert score(question, hits)[0] == 0.0  # sixth place is not among the first 5
    assert score(MixedQuestion("no-1", "no", "q", ("no",), ()), []) is None


def test_kinds_and_a_malformed_folder(tmp_path: Path) -> None:
    assert question_kind("financebench_id_00438", ["paragraph"]) == "financebench"
    assert question_kind("cranfield-12", ["paragraph", "document"]) == "cranfield"
    assert question_kind("mmlu_13", ["no"]) == "no"
    with pytest.raises(MmragError, match="missing manifest"):
        load_mixed(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"ingest": ["gone"]}))
    with pytest.raises(MmragError, match="no such folder"):
        load_mixed(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"ingest": ["."]}))
    (tmp_path / "queries.jsonl").write_text(_question("x-1", "q", ["pictures"], []) + "\n")
    with pytest.raises(MmragError, match=r"queries.jsonl:1: .*pictures"):
        load_mixed(tmp_path)


def test_the_command_names_an_unknown_mode_in_one_sentence(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    args = ["eval", "mixed", "--data", str(tmp_path), "--modes", "routed,fast"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "unknown mode fast; modes: routed, all, oracle, llm" in result.output
