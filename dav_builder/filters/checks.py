"""Model-free checks: what real captures get wrong, found without any weights.

Each function takes grey frames and depth at the same (reduced) size and returns a score where
0 means clean and larger means worse; the stage compares it with a threshold.

- :func:`edge_misalignment`: depth edges should sit on RGB edges.  The cross-correlation of the
  two gradient maps peaks at zero shift for aligned frames and elsewhere when depth was rendered
  from another camera; the score is how much correlation is lost at zero shift.
- :func:`depth_lag`: depth that lags by a frame lines up better with the previous RGB frame.
- :func:`frozen_depth`: share of frame pairs whose depth stays put while the RGB moves.
- :func:`static_overlay`: share of pixels with sharp RGB edges that stay fixed on screen while
  the depth underneath changes: a HUD drawn on RGB but not in depth.
"""

from __future__ import annotations

import cv2
import numpy as np

_EPS = 1e-6


def grad_mag(img: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    return np.sqrt(gx * gx + gy * gy)


def depth_grad(depth: np.ndarray) -> np.ndarray:
    """Gradient magnitude of log depth, zero on and next to invalid pixels."""
    valid = depth > 0
    logd = np.where(valid, np.log(np.maximum(depth, _EPS)), 0.0).astype(np.float32)
    g = grad_mag(logd)
    ok = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    return np.where(ok, g, 0.0)


def _norm(g: np.ndarray) -> np.ndarray:
    return g / (float(g.mean()) + _EPS)


def _corr(a: np.ndarray, b: np.ndarray, dy: int, dx: int, m: int) -> float:
    h, w = a.shape
    return float((a[m : h - m, m : w - m] * b[m + dy : h - m + dy, m + dx : w - m + dx]).mean())


def edge_misalignment(grey: np.ndarray, depth: np.ndarray, max_shift: int = 3) -> float:
    """1 - corr(0) / max over shifts of corr(shift), averaged over frames (0 = aligned)."""
    scores = []
    for g, d in zip(grey, depth):
        a, b = _norm(grad_mag(g.astype(np.float32))), _norm(depth_grad(d))
        if float(b.max()) <= 0:
            continue
        m = max_shift
        c = {(dy, dx): _corr(a, b, dy, dx, m) for dy in range(-m, m + 1) for dx in range(-m, m + 1)}
        best = max(c.values())
        if best > _EPS:
            scores.append(1.0 - c[(0, 0)] / best)
    return float(np.median(scores)) if scores else 0.0


def depth_lag(grey_prev: np.ndarray, grey: np.ndarray, depth: np.ndarray) -> float:
    """How much better depth t matches RGB t-1 than RGB t (relative; > 0 suggests a lag)."""
    gains = []
    for gp, g, d in zip(grey_prev, grey, depth):
        b = _norm(depth_grad(d))
        if float(b.max()) <= 0:
            continue
        same = float((_norm(grad_mag(g.astype(np.float32))) * b).mean())
        prev = float((_norm(grad_mag(gp.astype(np.float32))) * b).mean())
        if np.abs(gp.astype(np.float32) - g.astype(np.float32)).mean() < 0.5:
            continue  # the camera did not move: no evidence either way
        gains.append((prev - same) / max(same, _EPS))
    return float(np.median(gains)) if gains else 0.0


def frozen_depth(
    grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray,
    rgb_min_change: float = 1.0, min_changed: float = 0.002,
) -> float:
    """Share of (t-1, t) pairs whose RGB changes by > ``rgb_min_change`` grey levels on average
    while fewer than ``min_changed`` of the valid depth pixels change by more than 0.1 %.

    Counting changed pixels (not a median) matters: a camera moving over a ground plane leaves
    most ground pixels at the same depth, yet objects and walls change.
    """
    frozen = moving = 0
    for gp, g, dp, d in zip(grey_prev, grey, depth_prev, depth):
        if np.abs(g.astype(np.float32) - gp.astype(np.float32)).mean() <= rgb_min_change:
            continue
        moving += 1
        valid = (d > 0) & (dp > 0)
        if not valid.any():
            continue
        changed = float((np.abs(np.log(d[valid]) - np.log(dp[valid])) > 1e-3).mean())
        frozen += changed < min_changed
    return frozen / moving if moving else 0.0


def static_overlay(grey: np.ndarray, depth: np.ndarray, rgb_static: float = 2.0, depth_moving: float = 0.02) -> float:
    """Share of pixels whose RGB is static with a sharp edge while the depth there changes."""
    if len(grey) < 3:
        return 0.0
    g = grey.astype(np.float32)
    static = g.std(axis=0) < rgb_static
    edges = grad_mag(g.mean(axis=0)) > 40.0
    valid = (depth > 0).all(axis=0)
    d = np.log(np.maximum(depth, _EPS))
    moving = valid & ((d.max(axis=0) - d.min(axis=0)) > depth_moving)
    if moving.mean() < 0.2:  # the scene hardly moves: a static RGB edge says nothing
        return 0.0
    return float((static & edges & moving).mean())
