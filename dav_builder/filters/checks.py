"""Model-free checks: what real captures get wrong, found without any weights.

Each function takes grey frames (uint8 or float, 0..255) and planar depth at the same size, and
returns a score where 0 means clean and larger means worse; the stage compares it with a
threshold.  Each docstring says how frames are combined: the maximum where one bad frame or
window is evidence enough (frozen depth, overlays), the median where a single frame's fit is
noisy (edge misalignment, lag).

All of them rest on one observation: object boundaries are depth discontinuities, and in a
correct capture every depth discontinuity lies on a colour edge of the same frame.

- :func:`edge_misalignment`: how much closer depth discontinuities come to colour edges when
  shifted by the best few pixels than where they are (chamfer distance; depth from another camera).
- :func:`depth_lag`: how much better depth t's boundaries match the colour gradients of the
  *previous* RGB frame than its own (depth that lags by a frame lines up with the previous image).
- :func:`frozen_depth`: share of frame pairs whose depth does not change while the RGB does.
- :func:`static_overlay`: share of the image made of colour corners that stay put while the scene
  under them moves (predicted from depth and camera poses): a HUD drawn on RGB but not in depth.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Largest shift, in pixels at the check size, that edge alignment is tested over.
MAX_SHIFT = 6
#: Frames with fewer depth-edge pixels say too little about alignment and are skipped.
MIN_EDGE_PIXELS = 60


def rgb_edges(grey: np.ndarray) -> np.ndarray:
    """Binary colour edges (Canny on a lightly smoothed grey image)."""
    g = cv2.GaussianBlur(np.asarray(grey, np.float32), (3, 3), 0).clip(0, 255).astype(np.uint8)
    return cv2.Canny(g, 10, 30) > 0


#: A log-depth step counts as an occlusion boundary when it is this many times larger than the
#: steps on either side of it (a steep but continuous surface, e.g. a floor near the horizon, is not).
SLOPE_RATIO = 4.0
OCCLUSION_JUMP = 0.10
CHAMFER_CAP = 4.0


#: Grey levels (0..255) by which the colour must differ across the sky's outline for the outline
#: to count: grey sky meeting grey ground shows no colour edge to align with.
OUTLINE_CONTRAST = 20.0


def outline_contrast(grey: np.ndarray, valid: np.ndarray, band: int = 4) -> float:
    """Difference of the median grey levels in the bands ``band`` pixels wide on either side of
    the outline of ``valid`` (0 when either side is empty)."""
    kernel = np.ones((2 * band + 1, 2 * band + 1), np.uint8)
    inner = valid & (cv2.dilate((~valid).astype(np.uint8), kernel) > 0)
    outer = ~valid & (cv2.dilate(valid.astype(np.uint8), kernel) > 0)
    if not inner.any() or not outer.any():
        return 0.0
    return abs(float(np.median(grey[inner])) - float(np.median(grey[outer])))


def occlusion_edges(depth: np.ndarray, border: int = MAX_SHIFT, grey: np.ndarray | None = None) -> np.ndarray:
    """Pixels on either side of a depth *discontinuity* (a relative jump above
    :data:`OCCLUSION_JUMP` that is also :data:`SLOPE_RATIO` times larger than its neighbours'
    steps), and on either side of the outline of pixels without depth (the sky's); with ``grey``,
    the outline only where the colour differs across it (:data:`OUTLINE_CONTRAST`)."""
    valid = depth > 0
    logd = np.log(np.where(valid, depth, 1.0))
    out = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        a = np.abs(np.diff(logd, axis=axis))
        both = np.logical_and(np.delete(valid, -1, axis=axis), np.delete(valid, 0, axis=axis))
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 1)
        ap = np.pad(a, pad, mode="edge")
        n = a.shape[axis]
        prev = np.take(ap, np.arange(0, n), axis=axis)
        nxt = np.take(ap, np.arange(2, n + 2), axis=axis)
        e = both & (a > OCCLUSION_JUMP) & (a > SLOPE_RATIO * np.maximum(prev, nxt) + 1e-4)
        if axis == 1:
            out[:, 1:] |= e
            out[:, :-1] |= e
        else:
            out[1:, :] |= e
            out[:-1, :] |= e
    # where depth ends (sky, nothing drawn) is a boundary too: mark both sides of it, as for a
    # discontinuity, so that a colour edge found on either side of the outline lies on it
    hole = ~valid
    if grey is None or outline_contrast(np.asarray(grey, np.float32), valid) >= OUTLINE_CONTRAST:
        out |= (valid & _touches(hole)) | (hole & _touches(valid))
    return _clear_border(out, border)


def _clear_border(a: np.ndarray, m: int) -> np.ndarray:
    """``a`` (..., h, w) with its outer ``m`` rows and columns set to zero (in place)."""
    if m > 0:
        a[..., :m, :], a[..., -m:, :], a[..., :, :m], a[..., :, -m:] = 0, 0, 0, 0
    return a


def _touches(mask: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour in ``mask``."""
    out = np.zeros_like(mask)
    out[1:] |= mask[:-1]
    out[:-1] |= mask[1:]
    out[:, 1:] |= mask[:, :-1]
    out[:, :-1] |= mask[:, 1:]
    return out


def _chamfer(dist: np.ndarray, ys: np.ndarray, xs: np.ndarray, dy: int, dx: int) -> float:
    return float(np.minimum(dist[ys + dy, xs + dx], CHAMFER_CAP).mean())


def chamfer_gap(grey: np.ndarray, depth: np.ndarray) -> float:
    """How much closer the depth discontinuities come to colour edges after the best small shift
    than where they are (mean distance in pixels, capped; NaN when the frame has too few).

    0 for a correct capture; depth rendered from another camera fits better shifted."""
    dedge = occlusion_edges(depth, grey=grey)
    ys, xs = np.nonzero(dedge)
    if ys.size < MIN_EDGE_PIXELS // 4:
        return float("nan")
    dist = cv2.distanceTransform((~rgb_edges(grey)).astype(np.uint8), cv2.DIST_L2, 3)
    zero = _chamfer(dist, ys, xs, 0, 0)
    best = min(_chamfer(dist, ys, xs, dy, dx) for dy in range(-MAX_SHIFT // 2, MAX_SHIFT // 2 + 1)
               for dx in range(-MAX_SHIFT, MAX_SHIFT + 1))
    return zero - best


def edge_misalignment(grey: np.ndarray, depth: np.ndarray) -> float:
    """Median over frames of :func:`chamfer_gap` (pixels at the check size; 0 = aligned).

    The median (not the maximum) because one frame's fit is noisy; a misaligned depth source
    usually lasts many frames.
    """
    gaps = [g for g in (chamfer_gap(g, d) for g, d in zip(grey, depth)) if not np.isnan(g)]
    return float(np.median(gaps)) if gaps else 0.0


def gradient_magnitude(img: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """Sobel gradient magnitude of a lightly smoothed float image."""
    img = cv2.GaussianBlur(np.asarray(img, np.float32), (0, 0), sigma)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


def depth_lag(grey_prev: np.ndarray, grey: np.ndarray, depth: np.ndarray) -> float:
    """Median over moving pairs of how much better depth t's boundaries match the colour gradients
    of RGB t-1 than those of RGB t (cosine similarity of gradient magnitudes on the strongest 5 %
    of log-depth gradients; 0 or below for a correct capture).

    Continuous gradients, not binary edges, because the lag moves edges by under a pixel at the
    check size when the camera walks; ``depth`` should be area-averaged, not nearest-sampled.
    """
    gains = []
    for gp, g, d in zip(grey_prev, grey, depth):
        if np.abs(gp.astype(np.float32) - g.astype(np.float32)).mean() < 0.5:
            continue  # the image did not change: no evidence either way
        dmag = _clear_border(gradient_magnitude(np.log(np.where(d > 0, d, 1000.0))), MAX_SHIFT // 2)
        strong = dmag > np.percentile(dmag, 95)
        if strong.sum() < MIN_EDGE_PIXELS // 3:
            continue
        w = dmag[strong]
        gains.append(_cosine(w, gradient_magnitude(gp)[strong]) - _cosine(w, gradient_magnitude(g)[strong]))
    return float(np.median(gains)) if gains else 0.0


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


#: Corner strength (minimum eigenvalue of the 3x3 structure tensor) that counts as a corner.
CORNER_MIN = 200.0
OVERLAY_WINDOW = 4
OVERLAY_STILL = 2.0
OVERLAY_MOTION_PX = 1.5
OVERLAY_BORDER = 2


def predicted_motion(depth: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray,
                     pose_b: np.ndarray) -> np.ndarray:
    """Pixels (h, w, sub-pixel) each scene point of frame a moves by in frame b, from depth,
    intrinsics and camera poses (a static scene); NaN where there is no depth or the point goes
    behind the camera."""
    from dav_builder.model.metrics import project

    h, w = depth.shape
    u, v, z = project(depth.astype(np.float64), K_a, K_b, pose_a, pose_b)
    ys, xs = np.mgrid[0:h, 0:w]
    with np.errstate(invalid="ignore"):
        motion = np.hypot(u - xs, v - ys)
    motion[(depth <= 0) | ~(z > 0)] = np.nan
    return motion


def surely_moving(motion: np.ndarray, min_px: float = OVERLAY_MOTION_PX) -> np.ndarray:
    """Pixels whose whole 3x3 neighbourhood is predicted to move by more than ``min_px``.

    The neighbourhood matters: at a silhouette the depth sample can belong to the other side of
    the boundary than the colour corner, and would predict motion for a corner that does not move.
    """
    m = np.nan_to_num(motion, nan=0.0).astype(np.float32)
    return cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) > min_px


def static_overlay(grey: np.ndarray, depth: np.ndarray, K: np.ndarray | None, cam_to_world: np.ndarray | None) -> float:
    """Max over windows of consecutive frames of the share of the image made of colour *corners*
    that stay put while the scene under them moves (a HUD, subtitles, a watermark).

    The scene's motion is predicted (sub-pixel) from depth, intrinsics (at this size) and camera
    poses, and must exceed :data:`OVERLAY_MOTION_PX` over the whole 3x3 neighbourhood, so a slow
    or still camera is not mistaken for an overlay; corners rather than edges because an
    edge sliding along itself looks still (the aperture problem).  Without poses, pixels whose
    depth changes by more than 1 % count as moving.
    """
    T = len(grey)
    W = min(OVERLAY_WINDOW, T)
    if T < 2:
        return 0.0
    # an edge leaving the image makes a "corner" with the (reflected) border, which stays put
    # while the edge slides along itself: no corner is trusted within OVERLAY_BORDER pixels of it
    corners = _clear_border(np.stack([cv2.cornerMinEigenVal(np.asarray(g, np.float32), 3, 3) for g in grey]),
                            OVERLAY_BORDER)
    worst = 0.0
    for a in range(0, T - W + 1):
        b = a + W - 1
        if cam_to_world is not None and K is not None:
            moving = surely_moving(predicted_motion(depth[a], K[a], K[b], cam_to_world[a], cam_to_world[b]))
        else:
            d = depth[a : b + 1]
            valid = (d > 0).all(0)
            logd = np.log(np.where(d > 0, d, 1.0))
            moving = valid & ((logd.max(0) - logd.min(0)) > 0.01)
        g = grey[a : b + 1].astype(np.float32)
        still = (g.max(0) - g.min(0)) < OVERLAY_STILL
        strong = corners[a : b + 1].min(0) > CORNER_MIN
        worst = max(worst, float((still & strong & moving).mean()))
    return worst
