"""Least-squares alignment of relative predictions and the depth metric: pure numpy."""

from __future__ import annotations

import numpy as np


def fit_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """``(s, t)`` minimising ``sum((s * pred + t - target)^2)`` over ``mask``."""
    p = pred[mask].astype(np.float64)
    g = target[mask].astype(np.float64)
    if p.size < 2:
        return 1.0, 0.0
    A = np.stack([p, np.ones_like(p)], axis=1)
    (s, t), *_ = np.linalg.lstsq(A, g, rcond=None)
    return float(s), float(t)


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


def delta1(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Share of pixels with ``max(pred/gt, gt/pred) < 1.25``."""
    if not mask.any():
        return float("nan")
    r = np.maximum(pred[mask] / gt[mask], gt[mask] / pred[mask])
    return float((r < 1.25).mean())


def abs_rel(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """Mean of ``|pred - gt| / gt``."""
    if not mask.any():
        return float("nan")
    return float((np.abs(pred[mask] - gt[mask]) / gt[mask]).mean())


def depth_score(pred_disp: np.ndarray, depth: np.ndarray) -> float:
    """The clip's depth score: delta1 of the aligned prediction against the captured depth (1 = perfect)."""
    aligned, valid = align_disparity(pred_disp, depth)
    return delta1(aligned, depth, valid)


def sample_indices(n: int, k: int) -> list[int]:
    """``k`` frame positions spread uniformly over ``n`` frames (all of them when ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return [int(round(x)) for x in np.linspace(0, n - 1, k)]
