"""Least-squares alignment of relative predictions and the depth metric: pure numpy."""

from __future__ import annotations

import numpy as np

from dav_builder.model.metrics import abs_rel, delta1, fit_scale_shift  # one implementation of the maths

__all__ = ["abs_rel", "align_disparity", "delta1", "depth_score", "fit_scale_shift", "sample_indices"]


def align_disparity(pred_disp: np.ndarray, depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Align a relative disparity prediction to captured depth, in disparity, as the paper evaluates.

    Returns (aligned depth in metres, mask of pixels where both are valid).  One scale and shift
    for all frames given (a clip is one sequence).
    """
    valid = depth > 0
    gt_disp = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0)
    s, t = fit_scale_shift(pred_disp, gt_disp, valid)
    disp = s * pred_disp + t
    lo = 1.0 / max(float(depth[valid].max()) if valid.any() else 1.0, 1e-6)
    disp = np.maximum(disp, lo * 0.5)  # keep aligned disparity positive
    return (1.0 / disp).astype(np.float32), valid


def depth_score(pred_disp: np.ndarray, depth: np.ndarray) -> float:
    """The clip's depth score: delta1 of the aligned prediction against the captured depth (1 = perfect)."""
    aligned, valid = align_disparity(pred_disp, depth)
    return delta1(aligned, depth, valid)


def sample_indices(n: int, k: int) -> list[int]:
    """``k`` frame positions spread uniformly over ``n`` frames (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]
