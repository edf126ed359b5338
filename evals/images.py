"""``mmrag eval images``: text<->image retrieval by the text an image is indexed by.

The folder has the layout of ``shared/eval/images/coco``: ``images/`` and
``captions.jsonl`` with one ``{"image": "images/x.jpg", "caption": "..."}`` per line
(several captions per image). Every image is analysed once; each method turns the
analysis into one text per image, the packaged MiniLM embeds those texts and the
captions, and cosine similarity (a dot product of normalised rows) ranks them. No
store is involved: this measures the *text* an image is indexed by, which is what
decides whether a question finds it.

Metrics (the usual ones of caption retrieval, e.g. COCO / Flickr30k):

- **text->image Recall@k** (``t2i@k``): over all captions, the fraction whose own image
  is among the k images most similar to the caption.
- **image->text Recall@k** (``i2t@k``): over all images, the fraction for which at least
  one of their captions is among the k captions most similar to the image's text.

Ties (e.g. every image without OCR text has the same empty text) are broken by the
order of the files, so a method that says nothing scores at chance, not better.

Methods: ``tags`` (tags with glosses only), ``ocr`` (OCR text only), ``fusion`` (the
full :func:`ingest.images.describe.image_text`, as indexed), and ``labels_baseline`` (the top-5
ImageNet class names of the whole image, one view, joined by commas).

Cross-validation (``cv=k``, :func:`cross_validate`): the free settings of the text
recipe (:class:`ingest.images.describe.TextRecipe`: tags kept, which tags get a gloss,
how sure a person must be; :data:`GRID`) are chosen on k-1 folds of *photos* and
Recall@5 is measured on the captions of the photos of the k-th, every photo still a
candidate (so the figure is on the same scale as the single split); the CV figure is
the mean over the k held-out folds. The settings are chosen by mean reciprocal rank on
the training captions: it moves with every rank, not only across the fifth place, so the
choice is steadier from fold to fold than choosing by Recall@5 itself. The "dev" figure
is the same choice made on all photos and measured on all of them; its distance above
the CV figure is what choosing on the photos measured adds. Each ablation (no people,
no glosses, no OCR, one view instead of six, the recipe before people) is
cross-validated the same way over what is left to choose. The models run once per
photo; the recipes only re-write and re-embed the texts (embeddings are cached by text).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console, Group, RenderableType
from rich.table import Table

from evals.base import Report, methods_table, read_jsonl
from evals.metrics import success_at
from ingest.base import ImageAnalysis
from ingest.images.classify import top_tags
from ingest.images.decode import open_image
from ingest.images.describe import RECIPE, CnnImageAnalyzer, TextRecipe, image_text, tags_text
from retrieval.encoders import SentenceTransformerEncoder

KS = (1, 5, 10)
METHODS = ("tags", "ocr", "fusion", "labels_baseline")

# A threshold above 1 turns its part off (no gloss, no people).
OFF = 2.0
_THRESHOLDS = ("gloss_min_weight", "people_min_score")
# The recipe's free settings and the values cross-validation chooses among.
GRID: dict[str, tuple[float, ...]] = {
    "max_tags": (5, 10, 15, 20),
    "gloss_min_weight": (0.02, 0.1, 0.5, OFF),
    "people_min_score": (0.3, 0.5, 0.7, OFF),
}
# The recipe mmrag indexed with before the person detector, chosen on all 80 photos.
PREVIOUS_RECIPE = TextRecipe(max_tags=15, gloss_min_weight=0.02, people_min_score=OFF)


@dataclass(frozen=True)
class Variant:
    """One row of the cross-validation table: the settings searched (a sub-grid of
    :data:`GRID`), fixed ones, and whether the tags come from the whole image alone."""

    name: str
    grid: Mapping[str, tuple[float, ...]]
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    one_view: bool = False


def _fix(**fixed: Any) -> dict[str, tuple[float, ...]]:
    return {k: (fixed[k],) if k in fixed else v for k, v in GRID.items()}


VARIANTS = (
    Variant("recipe", GRID),
    Variant("no people", _fix(people_min_score=OFF)),
    Variant("no glosses", _fix(gloss_min_weight=OFF)),
    Variant("no OCR", GRID, {"ocr": False}),
    Variant("one view (whole image)", GRID, one_view=True),
    Variant(
        "previous recipe (fixed)",
        {k: (float(getattr(PREVIOUS_RECIPE, k)),) for k in GRID},
    ),
)


def load_captions(folder: Path) -> tuple[list[str], list[str], list[int]]:
    """Image paths (sorted, relative to ``folder``), captions, and each caption's image index."""
    by_image: dict[str, list[str]] = defaultdict(list)
    for image, caption in read_jsonl(
        folder / "captions.jsonl",
        lambda _, row: (str(row["image"]), str(row["caption"])),
        kind="evaluation",
    ):
        by_image[image].append(caption)
    images = sorted(by_image)
    captions, owner = [], []
    for i, image in enumerate(images):
        for caption in by_image[image]:
            captions.append(caption)
            owner.append(i)
    return images, captions, owner


