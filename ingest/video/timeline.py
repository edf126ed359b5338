"""From cuts and speech to clips on the timeline: bounds, keyframes and transcripts.

Scenes shorter than ``min_clip`` are merged into the neighbour they resemble most,
scenes longer than ``max_clip`` are split evenly (on sampled frames); the sharpest
candidate of each part of a clip becomes a keyframe. Each speech segment goes to the
clip holding its midpoint, so no segment is counted twice.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence

from ingest.base import Segment
from ingest.video.scenes import TIME_EPS, Candidate


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


def split_long(bounds: Sequence[float], max_clip: float, snap: Sequence[float]) -> list[float]:
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
                if out[-1] + TIME_EPS < best < end - TIME_EPS and abs(best - point) <= 0.5:
                    point = best
            out.append(point)
        out.append(end)
    return out


def clip_bounds(
    cuts: Sequence[tuple[float, float]],
    duration: float,
    *,
    min_clip: float,
    max_clip: float,
    snap: Sequence[float],
) -> list[float]:
    """The clip bounds of a file, from 0 to ``duration``: the cuts (time, strength)
    inside it, short scenes merged, long ones split on the ``snap`` times."""
    bounds, scores = [0.0], []
    for t, score in sorted(cuts):
        if bounds[-1] + TIME_EPS < t < duration - TIME_EPS:
            bounds.append(t)
            scores.append(score)
    bounds.append(duration)
    bounds, _ = _merge_short(bounds, scores, min_clip, max_clip)
    return split_long(bounds, max_clip, snap)


def pick_keyframes(
    candidates: Sequence[Candidate], start: float, end: float, limit: int
) -> list[Candidate]:
    """The sharpest candidate of each of up to ``limit`` equal parts of the clip.

    One keyframe per ~20 s: more would repeat the same shot. Within a part, a candidate
    nearer its middle wins when sharpness is close (up to a 30 % handicap at the edge).
    """
    inside = [c for c in candidates if start - TIME_EPS <= c.time < end - TIME_EPS]
    if not inside:
        if not candidates:
            return []
        middle = (start + end) / 2
        return [min(candidates, key=lambda c: abs(c.time - middle))]
    count = max(1, min(limit, math.ceil((end - start) / 20.0 - 1e-9)))
    chosen: list[Candidate] = []
    step = (end - start) / count
    for k in range(count):
        lo, hi = start + k * step, start + (k + 1) * step
        part = [c for c in inside if lo <= c.time < hi or (k == count - 1 and c.time >= hi)]
        if not part:
            continue
        middle, half = (lo + hi) / 2, max(step / 2, 1e-6)

        def rank(c: Candidate, middle: float = middle, half: float = half) -> tuple[float, float]:
            off = min(1.0, abs(c.time - middle) / half)
            return (c.sharpness * (1.0 - 0.3 * off), -off)

        chosen.append(max(part, key=rank))
    return chosen or [inside[len(inside) // 2]]


def assign(segments: Sequence[Segment], bounds: Sequence[float]) -> list[list[Segment]]:
    """Each segment to the clip holding its midpoint (the last clip keeps the end)."""
    groups: list[list[Segment]] = [[] for _ in range(len(bounds) - 1)]
    for seg in segments:
        mid = (seg.start + seg.end) / 2
        i = bisect.bisect_right(bounds, mid) - 1
        groups[min(max(i, 0), len(groups) - 1)].append(seg)
    return groups


def transcript_text(segments: Sequence[Segment]) -> str:
    return " ".join(s.text for s in segments)
