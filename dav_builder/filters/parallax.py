"""``edge_parallax``: depth rendered from a camera beside the RGB camera (the other eye of a
stereo pair, a depth camera mounted a few centimetres off), found from one frame.

A camera moved sideways by ``b`` metres sees a boundary at depth ``z`` shifted by ``f * b / z``
pixels, so its depth boundaries sit off the image's colour steps by an amount proportional to the
boundary's inverse depth, in the same direction on both sides of an object.  With a few
centimetres and a wide lens the shift is a pixel or less for all but the nearest boundaries, which
:func:`dav_builder.filters.checks.chamfer_gap` (whole-pixel displacements of a distance map, where
a one-pixel move can leave the distance unchanged) does not resolve.

This check measures, for every horizontal depth boundary, where the colour step that goes with it
lies (to a fraction of a pixel), fits ``offset = k * inverse depth`` through the origin separately
for boundaries whose near side is on the left and for those whose near side is on the right, and
scores the frame by the smaller of the two fits' t statistics when both slopes agree in sign and
size.  Requiring both sides is what keeps clean frames out: the usual reason a colour step sits
off a depth boundary in a correct capture is an object's own trim or shading a few pixels inside
its outline, which pulls the offsets toward the object's inside, opposite on its two sides.  A
rasterised boundary moves by whole pixels, but over many rows of a boundary with a sub-pixel shift
the share that moved gives the shift on average, which a least-squares fit reads.

Only boundaries whose correspondence is unambiguous count: no other depth boundary and exactly one
clear colour step within :data:`PARALLAX_WINDOW` pixels; and none nearer than
1 / :data:`PARALLAX_MAX_INVERSE_DEPTH` metres (a first-person weapon at arm's length is drawn in the
camera's own space, and a camera a few centimetres off would move a boundary there by more than
the window).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dav_builder.filters.checks import OCCLUSION_JUMP, SLOPE_RATIO

#: Pixels on either side of a depth boundary searched for its colour step.
PARALLAX_WINDOW = 4
#: Grey levels (0..255) between neighbouring pixels for a colour step to count ...
PARALLAX_STEP = 8.0
#: ... and its share of the largest step in the window (a weaker one is texture or shading).
PARALLAX_STEP_SHARE = 0.3
#: Boundaries nearer than 1 / this metres are left out (see the module's docs).
PARALLAX_MAX_INVERSE_DEPTH = 0.25
#: Least slope, in pixels per unit of inverse depth (pixel-metres: the focal length in pixels
#: times the cameras' distance in metres), that counts as parallax: below it the offsets are
#: rounding, not a camera off (2 is 1.6 cm with a 124-pixel focal length).
PARALLAX_MIN_SLOPE = 2.0
#: Least spread, in pixels, assumed for a boundary's offset about the fit: rasterisation alone
#: puts a boundary half a pixel either way, so a fit cannot be surer than that.
PARALLAX_NOISE_FLOOR = 0.5
#: Boundary pixels each side needs for its fit to count.
PARALLAX_MIN_BOUNDARIES = 5


@dataclass(frozen=True)
class BoundaryOffsets:
    """The usable horizontal depth boundaries of one frame."""

    offset: np.ndarray
    """Where the colour step lies, in pixels to the right of the depth boundary (float32)."""
    inverse_depth: np.ndarray
    """1 / depth of the boundary's near side, in 1/metres."""
    near_left: np.ndarray
    """Whether the near side is on the left (bool)."""