def recalls(
    similarity: npt.NDArray[np.float32], owner: Sequence[int], ks: Sequence[int] = KS
) -> dict[str, float]:
    """t2i@k and i2t@k from a captions x images similarity matrix (see the module doc):
    success@k of each caption (its image) and of each image (any of its captions)."""
    n_images = similarity.shape[1]
    # A stable sort on the negated scores keeps ties in file order.
    t2i = np.argsort(-similarity, axis=1, kind="stable").tolist()
    i2t = np.argsort(-similarity.T, axis=1, kind="stable").tolist()
    own_image = [{image: 1} for image in owner]
    own_captions = [{c: 1 for c, image in enumerate(owner) if image == i} for i in range(n_images)]
    out: dict[str, float] = {}
    for k in ks:
        hits = [success_at(ranked, own, k) for ranked, own in zip(t2i, own_image, strict=True)]
        out[f"t2i@{k}"] = float(np.mean(hits))
    for k in ks:
        hits = [success_at(ranked, own, k) for ranked, own in zip(i2t, own_captions, strict=True)]
        out[f"i2t@{k}"] = float(np.mean(hits))
    return out


def caption_ranks(similarity: npt.NDArray[np.float32], owner: Sequence[int]) -> npt.NDArray[Any]:
    """Per caption, the 0-based rank of its own image (ties in file order, as in
    :func:`recalls`)."""
    own_index = np.asarray(owner)
    own = similarity[np.arange(len(own_index)), own_index][:, None]
    earlier = np.arange(similarity.shape[1])[None, :] < own_index[:, None]
    return ((similarity > own) | ((similarity == own) & earlier)).sum(1)


def photo_folds(n_images: int, k: int, seed: int = 0) -> list[npt.NDArray[Any]]:
    """``k`` folds of image indices, a seeded shuffle dealt round-robin (sizes differ by
    at most one)."""
    order = np.random.default_rng(seed).permutation(n_images)
    return [np.sort(order[f::k]) for f in range(k)]


def cross_validate(
    ranks: Mapping[tuple[Any, ...], npt.NDArray[Any]],
    owner: Sequence[int],
    folds: Sequence[npt.NDArray[Any]],
    k: int = 5,
) -> dict[str, Any]:
    """Choose a recipe (a key of ``ranks``: each caption's rank under that recipe) by
    mean reciprocal rank on the captions of the other folds, score Recall@``k`` on the
    captions of each fold; and the same choice on all captions, scored on all.

    Ties go to the first recipe in ``ranks``' order, so the choice is deterministic.
    """
    owners = np.asarray(owner)
    keys = list(ranks)

    def choose(mask: npt.NDArray[np.bool_]) -> tuple[Any, ...]:
        return max(keys, key=lambda key: float(np.mean(1.0 / (ranks[key][mask] + 1))))

    per_fold = []
    for fold in folds:
        held = np.isin(owners, fold)
        chosen = choose(~held)
        per_fold.append((chosen, float(np.mean(ranks[chosen][held] < k))))
    everything = np.ones(len(owners), dtype=bool)
    chosen_all = choose(everything)
    return {
        "cv": float(np.mean([score for _, score in per_fold])),
        "dev": float(np.mean(ranks[chosen_all] < k)),
        "chosen": chosen_all,
        "folds": per_fold,
    }


