"""Images as sources: each image described in words and a vector.

There is no CLIP-family model to be had offline, so an image reaches the text encoders
through words: visual tags from the packaged EfficientNet-Lite0 ImageNet classifier
(``ingest/images/classify.py``), OCR text from the packaged RapidOCR
(``ingest/images/ocr.py``), EXIF date and camera, the file name and any caption or alt
text (:func:`image_text`). The classifier's pooled 1280-d features are kept as the
``visual`` vector, for search by image.

Usage::

    analyzer = CnnImageAnalyzer()                   # loads both models once
    images = [open_image(p) for p in paths]         # ingest/images/decode.py; LoaderError
    for path, a in zip(paths, analyzer.analyze(images)):
        text = image_text(a, file_name=path.name)   # what gets embedded

In the text the confident tags are followed by a short gloss taken from the class's
one-paragraph description ("airliner (large fixed-wing commercial airplane)"), because
questions use the general word (airplane, dog, elephant) far more often than the
ImageNet name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from ingest.base import ImageAnalysis
from ingest.images.classify import FloatArray, ImageClassifier, class_glosses, top_tags
from ingest.images.decode import read_exif, thumbnail, to_rgb
from ingest.images.ocr import TextReader

# Only tags at least this sure get their gloss: more words for the confident tags is how
# the text carries the weights (measured: +0.02 Recall@5 over glossing every tag).
_GLOSS_MIN_WEIGHT = 0.02
_MAX_OCR_WORDS = 60


class CnnImageAnalyzer:
    """The :class:`ingest.base.ImageAnalyzer` of the packaged models: tags, OCR, EXIF,
    features and thumbnails for batches of decoded images.

    Both models load here, once: EfficientNet-Lite0 (ImageNet-1k) and RapidOCR's ONNX
    models. A missing package is a ``ModelError`` that names what to pip install.
    ``ocr=False`` skips OCR (about half a second per photo, seconds per page of text)
    when only tags and features are wanted. ``threads`` bounds the CPU threads of both
    models; ``batch_size`` is the classifier's (:class:`ImageClassifier`).

    ``info`` describes the visual features, so a collection can record which encoder
    filled its ``visual`` vectors and refuse another one.
    """

    def __init__(self, *, ocr: bool = True, threads: int = 2, batch_size: int = 2) -> None:
        self._classifier = ImageClassifier(threads=threads, batch_size=batch_size)
        self._reader = TextReader(threads=threads) if ocr else None
        self.info = self._classifier.info

    def analyze(
        self, images: Sequence[Image.Image], *, timings: dict[str, float] | None = None
    ) -> list[ImageAnalysis]:
        """Analyse images (as from ``open_image``); one result per image, in order.

        ``timings``, when given, accumulates the seconds spent under ``"cnn"``, ``"ocr"``
        and ``"other"`` (EXIF, thumbnails), for ingest reports and benchmarks.
        """
        if not images:
            return []
        clock = time.perf_counter()
        rgb = [to_rgb(im) for im in images]
        probs, feats = self.classify(rgb)
        cnn = time.perf_counter()
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
            )
            for image, p, f, text in zip(rgb, probs, feats, texts, strict=True)
        ]
        if timings is not None:
            for key, seconds in (
                ("cnn", cnn - clock),
                ("ocr", ocr - cnn),
                ("other", time.perf_counter() - ocr),
            ):
                timings[key] = timings.get(key, 0.0) + seconds
        return out

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


def image_text(analysis: ImageAnalysis, *, file_name: str, caption: str = "") -> str:
    """The text that is embedded for an image: what a question about it would say.

    In order: the caption or alt text (people's words beat any model), the tags
    strongest first, each with its gloss (order carries the confidence: sentence
    embeddings weigh early words more, and weak tags come last or not at all), OCR
    text (capped), the date and camera, and the words of the file name (camera
    counters such as ``IMG_0042`` and hashes dropped). Kept well under MiniLM's
    256 tokens.
    """
    parts = []
    if caption.strip():
        parts.append(caption.strip().rstrip(".") + ".")
    tags = tags_text(analysis.tags)
    if tags:
        parts.append(tags + ".")
    ocr = " ".join(analysis.ocr_text.split()[:_MAX_OCR_WORDS])
    if ocr:
        parts.append(f"Text: {ocr}.")
    meta = exif_text(analysis.exif)
    if meta:
        parts.append(meta + ".")
    words = file_name_words(file_name)
    if words:
        parts.append(f"File: {words}.")
    return " ".join(parts)


def tags_text(tags: Sequence[tuple[str, float]]) -> str:
    """Tags as words, strongest first: ``"airliner (large fixed-wing commercial airplane), ..."``.

    Confident tags carry their gloss, weak ones only their name.
    """
    glosses = class_glosses()
    phrases = []
    for name, weight in tags:
        gloss = glosses.get(name, "") if weight >= _GLOSS_MIN_WEIGHT else ""
        phrases.append(f"{name} ({gloss})" if gloss else name)
    return ", ".join(phrases)


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
