"""Model-free checks: what real captures get wrong, found without any weights.

Each function takes grey frames (uint8 or float, 0..255) and planar depth at the same reduced
size, and returns a score where 0 means clean and larger means worse; the stage compares it with
a threshold.  Scores are the *maximum* over the clip's frames or frame pairs, because a defect
may touch only part of a clip, and a clip with any defective frame is a defective clip.

All of them rest on one observation: object boundaries are depth discontinuities, and in a
correct capture every depth discontinuity lies on a colour edge of the same frame.

- :func:`edge_misalignment`: share of depth-discontinuity pixels that find a colour edge at
  the best small shift but not at zero shift (depth from another camera).
- :func:`depth_lag`: the same share measured against the *previous* RGB frame minus against the
  frame's own RGB (depth that lags by a frame lines up with the previous image).
- :func:`frozen_depth`: share of frame pairs whose depth does not change while the RGB does.
- :func:`static_overlay`: share of changing-depth pixels that sit on colour edges which do not
  move between frames: a HUD drawn on RGB but not in depth.
"""

from __future__ import annotations

import cv2
import numpy as np

_EPS = 1e-6
#: A relative depth jump between neighbours larger than this is an object boundary.
DEPTH_JUMP = 0.08
MAX_SHIFT = 6
#: Frames with fewer depth-edge pixels say too little about alignment and are skipped.
MIN_EDGE_PIXELS = 60


def rgb_edges(grey: np.ndarray) -> np.ndarray:
    """Binary colour edges (Canny on a lightly smoothed grey image)."""
    g = cv2.GaussianBlur(np.asarray(grey, np.float32), (3, 3), 0).clip(0, 255).astype(np.uint8)
    return cv2.Canny(g, 40, 100) > 0


def depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels next to a relative depth jump above :data:`DEPTH_JUMP` (both sides valid)."""
    valid = depth > 0
    logd = np.log(np.where(valid, depth, 1.0))
    out = np.zeros(depth.shape, bool)
    dx = np.abs(np.diff(logd, axis=1)) > DEPTH_JUMP
    dx &= valid[:, 1:] & valid[:, :-1]
    dy = np.abs(np.diff(logd, axis=0)) > DEPTH_JUMP
    dy &= valid[1:, :] & valid[:-1, :]
    out[:, 1:] |= dx
    out[:, :-1] |= dx
    out[1:, :] |= dy
    out[:-1, :] |= dy
    # drop a 1-pixel frame border where shifted comparisons are undefined
    out[:MAX_SHIFT], out[-MAX_SHIFT:], out[:, :MAX_SHIFT], out[:, -MAX_SHIFT:] = False, False, False, False
    return out


def _hit_rate(near_edge: np.ndarray, dedge: np.ndarray, dy: int, dx: int) -> float:
    """Share of depth-edge pixels that land on (dilated) colour edges after shifting by (dy, dx)."""
    ys, xs = np.nonzero(dedge)
    if ys.size == 0:
        return float("nan")
    return float(near_edge[ys + dy, xs + dx].mean())


def _alignment_gap(grey: np.ndarray, depth: np.ndarray) -> tuple[float, int]:
    """(best hit rate over shifts - hit rate at zero shift, number of depth-edge pixels)."""
    dedge = depth_edges(depth)
    n = int(dedge.sum())
    if n < MIN_EDGE_PIXELS:
        return float("nan"), n
    near = cv2.dilate(rgb_edges(grey).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    rates = {
        (dy, dx): _hit_rate(near, dedge, dy, dx)
        for dy in range(-MAX_SHIFT, MAX_SHIFT + 1, 2)
        for dx in range(-MAX_SHIFT, MAX_SHIFT + 1, 1)
    }
    rates[(0, 0)] = _hit_rate(near, dedge, 0, 0)
    return max(rates.values()) - rates[(0, 0)], n


def edge_misalignment(grey: np.ndarray, depth: np.ndarray) -> float:
    """Median over frames of the hit rate lost at zero shift (0 = depth edges sit on colour edges).

    The median (not the maximum) because a single frame's hit rates are noisy; a misaligned
    depth source usually lasts many frames.
    """
    gaps = [g for g in (_alignment_gap(g, d)[0] for g, d in zip(grey, depth)) if not np.isnan(g)]
    return float(np.median(gaps)) if gaps else 0.0


def _hit_zero(grey: np.ndarray, dedge: np.ndarray) -> float:
    near = cv2.dilate(rgb_edges(grey).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return _hit_rate(near, dedge, 0, 0)


def depth_lag(grey_prev: np.ndarray, grey: np.ndarray, depth: np.ndarray) -> float:
    """Max over pairs of how much better depth t lines up with RGB t-1 than with RGB t."""
    gains = []
    for gp, g, d in zip(grey_prev, grey, depth):
        if np.abs(gp.astype(np.float32) - g.astype(np.float32)).mean() < 0.5:
            continue  # the image did not change: no evidence either way
        dedge = depth_edges(d)
        if dedge.sum() < MIN_EDGE_PIXELS:
            continue
        gains.append(_hit_zero(gp, dedge) - _hit_zero(g, dedge))
    return float(max(gains)) if gains else 0.0


def frozen_depth(
    grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray,
    rgb_min_change: float = 0.2, min_changed: float = 1e-4,
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


def static_overlay(grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray) -> float:
    """Max over pairs of the share of image pixels that are colour-edge pixels unchanged between
    the two frames while the depth under them changes (a HUD, subtitles, a watermark)."""
    worst = 0.0
    for gp, g, dp, d in zip(grey_prev, grey, depth_prev, depth):
        valid = (d > 0) & (dp > 0)
        dchange = np.zeros(d.shape, bool)
        dchange[valid] = np.abs(np.log(d[valid]) - np.log(dp[valid])) > 0.01
        if dchange.mean() < 0.2:
            continue  # the camera hardly moved: static edges are expected
        still = np.abs(g.astype(np.float32) - gp.astype(np.float32)) < 1.0
        edges = rgb_edges(g) & rgb_edges(gp)
        worst = max(worst, float((still & edges & dchange).mean()))
    return worst