class _Embeddings:
    """The encoder's vectors of texts, each text encoded once per run."""

    def __init__(self, encoder: SentenceTransformerEncoder) -> None:
        self._encoder = encoder
        self._vectors: dict[str, npt.NDArray[np.float32]] = {}

    def __call__(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            for text, vector in zip(missing, self._encoder.encode(missing), strict=True):
                self._vectors[text] = vector
        return np.stack([self._vectors[t] for t in texts])


def recipe_cv(
    analyses: Sequence[ImageAnalysis],
    one_view_tags: Sequence[tuple[tuple[str, float], ...]],
    names: Sequence[str],
    caption_vectors: npt.NDArray[np.float32],
    owner: Sequence[int],
    embed: _Embeddings,
    *,
    folds: int = 5,
    seed: int = 0,
    variants: Sequence[Variant] = VARIANTS,
) -> dict[str, Any]:
    """Every variant's CV and dev text->image Recall@5 (:func:`cross_validate`), with
    the settings chosen on all photos and on each fold's training photos."""
    fold_sets = photo_folds(len(analyses), folds, seed)
    out: dict[str, Any] = {}
    for variant in variants:
        base = (
            [dataclasses.replace(a, tags=t) for a, t in zip(analyses, one_view_tags, strict=True)]
            if variant.one_view
            else list(analyses)
        )
        settings = list(variant.grid)
        ranks = {}
        for values in itertools.product(*variant.grid.values()):
            changes: dict[str, Any] = {**dict(zip(settings, values, strict=True)), **variant.fixed}
            changes["max_tags"] = int(changes.get("max_tags", RECIPE.max_tags))
            recipe = dataclasses.replace(RECIPE, **changes)
            texts = [
                image_text(a, file_name=n, recipe=recipe) for a, n in zip(base, names, strict=True)
            ]
            ranks[values] = caption_ranks(caption_vectors @ embed(texts).T, owner)
        result = cross_validate(ranks, owner, fold_sets)

        def named(values: tuple[Any, ...], settings: list[str] = settings) -> dict[str, Any]:
            return {s: _setting(s, v) for s, v in zip(settings, values, strict=True)}

        out[variant.name] = {
            "cv_t2i@5": result["cv"],
            "dev_t2i@5": result["dev"],
            "recipes": len(ranks),
            "chosen": named(result["chosen"]),
            "folds": [{"chosen": named(c), "t2i@5": score} for c, score in result["folds"]],
        }
    return out


def _setting(name: str, value: float) -> Any:
    """A setting as the figures show it: a threshold above 1 is "off", a count an int."""
    if name in _THRESHOLDS:
        return "off" if value > 1 else value
    return int(value)


def method_texts(
    analyses: Sequence[ImageAnalysis], names: Sequence[str], baseline: Sequence[str]
) -> dict[str, list[str]]:
    tags = RECIPE.max_tags, RECIPE.gloss_min_weight
    return {
        "tags": [tags_text(a.tags[: tags[0]], gloss_min_weight=tags[1]) for a in analyses],
        "ocr": [a.ocr_text for a in analyses],
        "fusion": [image_text(a, file_name=n) for a, n in zip(analyses, names, strict=True)],
        "labels_baseline": list(baseline),
    }


def evaluate_images(
    folder: Path, *, console: Console | None = None, cv: int | None = None, seed: int = 0
) -> dict[str, Any]:
    """Analyse every image of ``folder`` once and score each method; figures and timings.

    Returns ``{"data", "images", "captions", "methods": {method: {"t2i@1": ...}},
    "timings": {"decode_images_per_s", "cnn_images_per_s", "ocr_images_per_s", ...},
    "examples": [first texts]}``, and with ``cv`` the cross-validation of the recipe
    and its ablations under ``"cv"`` (:func:`recipe_cv`).
    """
    paths, captions, owner = load_captions(folder)
    start = time.perf_counter()
    images = [open_image(folder / p) for p in paths]
    decode_s = time.perf_counter() - start
    if console:
        console.print(f"[dim]decoded {len(images)} images in {decode_s:.1f} s[/]")

    start = time.perf_counter()
    analyzer = CnnImageAnalyzer()
    load_s = time.perf_counter() - start
    stage: dict[str, float] = {}
    analyses = analyzer.analyze(images, timings=stage)
    start = time.perf_counter()
    single_view, _ = analyzer.classify(images, multi_view=False)
    baseline_s = time.perf_counter() - start
    baseline = [
        ", ".join(name for name, _ in top_tags(p, k=5, min_weight=0.0)) for p in single_view
    ]
    if console:
        console.print(
            f"[dim]analysed in {sum(stage.values()):.1f} s "
            f"(cnn {stage['cnn']:.1f} s, people {stage.get('people', 0.0):.1f} s, "
            f"ocr {stage['ocr']:.1f} s)[/]"
        )

    encoder = SentenceTransformerEncoder()
    embed = _Embeddings(encoder)
    caption_vectors = encoder.encode(captions)
    names = [Path(p).name for p in paths]
    texts = method_texts(analyses, names, baseline)
    methods = {}
    for method in METHODS:
        methods[method] = recalls(caption_vectors @ embed(texts[method]).T, owner)

    n = len(images)
    results: dict[str, Any] = {
        "data": str(folder),
        "images": n,
        "captions": len(captions),
        "methods": methods,
        "timings": {
            "model_load_s": round(load_s, 2),
            "decode_images_per_s": round(n / decode_s, 2),
            "cnn_images_per_s": round(n / stage["cnn"], 2),
            "cnn_single_view_images_per_s": round(n / baseline_s, 2),
            **({"people_images_per_s": round(n / stage["people"], 2)} if "people" in stage else {}),
            "ocr_images_per_s": round(n / stage["ocr"], 2),
            "other_images_per_s": round(n / max(stage["other"], 1e-9), 2),
        },
        "examples": [
            {"image": p, "fusion": t} for p, t in list(zip(paths, texts["fusion"], strict=True))[:3]
        ],
        "person_detector": any(a.people for a in analyses) or "people" in stage,
        "recipe": dataclasses.asdict(RECIPE),
    }
    if cv:
        if console:
            console.print(f"[dim]{cv}-fold cross-validation of the text recipe (seed {seed})[/]")
        one_view_tags = [top_tags(p) for p in single_view]
        results["cv"] = {
            "folds": cv,
            "seed": seed,
            "criterion": "mean reciprocal rank on the training folds' captions",
            "grid": {k: [_setting(k, v) for v in vs] for k, vs in GRID.items()},
            "variants": recipe_cv(
                analyses, one_view_tags, names, caption_vectors, owner, embed, folds=cv, seed=seed
            ),
        }
    if console:
        console.print(image_view(results))
    return results


def image_table(results: Mapping[str, Any]) -> Table:
    title = f"{results['data']}: {results['images']} images, {results['captions']} captions"
    columns = [f"t2i@{k}" for k in KS] + [f"i2t@{k}" for k in KS]
    return methods_table(title, results["methods"], columns, 3)


def cv_table(results: Mapping[str, Any]) -> Table:
    """The CV and dev text->image Recall@5 of the recipe and of each ablation."""
    cv = results["cv"]
    table = Table(title=f"{cv['folds']}-fold CV of the text recipe (seed {cv['seed']})")
    for column in ("variant", "CV t2i@5", "dev t2i@5", "dev - CV", "chosen on all photos"):
        table.add_column(column, justify="left" if column[0] in "vc" else "right")
    short = {"max_tags": "tags", "gloss_min_weight": "gloss", "people_min_score": "people"}
    for name, row in cv["variants"].items():
        chosen = " ".join(f"{short.get(k, k)} {v}" for k, v in row["chosen"].items())
        table.add_row(
            name,
            f"{row['cv_t2i@5']:.4f}",
            f"{row['dev_t2i@5']:.4f}",
            f"{row['dev_t2i@5'] - row['cv_t2i@5']:+.4f}",
            chosen,
        )
    return table


def image_view(results: Mapping[str, Any]) -> RenderableType:
    """The methods table, and the CV table after it when there is one."""
    if "cv" not in results:
        return image_table(results)
    return Group(image_table(results), cv_table(results))


def images_report(
    folder: Path, *, console: Console | None = None, cv: int | None = None, seed: int = 0
) -> Report:
    """``mmrag eval images``: the terminal gets the table(s) (the progress log has them
    too), the file every figure, timing and the first texts."""
    results = evaluate_images(folder, console=console, cv=cv, seed=seed)
    return Report(results, image_view(results))
