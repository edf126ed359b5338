"""PyAVVideoAnalyzer on videos made here with known content at known times.

The main fixture encodes, with PyAV, 40 s of three scenes (red 0-12.3 s, blue with a
white box 12.3-26.7 s, green 26.7-40 s; a small square moves all the time, so a scene is not
a still image) and an audio track that is silent except for a sentence spoken by
espeak-ng at 15 s. The real packaged whisper model transcribes it; it is loaded once
for the module. Broken inputs (empty, text named .mp4, an audio stream of garbage, a
cut-off file) are made the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from ingest.base import Segment, VideoAnalysis
from ingest.video.analyzer import PyAVVideoAnalyzer
from ingest.video.speech import SpeechRecognizer
from retrieval.errors import LoaderError, ModelError
from tests.helpers import (
    AUDIO_RATE,
    CUTS,
    DURATION,
    ESPEAK,
    FPS,
    SPEECH_AT,
    draw_frame,
    encode,
    needs_espeak,
    scene_colour,
    soundtrack,
)

REAL_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "eval" / "video" / "files"


# --- making media ---------------------------------------------------------------------


def encode_with_garbage_audio(path: Path) -> Path:
    """Scene video plus an 'mp3' audio stream whose packets are random bytes."""
    rng = np.random.default_rng(3)
    with av.open(str(path), "w") as out:
        vstream = out.add_stream("libx264", rate=FPS)
        vstream.width, vstream.height, vstream.pix_fmt = 160, 120, "yuv420p"
        astream = out.add_stream("mp3", rate=16_000)
        for i in range(int(22 * FPS)):
            frame = av.VideoFrame.from_ndarray(draw_frame(i / FPS), format="rgb24")
            frame.pts = i
            out.mux(vstream.encode(frame))
        out.mux(vstream.encode(None))
        for j in range(22 * 14):
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            packet.stream = astream
            packet.pts = packet.dts = j * 72
            packet.time_base = Fraction(1, 1000)
            out.mux(packet)
    return path


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> SpeechRecognizer:
    """The packaged whisper tiny.en, loaded once for this module."""
    recognizer = SpeechRecognizer()
    recognizer.load()
    return recognizer


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def scene_video(media: Path) -> Path:
    return encode(media / "scenes.mp4", audio=soundtrack(DURATION, SPEECH_AT))


@pytest.fixture(scope="module")
def scene_run(
    scene_video: Path, speech: SpeechRecognizer, media: Path
) -> tuple[VideoAnalysis, list[float]]:
    calls: list[float] = []
    analysis = PyAVVideoAnalyzer(speech).analyze(scene_video, media / "keyframes", calls.append)
    return analysis, calls


def assert_tiles(analysis: VideoAnalysis) -> None:
    """Clips are contiguous, ordered, and cover exactly [0, duration]."""
    clips = analysis.clips
    assert clips, "no clips"
    assert clips[0].t_start == 0.0
    assert clips[-1].t_end == pytest.approx(analysis.duration)
    for i, clip in enumerate(clips):
        assert clip.index == i
        assert 0.0 <= clip.t_start < clip.t_end <= analysis.duration + 1e-9
    for a, b in itertools.pairwise(clips):
        assert a.t_end == b.t_start


def mean_colour(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "JPEG"
        assert max(img.size) <= 384
        return np.asarray(img.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)


# --- the scene video ------------------------------------------------------------------


def test_clips_follow_the_scene_cuts(scene_run: tuple[VideoAnalysis, list[float]]) -> None:
    analysis, _ = scene_run
    assert analysis.duration == pytest.approx(DURATION, abs=0.2)
    assert (analysis.width, analysis.height) == (160, 120)
    assert analysis.has_audio and analysis.has_video
    assert_tiles(analysis)
    inner = [c.t_start for c in analysis.clips[1:]]
    assert len(inner) == 2, inner
    # A cut is placed on the first frame of the new scene, not on a 2 fps sample.
    for found, true in zip(inner, CUTS, strict=True):
        assert found == pytest.approx(true, abs=1 / FPS + 1e-6)
    assert set(analysis.timings) >= {"decode", "scenes", "keyframes", "speech", "total"}
    assert all(v >= 0 for v in analysis.timings.values())


def test_keyframes_show_their_scene(scene_run: tuple[VideoAnalysis, list[float]]) -> None:
    analysis, _ = scene_run
    for clip in analysis.clips:
        assert 1 <= len(clip.keyframes) <= 3
        assert len(clip.keyframe_times) == len(clip.keyframes)
        for path, t in zip(clip.keyframes, clip.keyframe_times, strict=True):
            assert path.is_file() and clip.t_start <= t < clip.t_end
            colour = mean_colour(path)
            expected = int(np.argmax(scene_colour(t)))
            assert int(np.argmax(colour)) == expected, (clip.index, colour)


@needs_espeak
def test_speech_is_in_the_clip_that_covers_it(
    scene_run: tuple[VideoAnalysis, list[float]],
) -> None:
    analysis, _ = scene_run
    assert "meeting" in analysis.transcript.lower()
    covering = next(c for c in analysis.clips if c.t_start <= SPEECH_AT + 1 < c.t_end)
    assert "meeting" in covering.transcript.lower()
    others = [c for c in analysis.clips if c is not covering]
    assert all("meeting" not in c.transcript.lower() for c in others)
    spoken = [s for s in analysis.segments if "meeting" in s.text.lower()]
    assert spoken and SPEECH_AT - 1.5 <= spoken[0].start <= SPEECH_AT + 1.5
    # Every segment is in exactly one clip.
    assert sum(len(c.segments) for c in analysis.clips) == len(analysis.segments)


def test_progress_rises_to_one(scene_run: tuple[VideoAnalysis, list[float]]) -> None:
    _, calls = scene_run
    assert len(calls) > 5
    assert calls == sorted(calls)
    assert 0.0 <= calls[0] < 0.5 and calls[-1] == 1.0


def test_long_scenes_are_split_and_short_ones_merged(scene_video: Path, tmp_path: Path) -> None:
    split = PyAVVideoAnalyzer(None, min_clip=4, max_clip=10).analyze(scene_video, tmp_path)
    assert_tiles(split)
    # Each scene (12.3, 14.4, 13.3 s) is split in two; the real cuts stay.
    assert len(split.clips) == 6
    assert all(c.duration <= 10 + 1e-6 for c in split.clips)
    starts = [c.t_start for c in split.clips]
    assert any(abs(s - CUTS[0]) <= 0.11 for s in starts)
    assert any(abs(s - CUTS[1]) <= 0.11 for s in starts)
    assert split.transcript == ""  # no recognizer, no text

    merged = PyAVVideoAnalyzer(None, min_clip=13, max_clip=60).analyze(scene_video, tmp_path)
    assert_tiles(merged)
    # The 12.3 s red scene is too short and joins its neighbour; no clip is under 13 s.
    assert len(merged.clips) == 2
    assert all(c.duration >= 13 for c in merged.clips)


def test_keyframe_only_decoding_for_long_files(tmp_path: Path) -> None:
    video = encode(tmp_path / "gop.mkv", gop=FPS)
    analysis = PyAVVideoAnalyzer(None, keyframes_only_after=0).analyze(video, tmp_path / "kf")
    assert analysis.keyframes_only
    assert_tiles(analysis)
    inner = [c.t_start for c in analysis.clips[1:]]
    assert len(inner) == 2
    for found, true in zip(inner, CUTS, strict=True):
        assert abs(found - true) <= 1.0  # one keyframe interval


# --- other shapes of input ------------------------------------------------------------


def test_video_without_audio(tmp_path: Path, speech: SpeechRecognizer) -> None:
    video = encode(tmp_path / "silent.mp4", duration=22.0)
    analysis = PyAVVideoAnalyzer(speech).analyze(video, tmp_path / "kf")
    assert not analysis.has_audio
    assert analysis.transcript == "" and analysis.segments == ()
    assert_tiles(analysis)
    assert [round(c.t_start, 2) for c in analysis.clips] == [0.0, CUTS[0]]
    assert all(c.keyframes for c in analysis.clips)
    assert analysis.warnings == ()


def test_audio_only_file(tmp_path: Path, speech: SpeechRecognizer) -> None:
    audio = soundtrack(45.0, speech_at=3.0)
    path = encode(tmp_path / "voice-memo.mp4", video=False, audio=audio, duration=45.0)
    analysis = PyAVVideoAnalyzer(speech, min_clip=5, max_clip=20).analyze(path, tmp_path / "kf")
    assert analysis.has_audio and not analysis.has_video
    assert analysis.width is None and analysis.height is None
    assert analysis.duration == pytest.approx(45.0, abs=0.2)
    assert_tiles(analysis)
    assert len(analysis.clips) == 3  # 45 s in windows of at most 20 s: 3 x 15 s
    assert all(c.keyframes == () for c in analysis.clips)
    assert not (tmp_path / "kf").exists()
    if ESPEAK is not None:
        assert "meeting" in analysis.clips[0].transcript.lower()


def test_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    with pytest.raises(LoaderError, match=r"empty\.mp4"):
        PyAVVideoAnalyzer(None).analyze(path, tmp_path / "kf")


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("minutes of the quarterly meeting\n" * 50)
    with pytest.raises(LoaderError, match=r"notes\.mp4.*not a video or audio file"):
        PyAVVideoAnalyzer(None).analyze(path, tmp_path / "kf")


def test_image_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "holiday.mp4"
    Image.fromarray(draw_frame(1.0)).save(path, format="JPEG")
    with pytest.raises(LoaderError, match=r"holiday\.mp4.*still image"):
        PyAVVideoAnalyzer(None).analyze(path, tmp_path / "kf")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="no such file"):
        PyAVVideoAnalyzer(None).analyze(tmp_path / "gone.mkv", tmp_path / "kf")


def test_garbage_audio_stream_keeps_the_video(tmp_path: Path, speech: SpeechRecognizer) -> None:
    path = encode_with_garbage_audio(tmp_path / "broken-audio.mkv")
    analysis = PyAVVideoAnalyzer(speech).analyze(path, tmp_path / "kf")
    assert not analysis.has_audio
    assert analysis.transcript == ""
    assert any("audio stream" in w and "broken-audio.mkv" in w for w in analysis.warnings)
    assert_tiles(analysis)
    assert [round(c.t_start, 2) for c in analysis.clips] == [0.0, CUTS[0]]


def test_truncated_files(scene_video: Path, tmp_path: Path) -> None:
    # MP4 keeps its index (moov) at the end: half a file cannot be opened at all.
    data = scene_video.read_bytes()
    cut_mp4 = tmp_path / "cut.mp4"
    cut_mp4.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoaderError, match=r"cut\.mp4"):
        PyAVVideoAnalyzer(None).analyze(cut_mp4, tmp_path / "kf")

    # Matroska streams: the first part plays, and the clips end where the data ends.
    mkv = encode(tmp_path / "whole.mkv", audio=soundtrack(DURATION, None))
    data = mkv.read_bytes()
    cut_mkv = tmp_path / "cut.mkv"
    cut_mkv.write_bytes(data[: len(data) // 2])
    analysis = PyAVVideoAnalyzer(None).analyze(cut_mkv, tmp_path / "kf")
    assert_tiles(analysis)
    assert 10.0 < analysis.duration < DURATION - 5
    assert any("truncated" in w for w in analysis.warnings)


def test_misnamed_container_is_decoded_with_a_warning(tmp_path: Path) -> None:
    path = encode(tmp_path / "really-matroska.mkv", duration=14.0)
    renamed = path.rename(tmp_path / "really-matroska.mp4")
    analysis = PyAVVideoAnalyzer(None).analyze(renamed, tmp_path / "kf")
    assert_tiles(analysis)
    assert any("the name says .mp4" in w for w in analysis.warnings)


# --- the real thing -------------------------------------------------------------------


@pytest.mark.skipif(not REAL_VIDEOS.is_dir(), reason="shared/eval/video/files is absent")
def test_real_video(tmp_path: Path, speech: SpeechRecognizer) -> None:
    path = REAL_VIDEOS / "big_buck_bunny_0_30.webm"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with av.open(str(path)) as container:
        assert container.duration is not None
        claimed = container.duration / av.time_base
        vstream = container.streams.video[0]
        frame_times = sorted(
            float(p.pts * p.time_base) for p in container.demux(vstream) if p.pts is not None
        )
    analysis = PyAVVideoAnalyzer(speech).analyze(path, tmp_path / "kf")
    assert analysis.duration == pytest.approx(claimed, abs=0.5)
    assert_tiles(analysis)
    assert len(analysis.clips) >= 2  # the opening has hard cuts
    # Cited times are real: every inner boundary is the timestamp of a frame.
    for clip in analysis.clips[1:]:
        assert min(abs(clip.t_start - t) for t in frame_times) < 1e-6
    for clip in analysis.clips:
        assert clip.keyframes
        for kf in clip.keyframes:
            with Image.open(kf) as img:
                assert max(img.size) == 384


# --- the parts ------------------------------------------------------------------------


def test_recognizer_without_model_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model\.bin"):
        SpeechRecognizer(tmp_path).load()


@needs_espeak
def test_recognizer_timestamps(speech: SpeechRecognizer) -> None:
    track = soundtrack(8.0, speech_at=4.0)
    audio = np.interp(
        np.arange(0, len(track), AUDIO_RATE / 16_000), np.arange(len(track)), track
    ).astype(np.float32)
    segments = speech.transcribe(audio)
    assert segments and all(isinstance(s, Segment) for s in segments)
    assert "meeting" in " ".join(s.text for s in segments).lower()
    assert 3.0 <= segments[0].start <= 5.0 < segments[-1].end
    assert speech.transcribe(np.zeros(0, np.float32)) == []


@pytest.mark.parametrize(
    "kwargs",
    [{"min_clip": 0}, {"min_clip": 30, "max_clip": 20}, {"scene_threshold": 1.5}],
)
def test_bad_settings_fail_early(kwargs: dict[str, float]) -> None:
    make: Callable[..., PyAVVideoAnalyzer] = PyAVVideoAnalyzer
    with pytest.raises(ValueError):
        make(None, **kwargs)
