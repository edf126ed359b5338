"""Value types and protocols of the ingest stage.

A :class:`Loader` turns one file into a :class:`ParsedDocument`: its text as a list of
:class:`Section` (a run of text with its page and heading path). The chunker turns
sections into :class:`Passage` objects of a searchable size; the ingest pipeline turns
passages into ``retrieval.Item`` objects and stores them.

Pictures and recordings go through analysers instead: an :class:`ImageAnalyzer`
describes decoded images (:class:`ImageAnalysis`), a :class:`VideoAnalyzer` cuts a file
into clips (:class:`VideoAnalysis`). Their models are large, so ``ingest/media.py``
takes them as factories and builds each on first use.

An ingest run reports what it did with each file (:class:`FileResult`) and in all
(:class:`IngestReport`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # for annotations only: `import ingest.base` stays light (no numpy, PIL)
    import numpy as np
    import numpy.typing as npt
    from PIL import Image

    from retrieval.base import EncoderInfo


@dataclass(frozen=True)
class Section:
    """A contiguous piece of a document's text.

    ``page`` is 1-based for paged formats (PDF) and ``None`` otherwise. ``char_start``
    is the offset of ``text`` in the document's text for that page (PDF: the page's
    extracted text; other formats: the whole extracted text of the file), so that
    ``ParsedDocument.page_text(page)[char_start:char_start + len(text)] == text``.
    """

    text: str
    page: int | None
    heading: tuple[str, ...]
    char_start: int


@dataclass(frozen=True)
class ImageRef:
    """A picture a document shows (HTML ``<img>``, Markdown ``![alt](src)``).

    ``src`` is as written in the document (usually relative to it); ``caption`` gathers
    what the document says about the picture: alt text, title and figure caption.
    """

    src: str
    caption: str


@dataclass(frozen=True)
class ParsedDocument:
    """One file's extracted text, split into sections, plus what is known about it.

    ``texts`` holds the extracted text per page for paged formats (``texts[0]`` is page 1)
    and a single entry for the others. ``warnings`` carries non-fatal notes for the
    ingest report (e.g. "decoded as cp1252", "3 pages had no text layer").
    """

    source: str
    title: str
    media_type: str
    sections: tuple[Section, ...]
    texts: tuple[str, ...]
    page_count: int | None = None
    warnings: tuple[str, ...] = ()
    images: tuple[ImageRef, ...] = ()
    # 1-based pages with no text layer (scans): the ingest pipeline OCRs them.
    untexted_pages: tuple[int, ...] = ()

    def page_text(self, page: int | None) -> str:
        return self.texts[0] if page is None else self.texts[page - 1]


@dataclass(frozen=True)
class Passage:
    """A chunk of ~100-300 words that keeps where it came from."""

    text: str
    page: int | None
    heading: tuple[str, ...]
    char_start: int
    char_end: int


class Loader(Protocol):
    """Turns files of some types into a ParsedDocument.

    ``suffixes`` are lower-case file suffixes including the dot. ``load`` raises a
    ``retrieval.errors.LoaderError`` subclass with a message naming the file and the
    problem when the file cannot be read (corrupt, empty, undecodable).
    """

    suffixes: frozenset[str]
    media_type: str

    def load(self, path: Path) -> ParsedDocument: ...


def loaders_by_suffix(loaders: Sequence[Loader]) -> dict[str, Loader]:
    return {s: loader for loader in loaders for s in loader.suffixes}


# --- pictures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageAnalysis:
    """What mmrag knows about one image, in plain types.

    ``tags`` are (label, weight) pairs, strongest first; the weight is the classifier's
    probability averaged over the views (0..1, they do not sum to 1 after the cut).
    ``ocr_text`` holds the confident OCR lines, one per line, in reading order as found.
    ``exif`` has string values under ``date_taken`` (ISO 8601), ``camera_make`` and
    ``camera_model`` when present (nothing else, in particular no GPS position).
    ``features`` is the L2-normalised 1280-d visual vector; ``thumbnail`` a JPEG whose
    longer side is at most 384 pixels. ``people`` holds the score of each person the
    person detector found (best first; empty when none, or when it is not installed).
    """

    width: int
    height: int
    tags: tuple[tuple[str, float], ...]
    ocr_text: str
    exif: dict[str, str] = field(hash=False)
    features: npt.NDArray[np.float32] = field(repr=False, compare=False, hash=False)
    thumbnail: bytes = field(repr=False)
    people: tuple[float, ...] = ()


class ImageAnalyzer(Protocol):
    """Describes decoded images (``ingest.images.decode.open_image``) in words and vectors.

    ``analyze`` gives one :class:`ImageAnalysis` per image, in order. ``classify`` is the
    cheap part alone, for a question asked with a photo: mean class probabilities
    (n x classes) and L2-normalised visual features (n x ``info.dim``). ``read_page``
    reads the text of a scanned document page (a line per line found), which wants other
    OCR settings than a photo. ``info`` names what made the features, so a collection
    can refuse vectors of another model. The backend: ``ingest.images.describe``.
    """

    info: EncoderInfo

    def analyze(self, images: Sequence[Image.Image]) -> list[ImageAnalysis]: ...

    def classify(
        self, images: Sequence[Image.Image]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]: ...

    def read_page(self, image: Image.Image) -> str: ...


# --- recordings -------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One stretch of recognised speech; ``start`` and ``end`` are media seconds."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Clip:
    """A scene-based piece of a video, the unit of the ``clip`` corpus.

    ``t_start`` / ``t_end`` are seconds from the start of the file, on frame
    timestamps (a cut is the presentation time of the first frame of the new scene),
    so a player seeking to ``t_start`` shows the clip's first frame. Clips are
    contiguous and cover ``[0, duration]``. ``keyframes`` are JPEG files (longest side
    at most the analyzer's ``keyframe_size``) taken at ``keyframe_times``; audio-only
    files have none. ``transcript`` joins the ``segments`` whose midpoint lies in the
    clip.
    """

    index: int
    t_start: float
    t_end: float
    keyframes: tuple[Path, ...]
    transcript: str
    segments: tuple[Segment, ...]
    keyframe_times: tuple[float, ...] = ()

    @property
    def duration(self) -> float:
        return self.t_end - self.t_start


@dataclass(frozen=True)
class VideoAnalysis:
    """Everything the ``clip`` and ``video`` corpora need from one file.

    ``width``/``height`` are the coded size of the video stream (``None`` for audio
    only). ``has_audio`` is true when an audio stream was present and at least partly
    decodable. ``warnings`` carries non-fatal notes for the ingest report (damaged
    stream, misleading suffix, truncated file). ``timings`` holds wall seconds per
    stage: ``decode`` (demuxing, decoding, resampling), ``scenes`` (signatures, cut
    search), ``keyframes`` (choosing, scaling, JPEG), ``speech`` and ``total``.
    """

    source: str
    title: str
    duration: float
    width: int | None
    height: int | None
    has_audio: bool
    clips: tuple[Clip, ...]
    transcript: str
    segments: tuple[Segment, ...]
    warnings: tuple[str, ...] = ()
    container_format: str = ""
    fps: float | None = None
    keyframes_only: bool = False
    timings: Mapping[str, float] = field(default_factory=dict)

    @property
    def has_video(self) -> bool:
        return self.width is not None


class VideoAnalyzer(Protocol):
    """Reads a video or audio file once into clips, keyframes and a transcript.

    ``analyze`` writes the keyframes into ``keyframe_dir`` as
    ``<name>-c<clip>-<k>.jpg`` (``name`` must differ per version of a file, so a new
    version never overwrites what a stored one shows) and calls ``progress`` with the
    fraction done (0 to 1). A file with nothing decodable is a
    ``retrieval.errors.LoaderError`` naming it. The backend: ``ingest.video.analyzer``.
    """

    def analyze(
        self,
        path: Path,
        keyframe_dir: Path,
        progress: Callable[[float], None] | None = None,
        *,
        name: str | None = None,
    ) -> VideoAnalysis: ...


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that it is either the old file or the whole new one.

    Thumbnails and keyframes are written before the items that point at them; a crash
    mid-write must not leave a torn JPEG under a name a stored item uses. The bytes go
    to a temporary file beside ``path``, are synced, and are renamed into place.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; served files are not
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


# --- the outcome of an ingest run --------------------------------------------------------


class FileStatus(StrEnum):
    """What an ingest run did with one file."""

    ADDED = "added"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"  # found in a folder, of a type mmrag does not read
    FAILED = "failed"
    REMOVED = "removed"  # gone from an ingested folder (``prune``): its items deleted


@dataclass(frozen=True)
class FileResult:
    """What happened to one file."""

    path: str
    status: FileStatus
    passages: int = 0
    pages: int | None = None
    message: str = ""
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngestReport:
    """The outcome of one ingest run; ``ok`` is False when any file failed."""

    files: tuple[FileResult, ...]
    seconds: float
    embedded: int = 0

    @property
    def ok(self) -> bool:
        return all(f.status is not FileStatus.FAILED for f in self.files)

    def count(self, status: FileStatus) -> int:
        return sum(1 for f in self.files if f.status is status)


ProgressFn = Callable[[FileResult], None]
# (file, fraction done) while one long file (a video) is being analysed.
StepFn = Callable[[str, float], None]