def boundary_offsets(grey: np.ndarray, depth: np.ndarray) -> BoundaryOffsets:
    """The horizontal depth boundaries of a frame (a relative jump above ``OCCLUSION_JUMP`` that is
    ``SLOPE_RATIO`` times its neighbours' steps, as in :func:`checks.occlusion_edges`; pixels without
    depth are far) that have one clear colour step within :data:`PARALLAX_WINDOW` pixels and no
    other boundary there, with where that step lies."""
    r = PARALLAX_WINDOW
    empty = BoundaryOffsets(np.zeros(0, np.float32), np.zeros(0, np.float32), np.zeros(0, bool))
    valid = depth > 0
    logd = np.log(np.where(valid, depth, 1e4)).astype(np.float32)
    jump = np.abs(logd[:, 1:] - logd[:, :-1])  # between x and x + 1
    ys, xs = np.nonzero((jump > OCCLUSION_JUMP) & (valid[:, 1:] | valid[:, :-1]))
    # the slope test only where the jump is large enough (a few hundred pixels, not the frame)
    last = jump.shape[1] - 1
    side = np.maximum(jump[ys, np.maximum(xs - 1, 0)], jump[ys, np.minimum(xs + 1, last)])
    keep = jump[ys, xs] > SLOPE_RATIO * side + 1e-4
    ys, xs = ys[keep], xs[keep]
    if ys.size == 0:
        return empty
    # row-major order: a boundary is alone when its neighbours in the list are in another row or
    # more than r pixels away
    near = np.zeros(ys.size + 1, bool)
    near[1:-1] = (ys[1:] == ys[:-1]) & (xs[1:] - xs[:-1] <= r)
    alone = ~(near[:-1] | near[1:]) & (xs > r) & (xs < last - r)
    ys, xs = ys[alone], xs[alone]
    a, b = depth[ys, xs].astype(np.float32), depth[ys, xs + 1].astype(np.float32)
    a[a <= 0], b[b <= 0] = np.inf, np.inf  # no depth: far
    near_left = a < b
    inv = 1.0 / np.minimum(a, b)
    close = inv <= PARALLAX_MAX_INVERSE_DEPTH
    ys, xs, near_left, inv = ys[close], xs[close], near_left[close], inv[close]
    if ys.size == 0:
        return empty
    cols = np.asarray(grey, np.float32)[ys[:, None], xs[:, None] + np.arange(-r, r + 2)[None, :]]
    j = np.arange(-r, r + 1)
    mag = np.abs(np.diff(cols, axis=1))
    peak = np.zeros(mag.shape, bool)
    peak[:, 1:-1] = (mag[:, 1:-1] >= mag[:, :-2]) & (mag[:, 1:-1] >= mag[:, 2:])
    clear = peak & (mag >= np.maximum(PARALLAX_STEP, PARALLAX_STEP_SHARE * mag.max(1, keepdims=True)))
    one = clear.sum(1) == 1
    mag, clear = mag[one], clear[one]
    at = clear.argmax(1)
    rows = np.arange(at.size)
    left, mid, right = mag[rows, at - 1], mag[rows, at], mag[rows, at + 1]
    curve = left - 2 * mid + right
    sub = np.where(curve < 0, 0.5 * (left - right) / np.where(curve < 0, curve, -1.0), 0.0)
    return BoundaryOffsets((j[at] + sub).astype(np.float32), inv[one].astype(np.float32), near_left[one])


def _slope_t(offset: np.ndarray, x: np.ndarray) -> tuple[float, float]:
    """Least-squares slope of ``offset = k * x`` and its t statistic (0, 0 with too few points)."""
    if offset.size < PARALLAX_MIN_BOUNDARIES:
        return 0.0, 0.0
    sxx = float((x * x).sum())
    if sxx <= 0:
        return 0.0, 0.0
    sox = float((offset * x).sum())
    k = sox / sxx
    spread = max(float((offset * offset).sum()) - k * sox, 0.0) / (offset.size - 1)
    return k, k / np.sqrt(max(spread, PARALLAX_NOISE_FLOOR ** 2) / sxx)


def parallax_evidence(b: BoundaryOffsets) -> float:
    """How sure a frame's boundaries are offset as parallax offsets them: the smaller t statistic
    of the two sides' slopes when both reach :data:`PARALLAX_MIN_SLOPE` with the same sign; 0
    otherwise."""
    k_left, t_left = _slope_t(b.offset[b.near_left], b.inverse_depth[b.near_left])
    k_right, t_right = _slope_t(b.offset[~b.near_left], b.inverse_depth[~b.near_left])
    if k_left * k_right <= 0 or min(abs(k_left), abs(k_right)) < PARALLAX_MIN_SLOPE:
        return 0.0
    return float(min(abs(t_left), abs(t_right)))


def edge_parallax(grey: np.ndarray, depth: np.ndarray) -> float:
    """The largest :func:`parallax_evidence` over frames (0 = none): the fit pools a frame's
    boundaries, so one frame is evidence enough, and a stereo offset for a frame or two of a clip
    counts."""
    return max((parallax_evidence(boundary_offsets(g, d)) for g, d in zip(grey, depth)), default=0.0)
