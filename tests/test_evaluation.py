"""Retrieval metrics on hand-checked cases and against trec_eval, and the eval commands."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import pytrec_eval
from typer.testing import CliRunner

from app.cli import app
from evals.images import recalls
from evals.metrics import ndcg_at, percentiles, recall_at, reciprocal_rank, success_at
from evals.retrieval import DEPTH, bm25s_run, grade_gain, load_text_data, score_run

CRANFIELD = Path(__file__).resolve().parents[2] / "shared" / "eval" / "text" / "cranfield"


def test_grade_gain_follows_cranfield() -> None:
    assert [grade_gain(g) for g in (1, 2, 3, 4, 5, -1)] == [4, 3, 2, 1, 0, 0]


def test_ndcg() -> None:
    gains = {"a": 3, "b": 1}
    assert ndcg_at(["a", "b", "x"], gains, 10) == pytest.approx(1.0)
    # b first, a second: (1 + 3/log2(3)) / (3 + 1/log2(3))
    expected = (1 + 3 / math.log2(3)) / (3 + 1 / math.log2(3))
    assert ndcg_at(["b", "a"], gains, 10) == pytest.approx(expected)
    assert ndcg_at(["x", "y"], gains, 10) == 0.0
    # The cut-off applies: a relevant document at rank 3 does not count at k=2.
    assert ndcg_at(["x", "y", "a"], gains, 2) == 0.0


def test_recall_and_mrr() -> None:
    gains = {"a": 1, "b": 2, "c": 1, "d": 1}
    assert recall_at(["a", "x", "b"], gains, 100) == pytest.approx(0.5)
    assert recall_at(["a", "x", "b"], gains, 1) == pytest.approx(0.25)
    assert reciprocal_rank(["x", "y", "c"], gains) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x"], gains) == 0.0


def test_success_at() -> None:
    gains = {"a": 2, "b": 0}
    assert success_at(["x", "b", "a"], gains, 3) == 1.0
    assert success_at(["x", "b", "a"], gains, 2) == 0.0
    assert success_at([], gains, 5) == 0.0


@pytest.mark.skipif(not CRANFIELD.is_dir(), reason="shared/eval/text/cranfield is absent")
def test_metrics_agree_with_trec_eval_on_cranfield() -> None:
    """Our nDCG@10, Recall@100, MRR and success@5 per query equal trec_eval's (through
    pytrec_eval) on a real run: bm25s over Cranfield's 1,400 abstracts, all 113 judged
    queries with their graded gains."""
    data = load_text_data(CRANFIELD)
    run = bm25s_run(data)
    # Strictly falling scores, so trec_eval ranks exactly as our list does.
    scored = {q: {d: float(DEPTH - i) for i, d in enumerate(docs)} for q, docs in run.items()}
    measures = {"ndcg_cut.10", "recall.100", "recip_rank", "success.5"}
    theirs = pytrec_eval.RelevanceEvaluator(data.qrels, measures).evaluate(scored)
    assert len(theirs) == len(data.queries) == 113
    for qid, ranked in run.items():
        gains, want = data.qrels[qid], theirs[qid]
        assert ndcg_at(ranked, gains, 10) == pytest.approx(want["ndcg_cut_10"], abs=1e-12)
        assert recall_at(ranked, gains, 100) == pytest.approx(want["recall_100"], abs=1e-12)
        assert reciprocal_rank(ranked, gains) == pytest.approx(want["recip_rank"], abs=1e-12)
        assert success_at(ranked, gains, 5) == want["success_5"]
    ours = score_run(run, data.qrels)
    for name, key in (
        ("ndcg@10", "ndcg_cut_10"),
        ("recall@100", "recall_100"),
        ("mrr", "recip_rank"),
    ):
        mean = sum(q[key] for q in theirs.values()) / len(theirs)
        assert ours[name] == pytest.approx(mean, abs=5e-5)


def test_image_recalls_count_ties_in_file_order() -> None:
    # Captions 0 and 1 belong to image 0, caption 2 to image 1; caption 2 scores both
    # images equally, so the earlier file (image 0) ranks first.
    similarity = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5]], dtype=np.float32)
    figures = recalls(similarity, [0, 0, 1], ks=(1, 2))
    assert figures["t2i@1"] == pytest.approx(1 / 3)
    assert figures["t2i@2"] == 1.0
    # Image 0's best caption is its own (0); image 1's best is caption 1 (image 0's).
    assert figures["i2t@1"] == pytest.approx(0.5)
    assert figures["i2t@2"] == 1.0


def test_score_run_averages_over_judged_queries() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {}}
    figures = score_run({"q1": ["a"], "q2": ["x", "b"]}, qrels)
    assert figures["mrr"] == pytest.approx((1 + 0.5) / 2)
    assert figures["recall@100"] == pytest.approx(1.0)


def test_percentiles_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p95": 95.0}
    assert percentiles([7.0]) == {"p50": 7.0, "p95": 7.0}


def test_eval_text_command_on_a_tiny_set(tmp_path: Path) -> None:
    docs = {
        "1": "boundary layer transition on a flat plate at high speed",
        "2": "heat transfer to a hypersonic blunt body in a wind tunnel",
        "3": "buckling of thin cylindrical shells under axial compression",
        "4": "flutter of aircraft wings at transonic speeds",
        "5": "recipes for sourdough bread and pastry",
    }
    with (tmp_path / "corpus.jsonl").open("w") as f:
        for i, t in docs.items():
            f.write(json.dumps({"id": i, "title": "", "text": t}) + "\n")
    with (tmp_path / "queries.jsonl").open("w") as f:
        f.write(
            json.dumps(
                {"qid": "1", "query": "shell buckling", "relevant": [{"doc": "3", "grade": 1}]}
            )
            + "\n"
        )
        f.write(
            json.dumps(
                {"qid": "2", "query": "wing flutter", "relevant": [{"doc": "4", "grade": 2}]}
            )
            + "\n"
        )
    out = tmp_path / "figures.json"
    result = CliRunner().invoke(app, ["eval", "text", "--data", str(tmp_path), "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures["methods"]) == {"dense", "sparse", "hybrid", "bm25s"}
    assert figures["queries"] == 2 and figures["documents"] == 5
    for method in figures["methods"].values():
        assert method["mrr"] == pytest.approx(1.0)
    assert "hybrid" in result.output


def test_eval_text_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "text", "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "corpus.jsonl" in result.output


SKIMAGE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "skimage"


@pytest.mark.skipif(not SKIMAGE.is_dir(), reason="shared/eval/images/skimage is absent")
def test_eval_images_command(tmp_path: Path) -> None:
    out = tmp_path / "images.json"
    result = CliRunner().invoke(app, ["eval", "images", "--data", str(SKIMAGE), "--json", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    assert set(figures["methods"]) == {"tags", "ocr", "fusion", "labels_baseline"}
    assert figures["images"] == 8
    # Eight distinct pictures, one description each: the fused text finds most at rank 1.
    assert figures["methods"]["fusion"]["t2i@1"] >= 0.75
