"""Videos into clips: scene cuts, keyframes and speech, with the stream's real times.

A video feeds two corpora (docs/architecture.md): ``clip`` (one item per scene-based
segment of ~10-60 s) and ``video`` (one item per file). :class:`PyAVVideoAnalyzer` (the
:class:`ingest.base.VideoAnalyzer` of mmrag) reads a file once and returns a
:class:`~ingest.base.VideoAnalysis` that holds everything both need; turning it into
items is ``ingest/media.py``'s job.

How it works, in one pass over the file with PyAV:

- Video packets are decoded (frame-threaded) and fed to the scene tracker
  (``ingest/video/scenes.py``): sampled frames' colour histograms find the cuts, each
  placed on its exact frame, and the sharpest frames become keyframe candidates.
- Long files (over ``keyframes_only_after`` seconds) decode keyframes only
  (``skip_frame="NONKEY"``): many times faster, and cuts fall on keyframes, which
  encoders tend to place at cuts anyway.
- Audio packets go to the audio track (``ingest/video/speech.py``), resampled to 16 kHz
  mono on the media timeline, and after the pass to whisper.
- Cuts become clip bounds, keyframes are chosen per clip and speech segments assigned
  to clips (``ingest/video/timeline.py``).

A file that cannot be decoded at all is a :class:`~retrieval.errors.LoaderError` naming
it; a damaged audio (or video) stream next to a healthy one is a warning and the healthy
part is kept.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from ingest.base import Clip, Segment, VideoAnalysis, write_atomic
from ingest.images.decode import MAX_IMAGE_PIXELS
from ingest.video.scenes import SceneTracker
from ingest.video.speech import AudioTrack, Samples, SpeechRecognizer
from ingest.video.timeline import (
    assign,
    clip_bounds,
    pick_keyframes,
    split_long,
    transcript_text,
)
from retrieval.errors import EmptyDocumentError, LimitError, LoaderError

VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mkv", ".mov", ".avi"})
AUDIO_SUFFIXES = frozenset({".m4a", ".mp3", ".wav", ".ogg", ".opus", ".flac"})

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


class PyAVVideoAnalyzer:
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
            bounds = clip_bounds(
                tracker.cuts,
                duration,
                min_clip=self.min_clip,
                max_clip=self.max_clip,
                snap=tracker.sample_times,
            )
        else:
            bounds = split_long([0.0, duration], self.max_clip, ())

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
            transcript=transcript_text(segments),
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
        tracker: SceneTracker | None = None
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
            tracker = SceneTracker(
                origin=origin,
                threshold=self.scene_threshold,
                interval=1 / self.sample_fps,
                refine=not keyframes_only,
                display_size=(display_w, height or 2),
                keyframe_size=self.keyframe_size,
                bucket=max(1.0, self.min_clip / 2),
            )
        audio = AudioTrack(origin) if astream is not None else None
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
        tracker: SceneTracker | None,
        name: str | None = None,
    ) -> list[Clip]:
        groups = assign(segments, bounds)
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
            chosen = pick_keyframes(candidates, start, end, self.max_keyframes)
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
                    transcript=transcript_text(groups[index]),
                    segments=tuple(groups[index]),
                    keyframe_times=tuple(c.time for c in chosen),
                )
            )
        return clips


@dataclass(frozen=True)
class _Scan:
    tracker: SceneTracker | None
    audio: Samples
    has_audio: bool
    duration: float
    width: int | None
    height: int | None
    fps: float | None
    format_name: str
    keyframes_only: bool
    scan_share: float
