"""Decoding image files safely, and what the file says besides its pixels.

Pictures come from anyone, so decoding is bounded and narrow: only the common formats'
decoders run (Pillow's rarer plugins are less exercised), the size in the header is
checked before any pixel is decoded (a decompression bomb costs nothing), and a file
that is not what it claims is a ``LoaderError`` naming it. :func:`read_exif` takes the
date and camera from the EXIF block (never the GPS position); :func:`thumbnail` makes
the JPEG shown beside an answer.
"""

from __future__ import annotations

import datetime as dt
import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from retrieval.errors import EmptyDocumentError, LoaderError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".gif", ".tif", ".tiff", ".bmp"}
)
# Decoders we allow. Limiting Pillow to these keeps its rarer, less exercised plugins
# away from untrusted files. (Phone JPEGs that Pillow reads as MPO come through JPEG.)
_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "TIFF", "BMP")

THUMBNAIL_SIDE = 384

MAX_IMAGE_PIXELS = 50_000_000
"""The most pixels ingest decodes for one picture (150 MB as RGB); a photo has 12-50 M."""


def open_image(path: Path, *, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode an image file into an upright RGB image, refusing what it should not decode.

    The format is sniffed from the content, so a PNG named ``.jpg`` opens; only JPEG, PNG,
    WebP, GIF (first frame), TIFF (first page) and BMP are accepted. The size in the
    header is checked *before* decoding, so a decompression bomb costs nothing. EXIF
    orientation is applied (phone photos are often stored sideways); transparent areas
    become white, so dark text on a transparent background stays readable for OCR. The
    EXIF block stays attached (``getexif()``) for :func:`read_exif`.

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
            return to_rgb(upright)
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


def to_rgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB; transparent areas become white (dark text on them stays readable)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        background.info = dict(image.info)
        return background
    return image.convert("RGB")


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
    to_rgb(small).save(buffer, format="JPEG", quality=85, optimize=True)
    return buffer.getvalue()
