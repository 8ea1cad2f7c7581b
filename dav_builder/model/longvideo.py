"""Depth for videos of any length, in memory bounded by the window.

1. Keyframes every ``stride = window - 1`` frames, plus the last frame, are predicted
   *together* with their true frame indices (RoPE sees the real gaps), so they share one scale.
   When there are more keyframes than fit in a window, the keyframe sequence is itself treated
   as a long video (recursively), so any length works.
2. Each gap between consecutive keyframes (``window`` frames including both ends) is filled by
   the interpolation model conditioned on the two keyframe depths; windows meet only at
   keyframes, where the two estimates are averaged.  No frame is dropped at the start or end.

Without an interpolation model, windows overlap by ``overlap`` frames and each window is
aligned to the previous one by least squares on the shared frames, then blended.

Frames are given by a callable ``load(indices) -> uint8 (n, H, W, 3)`` and results are yielded
window by window, so a 100k-frame video never sits in memory; only keyframe depths (one per
``window - 1`` frames) are kept.
"""

from __future__ import annotations

from typing import Callable, Iterator

import numpy as np

from dav_builder.model.metrics import fit_scale_shift

Predict = Callable[[np.ndarray, list[int]], np.ndarray]
Interpolate = Callable[[np.ndarray, list[int], np.ndarray, np.ndarray], np.ndarray]
Loader = Callable[[list[int]], np.ndarray]


def keyframe_positions(n: int, window: int) -> list[int]:
    stride = max(1, window - 1)
    keys = list(range(0, n, stride))
    if keys[-1] != n - 1:
        keys.append(n - 1)
    return keys


def predict_keyframes(load: Loader, indices: list[int], window: int, predict: Predict,
                      interpolate: Interpolate | None) -> np.ndarray:
    """Depth (disparity in [0, 1]) of the frames ``indices``, all in one consistent scale."""
    if len(indices) <= window:
        return predict(load(indices), indices)
    out: np.ndarray | None = None
    for pos, depth in stream(load, indices, window, predict, interpolate):
        if out is None:  # sized by the first window (no extra frame load)
            out = np.zeros((len(indices),) + depth.shape[1:], np.float32)
        out[pos] = depth
    assert out is not None
    return out


def stream(load: Loader, indices: list[int], window: int, predict: Predict,
           interpolate: Interpolate | None, overlap: int = 4) -> Iterator[tuple[list[int], np.ndarray]]:
    """Yield (positions in ``indices``, depth) window by window, covering every frame once."""
    n = len(indices)
    if n <= window:
        yield list(range(n)), predict(load(indices), indices)
        return
    if interpolate is not None:
        keys = keyframe_positions(n, window)
        key_depth = predict_keyframes(load, [indices[k] for k in keys], window, predict, interpolate)
        for j in range(len(keys) - 1):
            a, b = keys[j], keys[j + 1]
            pos = list(range(a, b + 1))
            frames = load([indices[p] for p in pos])
            kd = np.zeros((len(pos),) + frames.shape[1:3], np.float32)
            mask = np.zeros(len(pos), bool)
            kd[0], kd[-1], mask[0], mask[-1] = key_depth[j], key_depth[j + 1], True, True
            depth = interpolate(frames, [indices[p] for p in pos], kd, mask)
            depth[0], depth[-1] = key_depth[j], key_depth[j + 1]  # keyframes keep the shared estimate
            # the first window owns its first keyframe; later windows start after the shared one
            yield (pos, depth) if j == 0 else (pos[1:], depth[1:])
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
