"""Scene cuts and keyframe candidates, found in one pass over the decoded frames.

A frame is *sampled* every ``1 / sample_fps`` seconds and reduced to a 96-pixel
thumbnail, whose HSV colour histogram is compared with the previous sample's. A large
distance is a cut. The frames decoded between the two samples are kept (as references,
not copies), so a cut is then placed on its exact frame by a binary search over them:
the cut is the first frame that looks more like the new scene than the old one. Every
time is therefore a frame's presentation time, counted from the container's start.
Meanwhile the sharpest sampled frame of every few seconds of a scene is kept as a
JPEG: the keyframe candidates ``ingest/video/timeline.py`` chooses from.
"""

from __future__ import annotations

import io
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image

if TYPE_CHECKING:
    from av.video.frame import VideoFrame

_THUMB_SIDE = 96  # scene signatures: enough for colour layout, cheap to convert
TIME_EPS = 1e-3
"""Frame times closer than this (seconds) are the same instant."""


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
class Candidate:
    """The sharpest sampled frame of a few seconds of one scene, as JPEG bytes."""

    time: float
    sharpness: float
    jpeg: bytes


class SceneTracker:
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
        self.candidates: list[Candidate] = []
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
        if t + TIME_EPS < self._next_sample:
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
        self.candidates.append(Candidate(t, sharpness, buffer.getvalue()))
        self._best = None
        self.keyframe_seconds += time.perf_counter() - began

    def finish(self) -> None:
        self._close_bucket()
        self._pending.clear()
