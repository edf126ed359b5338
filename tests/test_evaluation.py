"""Retrieval metrics on hand-checked cases, and the eval command on a tiny data set."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.evaluation import (
    grade_gain,
    ndcg_at,
    percentiles,
    recall_at,
    reciprocal_rank,
    score_run,
)


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
