"""Text in pictures, read by the packaged RapidOCR (PP-OCR models in ONNX).

Two set-ups of one engine: photos (signs, labels, slides: its defaults, confident lines
only) and scanned document pages (:meth:`TextReader.read_page`), whose close lines want
the detector to see more pixels, and whose words the recogniser often runs together
(:func:`respace` puts the spaces back).
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Any

from PIL import Image

from retrieval.errors import ModelError

# RapidOCR keeps lines from 0.5; below ~0.75 on photos they are mostly texture read as
# letters ("S.CO45TCUARG").
_MIN_OCR_SCORE = 0.75

_OCR_PACKAGE = "rapidocr-onnxruntime==1.4.4"


class TextReader:
    """OCR of photos and scanned pages; the photo models load here, the page set-up on
    first use. A missing package is a ``ModelError`` that names what to pip install.
    ``threads`` bounds the CPU threads of the ONNX runtime."""

    def __init__(self, *, threads: int = 2) -> None:
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
        self.threads = threads

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
        """Confident OCR lines of one image ("" when none is found).

        Not skipped on photos: RapidOCR's detector is the gate (a photo without text
        costs ~0.3-0.6 s, mostly detection), and any cheaper pre-check we tried would
        also miss signs and labels that are worth indexing.
        """
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
