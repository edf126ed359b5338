"""``mmrag eval images --cv``: folds by photo, the choice of a recipe, and the command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from app.cli import app
from evals.images import (
    GRID,
    VARIANTS,
    caption_ranks,
    cross_validate,
    photo_folds,
    recalls,
)

SKIMAGE = Path(__file__).resolve().parents[2] / "shared" / "eval" / "images" / "skimage"


def test_photo_folds_partition_the_photos_the_same_way_each_run() -> None:
    folds = photo_folds(80, 5, seed=0)

    assert sorted(np.concatenate(folds).tolist()) == list(range(80))
    assert [len(f) for f in folds] == [16] * 5
    assert all(np.array_equal(a, b) for a, b in zip(folds, photo_folds(80, 5, seed=0), strict=True))
    assert not np.array_equal(folds[0], photo_folds(80, 5, seed=1)[0])


def test_caption_ranks_agree_with_recall_at_k() -> None:
    rng = np.random.default_rng(3)
    similarity = rng.random((12, 6)).astype(np.float32)
    similarity[:, 2] = similarity[:, 4] = 0.5  # ties go to the earlier file
    owner = [i % 6 for i in range(12)]

    ranks = caption_ranks(similarity, owner)

    for k in (1, 5):
        assert np.mean(ranks < k) == pytest.approx(recalls(similarity, owner, ks=(k,))[f"t2i@{k}"])


def test_cross_validation_chooses_on_the_other_folds_only() -> None:
    # Four captions per photo, four photos, two folds. Recipe "a" ranks every caption of
    # photos 0 and 1 first and those of 2 and 3 tenth; recipe "b" the other way round.
    owner = [p for p in range(4) for _ in range(4)]
    first_half = np.array([o < 2 for o in owner])
    ranks = {
        ("a",): np.where(first_half, 0, 9),
        ("b",): np.where(first_half, 9, 0),
    }
    folds = [np.array([0, 1]), np.array([2, 3])]

    result = cross_validate(ranks, owner, folds, k=5)

    # Each fold's choice is made on the other fold, which favours the wrong recipe.
    assert [chosen for chosen, _ in result["folds"]] == [("b",), ("a",)]
    assert result["cv"] == 0.0
    # On all photos the two tie; the first recipe wins a tie.
    assert result["chosen"] == ("a",) and result["dev"] == 0.5


def test_every_ablation_searches_a_part_of_the_grid() -> None:
    names = [v.name for v in VARIANTS]
    assert names[0] == "recipe" and len(set(names)) == len(names)
    for variant in VARIANTS:
        assert set(variant.grid) == set(GRID)
        for setting, values in variant.grid.items():
            assert len(values) == 1 or tuple(values) == GRID[setting]


@pytest.mark.skipif(not SKIMAGE.is_dir(), reason="shared/eval/images/skimage is absent")
def test_eval_images_cross_validates_with_one_command(tmp_path: Path) -> None:
    out = tmp_path / "images.json"
    result = CliRunner().invoke(
        app, ["eval", "images", "--data", str(SKIMAGE), "--cv", "2", "--json", str(out)]
    )

    assert result.exit_code == 0, result.output
    figures = json.loads(out.read_text())
    # The figures of a run without --cv are all there, the CV beside them.
    assert set(figures["methods"]) == {"tags", "ocr", "fusion", "labels_baseline"}
    cv = figures["cv"]
    assert cv["folds"] == 2 and cv["seed"] == 0
    assert set(cv["variants"]) == {v.name for v in VARIANTS}
    for row in cv["variants"].values():
        assert 0 <= row["cv_t2i@5"] <= 1 and 0 <= row["dev_t2i@5"] <= 1
        assert len(row["folds"]) == 2
    assert "CV t2i@5" in result.output
