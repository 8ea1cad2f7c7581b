"""Ground truth of planted defects: how wrong each defective frame came out.

A planted frame is not always wrong (frozen depth's first frame is the true one; a camera offset
by a few centimetres sees much the same depth on a plain wall), so the engine measures each one
against what it would have written without the defect, and writes the figures into
``defects.json`` (``params.frame_wrong`` and ``params.frame_abs_rel``, one per frame of the span).
"""

from __future__ import annotations

import numpy as np

from dav_builder.capture.depth import to_planar_metres

#: Relative depth error above which a pixel of a defective frame counts as wrong in the ground truth.
WRONG_REL = 0.05


def depth_error(written: np.ndarray, true: np.ndarray, near: float, far: float) -> dict[str, float]:
    """How wrong a written OpenGL depth buffer is against the true one: ``abs_rel`` (mean relative
    error of planar metres where both have depth) and ``wrong`` (share of pixels more than
    :data:`WRONG_REL` off, or with depth in one buffer and none in the other).  Both 0 when the
    defect left the frame right (the first frame of frozen depth, a lag under a still camera)."""
    a, b = (to_planar_metres(x, "gl", near=near, far=far, invalid=[1.0]) for x in (written, true))
    return _relative_error(a, b)


def depth_error_planes(buffer: np.ndarray, near: float, far_written: float, far_true: float) -> dict[str, float]:
    """:func:`depth_error` of a right buffer read with a wrong far plane."""
    a = to_planar_metres(buffer, "gl", near=near, far=far_written, invalid=[1.0])
    return _relative_error(a, to_planar_metres(buffer, "gl", near=near, far=far_true, invalid=[1.0]))


def _relative_error(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """``abs_rel`` and ``wrong`` of planar metres ``a`` against the truth ``b`` (0 = no depth)."""
    both = (a > 0) & (b > 0)
    rel = np.abs(a[both] - b[both]) / b[both] if both.any() else np.zeros(0)
    wrong = int((rel > WRONG_REL).sum()) + int(((a > 0) != (b > 0)).sum())
    return {"abs_rel": round(float(rel.mean()) if rel.size else 0.0, 6), "wrong": round(wrong / a.size, 6)}


def overlay_error(rgb: np.ndarray, true_rgb: np.ndarray) -> dict[str, float]:
    """An overlay drawn on RGB: ``wrong`` is the share of pixels it changed (depth is untouched)."""
    return {"abs_rel": 0.0, "wrong": round(float((rgb != true_rgb).any(-1).mean()), 6)}
