"""Model-free checks: what real captures get wrong, found without any weights.

Each function takes grey frames (uint8 or float, 0..255; :func:`static_overlay` RGB ones) and
planar depth at the same size (the pose checks: depth, intrinsics and camera poses), and returns a score where 0 means clean and larger means worse; the stage compares it with a
threshold.  Each docstring says how frames are combined: the maximum where one bad frame or
window is evidence enough (frozen depth, overlays); where a single frame's fit is noisy (edge
misalignment, lag), the score that a few frames (``votes``) all reach, so that a defect lasting
a few frames of a clip still counts while one odd frame does not (a median would need half the
clip).

The image checks rest on one observation: object boundaries are depth discontinuities, and in a
correct capture every depth discontinuity lies on a colour edge of the same frame.  The pose
checks rest on another: in a correct capture of a static scene, one frame's depth carried into
another by the camera poses agrees with that frame's depth.

- :func:`edge_misalignment`: how much closer depth discontinuities come to colour edges when
  displaced as another camera would displace them (a constant shift plus parallax) than where
  they are (chamfer distance; depth from another camera).
- :func:`depth_lag`: how much better the change of depth from frame t-1 to t matches the change
  of RGB a frame *earlier* than the change of RGB at the same time (depth that lags by a frame
  changes when the image changed a frame before).
- :func:`frozen_depth`: share of frame pairs whose depth does not change while the RGB does.
- :func:`static_overlay`: share of the image made of colour corners that stay put while the scene
  under them moves (predicted from depth and camera poses): a HUD drawn on RGB but not in depth
  (on colour frames: a crosshair can have the luminance of the fog behind it).
- :func:`pose_misfit`: how far depth disagrees with the camera poses between frames far apart in
  the clip (median over the image): depth from a camera offset from the RGB camera, depth a frame
  late, frozen depth, seen through the camera's own motion.
- :func:`depth_jump`: a frame pair whose depth disagrees with the camera poses far more than the
  pairs around it: depth that switches to another camera or catches up after freezing or lagging
  (the first or last frames of a defect, which the checks above need several frames to see), a
  cut missed inside a clip, a pose glitch; or a run of up to a few pairs that does (a wrong depth
  buffer for 1 to 4 frames).
- :func:`depthless_content`: share of the image made of content (edges, texture) where the depth
  buffer has nothing and which does not move like the sky (depth from another view, from an
  offset camera whose sky reaches over near objects, a HUD over the sky).
- :func:`dav_builder.filters.parallax.edge_parallax` (a module of its own): depth boundaries that
  sit off the colour steps by a fraction of a pixel in proportion to inverse depth, alike on both
  sides of objects (depth from a camera a few centimetres aside, which :func:`edge_misalignment`'s
  whole-pixel displacements do not resolve).
- :func:`motion_mismatch`: share of the image whose content stays put from one frame to the next
  while its depth, carried by the poses, says it moves: content drawn in RGB without depth of its
  own (a first-person weapon drawn in a pass that skips the depth buffer, a HUD, subtitles).

Depth boundaries count in :func:`edge_misalignment` by how visible they are in the image (fog and
haze hide them), and not where the ground runs into the far plane.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=16)
def _pixel_grid(h: int, w: int, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """``(ys, xs)`` pixel coordinates of an h x w frame (as ``np.mgrid``), made once per size and
    kept read-only: the checks ask for the same frame size thousands of times per build."""
    ys, xs = np.mgrid[0:h, 0:w].astype(dtype)
    ys.flags.writeable = xs.flags.writeable = False
    return ys, xs

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
#: Depth, as a share of the farthest depth in the frame, from which the outline of the pixels
#: without depth is the far plane cutting the scene off (ground running to the horizon), not an
#: object's silhouette against the sky: not an edge to align with ...
FAR_OUTLINE = 0.6
#: ... where depth recedes steeply toward the outline (log depth changing by more than this
#: within a pixel: ground seen at a grazing angle), unlike a wall or a roof against the sky.
FAR_SLOPE = 0.02
#: ... or where it is this far (metres): haze flattens a distant outline's contrast, and an
#: outline that far away says little about a camera a few centimetres off.
FAR_OUTLINE_METRES = 60.0


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
        outline = (valid & _touches(hole)) | (hole & _touches(valid))
        if grey is not None and valid.any():
            # where the ground runs to the far plane, depth ends but the image does not: fog or
            # haze fades the ground into the sky, and the colour edge, if any, lies nearer
            k3 = np.ones((3, 3), np.uint8)
            slope = cv2.dilate(logd.astype(np.float32), k3) - cv2.erode(np.where(valid, logd, 1e3).astype(np.float32), k3)
            far = valid & (depth >= FAR_OUTLINE * float(depth[valid].max())) & \
                (((slope > FAR_SLOPE) & (slope < 1e2)) | (depth >= FAR_OUTLINE_METRES))
            outline &= ~cv2.dilate(far.astype(np.uint8), k3).astype(bool)
        out |= outline
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


def _shift_offsets(width: int) -> np.ndarray:
    """Flat-index offsets of every shift tested, as a (dy, dx) grid: up to :data:`MAX_SHIFT`
    pixels sideways and half that vertically; the zero shift is at the grid's centre."""
    dy = np.arange(-(MAX_SHIFT // 2), MAX_SHIFT // 2 + 1)
    dx = np.arange(-MAX_SHIFT, MAX_SHIFT + 1)
    return (dy[:, None] * width + dx[None, :]).ravel()


def _nearness(depth: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Inverse depth at the edge pixels, from 0 (the farthest 2 %) to 1 (the nearest 2 %).  Each
    pixel takes the nearest depth around it: a boundary moves with the surface in front, and the
    sky's side of an outline has no depth of its own (it counts as infinitely far)."""
    inv = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
    inv = cv2.dilate(inv, np.ones((3, 3), np.uint8))[ys, xs]
    lo, hi = np.percentile(inv, [2, 98])
    return np.clip((inv - lo) / max(float(hi - lo), 1e-9), 0.0, 1.0)


#: Shift at the farthest and at the nearest edges, every pair of whole pixels up to MAX_SHIFT.
_FAR, _NEAR = (a.ravel() for a in np.meshgrid(np.arange(-MAX_SHIFT, MAX_SHIFT + 1),
                                               np.arange(-MAX_SHIFT, MAX_SHIFT + 1), indexing="ij"))


def chamfer_gap(grey: np.ndarray, depth: np.ndarray) -> float:
    """How much closer the depth discontinuities come to colour edges after the best small
    displacement than where they are (mean distance in pixels, capped; NaN when the frame has too
    few).  0 for a correct capture; depth rendered from another camera fits better displaced.

    The displacements are those another camera would cause: a constant shift of up to
    :data:`MAX_SHIFT` pixels sideways and half that vertically (a rotated camera), and sideways
    shifts that grow linearly with inverse depth (a camera beside this one: parallax), with every
    pair of whole-pixel shifts at the farthest and nearest edges and up to a pixel vertically.  A
    constant shift alone misses a camera that is both moved and turned: the two cancel at some
    depth, and a scene whose edges lie on both sides of that depth fits no single shift.  All
    distances are read in one gather (the edges stay :data:`MAX_SHIFT` pixels inside the image).
    """
    dedge = occlusion_edges(depth, grey=grey)
    ys, xs = np.nonzero(dedge)
    if ys.size < MIN_EDGE_PIXELS // 4:
        return float("nan")
    weight = edge_visibility(np.asarray(grey, np.float32), depth, ys, xs)
    if weight.sum() < MIN_EDGE_PIXELS // 4:
        return float("nan")
    weight = weight / weight.sum()
    dist = cv2.distanceTransform((~rgb_edges(grey)).astype(np.uint8), cv2.DIST_L2, 3)
    np.minimum(dist, CHAMFER_CAP, out=dist)
    w = dist.shape[1]
    rows, cols = MAX_SHIFT + 1, 2 * MAX_SHIFT + 1
    table = dist.ravel()[(ys * w + xs)[:, None] + _shift_offsets(w)[None, :]].reshape(-1, rows, cols)
    zero = float(weight @ table[:, rows // 2, MAX_SHIFT])
    best = float(np.tensordot(weight, table, axes=(0, 0)).min())  # constant shifts
    t = _nearness(depth, ys, xs)
    col = np.rint(_FAR[:, None] + t[None, :] * (_NEAR - _FAR)[:, None]).astype(np.intp) + MAX_SHIFT
    edge = np.arange(ys.size)[None, :]
    for r in range(rows // 2 - 1, rows // 2 + 2):
        best = min(best, float((table[:, r, :][edge, col] @ weight).min()))
    return zero - best


#: Grey-level contrast across a depth boundary (mean of its near side against its far side, over
#: a window wider than any shift tested) at which the boundary counts fully in :func:`chamfer_gap`;
#: a boundary with less counts in proportion (fog, haze, an object the colour of what is behind it).
VISIBLE_CONTRAST = 12.0


def edge_visibility(grey: np.ndarray, depth: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """How visible each depth-boundary pixel (``ys``, ``xs``) is in the image, 0 to 1: the grey
    contrast between the near and the far side of the boundary (split at the mean log depth of the
    pixel's 3x3 neighbourhood's nearest and farthest; pixels without depth are far), over a window
    :data:`MAX_SHIFT` pixels around it, over :data:`VISIBLE_CONTRAST`.

    A window, not the two pixels across the boundary, so that depth from a camera a few pixels
    off still sees the contrast of the boundary it should lie on.  A boundary that fog swallows,
    or between two surfaces of the same colour, says nothing about alignment: it would score the
    capped distance where it is and could come near some other colour edge when displaced.
    """
    h, w = depth.shape
    logd = np.where(depth > 0, np.log(np.maximum(depth, 1e-6)), np.float32(30.0)).astype(np.float32)
    k = np.ones((3, 3), np.uint8)
    split = 0.5 * (cv2.erode(logd, k)[ys, xs] + cv2.dilate(logd, k)[ys, xs])
    r = MAX_SHIFT
    pad_d = np.pad(logd, r, mode="edge")
    pad_g = np.pad(np.asarray(grey, np.float32), r, mode="edge")
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    iy, ix = (ys + r)[:, None] + dy.ravel()[None, :], (xs + r)[:, None] + dx.ravel()[None, :]
    d, g = pad_d[iy, ix], pad_g[iy, ix]
    near = d < split[:, None]
    n_near, n_far = near.sum(1), (~near).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = np.abs((g * near).sum(1) / n_near - (g * ~near).sum(1) / n_far)
    contrast = np.where((n_near > 0) & (n_far > 0), contrast, 0.0)
    return np.clip(contrast / VISIBLE_CONTRAST, 0.0, 1.0)


def kth_largest(values: list[float], k: int) -> float:
    """The ``k``-th largest of ``values`` (NaNs left out): the score that ``k`` frames all reach.
    The smallest when there are fewer than ``k``; 0 when there are none."""
    v = sorted((x for x in values if not np.isnan(x)), reverse=True)
    if not v:
        return 0.0
    return float(v[min(k, len(v)) - 1])


def edge_misalignment(grey: np.ndarray, depth: np.ndarray, votes: int = 3) -> float:
    """The ``votes``-th largest :func:`chamfer_gap` over frames (pixels at the check size; 0 = aligned).

    Not the maximum, because one frame's fit can be off (a colour edge a pixel or two beside a
    depth boundary); not the median, because a defect that lasts a few frames of a clip must count:
    ``votes`` frames must agree.
    """
    return kth_largest([chamfer_gap(g, d) for g, d in zip(grey, depth)], votes)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum()) / den if den > 0 else 0.0


#: Floor on a misfit (1 - cosine) in :func:`lag_gains`, so that a perfect fit does not divide by 0.
LAG_MISFIT_FLOOR = 1e-3
#: Largest change of log depth between two frames under which depth counts as unchanged.
LAG_MIN_DEPTH_CHANGE = 1e-3


def _change(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two frames differ: the absolute difference, lightly smoothed (sub-pixel motion
    shows as a band along each moving edge, which the smoothing makes overlap between frames)."""
    return cv2.GaussianBlur(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)), (5, 5), 1.0)


def lag_evidence(grey_before: np.ndarray, grey_prev: np.ndarray, grey: np.ndarray,
                 depth_prev: np.ndarray, depth: np.ndarray) -> tuple[list[float], list[float]]:
    """Per frame triple (t-2, t-1, t), two measures of whether the change of depth from t-1 to t
    follows the change of RGB from t-2 to t-1 (depth a frame late) rather than from t-1 to t:
    :func:`lag_gains`' and :func:`lag_cover_gains`' (both NaN where a triple has no evidence).
    The change maps are made once for both."""
    gains: list[float] = []
    covers: list[float] = []
    # consecutive triples share frames: triple k's RGB change t-1 -> t is triple k+1's change
    # before, and its depth t is the next depth t-1; those are reused, not computed again
    last: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def log_depth(x: np.ndarray) -> np.ndarray:
        if last is not None and np.array_equal(last[3], x):
            return last[4]
        return np.log(np.where(x > 0, x, 1000.0))

    for gb, gp, g, dp, d in zip(grey_before, grey_prev, grey, depth_prev, depth):
        reuse = last is not None and np.array_equal(last[0], gb) and np.array_equal(last[1], gp)
        before = last[2] if reuse else _change(gb, gp)  # type: ignore[index]
        logd = np.log(np.where(d > 0, d, 1000.0))
        dchange = _change(log_depth(dp), logd)
        now = _change(gp, g)
        last = (gp, g, now, d, logd)
        if dchange.max() < LAG_MIN_DEPTH_CHANGE or not now.any() or not before.any():
            gains.append(float("nan"))
            covers.append(float("nan"))
            continue
        misfit_now = max(1.0 - _cosine(dchange, now), LAG_MISFIT_FLOOR)
        misfit_before = max(1.0 - _cosine(dchange, before), LAG_MISFIT_FLOOR)
        gains.append(float(np.log(misfit_now / misfit_before)))
        covers.append(_cover_gain(dchange, now, before))
    return gains, covers


def lag_gains(grey_before: np.ndarray, grey_prev: np.ndarray, grey: np.ndarray,
              depth_prev: np.ndarray, depth: np.ndarray) -> list[float]:
    """Per frame triple (t-2, t-1, t): how much better the change of depth from t-1 to t matches
    the change of RGB from t-2 to t-1 than the change of RGB from t-1 to t.  The log of the ratio
    of the misfits (1 - cosine similarity of the change maps) to the RGB change t-1 -> t and to
    t-2 -> t-1; below 0 for a correct capture, where depth changes where and when the image
    does; above 0 for depth one frame late, whose change t-1 -> t is the image's change a frame
    earlier.  NaN where depth or either RGB change is nil (a still image, frozen depth: no evidence).

    Changes over time, not the positions of edges in one frame: a lag moves edges by under a
    pixel when the camera walks slowly, but the *regions* that change (a moving object's swept
    band, a parallax band along every boundary) still come a frame late.  A ratio, not a
    difference: under a slow camera both fits are close in absolute terms but not in ratio.
    ``depth`` should be area-averaged, not nearest-sampled.
    """
    return lag_evidence(grey_before, grey_prev, grey, depth_prev, depth)[0]


#: Smoothed log-depth change above which a pixel counts as depth that changed, in
#: :func:`lag_cover_gains`.
LAG_COVER_DEPTH = 0.05
#: Smoothed grey-level change above which a pixel counts as image that changed.
LAG_COVER_RGB = 4.0
#: Fewest pixels of changed depth for a triple to be evidence.
LAG_COVER_MIN_PIXELS = 4
#: Added to both shares left uncovered, so that a fully covered change does not divide by 0.
LAG_COVER_FLOOR = 0.02


#: Regions of changed depth (see :func:`_cover_gain`) a triple needs to be evidence.
LAG_COVER_REGIONS = 2
_K3 = np.ones((3, 3), np.uint8)


def _cover_gain(dchange: np.ndarray, now: np.ndarray, before: np.ndarray) -> float:
    """One triple of :func:`lag_cover_gains`, from its smoothed change maps: the median over the
    separate regions of changed depth (8-connected after a 3x3 dilation, each of at least
    :data:`LAG_COVER_MIN_PIXELS` pixels) of each region's log ratio; NaN with fewer than
    :data:`LAG_COVER_REGIONS` regions.  A lag makes every moving boundary late, while a lone
    boundary can look late by itself: a box's silhouette against fogged ground with a face edge a
    pixel inside it, whose image change a frame earlier lies where the silhouette's depth changes
    now (clean drone shots in fog)."""
    changed = dchange > LAG_COVER_DEPTH
    if np.count_nonzero(changed) < LAG_COVER_MIN_PIXELS * LAG_COVER_REGIONS:
        return float("nan")
    n, labels = cv2.connectedComponents(cv2.dilate(changed.astype(np.uint8), _K3), connectivity=8)
    lab = labels[changed]
    size = np.bincount(lab, minlength=n)
    covered_now = np.bincount(lab, weights=(now[changed] > LAG_COVER_RGB), minlength=n)
    covered_before = np.bincount(lab, weights=(before[changed] > LAG_COVER_RGB), minlength=n)
    keep = size >= LAG_COVER_MIN_PIXELS
    keep[0] = False  # the background label
    if np.count_nonzero(keep) < LAG_COVER_REGIONS:
        return float("nan")
    k = size[keep]
    gains = np.log((1.0 - covered_now[keep] / k + LAG_COVER_FLOOR) / (1.0 - covered_before[keep] / k + LAG_COVER_FLOOR))
    return float(np.median(gains))


def lag_cover_gains(grey_before: np.ndarray, grey_prev: np.ndarray, grey: np.ndarray,
                    depth_prev: np.ndarray, depth: np.ndarray) -> list[float]:
    """Per frame triple (t-2, t-1, t): the log of the ratio of the shares of the pixels where depth
    changed from t-1 to t that the image did *not* change at from t-1 to t and from t-2 to t-1,
    per region of changed depth, the median over the regions (:func:`_cover_gain`: NaN with
    fewer than two).  Below 0 for a correct capture (wherever a boundary moves, depth and image change together),
    above 0 for depth a frame late.

    Only where depth changed counts, which is what :func:`lag_gains`' cosine lacks: an image edge
    with no depth edge behind it (the corner between two shaded faces of a box, a texture) changes
    the image but never the depth, and when such an edge moves by about its distance to the box's
    outline, the image change of the frame before happens to overlap the depth change better.
    Depth that changes where the image cannot show it (grey ground meeting grey fog) leaves both
    shares uncovered alike: no evidence either way.
    """
    return lag_evidence(grey_before, grey_prev, grey, depth_prev, depth)[1]


#: A lag seen by :func:`lag_gains` counts only where :func:`lag_cover_gains` sees one too (its
#: ``votes``-th largest above this).
LAG_COVER_MIN = 0.0


def depth_lag(grey_before: np.ndarray, grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray,
              depth: np.ndarray, votes: int = 3) -> float:
    """The ``votes``-th largest of :func:`lag_gains` over frame triples (0 or below = no lag): a
    lag that lasts a few frames of a clip counts, one odd triple does not.  At most 0 unless the
    ``votes``-th largest of :func:`lag_cover_gains` exceeds :data:`LAG_COVER_MIN`: two tests of
    the same lag that fail on different scenes (the cosine on shaded or textured objects, the
    cover test where the image barely changes) must agree, which leaves out most of the clean
    clips either drops alone (docs/benchmarks.md)."""
    gains, covers = lag_evidence(grey_before, grey_prev, grey, depth_prev, depth)
    score = kth_largest(gains, votes)
    return score if kth_largest(covers, votes) > LAG_COVER_MIN else min(score, 0.0)


#: Share of pixels whose depth, by the camera poses, must change between two frames for the pair
#: to count as moving in :func:`frozen_depth` when the image itself hardly changes.
FROZEN_POSE_CHANGE = 0.05


def pose_depth_change(depth_prev: np.ndarray, K_prev: np.ndarray, K: np.ndarray, pose_prev: np.ndarray,
                      pose: np.ndarray, rel: float = 1e-3) -> float:
    """Share of pixels whose depth should change by more than ``rel`` (relative) from one frame
    to the next, by the camera poses: each pixel of depth t-1 carried into frame t (a static
    scene) against the depth t-1 had where it lands (interpolated in inverse depth, exact on a
    plane), over the pixels that stay in view.  0 for a still camera,
    for one sliding sideways over a wall, and for one moving along a ground plane (its planar
    depth per row does not change)."""
    h, w = depth_prev.shape
    u, v, z = carry(depth_prev, K_prev, K, pose_prev, pose)
    with np.errstate(invalid="ignore"):
        ok = (depth_prev > 0) & (z > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    if not ok.any():
        return 0.0
    mx, my = np.where(ok, u, 0).astype(np.float32), np.where(ok, v, 0).astype(np.float32)
    seen = depth_prev > 0
    # inverse depth is affine across a plane: interpolated, a plane's depth comes out exact
    inv = cv2.remap(np.where(seen, 1.0 / np.where(seen, depth_prev, 1.0), 0.0).astype(np.float32), mx, my, cv2.INTER_LINEAR)
    ok &= (cv2.remap(seen.astype(np.float32), mx, my, cv2.INTER_LINEAR) > 0.999) & (inv > 0)
    if not ok.any():
        return 0.0
    return float((np.abs(np.log(z[ok] * inv[ok])) > np.log1p(rel)).mean())


def image_change(grey_prev: np.ndarray, grey: np.ndarray) -> np.ndarray:
    """Mean absolute grey-level change of each frame pair (n,): how much the image moved."""
    return np.array([float(np.abs(np.asarray(g, np.float32) - np.asarray(gp, np.float32)).mean())
                     for gp, g in zip(grey_prev, grey)])


def frozen_depth(
    grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray,
    K: np.ndarray | None = None, poses: np.ndarray | None = None,
    rgb_min_change: float = 0.2, min_changed: float = 1e-4, change: np.ndarray | None = None,
) -> float:
    """Share of moving (t-1, t) pairs whose depth does not change: fewer than ``min_changed`` of
    the valid depth pixels change by more than 0.1 %.  With intrinsics ``K`` and camera ``poses``
    (n, 2, ...: t-1 and t), a pair is moving when the poses say that at least
    :data:`FROZEN_POSE_CHANGE` of the depth should change: a camera walking past a plain wall
    changes the image by a tenth of a grey level but its depth everywhere, and a camera running
    over open ground changes the image but not the planar depth of the ground.  Without poses, a
    pair is moving when its RGB changes by more than ``rgb_min_change`` grey levels on average.

    Counting changed pixels (not a median) matters: a camera moving over a ground plane leaves
    most ground pixels at the same depth, yet objects and walls change.  ``change`` is
    :func:`image_change` of the pairs when the caller has it already.
    """
    if change is None:
        change = image_change(grey_prev, grey)
    frozen = moving = 0
    for k, (dp, d) in enumerate(zip(depth_prev, depth)):
        if K is not None and poses is not None and np.isfinite(poses[k]).all():
            # the poses decide: a camera running over open ground changes the image but not the
            # planar depth of the ground, and a camera walking past a plain wall the reverse
            if pose_depth_change(dp, K[k][0], K[k][1], poses[k][0], poses[k][1]) < FROZEN_POSE_CHANGE:
                continue
        elif change[k] <= rgb_min_change:
            continue
        moving += 1
        valid = (d > 0) & (dp > 0)
        if not valid.any():
            continue
        changed = float((np.abs(np.log(d[valid]) - np.log(dp[valid])) > 1e-3).mean())
        frozen += changed < min_changed
    return frozen / moving if moving else 0.0


#: Corner strength (minimum eigenvalue of the 3x3 structure tensor, of the strongest colour
#: channel) that counts as a corner in :func:`static_overlay` at ``scoring.pair_side`` pixels.
CORNER_MIN = 1500.0
#: Frames :func:`static_overlay` compares at a time: enough for a slow camera to move the scene,
#: few enough that a HUD shown for a fraction of a clip still fills a window.
OVERLAY_WINDOW = 6
#: A HUD shown for 3 to 5 frames of a clip (subtitles flashing by) fills no window of
#: :data:`OVERLAY_WINDOW` frames, so windows of this many frames are looked at too ...
OVERLAY_BRIEF_WINDOW = 3
#: ... where their share counts divided by this: over 3 frames more of a correct capture stays
#: put by chance (a patch of the scene that the predicted motion overstates).  The largest brief
#: share of a clean clip of the tuning families (seeds 300-323) that no check drops is 13.45
#: times the share that drops a clip (docs/benchmarks.md).
OVERLAY_BRIEF_FACTOR = 14.0
#: Largest change (levels, in every colour channel) of a pixel that stays put over a window.
OVERLAY_STILL = 2.0
OVERLAY_MOTION_PX = 1.5
OVERLAY_BORDER = 2


def predicted_motion(depth: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray,
                     pose_b: np.ndarray, ys: np.ndarray | None = None, xs: np.ndarray | None = None) -> np.ndarray:
    """Pixels (sub-pixel) each scene point of frame a moves by in frame b, from depth, intrinsics
    and camera poses (a static scene), at the pixels ``(ys, xs)`` (integer arrays of one shape;
    every pixel of the frame, h x w, when not given); NaN where there is no depth or the point
    goes behind the camera."""
    from dav_builder.model.metrics import project_points

    if ys is None or xs is None:
        ys, xs = _pixel_grid(*depth.shape, "int64")
    d = depth[ys, xs].astype(np.float64)
    u, v, z = project_points(xs.astype(np.float64), ys.astype(np.float64), d, K_a, K_b, pose_a, pose_b)
    with np.errstate(invalid="ignore"):
        motion = np.hypot(u - xs, v - ys)
    motion[(d <= 0) | ~(z > 0)] = np.nan
    return motion


def surely_moving(depth: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray, pose_b: np.ndarray,
                  idx: np.ndarray, min_px: float = OVERLAY_MOTION_PX) -> np.ndarray:
    """Whether the whole 3x3 neighbourhood of each pixel ``idx`` (flat indices into ``depth``;
    clamped at the border) is predicted to move by more than ``min_px`` (:func:`predicted_motion`;
    no depth counts as not moving).  Only at those pixels, not over the whole frame.

    The neighbourhood matters: at a silhouette the depth sample can belong to the other side of
    the boundary than the colour corner, and would predict motion for a corner that does not move.
    """
    h, w = depth.shape
    y0, x0 = np.divmod(idx, w)
    ys = np.clip(y0[:, None] + np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1]), 0, h - 1)
    xs = np.clip(x0[:, None] + np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1]), 0, w - 1)
    motion = predicted_motion(depth, K_a, K_b, pose_a, pose_b, ys, xs)
    return np.nan_to_num(motion, nan=0.0).astype(np.float32).min(axis=1) > min_px


def _channel_max(x: np.ndarray) -> np.ndarray:
    """Largest value over the last axis (a few channels), without numpy's slow reduction over a
    short inner axis."""
    out = x[..., 0]
    for c in range(1, x.shape[-1]):
        out = np.maximum(out, x[..., c])
    return out


def colour_corners(frame: np.ndarray) -> np.ndarray:
    """Corner strength (:func:`cv2.cornerMinEigenVal`, 3x3) of a grey frame, or of a colour
    frame's strongest channel: a green crosshair over grey fog has almost no contrast in grey
    (the green's luminance is the fog's) and much in each channel."""
    f = np.asarray(frame, np.float32)
    if f.ndim == 2:
        return cv2.cornerMinEigenVal(f, 3, 3)
    return _channel_max(np.dstack([cv2.cornerMinEigenVal(np.ascontiguousarray(f[..., c]), 3, 3)
                                   for c in range(f.shape[2])]))


def static_overlay(frames: np.ndarray, depth: np.ndarray, K: np.ndarray | None, cam_to_world: np.ndarray | None) -> float:
    """Max over windows of consecutive frames of the share of the image made of colour *corners*
    that stay put while the scene under them moves (a HUD, subtitles, a watermark).  Windows of
    :data:`OVERLAY_WINDOW` frames; the whole clip as one window too, where a camera that walks or
    zooms toward the middle of the view (where a crosshair is) moves the scene there by too little
    within a few frames; and windows of :data:`OVERLAY_BRIEF_WINDOW` frames, whose share counts
    divided by :data:`OVERLAY_BRIEF_FACTOR`, for a HUD shown for a few frames only.

    ``frames`` are RGB (T, h, w, 3) or grey (T, h, w).  Colour, at ``scoring.pair_side`` pixels:
    thin HUD lines (a crosshair, a status bar's text) are a pixel wide, and a reduced frame mixes
    them with the moving scene behind, so they no longer stay put; in grey, an overlay whose
    luminance is the scene's has no corners.  A pixel stays put when it changes by under
    :data:`OVERLAY_STILL` levels in every channel over a window of :data:`OVERLAY_WINDOW` frames.

    The scene's motion is predicted (sub-pixel) from depth, intrinsics (at this size) and camera
    poses, and must exceed :data:`OVERLAY_MOTION_PX` over the whole 3x3 neighbourhood, so a slow
    or still camera is not mistaken for an overlay; corners rather than edges because an
    edge sliding along itself looks still (the aperture problem).  Without poses, pixels whose
    depth changes by more than 1 % count as moving.

    With poses, pixels whose depth moves with the camera are left out (:func:`own_depth_map`, for
    every frame pair of the window): a first-person weapon drawn with its own depth (a correct
    capture) stays put in the image while that depth, taken for the scene's, predicts motion; a
    HUD drawn in RGB only lies over the scene's depth and still counts.
    """
    T = len(frames)
    if T < 2:
        return 0.0
    h, w = frames.shape[1:3]
    n = h * w
    flat = frames.reshape(T, n, -1)  # channels last; one channel for grey frames
    posed = cam_to_world is not None and K is not None
    # an edge leaving the image makes a "corner" with the (reflected) border, which stays put
    # while the edge slides along itself: no corner is trusted within OVERLAY_BORDER pixels of it
    inner = _clear_border(np.ones((h, w), bool), OVERLAY_BORDER).ravel()
    corners: dict[int, np.ndarray] = {}  # frame -> corner strength (flat), made only where a window needs it
    own: dict[int, np.ndarray] = {}  # frame pair t -> own_depth_map (flat), likewise

    def corners_at(t: int) -> np.ndarray:
        if t not in corners:
            corners[t] = colour_corners(frames[t]).ravel()
        return corners[t]

    def own_at(t: int) -> np.ndarray:
        if t not in own:
            own[t] = own_depth_map(depth[t], depth[t + 1], K[t], K[t + 1], cam_to_world[t], cam_to_world[t + 1]).ravel()  # type: ignore[index]
        return own[t]
    # The tests of a pixel, cheapest first, each on the pixels the ones before left: the window's
    # first and last frame agree (needed for it to stay put), it is a strong corner in the first
    # frame, it stays put over the window, it is a strong corner in every frame, the scene under
    # it moves, its depth is not its own.
    def share(a: int, b: int, beat: float) -> float:
        # stops as soon as fewer than ``beat`` (a share) of the pixels are left: such a window
        # cannot raise the score
        floor = beat * n
        idx = np.flatnonzero((_channel_max(cv2.absdiff(flat[a], flat[b])) < OVERLAY_STILL) & inner)
        if idx.size > floor:
            idx = idx[corners_at(a)[idx] > CORNER_MIN]
        if idx.size > floor:
            win = flat[a : b + 1, idx]
            hi, lo = win[0].copy(), win[0].copy()
            for f in win[1:]:  # a loop: numpy's reduction over the first axis is several times slower
                np.maximum(hi, f, out=hi)
                np.minimum(lo, f, out=lo)
            idx = idx[_channel_max(hi.astype(np.float32) - lo) < OVERLAY_STILL]
        for t in range(a + 1, b + 1):
            if idx.size <= floor:
                return 0.0
            idx = idx[corners_at(t)[idx] > CORNER_MIN]
        if idx.size <= floor:
            return 0.0
        if posed:
            idx = idx[surely_moving(depth[a], K[a], K[b], cam_to_world[a], cam_to_world[b], idx)]  # type: ignore[index]
            for t in range(a, b):  # depth moving with the camera is not the scene's
                if idx.size <= floor:
                    return 0.0
                idx = idx[~own_at(t)[idx]]
        else:
            d = depth[a : b + 1].reshape(b - a + 1, n)[:, idx]
            logd = np.log(np.where(d > 0, d, 1.0))
            idx = idx[(d > 0).all(0) & ((logd.max(0) - logd.min(0)) > 0.01)]
        return idx.size / n

    W = min(OVERLAY_WINDOW, T)
    worst = 0.0
    for a in range(T - W + 1):
        worst = max(worst, share(a, a + W - 1, worst))
    if T > W:
        worst = max(worst, share(0, T - 1, worst))
    if T > OVERLAY_BRIEF_WINDOW:
        for a in range(T - OVERLAY_BRIEF_WINDOW + 1):
            worst = max(worst, share(a, a + OVERLAY_BRIEF_WINDOW - 1, worst * OVERLAY_BRIEF_FACTOR) / OVERLAY_BRIEF_FACTOR)
    return worst


#: Grey-level range over a (2 * :data:`VOID_MARGIN` + 1)-pixel window above which a pixel is image
#: content (an edge, a texture) in :func:`depthless_content`, not smooth sky or fog.
VOID_CONTENT_RANGE = 8
#: Pixels within this many pixels of any depth are left out of :func:`depthless_content`: an
#: object's silhouette against the sky mixes both, and anti-aliasing spreads it by a pixel.
VOID_MARGIN = 2
#: Grey-level difference between a frame and its neighbour carried as if infinitely far (the
#: smallest within :data:`VOID_SLACK` pixels), above which content without depth does not move like
#: the sky in :func:`depthless_content`.
VOID_SKY_ERROR = 12
#: Pixels of slack in that comparison: thin cloud detail near the horizon, sampled without
#: anti-aliasing, changes by a pixel or so under a zoom.
VOID_SLACK = 2
#: Frames apart that :func:`depthless_content` compares (each frame with the frames this many
#: before it, or after it at the start of a clip): the next frame for a wrong buffer of two frames,
#: and one a few frames away, where a camera that mostly turns has travelled far enough for a
#: room's parallax to exceed the slack.
VOID_GAPS = (1, 4)


def depthless_content(frames: "np.ndarray | list[np.ndarray]", valid: np.ndarray, K: np.ndarray,
                      cam_to_world: np.ndarray) -> float:
    """Largest share, over the frames, of the image made of content (edges, texture) where the depth
    buffer has nothing, that does not move like the sky.

    ``frames`` are uint8, grey (h, w) or RGB (h, w, 3), T of them (made grey only where needed);
    ``valid`` (T, h, w) says where a frame has any depth (a pixel of a reduced frame is valid when
    any capture pixel under it is); ``K`` (T, 3, 3) at this size and
    ``cam_to_world`` (T, 4, 4).  Pixels count that are at least :data:`VOID_MARGIN` pixels from
    any depth, whose grey levels span more than :data:`VOID_CONTENT_RANGE` over that window, and
    that another frame (:data:`VOID_GAPS` frames before, or after at the clip's start) carried into
    this one as if infinitely far (the homography ``K_t R K_n^-1`` of the camera's rotation and
    zoom) does not explain within :data:`VOID_SKY_ERROR` grey levels (and :data:`VOID_SLACK`
    pixels), where that frame has no depth either (a near object crosses the sky by its parallax,
    not as the sky moves); the frame's share is the larger over those frames.

    What it finds: depth from another view altogether (the light's shadow map, a rear or top-down
    camera), where most of the image has no depth under it; depth from an offset camera, whose
    sky reaches over the edges of near objects; a HUD or subtitles over the sky.  Why the sky
    test: a game's sky (clouds, a skybox's mountains) has no depth and may have texture, but it
    is infinitely far, so it moves with the camera's rotation and zoom only; content with parallax
    (a floor, a wall) or none at all while the camera turns (a HUD) does not.  A camera that only
    turns cannot tell the two apart, and such content is not counted; nor is a wrong buffer of a
    single frame between two right ones (its neighbours have depth where it has none).
    """
    T, h, w = valid.shape
    if T < 2:
        return 0.0
    window = np.ones((2 * VOID_MARGIN + 1,) * 2, np.uint8)
    slack = np.ones((2 * VOID_SLACK + 1,) * 2, np.uint8)
    voids: dict[int, np.ndarray] = {}
    greys: dict[int, np.ndarray] = {}

    def grey_at(i: int) -> np.ndarray:
        if i not in greys:
            f = frames[i]
            greys[i] = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) if f.ndim == 3 else f
        return greys[i]

    def void_at(i: int) -> np.ndarray:
        if i not in voids:
            voids[i] = cv2.erode((~valid[i]).astype(np.uint8), window)
        return voids[i]

    worst = 0.0
    for t in range(T):
        if valid[t].all():  # most frames: depth everywhere
            continue
        void = void_at(t)
        if not void.any():
            continue
        g = grey_at(t)
        content = void.astype(bool) & (cv2.subtract(cv2.dilate(g, window), cv2.erode(g, window)) > VOID_CONTENT_RANGE)
        if not content.any():
            continue
        before = [t - gap for gap in VOID_GAPS if t - gap >= 0]
        for n in before or [t + gap for gap in VOID_GAPS if t + gap < T]:
            A, _ = _camera_map(K[n], K[t], cam_to_world[n], cam_to_world[t])
            H = A.astype(np.float64)
            # only where the other frame has no depth either: sky in both frames (a near object
            # moves across the sky by its parallax, and would not be where the sky's motion puts it)
            both = content & (cv2.warpPerspective(void_at(n), H, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0)
            if not both.any():
                continue
            carried = cv2.warpPerspective(grey_at(n), H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            error = cv2.erode(cv2.absdiff(carried, g), slack)
            worst = max(worst, float((both & (error > VOID_SKY_ERROR)).mean()))
    return worst


#: Relative depth difference above which a pixel disagrees with the other frame in :func:`depth_jump`.
JUMP_REL = 0.01
#: Frame pairs with fewer of their pixels seen in both frames say nothing to :func:`pose_misfit`
#: and :func:`depth_jump` (the camera came out of an object, or turned away).
JUMP_MIN_COVISIBLE = 0.25


_CAMERA_MAPS: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}


def _camera_map(K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray, pose_b: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(K_b R K_a^-1, K_b t)`` in float32 for the relative pose of camera a in camera b.  Several
    checks carry the same frame pairs: the result is kept by the exact bytes of the four matrices
    (a few thousand entries at most), so a repeat costs a dictionary lookup, not two inversions."""
    mats = [np.asarray(m) for m in (K_a, K_b, pose_a, pose_b)]
    key = b"|".join(m.dtype.str.encode() + bytes(str(m.shape), "ascii") + m.tobytes() for m in mats)
    hit = _CAMERA_MAPS.get(key)
    if hit is None:
        rel = np.linalg.inv(pose_b) @ pose_a  # camera a -> camera b
        A = (K_b @ rel[:3, :3] @ np.linalg.inv(K_a)).astype(np.float32)
        b = (K_b @ rel[:3, 3]).astype(np.float32)
        A.flags.writeable = b.flags.writeable = False
        if len(_CAMERA_MAPS) >= 4096:
            _CAMERA_MAPS.clear()
        _CAMERA_MAPS[key] = hit = (A, b)
    return hit


def carry(depth_a: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray,
          pose_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel of frame a with its depth, seen from camera b: sub-pixel (u, v) in frame b and
    the depth it has there (float32, h x w; depth <= 0 behind the camera).  The one 3x3 map
    ``K_b R K_a^-1`` and offset ``K_b t`` of the relative pose, applied in float32: a few times
    cheaper than :func:`dav_builder.model.metrics.project`, and as exact as the checks need."""
    h, w = depth_a.shape
    A, b = _camera_map(K_a, K_b, pose_a, pose_b)
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys = np.arange(h, dtype=np.float32)[:, None]
    d = depth_a.astype(np.float32, copy=False)
    z = d * (A[2, 0] * xs + A[2, 1] * ys + A[2, 2]) + b[2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (d * (A[0, 0] * xs + A[0, 1] * ys + A[0, 2]) + b[0]) / z
        v = (d * (A[1, 0] * xs + A[1, 1] * ys + A[1, 2]) + b[1]) / z
    return u, v, z


def _carried_log_error(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
                       pose_a: np.ndarray, pose_b: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """:func:`carried_log_error` before it keeps only the pixels seen in both frames: the mask of
    those pixels (``ok``), the remap coordinates into frame b, and the absolute log-depth
    difference of every pixel (meaningful where ``ok``); None when no pixel lands in frame b."""
    h, w = depth_a.shape
    u, v, z = carry(depth_a, K_a, K_b, pose_a, pose_b)
    with np.errstate(invalid="ignore"):
        ok = (depth_a > 0) & (z > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    if not ok.any():
        return None
    mx = np.where(ok, u, 0).astype(np.float32)
    my = np.where(ok, v, 0).astype(np.float32)
    seen = depth_b > 0
    logb = cv2.remap(np.log(np.where(seen, depth_b, 1.0)).astype(np.float32), mx, my, cv2.INTER_LINEAR)
    ok &= cv2.remap(seen.astype(np.float32), mx, my, cv2.INTER_LINEAR) > 0.999
    return ok, mx, my, np.abs(np.log(np.where(ok, z, 1.0)) - logb)


def carried_log_error(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
                      pose_a: np.ndarray, pose_b: np.ndarray) -> tuple[np.ndarray, float]:
    """Frame a's depth carried into frame b by the camera poses (a static scene), against frame b's
    depth there (interpolated in log depth, only where all four neighbours have depth): the absolute
    log-depth differences of the pixels seen in both, and the share of a's pixels seen in both."""
    carried = _carried_log_error(depth_a, depth_b, K_a, K_b, pose_a, pose_b)
    if carried is None:
        return np.zeros(0, np.float32), 0.0
    ok, _, _, err = carried
    return err[ok], float(ok.mean())


#: Grey levels by which a pixel may fall outside the range of the 3x3 neighbourhood it is carried
#: to in the other frame and still agree with it, in :func:`pair_disagreement` (sub-pixel
#: resampling of a texture stays within the neighbourhood's range).
JUMP_IMAGE_SLACK = 6.0


def image_agrees(grey_a: np.ndarray, grey_b: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Pixels of frame a whose grey level lies within the range of frame b's 3x3 neighbourhood
    where ``(mx, my)`` carries them (with :data:`JUMP_IMAGE_SLACK`): the image agrees with the
    carrying (bool h x w)."""
    a = np.asarray(grey_a, np.float32)
    b = np.asarray(grey_b, np.float32)
    lo = cv2.remap(cv2.erode(b, _K3), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    hi = cv2.remap(cv2.dilate(b, _K3), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return (a >= lo - JUMP_IMAGE_SLACK) & (a <= hi + JUMP_IMAGE_SLACK)


def _both_ways(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
               pose_a: np.ndarray, pose_b: np.ndarray
               ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None:
    """:func:`_carried_log_error` a into b and b into a; None when either way sees fewer than
    :data:`JUMP_MIN_COVISIBLE` of its pixels in both frames (no evidence: the camera came out of an
    object, or turned away)."""
    out = []
    for args in ((depth_a, depth_b, K_a, K_b, pose_a, pose_b), (depth_b, depth_a, K_b, K_a, pose_b, pose_a)):
        carried = _carried_log_error(*args)
        if carried is None or not carried[0].any() or carried[0].mean() < JUMP_MIN_COVISIBLE:
            return None
        out.append(carried)
    return out


def two_way_errors(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
                   pose_a: np.ndarray, pose_b: np.ndarray) -> list[np.ndarray] | None:
    """:func:`carried_log_error` a into b and b into a (the pixels seen in both); None without
    evidence (see :func:`_both_ways`)."""
    ways = _both_ways(depth_a, depth_b, K_a, K_b, pose_a, pose_b)
    return None if ways is None else [err[ok] for ok, _, _, err in ways]


def pair_disagreement(depth_prev: np.ndarray, depth: np.ndarray, K_prev: np.ndarray, K: np.ndarray,
                      pose_prev: np.ndarray, pose: np.ndarray, rel: float = JUMP_REL,
                      grey_prev: np.ndarray | None = None, grey: np.ndarray | None = None) -> float:
    """Share of the pixels seen in both frames whose depth carried by the poses differs by more
    than ``rel`` (relative) from the other frame's: both ways (t-1 into t, t into t-1), the larger;
    NaN without evidence (see :func:`_both_ways`).

    With the grey frames, a pixel counts only where the image agrees with the carrying
    (:func:`image_agrees`): depth that is wrong for its frame disagrees with an image that is
    right, carried by the right frame's depth, while the scene's own events (an object close to
    the camera sliding out of view and the room it hid, a moving object, a camera passing through
    a box's lid) change the image where they change the depth."""
    ways = _both_ways(depth_prev, depth, K_prev, K, pose_prev, pose)
    if ways is None:
        return float("nan")
    greys = [(grey_prev, grey), (grey, grey_prev)] if grey_prev is not None and grey is not None else [None, None]
    worst = 0.0
    for (ok, mx, my, err), pair in zip(ways, greys):
        wrong = ok & (err > rel)
        if pair is not None and wrong.any():
            wrong &= image_agrees(pair[0], pair[1], mx, my)
        worst = max(worst, np.count_nonzero(wrong) / np.count_nonzero(ok))
    return float(worst)


def pose_misfit(depth: np.ndarray, K: np.ndarray, poses: np.ndarray) -> float:
    """How far the depth of frames far apart in a clip disagrees with the camera poses: for the
    pairs first-last, first-middle and middle-last of the frames given (n, h, w, with K (n, 3, 3)
    and poses (n, 4, 4)), carry one frame's depth into the other and take the median of the
    absolute log-depth differences over the pixels seen in both; the smaller of the two ways, the
    largest over the pairs.  0 when no pair has evidence.

    A correct capture of a static scene agrees up to resampling (medians about 1e-4 here); moving
    objects and occlusions are a minority of the pixels and leave the median alone.  Depth from a
    camera offset from the RGB camera disagrees a little more with every frame the camera moves
    (the offset camera's motion is the RGB camera's seen from the offset), depth a frame late by one
    frame of motion, frozen depth by all the motion since it froze: neighbouring frames hardly tell,
    frames half a clip apart do, even on a plain wall where no edge test can.  The smaller way,
    because an object close to the camera in one of the two frames (or a camera passing through a
    wall) makes carrying *that* frame disagree wholesale, while depth from the wrong camera or the
    wrong time disagrees both ways.
    """
    n = len(depth)
    if n < 2:
        return 0.0
    mid = n // 2
    worst = 0.0
    for a, b in sorted({(0, n - 1), (0, mid), (mid, n - 1)}):
        if a == b:
            continue
        errs = two_way_errors(depth[a], depth[b], K[a], K[b], poses[a], poses[b])
        if errs is not None:
            worst = max(worst, min(float(np.median(e)) for e in errs))
    return worst


#: A pair whose image changes this many times more than its neighbours' (mean absolute grey
#: change) is a scene event, not a depth defect, for :func:`depth_jump`.
JUMP_RGB_RATIO = 2.0
#: Longest run of frame pairs that :func:`depth_jump` looks for standing out together (a defect of
#: up to this many frames less one, from its first wrong frame to its last).
JUMP_MAX_RUN = 5


def depth_jump(depth_prev: np.ndarray, depth: np.ndarray, K: np.ndarray, poses: np.ndarray,
               change: np.ndarray | None = None, grey_prev: np.ndarray | None = None,
               grey: np.ndarray | None = None) -> float:
    """The largest *jump* over a clip's frame pairs (t-1, t): how much more of the image disagrees
    with the camera poses (:func:`pair_disagreement`) in this pair than in the pairs before and
    after it (the larger of the two; those given, in order, beside it).  0 when no pair stands out.

    ``K`` and ``poses`` are (n, 2, ...): frames t-1 and t of each pair.  Moving objects, occlusions
    and a floor sampled at a slant disagree with the poses in every pair alike, so only the excess
    over the neighbouring pairs counts: a defect's first or last frame is one pair that stands out,
    which is why a clip that touches a defect for a single frame is still caught.  With the pairs'
    :func:`image_change`, a pair whose image jumps as well (its change :data:`JUMP_RGB_RATIO`
    times its neighbours') is left out: depth and image jumping together is the scene (a camera passing
    through a wall, which the near plane cuts open; a cut), not the depth buffer; such a pair is
    no neighbour to compare with either (its image disagrees, so with the grey frames it counts
    less than its neighbours: a light switched on would make the pairs after it stand out), and
    the run's image is judged against the neighbours left.  A run next to a pair without evidence
    (NaN: the camera came out of an object, or turned away) is not judged.
    With the grey frames of the pairs (``grey_prev``, ``grey``: frames t-1 and t), only pixels
    whose image agrees with the carrying count (see :func:`pair_disagreement`).
    """
    if grey_prev is None or grey is None:
        grey_prev = grey = [None] * len(depth)  # type: ignore[assignment]
    values = [pair_disagreement(dp, d, k[0], k[1], p[0], p[1], grey_prev=gp, grey=g)
              for dp, d, k, p, gp, g in zip(depth_prev, depth, K, poses, grey_prev, grey)]
    return largest_jump(values, change)


def largest_jump(values: list[float], change: np.ndarray | None = None) -> float:
    """:func:`depth_jump`'s score from its pairs' disagreements (``values``, NaN where a pair has
    no evidence) and, optionally, their image changes: the largest excess of a run of 1 to
    :data:`JUMP_MAX_RUN` pairs (its smallest value) over the larger of its neighbours, with the
    image-change rules of :func:`depth_jump`; 0 when no run stands out."""
    n = len(values)
    worst = 0.0
    # a run of `run` pairs that all stand out: a wrong depth frame spoils the pair before and the
    # pair after it, so a defect of f frames is a run of f + 1 pairs; runs of 1 to JUMP_MAX_RUN
    for run in range(1, JUMP_MAX_RUN + 1):
        for i in range(n - run + 1):
            inside = values[i : i + run]
            near = [j for j in (i - 1, i + run) if 0 <= j < n]
            # next to a pair without evidence (the camera came out of an object, or turned away)
            # the scene changes wholesale: nothing to compare with
            if not near or any(np.isnan(values[j]) for j in list(range(i, i + run)) + near):
                continue
            if change is not None:
                inside_change = max(change[i : i + run])
                near = [j for j in near if change[j] <= JUMP_RGB_RATIO * max(inside_change, 1e-3)]
                # the image jumps in the run against the neighbours it is compared with: the scene
                if not near or inside_change > JUMP_RGB_RATIO * max(max(change[j] for j in near), 1e-3):
                    continue
            worst = max(worst, min(inside) - max(values[j] for j in near))
    return worst


#: Smallest predicted motion (pixels at the check size, over the whole 3x3 neighbourhood) at which a
#: pixel can tell "stays put" from "moves with the scene" in :func:`motion_mismatch`.
MISMATCH_MOTION_PX = 2.0
#: Largest residual motion (pixels) of content that counts as staying put: a held weapon sways.
MISMATCH_SWAY_PX = 1
#: Half size of the patches compared (a 5x5 patch).
MISMATCH_PATCH = 2
_PATCH_KERNEL = np.ones((2 * MISMATCH_PATCH + 1,) * 2, np.uint8)
#: Patch contrast (standard deviation, grey levels) below which a patch has nothing to match.
MISMATCH_TEXTURE = 4.0
#: Log-depth difference above which frame a's depth, carried by the poses, always disagrees with frame
#: b's (a moving object, or content drawn with its own depth, such as a weapon that moves with the
#: camera); less disagrees where the surface is not slanted (:func:`static_tolerance`).
MISMATCH_DEPTH = 0.05
#: Log-depth difference above which carried depth disagrees on a surface that faces the camera: a
#: static surface agrees to 0.2-0.4 % (median; 1.2-2 % for nine pixels in ten, most of the rest on
#: slanted ground), a box or a cylinder carried along by the game disagrees by 2-5 %
#: (docs/benchmarks.md).
STATIC_DEPTH_FLOOR = 0.015
#: A pixel counts when staying put explains the next frame this many times better than moving with
#: its depth does.
MISMATCH_RATIO = 3.0
#: Patch difference (mean absolute grey levels) where the depth puts the content, above which the
#: content clearly is not there.
MISMATCH_MIN_ERROR = 6.0
#: Blur (Gaussian sigma, pixels at the check size) and patch difference left after it (grey levels)
#: that content must also show where the depth puts it, in :func:`mismatch_map`: a texture finer
#: than the image's pixels (bricks, a grille at a distance, with no mip-maps) aliases into a new
#: pattern when it moves, which looks like content that is not where the depth puts it; blurred,
#: the pattern is its average and is there.  Content drawn over the scene (a weapon, a HUD) differs
#: from the scene it covers by more than its finest detail.
MISMATCH_SMOOTH_SIGMA = 1.0
MISMATCH_SMOOTH_ERROR = 3.0
#: Share of a patch's image gradient energy that must lie along the predicted motion for
#: :func:`mismatch_map` to tell content that stays put from content that moves: stripes running
#: along the motion look the same moved or not (the aperture problem), and at the end of such
#: stripes, by an occluding edge a pixel off, staying put can seem to explain the next frame best.
MISMATCH_APERTURE = 0.2
#: Frames apart at most, and median scene motion sought, for the pairs of :func:`motion_mismatch`.
MISMATCH_MAX_GAP = 4
MISMATCH_GAP_MOTION_PX = 3.0


def _box(x: np.ndarray) -> np.ndarray:
    k = 2 * MISMATCH_PATCH + 1
    return cv2.blur(x, (k, k), borderType=cv2.BORDER_REPLICATE)


@dataclass(frozen=True)
class Carried:
    """Frame a's pixels carried into frame b by depth and camera poses (a static scene)."""

    inside: np.ndarray
    """Valid depth that lands inside frame b, in front of the camera (bool h x w)."""
    mx: np.ndarray
    my: np.ndarray
    """Remap coordinates into frame b (a pixel's own place where not ``inside``; float32)."""
    xs: np.ndarray
    ys: np.ndarray
    """The pixel grid (float32, read-only)."""
    z: np.ndarray
    """The carried depth in camera b."""
    seen_there: np.ndarray
    """Frame b has depth where the pixel lands (nearest pixel; bool)."""
    log_there: np.ndarray
    """Frame b's log depth where the pixel lands (nearest pixel; 0 where it has none)."""


def carry_into(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
               pose_a: np.ndarray, pose_b: np.ndarray, carried=None) -> Carried:
    """:func:`carry` of frame a into frame b, with what frame b's depth says where each pixel
    lands (for :func:`mismatch_map`, :func:`unexplained_map` and the learned check's inputs).
    ``carried``: :func:`carry`'s result for these frames when the caller has it already."""
    h, w = depth_a.shape
    u, v, z = carry(depth_a, K_a, K_b, pose_a, pose_b) if carried is None else carried
    ys, xs = _pixel_grid(h, w, "float32")
    with np.errstate(invalid="ignore"):
        inside = (depth_a > 0) & (z > 0) & (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1)
    mx = np.where(inside, u, xs).astype(np.float32)
    my = np.where(inside, v, ys).astype(np.float32)
    seen = depth_b > 0
    log_there = cv2.remap(np.log(np.where(seen, depth_b, 1.0)).astype(np.float32), mx, my, cv2.INTER_NEAREST)
    seen_there = cv2.remap(seen.astype(np.uint8), mx, my, cv2.INTER_NEAREST) > 0
    return Carried(inside, mx, my, xs, ys, z, seen_there, log_there)


#: Depth nearer than this (metres) that keeps its value at the same pixel of the other frame (within
#: :data:`CAMERA_SPACE_SAME` in log) is content drawn in the camera's own space, not the static
#: scene (:func:`in_camera_space`).
CAMERA_SPACE_M = 1.0
CAMERA_SPACE_SAME = 0.01
#: Depth nearer than this (metres) says nothing to :func:`unexplained_map`: a camera pressed against
#: a wall sees what the near plane cuts open, which is new content every frame.
NEAR_CLIP_M = 0.3


def in_camera_space(depth_a: np.ndarray, depth_b: np.ndarray) -> np.ndarray:
    """Pixels of frame a whose depth is nearer than :data:`CAMERA_SPACE_M` and the same at the same
    pixel of frame b (bool h x w): a first-person weapon drawn with its own depth, in the camera's
    own space.  Carried by the poses it usually lands elsewhere and disagrees, which is how
    :func:`own_depth_map` finds it; but under a zoom or a turn, or a camera that hardly moves, a
    weapon drawn at each row's fixed distance can land on its own pixels at the same depth and
    pass for the static scene, while its image sways."""
    near = (depth_a > 0) & (depth_a < CAMERA_SPACE_M) & (depth_b > 0)
    if not near.any():
        return near
    with np.errstate(divide="ignore", invalid="ignore"):
        same = np.abs(np.log(np.where(near, depth_a, 1.0)) - np.log(np.where(near, depth_b, 1.0))) < CAMERA_SPACE_SAME
    return near & same


def static_tolerance(depth_b: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Per pixel of frame a, the log-depth difference between its carried depth and frame b's depth
    where it lands (``mx, my``) up to which it is the static scene: :data:`STATIC_DEPTH_FLOOR` plus
    how much frame b's log depth changes within one pixel of that place (its depth is looked up at
    the nearest pixel, up to half a pixel off, which on slanted ground is a few per cent), at most
    :data:`MISMATCH_DEPTH`.

    Why not :data:`MISMATCH_DEPTH` everywhere: a moving object whose face or round side the poses
    carry onto itself (a box moving along with the camera, a cylinder rolling past) lands on its
    own surface 2-5 % off.  Within 5 % it passed for the static scene, and its image, which moves
    its own way, for content that stays put (:func:`mismatch_map`) or changes unexplained
    (:func:`unexplained_map`)."""
    seen = depth_b > 0
    log_b = np.log(np.where(seen, depth_b, 1.0)).astype(np.float32)
    k = np.ones((3, 3), np.uint8)
    step = np.maximum(cv2.dilate(log_b, k) - log_b, log_b - cv2.erode(log_b, k))
    return np.minimum(MISMATCH_DEPTH, STATIC_DEPTH_FLOOR + cv2.remap(step, mx, my, cv2.INTER_NEAREST))


def _carried_static(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
                    pose_a: np.ndarray, pose_b: np.ndarray, carried=None, camera_space: bool = False,
                    near_clip: bool = False):
    """:func:`carry_into` for :func:`mismatch_map` and :func:`unexplained_map`: ``inside``, the
    remap coordinates ``mx, my``, the pixel grid ``xs, ys``, and ``static`` (inside, and the
    carried depth agrees with frame b's depth there within :func:`static_tolerance` in log: the
    static scene).  With ``camera_space``, not where :func:`in_camera_space`; with ``near_clip``,
    not where frame a's depth is nearer than :data:`NEAR_CLIP_M`."""
    c = carry_into(depth_a, depth_b, K_a, K_b, pose_a, pose_b, carried)
    with np.errstate(invalid="ignore", divide="ignore"):
        static = c.inside & c.seen_there & (np.abs(np.log(np.where(c.z > 0, c.z, 1.0)) - c.log_there)
                                            < static_tolerance(depth_b, c.mx, c.my))
    if camera_space:
        static &= ~in_camera_space(depth_a, depth_b)
    if near_clip:
        static &= ~((depth_a > 0) & (depth_a < NEAR_CLIP_M))
    return c.inside, c.mx, c.my, c.xs, c.ys, static


def own_depth_map(depth_a: np.ndarray, depth_b: np.ndarray, K_a: np.ndarray, K_b: np.ndarray,
                  pose_a: np.ndarray, pose_b: np.ndarray, camera_space: bool = False,
                  near_clip: bool = False) -> np.ndarray:
    """Pixels of frame a (and their 5x5 neighbourhood) whose depth is not the static scene's: carried
    by the poses into frame b, it lands inside the frame where frame b has other depth (or none).
    Content drawn with depth of its own that moves with the camera (a first-person weapon, a car
    driven alongside) and moving objects; a pixel carried out of view says nothing and is not
    marked.  Frames next to each other, so that content close to a moving camera still lands in
    view.  ``camera_space`` and ``near_clip`` as in :func:`_carried_static`."""
    inside, _, _, _, _, static = _carried_static(depth_a, depth_b, K_a, K_b, pose_a, pose_b,
                                                 camera_space=camera_space, near_clip=near_clip)
    return cv2.dilate((inside & ~static).astype(np.uint8), _PATCH_KERNEL) > 0


def _smooth_difference(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """Patch mean (:data:`MISMATCH_PATCH`) of the absolute difference of two images blurred by a
    Gaussian of ``sigma`` pixels."""
    return _box(np.abs(cv2.GaussianBlur(a, (0, 0), sigma) - cv2.GaussianBlur(b, (0, 0), sigma)))


def _whole_patch(mask: np.ndarray) -> np.ndarray:
    """Pixels whose whole patch (:data:`MISMATCH_PATCH`) is in ``mask``."""
    return cv2.erode(mask.astype(np.uint8), _PATCH_KERNEL, borderType=cv2.BORDER_REPLICATE) > 0


def mismatch_map(grey_a: np.ndarray, grey_b: np.ndarray, depth_a: np.ndarray, depth_b: np.ndarray,
                 K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray, pose_b: np.ndarray,
                 carried=None) -> np.ndarray:
    """Pixels of frame a whose image content stays put (within :data:`MISMATCH_SWAY_PX`) in frame b
    while their depth, carried by the camera poses, says they move by more than
    :data:`MISMATCH_MOTION_PX` (bool h x w).

    Per pixel: the patch difference to frame b where the depth and poses put it (``scene``), and
    to frame b at the same place, allowing a small sway (``still``).  It counts when ``still`` is
    :data:`MISMATCH_RATIO` times smaller than ``scene``, the patch has texture, and the depth there
    is the static scene's over the whole patch (frame a's depth carried into b agrees with b's):
    content drawn over the
    scene without depth of its own (a HUD, subtitles, a first-person weapon in RGB only).

    Not fooled by a repeating texture: it moves with the scene, so its patch matches where the
    depth puts it as well as, or better than, in place.  Not fooled by content with depth of its
    own that moves with the camera (a weapon in the depth buffer, a car driven alongside): its
    depth, carried by the poses, disagrees with the next frame's, so it is left out (and so is such
    content when the poses happen to carry it onto itself: :func:`in_camera_space`).  Not fooled
    by stripes that run along the motion (:data:`MISMATCH_APERTURE`).
    ``carried``: :func:`carry` of frame a into b when the caller has it already.
    """
    ga, gb = np.asarray(grey_a, np.float32), np.asarray(grey_b, np.float32)
    h, w = ga.shape
    inside, mx, my, xs, ys, static = _carried_static(depth_a, depth_b, K_a, K_b, pose_a, pose_b, carried,
                                                     camera_space=True)
    motion = np.where(inside, np.hypot(mx - xs, my - ys), 0.0).astype(np.float32)
    moving = cv2.erode(motion, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) > MISMATCH_MOTION_PX
    warped = cv2.remap(gb, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    scene = _box(np.abs(warped - ga))
    still = np.full((h, w), np.inf, np.float32)
    r = MISMATCH_SWAY_PX
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            shifted = cv2.warpAffine(gb, m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)
            np.minimum(still, _box(np.abs(shifted - ga)), out=still)
    texture = np.sqrt(np.maximum(_box(ga * ga) - _box(ga) ** 2, 0.0)) > MISMATCH_TEXTURE
    # the whole patch must be static scene: at the outline of a weapon drawn with its own depth,
    # the scene's pixels have patches that are mostly weapon, which stays put
    static = _whole_patch(static)
    out = static & moving & texture & (MISMATCH_RATIO * still < scene) & (scene > MISMATCH_MIN_ERROR)
    if out.any():  # and the content is not there even with its finest detail blurred away
        out &= _smooth_difference(warped, ga, MISMATCH_SMOOTH_SIGMA) > MISMATCH_SMOOTH_ERROR
    if out.any():  # and the patch has texture across the motion's direction
        out &= along_motion(ga, mx - xs, my - ys) > MISMATCH_APERTURE
    return _clear_border(out, OVERLAY_BORDER + MISMATCH_PATCH)


def along_motion(grey: np.ndarray, dx: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Per pixel, the share of its patch's (:data:`MISMATCH_PATCH`) image gradient energy that
    lies along the motion ``(dx, dy)`` (float32 h x w, 0 to 1; 0 where the patch is flat): 0 for
    stripes running along the motion, which look the same moved or not, 1 for stripes across it,
    about 0.5 for a corner or a blob."""
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    norm = np.maximum(np.hypot(dx, dy), 1e-6)
    along = _box(((gx * dx + gy * dy) / norm) ** 2)
    total = _box(gx * gx + gy * gy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, along / np.maximum(total, 1e-12), 0.0).astype(np.float32)


def median_motion(depth_a: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray,
                  pose_b: np.ndarray, carried=None) -> float:
    """Median predicted motion (pixels) of frame a's pixels with depth, by the poses; 0 without any.
    ``carried``: :func:`carry` of frame a into b when the caller has it already."""
    h, w = depth_a.shape
    u, v, z = carry(depth_a, K_a, K_b, pose_a, pose_b) if carried is None else carried
    ok = (depth_a > 0) & (z > 0)
    if not ok.any():
        return 0.0
    ys, xs = _pixel_grid(h, w, "float64")  # the float64 differences of float32 u, v and whole pixels
    return float(np.median(np.hypot(u[ok] - xs[ok], v[ok] - ys[ok])))


def median_motion_at_least(depth_a: np.ndarray, K_a: np.ndarray, K_b: np.ndarray, pose_a: np.ndarray,
                           pose_b: np.ndarray, px: float, carried=None) -> bool:
    """``median_motion(...) >= px``, decided by counting where the count settles it (more than
    half of the pixels at ``px`` or beyond, or fewer than half minus one) and by the median itself
    only in the one undecided case (an even count split exactly): the same answer, without
    partially sorting every pixel's motion."""
    h, w = depth_a.shape
    u, v, z = carry(depth_a, K_a, K_b, pose_a, pose_b) if carried is None else carried
    ok = (depth_a > 0) & (z > 0)
    n = int(np.count_nonzero(ok))
    if n == 0:
        return 0.0 >= px
    ys, xs = _pixel_grid(h, w, "float64")
    with np.errstate(invalid="ignore"):
        motion = np.hypot(u - xs, v - ys)
        far = int(np.count_nonzero((motion >= px) & ok))
    if np.count_nonzero(np.isfinite(motion) & ok) != n:  # a NaN would make the median NaN
        return median_motion(depth_a, K_a, K_b, pose_a, pose_b, (u, v, z)) >= px
    # sorted motions m[0] <= ... <= m[n-1]; far of them are >= px.  Rounding keeps the even case
    # exact: both middle values >= px (or both < px) puts their float mean on the same side
    if n % 2:  # median m[n // 2]
        return far >= n - n // 2
    if far >= n // 2 + 1:  # m[n/2 - 1] and m[n/2] both >= px
        return True
    if far <= n // 2 - 1:  # both < px
        return False
    return median_motion(depth_a, K_a, K_b, pose_a, pose_b, (u, v, z)) >= px


def motion_mismatch(grey: np.ndarray, depth: np.ndarray, K: np.ndarray, poses: np.ndarray, votes: int = 1) -> float:
    """The ``votes``-th largest, over the frames of a clip, of the share of the image that
    :func:`mismatch_map` finds: content that stays put while its depth says it moves (n frames in
    order, with intrinsics (n, 3, 3) and poses (n, 4, 4)).  Each frame is compared with the next
    frame at most :data:`MISMATCH_MAX_GAP` later in which the scene has moved by
    :data:`MISMATCH_GAP_MOTION_PX` pixels (median): a slow camera moves a pixel a frame, too little
    to tell still from moving.  Per frame, so that content drawn for a few frames still counts; 0
    without pairs."""
    return kth_largest([share for _, _, share in mismatch_pairs(grey, depth, K, poses)], votes)


def mismatch_pairs(grey: np.ndarray, depth: np.ndarray, K: np.ndarray, poses: np.ndarray) -> list[tuple[int, int, float]]:
    """Frame i, the frame j it is compared with, and the share :func:`mismatch_map` finds, for
    every frame but the last (see :func:`motion_mismatch`)."""
    n = len(grey)
    out = []
    for i in range(n - 1):
        for j in range(i + 1, min(n, i + MISMATCH_MAX_GAP + 1)):
            carried = None
            if j == min(n - 1, i + MISMATCH_MAX_GAP):
                break
            carried = carry(depth[i], K[i], K[j], poses[i], poses[j])  # mismatch_map's too, if j is chosen
            if median_motion_at_least(depth[i], K[i], K[j], poses[i], poses[j], MISMATCH_GAP_MOTION_PX, carried):
                break
        out.append((i, j, float(mismatch_map(grey[i], grey[j], depth[i], depth[j], K[i], K[j],
                                             poses[i], poses[j], carried).mean())))
    return out


#: Patch difference (mean absolute grey levels, after the change of light is fitted: :func:`light_fit`)
#: between a frame and the frame before carried into it by depth and poses, above which the content
#: is new.
CHANGE_RESIDUAL = 25.0
#: The same difference after a Gaussian blur of this sigma (pixels at the check size), above which
#: the content is new also without its finest detail: an aliasing texture is not (see
#: :data:`MISMATCH_SMOOTH_SIGMA`).
CHANGE_SMOOTH_SIGMA = 2.0
CHANGE_SMOOTH_RESIDUAL = 18.0


#: Fog distances (metres) tried for the fog term of :func:`light_fit` (the depth at which fog
#: covers 63 % of a surface's colour); the one that fits best is kept.
LIGHT_FOG_METRES = (8.0, 20.0, 50.0, 125.0)
#: Refits of :func:`light_fit` without its worst pixels: those above the residual's 90th percentile
#: (or above :data:`LIGHT_TRIM_FLOOR` grey levels, when that is larger).
LIGHT_REFITS = 2
LIGHT_TRIM_QUANTILE = 0.9
LIGHT_TRIM_FLOOR = 4.0
#: :func:`light_fit` fits every this many static pixels (in raster order): three parameters need
#: far fewer than the 9,000 of a 128 x 72 frame, and the fit is most of the check's cost.
LIGHT_STRIDE = 3


def _solve(gram: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Least-squares coefficients from the normal equations (a few columns: a 3 x 3 system instead
    of a QR of the whole n x 3 matrix); ``lstsq`` so that a column that says nothing (the fog term
    over a wall at one depth) does not fail."""
    return np.linalg.lstsq(gram, rhs, rcond=None)[0]


def _upper_quantile(x: np.ndarray, q: float) -> float:
    """``np.quantile(x, q)`` (linear interpolation) by a partition around the two ranks needed."""
    k = q * (x.size - 1)
    lo = int(np.floor(k))
    hi = min(lo + 1, x.size - 1)
    part = np.partition(x, [lo, hi])
    return float(part[lo] + (k - lo) * (part[hi] - part[lo]))


def _gain_offset(x: np.ndarray, y: np.ndarray) -> tuple[np.float32, np.float32]:
    """Least-squares ``gain, offset`` of ``y ~ gain * x + offset`` (1-d), in closed form."""
    x64, y64 = x.astype(np.float64), y.astype(np.float64)
    mx, my = float(x64.mean()), float(y64.mean())
    var = float(np.square(x64 - mx).mean())
    gain = float(((x64 - mx) * (y64 - my)).mean()) / var if var > 0 else 0.0
    return np.float32(gain), np.float32(my - gain * mx)


def light_fit(pred: np.ndarray, grey: np.ndarray, depth: np.ndarray, static: np.ndarray) -> np.ndarray:
    """The image ``grey`` as the previous frame carried into it (``pred``) under a change of light:
    ``gain * pred + offset + fog * (1 - exp(-depth / D))``, fitted over the ``static`` pixels with
    the fog distance D among :data:`LIGHT_FOG_METRES` that fits them best, then refitted
    :data:`LIGHT_REFITS` times without the worst-fitting pixels.

    Why a fog term: a light switched on or off scales what a surface reflects, but not the fog in
    front of it, which a distant surface mostly is: the change is a gain near the camera and
    nothing at the horizon, which no single gain and offset fits (it left bands of "new" content
    along the horizon after every change of light in fog).  Why the refits: content drawn over the
    scene (a weapon popping up at the bottom, which is also where the ground is nearest) pulls a
    plain least-squares fit toward itself, and the fog term could absorb part of it; without its
    worst pixels the fit is the scene's.
    """
    ys, xs = np.nonzero(static)
    ys, xs = ys[::LIGHT_STRIDE], xs[::LIGHT_STRIDE]  # a few parameters: every few pixels suffice
    g = grey[ys, xs].astype(np.float64)
    z = depth[ys, xs].astype(np.float64)
    n_fog = len(LIGHT_FOG_METRES)
    cols = np.empty((g.size, 2 + n_fog))
    cols[:, 0] = pred[ys, xs]
    cols[:, 1] = 1.0
    for k, metres in enumerate(LIGHT_FOG_METRES):
        cols[:, 2 + k] = 1.0 - np.exp(-z / metres)
    gram, rhs, total = cols.T @ cols, cols.T @ g, float(g @ g)
    best: tuple[float, int, np.ndarray] | None = None
    for k in range(n_fog):  # every fog distance's fit from the one Gram matrix
        idx = [0, 1, 2 + k]
        sub = gram[np.ix_(idx, idx)]
        coef = _solve(sub, rhs[idx])
        error = total - 2.0 * float(coef @ rhs[idx]) + float(coef @ sub @ coef)  # sum of squares left
        if best is None or error < best[0]:
            best = (error, k, coef)
    assert best is not None
    _, k, coef = best
    a = cols[:, [0, 1, 2 + k]]
    for _ in range(LIGHT_REFITS):  # without the worst-fitting pixels
        residual = np.abs(a @ coef - g)
        cut = max(_upper_quantile(residual, LIGHT_TRIM_QUANTILE), LIGHT_TRIM_FLOOR)
        keep = residual < cut
        if np.count_nonzero(keep) < a.shape[1]:  # ties at the cut: nothing left to refit on
            break
        kept = a[keep]
        coef = _solve(kept.T @ kept, kept.T @ g[keep])
    fog = 1.0 - np.exp(np.asarray(depth, np.float32) * np.float32(-1.0 / LIGHT_FOG_METRES[k]))
    return (np.float32(coef[0]) * pred + np.float32(coef[1]) + np.float32(coef[2]) * fog).astype(np.float32)


def unexplained_map(grey_prev: np.ndarray, grey: np.ndarray, depth_prev: np.ndarray, depth: np.ndarray,
                    K_prev: np.ndarray, K: np.ndarray, pose_prev: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Pixels of frame t whose image content is not the previous frame's scene moved by depth and
    poses (bool h x w): frame t's depth carried into frame t-1 by the poses picks the grey levels
    there, a change of light is fitted (:func:`light_fit`: a gain, an offset and a fog term), and
    the patch difference left exceeds :data:`CHANGE_RESIDUAL`; only where the depth of both frames
    is the static scene's over the whole patch (moving objects, disocclusions and content with its
    own depth are left out, and so are content drawn in the camera's own space,
    :func:`in_camera_space`, and depth nearer than :data:`NEAR_CLIP_M`).  Content drawn in RGB
    without depth for a frame or a few (a weapon, a HUD popping up, a minimap turning) is such new
    content where the scene's depth is still right."""
    gp, g = np.asarray(grey_prev, np.float32), np.asarray(grey, np.float32)
    h, w = g.shape
    inside, mx, my, xs, ys, static = _carried_static(depth, depth_prev, K, K_prev, pose, pose_prev,
                                                     camera_space=True, near_clip=True)
    static = _whole_patch(static)
    if static.sum() < 16:
        return np.zeros((h, w), bool)
    pred = cv2.remap(gp, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # most pairs have neither new content nor a change of light: when one gain and offset explain
    # every patch, there is nothing for the fog term to explain either (and the fit is most of the
    # check's cost)
    gain, offset = _gain_offset(pred[static], g[static])
    if not (static & (_box(np.abs(g - (gain * pred + offset))) > CHANGE_RESIDUAL)).any():
        return np.zeros((h, w), bool)
    fit = light_fit(pred, g, depth, static)
    found = static & (_box(np.abs(g - fit)) > CHANGE_RESIDUAL)
    if found.any():  # new content differs by more than its finest detail (CHANGE_SMOOTH_SIGMA)
        found &= _smooth_difference(g, fit, CHANGE_SMOOTH_SIGMA) > CHANGE_SMOOTH_RESIDUAL
    return _clear_border(found, OVERLAY_BORDER + MISMATCH_PATCH)


def unexplained_change(grey: np.ndarray, depth: np.ndarray, K: np.ndarray, poses: np.ndarray) -> float:
    """The largest, over consecutive frame pairs of a clip (n frames in order, with intrinsics
    (n, 3, 3) and poses (n, 4, 4)), share of the image that :func:`unexplained_map` finds: content
    that the scene's own motion does not explain although its depth is the scene's.  One pair is
    evidence enough: content drawn in RGB only for a single frame is found by it.

    Where the pair's map finds something, pixels whose depth is not the static scene's against
    the frames on either side (frames t-2 and t+1: :func:`own_depth_map`) are left out too: a
    first-person weapon drawn with its own depth, carried by the poses into frame t-1, can land on
    a near object whose depth agrees with its own by chance; carried into other frames it lands
    elsewhere, where it does not.  Depth of the static scene agrees in every frame."""
    shares = []
    for i in range(1, len(grey)):
        found = unexplained_map(grey[i - 1], grey[i], depth[i - 1], depth[i], K[i - 1], K[i], poses[i - 1], poses[i])
        for k in (i - 2, i + 1):
            if found.any() and 0 <= k < len(grey):
                found &= ~own_depth_map(depth[i], depth[k], K[i], K[k], poses[i], poses[k],
                                        camera_space=True, near_clip=True)
        shares.append(float(found.mean()))
    return max(shares, default=0.0)
