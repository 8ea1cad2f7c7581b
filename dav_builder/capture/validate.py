"""Checks of the values every reader hands to the builder: pure functions, one message each.

A reader may get any bytes on disk; these checks stop values that would crash or silently
mislead a later stage (a NaN frame rate in the scene detector, a zero focal length in a matrix
inverse, a singular pose in the pose checks, a frame index too large for the manifest) at the
frame or capture they belong to, with an error that names the value.  They return the problem
as a string (``None`` when the value is fine) so that each reader wraps it in its own
:class:`~dav_builder.capture.base.FrameError` or :class:`~dav_builder.capture.base.CaptureError`
naming its own file.
"""

from __future__ import annotations

import math

import numpy as np

#: Largest frame index accepted: the manifest stores indices as int64, clip ids and times as
#: floats; 2**31 frames is over 800 days at 30 fps.
MAX_INDEX = 2**31 - 1
#: Largest frame size a capture may declare (the image decoders refuse more anyway).
MAX_SIDE = 65535
#: Frame rates accepted: a time-lapse of one frame per 1000 s up to a high-speed camera.
MIN_FPS, MAX_FPS = 1e-3, 1e5
#: Largest focal length or principal point coordinate, in pixels.
MAX_K = 1e7
#: Largest coordinate of a camera position, in metres (beyond it float maths loses the scene).
MAX_POSITION_M = 1e7
#: Tolerance of the rotation block of a pose: max |R^T R - I|.
ROTATION_TOL = 1e-3


def fps_problem(fps: object) -> str | None:
    """Why ``fps`` is not a usable frame rate (finite, > 0), or None."""
    if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)):
        return f"fps must be a number, got {fps!r}"
    try:
        f = float(fps)
    except OverflowError:
        f = math.inf
    if not math.isfinite(f) or not MIN_FPS <= f <= MAX_FPS:
        return f"fps must be a finite number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}"
    return None


def size_problem(width: object, height: object) -> str | None:
    """Why (width, height) is not a usable frame size, or None."""
    for name, v in (("width", width), ("height", height)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 < int(v) <= MAX_SIDE:
            return f"{name} must be an integer in 1..{MAX_SIDE}, got {v!r}"
    return None


def index_problem(index: object) -> str | None:
    """Why ``index`` is not a frame index (an int in 0..MAX_INDEX), or None."""
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= int(index) <= MAX_INDEX:
        return f"index must be an integer in 0..{MAX_INDEX}, got {index!r}"
    return None


def K_problem(K: np.ndarray) -> str | None:
    """Why ``K`` is not a pinhole intrinsics matrix (finite, fx > 0, fy > 0, last row 0 0 1)."""
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        return f"K must be 3x3, got shape {K.shape}"
    if not np.isfinite(K).all():
        return "K holds non-finite values"
    if not (K[0, 0] > 0 and K[1, 1] > 0):
        return f"K's focal lengths must be positive, got fx={K[0, 0]:g} fy={K[1, 1]:g}"
    if np.abs(K[:2]).max() > MAX_K:
        return f"K holds values beyond {MAX_K:g} pixels: {K[:2].tolist()}"
    if not np.allclose(K[2], [0.0, 0.0, 1.0], atol=1e-9) or abs(K[1, 0]) > 1e-9:
        return f"K is not a pinhole matrix (last row {K[2].tolist()}, K[1][0]={K[1, 0]:g})"
    return None


def pose_problem(pose: np.ndarray) -> str | None:
    """Why ``pose`` is not a rigid camera-to-world matrix (finite, rotation orthonormal with
    determinant +1, last row 0 0 0 1, position within MAX_POSITION_M), or None."""
    T = np.asarray(pose, dtype=np.float64)
    if T.shape != (4, 4):
        return f"cam_to_world must be 4x4, got shape {T.shape}"
    if not np.isfinite(T).all():
        return "cam_to_world holds non-finite values"
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        return f"cam_to_world's last row must be 0 0 0 1, got {T[3].tolist()}"
    if np.abs(T[:3, 3]).max() > MAX_POSITION_M:
        return f"cam_to_world's position {T[:3, 3].tolist()} is beyond {MAX_POSITION_M:g} m"
    R = T[:3, :3]
    err = float(np.abs(R.T @ R - np.eye(3)).max())
    if err > ROTATION_TOL:
        det = float(np.linalg.det(R))
        what = "singular" if abs(det) < 1e-6 else "not a rotation"
        return f"cam_to_world is {what} (max |R^T R - I| = {err:.3g}, det {det:.3g}): not a rigid camera pose"
    if np.linalg.det(R) < 0:
        return "cam_to_world's rotation is a reflection (det -1): not a right-handed OpenCV camera"
    return None


def time_problem(time_s: float) -> str | None:
    if not math.isfinite(time_s):
        return f"time must be a finite number of seconds, got {time_s!r}"
    return None
