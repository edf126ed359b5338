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
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from evals.base import Report, methods_table, read_jsonl
from evals.metrics import success_at
from ingest.base import ImageAnalysis
from ingest.images.classify import top_tags
from ingest.images.decode import open_image
from ingest.images.describe import CnnImageAnalyzer, image_text, tags_text
from retrieval.encoders import SentenceTransformerEncoder

KS = (1, 5, 10)
METHODS = ("tags", "ocr", "fusion", "labels_baseline")


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


def method_texts(
    analyses: Sequence[ImageAnalysis], names: Sequence[str], baseline: Sequence[str]
) -> dict[str, list[str]]:
    return {
        "tags": [tags_text(a.tags) for a in analyses],
        "ocr": [a.ocr_text for a in analyses],
        "fusion": [image_text(a, file_name=n) for a, n in zip(analyses, names, strict=True)],
        "labels_baseline": list(baseline),
    }


def evaluate_images(folder: Path, *, console: Console | None = None) -> dict[str, Any]:
    """Analyse every image of ``folder`` once and score each method; figures and timings.

    Returns ``{"data", "images", "captions", "methods": {method: {"t2i@1": ...}},
    "timings": {"decode_images_per_s", "cnn_images_per_s", "ocr_images_per_s", ...},
    "examples": [first texts]}``.
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
            f"(cnn {stage['cnn']:.1f} s, ocr {stage['ocr']:.1f} s)[/]"
        )

    encoder = SentenceTransformerEncoder()
    caption_vectors = encoder.encode(captions)
    names = [Path(p).name for p in paths]
    texts = method_texts(analyses, names, baseline)
    methods = {}
    for method in METHODS:
        image_vectors = encoder.encode(texts[method])
        methods[method] = recalls(caption_vectors @ image_vectors.T, owner)

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
            "ocr_images_per_s": round(n / stage["ocr"], 2),
            "other_images_per_s": round(n / max(stage["other"], 1e-9), 2),
        },
        "examples": [
            {"image": p, "fusion": t} for p, t in list(zip(paths, texts["fusion"], strict=True))[:3]
        ],
    }
    if console:
        console.print(image_table(results))
    return results


def image_table(results: Mapping[str, Any]) -> Table:
    title = f"{results['data']}: {results['images']} images, {results['captions']} captions"
    columns = [f"t2i@{k}" for k in KS] + [f"i2t@{k}" for k in KS]
    return methods_table(title, results["methods"], columns, 3)


def images_report(folder: Path, *, console: Console | None = None) -> Report:
    """``mmrag eval images``: the terminal gets the table (the progress log has it too),
    the file every figure, timing and the first texts."""
    results = evaluate_images(folder, console=console)
    return Report(results, image_table(results))
