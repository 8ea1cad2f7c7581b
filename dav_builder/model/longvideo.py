"""Long videos as the paper does them: joint keyframes, then interpolation windows blended.

The plan (pure functions of the frame count and the two models' windows; the predictor runs it):

1. Interpolation windows of ``interp_window`` *consecutive* frames (the released interpolator:
   18), one every ``interp_window - overlap`` frames (released pipeline: overlap 6, so every 12),
   plus one window ending at the last frame, so no frame is dropped (the released pipeline drops
   the first frame and every frame after its last keyframe).
2. The keyframes are both ends of every window.  They are predicted *jointly* by the video model
   with their true frame indices as RoPE positions: in one call while they fit in its window (the
   released pipeline's cap: 32 keyframes, 192 frames), beyond that in calls of ``video_window``
   keyframes that overlap by ``key_overlap`` keyframes, their latents blended linearly over the
   shared keyframes (the paper's cap no longer limits the length).
3. Each window is filled by the interpolator conditioned on its two keyframe *latents* (passed as
   they are, never decoded and encoded again); a window contributes its interior frames, and the
   interiors of neighbouring windows are blended linearly where they overlap (weights 0, 1/3, 2/3, 1
   of the later window for the released overlap).  The first and last frame, which are in no
   interior, take their keyframe latent.

Every frame's weights sum to 1 (:func:`coverage` checks it).  Without an interpolator, or when the
frames are not consecutive (the interpolator is only used at the stride it was trained on),
:func:`aligned_windows` covers the video with overlapping video-model windows aligned by least
squares in disparity.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from dav_builder.model.metrics import fit_scale_shift

Predict = Callable[[np.ndarray, list[int]], np.ndarray]
Loader = Callable[[list[int]], np.ndarray]

RELEASED_OVERLAP = 6
"""Frames shared by neighbouring interpolation windows in the released pipeline (keyframes included)."""


@dataclass(frozen=True)
class Call:
    """One model call: ``frames`` (positions in the video, increasing), and for each frame the weight of
    this call's output in the result (``weights[i]`` for ``frames[i]``; 0 = not used)."""

    frames: tuple[int, ...]
    weights: tuple[float, ...]


@dataclass(frozen=True)
class LongVideoPlan:
    n: int
    keyframes: tuple[int, ...]
    """Positions of the keyframes, increasing."""
    key_calls: tuple[Call, ...]
    """Video-model calls over keyframes: ``frames`` index into ``keyframes``."""
    interp_calls: tuple[Call, ...]
    """Interpolator calls: ``frames`` are consecutive video positions, the first and last are keyframes."""
    from_keyframes: tuple[int, ...]
    """Positions taken straight from their keyframe latent (covered by no window's interior)."""


def windows(n: int, size: int, overlap: int) -> list[tuple[int, int]]:
    """(start, end) inclusive of windows of ``size`` over ``range(n)``, starting every ``size - overlap``,
    the last one ending at ``n - 1``.  A final window that would overlap the one two before it replaces
    the one before it (so a position lies in at most two windows)."""
    if n <= size:
        return [(0, n - 1)]
    step = size - overlap
    if step < 1:
        raise ValueError(f"overlap {overlap} must be smaller than the window {size}")
    out = [(s, s + size - 1) for s in range(0, n - size + 1, step)]
    if out[-1][1] < n - 1:
        last = (n - size, n - 1)
        if len(out) >= 2 and last[0] <= out[-2][1]:
            out.pop()
        out.append(last)
    return out


def _ramp(k: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, k) if k > 1 else np.full(k, 0.5)


def blend_weights(spans: list[tuple[int, int]]) -> list[np.ndarray]:
    """Per span (start, end inclusive), the weight of each of its positions: 1 alone, and a linear ramp
    from the earlier span to the later one (0, ..., 1 for the later) where two consecutive spans overlap."""
    out = [np.ones(e - s + 1) for s, e in spans]
    for j in range(1, len(spans)):
        (s0, e0), (s1, e1) = spans[j - 1], spans[j]
        lo, hi = s1, min(e0, e1)
        if hi < lo:
            continue
        r = _ramp(hi - lo + 1)
        out[j][lo - s1 : hi - s1 + 1] = r
        out[j - 1][lo - s0 : hi - s0 + 1] = 1 - r
    return out


def plan_long_video(n: int, video_window: int, interp_window: int, overlap: int = RELEASED_OVERLAP,
                    key_overlap: int | None = None) -> LongVideoPlan:
    """The keyframe + interpolation plan for ``n`` frames (``n`` > ``video_window``, ``n`` >= ``interp_window``)."""
    if interp_window < 3 or n < interp_window:
        raise ValueError(f"{n} frames cannot be covered by interpolation windows of {interp_window}")
    if not 2 <= overlap <= (interp_window + 1) // 2:
        raise ValueError(f"overlap must be between 2 and {(interp_window + 1) // 2}, got {overlap}")
    wins = windows(n, interp_window, overlap)
    keys = sorted({p for w in wins for p in w})
    interiors = [(s + 1, e - 1) for s, e in wins]
    interp_calls = []
    for (s, e), w in zip(wins, blend_weights(interiors)):
        weights = (0.0,) + tuple(float(x) for x in w) + (0.0,)
        interp_calls.append(Call(tuple(range(s, e + 1)), weights))
    covered = {p for s, e in interiors for p in range(s, e + 1)}
    from_keys = tuple(p for p in keys if p not in covered)
    ko = key_overlap if key_overlap is not None else max(2, video_window // 4)
    groups = windows(len(keys), video_window, ko)
    key_calls = tuple(Call(tuple(range(s, e + 1)), tuple(float(x) for x in w))
                      for (s, e), w in zip(groups, blend_weights(groups)))
    return LongVideoPlan(n, tuple(keys), key_calls, tuple(interp_calls), from_keys)


def coverage(plan: LongVideoPlan) -> np.ndarray:
    """Total weight each frame gets from the plan (1 everywhere for a correct plan)."""
    total = np.zeros(plan.n)
    key_total = np.zeros(len(plan.keyframes))
    for c in plan.key_calls:
        key_total[list(c.frames)] += c.weights
    for c in plan.interp_calls:
        total[list(c.frames)] += c.weights
    for p in plan.from_keyframes:
        total[p] += key_total[plan.keyframes.index(p)]
    return total


def is_consecutive(indices: list[int]) -> bool:
    return all(b - a == 1 for a, b in zip(indices, indices[1:]))


def aligned_windows(load: Loader, indices: list[int], window: int, predict: Predict,
                    overlap: int = 4) -> Iterator[tuple[list[int], np.ndarray]]:
    """Video model only: windows overlapping by ``overlap`` frames, each aligned to the previous one by
    least squares on the shared frames and blended; yields (positions in ``indices``, disparity)."""
    n = len(indices)
    if n <= window:
        yield list(range(n)), predict(load(indices), indices)
        return
    overlap = min(overlap, window // 2)
    prev_tail: np.ndarray | None = None
    start = 0
    while start < n:
        pos = list(range(start, min(start + window, n)))
        depth = predict(load([indices[p] for p in pos]), [indices[p] for p in pos])
        if prev_tail is not None:
            k = len(prev_tail)
            s, t = fit_scale_shift(depth[:k], prev_tail)
            depth = depth * s + t
            w = np.linspace(0, 1, k + 2)[1:-1][:, None, None]
            depth[:k] = (1 - w) * prev_tail + w * depth[:k]
        end = pos[-1] + 1
        if end >= n:
            yield pos, depth  # the blended tail of the previous window comes first
            return
        keep = len(pos) - overlap
        prev_tail = depth[keep:].copy()
        yield pos[:keep], depth[:keep]
        start = pos[keep]
