"""Evaluation metrics of the paper: AbsRel, delta1 and TAE, after least-squares alignment.

Predictions are affine-invariant disparity.  As the paper's evaluation, they are fitted to the
ground truth's disparity (1 / depth) by a least-squares scale and shift over the valid pixels of
the whole sequence (one fit per clip, so temporal flicker is not aligned away), then inverted to
depth and clipped to the ground truth's valid range.

TAE (temporal alignment error) reprojects the aligned predicted depth of frame k into frame k+1
with the intrinsics and camera poses (OpenCV axes, camera-to-world), and compares it with the
prediction there (AbsRel), and the same from k+1 back to k; it is the mean over both directions
and the T - 1 adjacent pairs.  All functions are pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClipMetrics:
    abs_rel: float
    delta1: float
    tae: float | None
    """None when the clip has no poses or intrinsics (or a single frame)."""
    scale: float
    shift: float


def fit_scale_shift(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """``(s, t)`` minimising ``sum((s * pred + t - target)^2)`` over ``mask`` ((1, 0) with under two pixels)."""
    p = (pred if mask is None else pred[mask]).astype(np.float64).ravel()
    g = (target if mask is None else target[mask]).astype(np.float64).ravel()
    if p.size < 2:
        return 1.0, 0.0
    a = np.stack([p, np.ones_like(p)], 1)
    (s, t), *_ = np.linalg.lstsq(a, g, rcond=None)
    return float(s), float(t)


def align_disparity(pred: np.ndarray, gt_depth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Fit ``s * pred + t`` to ``1 / gt_depth`` on ``valid`` pixels; returns (aligned disparity, s, t)."""
    if int(valid.sum()) < 2:
        raise ValueError("fewer than two valid pixels to align on")
    gt_disp = np.where(valid, 1.0 / np.where(valid, gt_depth, 1.0), 0.0)
    s, t = fit_scale_shift(pred, gt_disp, valid)
    return (pred * s + t).astype(np.float64), s, t


def disparity_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    return 1.0 / np.clip(disp, 1.0 / max_depth, 1.0 / min_depth)


def abs_rel(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Mean of ``|pred - gt| / gt`` over ``valid`` (NaN when nothing is valid)."""
    if not valid.any():
        return float("nan")
    return float(np.mean(np.abs(pred[valid] - gt[valid]) / gt[valid]))


def delta1(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> float:
    """Share of ``valid`` pixels with ``max(pred/gt, gt/pred) < 1.25`` (NaN when nothing is valid)."""
    if not valid.any():
        return float("nan")
    ratio = np.maximum(pred[valid] / gt[valid], gt[valid] / pred[valid])
    return float(np.mean(ratio < 1.25))


def project(depth: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, src_to_world: np.ndarray,
            dst_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Project every pixel of ``depth`` (H, W) into the other camera.

    Returns sub-pixel (u, v) coordinates in the destination and the depth the point has there;
    pixels landing behind the camera get depth <= 0 (and u, v may be inf or NaN).
    """
    h, w = depth.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    return project_points(xs, ys, depth, K_src, K_dst, src_to_world, dst_to_world)


def project_points(xs: np.ndarray, ys: np.ndarray, depth: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray,
                   src_to_world: np.ndarray, dst_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project` of the pixels at ``(xs, ys)`` with depth ``depth`` (arrays of one shape):
    (u, v) and the depth in the destination camera, in that shape."""
    shape = np.shape(depth)
    pix = np.stack([np.ravel(xs), np.ravel(ys), np.ones(np.size(depth))], 0)
    cam = np.linalg.inv(K_src) @ pix * np.reshape(depth, (1, -1))
    world = src_to_world[:3, :3] @ cam + src_to_world[:3, 3:4]
    w2d = np.linalg.inv(dst_to_world)
    dst = w2d[:3, :3] @ world + w2d[:3, 3:4]
    z = dst[2]
    proj = K_dst @ dst
    with np.errstate(divide="ignore", invalid="ignore"):
        u = proj[0] / z
        v = proj[1] / z
    return u.reshape(shape), v.reshape(shape), z.reshape(shape)


def reproject(depth: np.ndarray, K_src: np.ndarray, K_dst: np.ndarray, src_to_world: np.ndarray,
              dst_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`project`, with (u, v) rounded to the nearest destination pixel."""
    u, v, z = project(depth, K_src, K_dst, src_to_world, dst_to_world)
    return np.round(u), np.round(v), z


def _one_way(src: np.ndarray, dst: np.ndarray, src_valid: np.ndarray, dst_valid: np.ndarray, K_src, K_dst,
             T_src, T_dst) -> float | None:
    u, v, z = reproject(src, K_src, K_dst, T_src, T_dst)
    h, w = dst.shape
    ok = src_valid & (z > 1e-6) & np.isfinite(u) & np.isfinite(v)
    ok &= (u >= 0) & (u < w) & (v >= 0) & (v < h)
    if not ok.any():
        return None
    ui, vi = u[ok].astype(int), v[ok].astype(int)
    target = dst[vi, ui]
    good = dst_valid[vi, ui]
    if not good.any():
        return None
    return float(np.mean(np.abs(z[ok][good] - target[good]) / target[good]))


def tae(depth: np.ndarray, valid: np.ndarray, K: np.ndarray, cam_to_world: np.ndarray) -> float | None:
    """Temporal alignment error of depth (T, H, W) with K (T, 3, 3) and poses (T, 4, 4)."""
    errors = []
    for k in range(len(depth) - 1):
        fwd = _one_way(depth[k], depth[k + 1], valid[k], valid[k + 1], K[k], K[k + 1], cam_to_world[k], cam_to_world[k + 1])
        bwd = _one_way(depth[k + 1], depth[k], valid[k + 1], valid[k], K[k + 1], K[k], cam_to_world[k + 1], cam_to_world[k])
        pair = [e for e in (fwd, bwd) if e is not None]
        if pair:
            errors.append(sum(pair) / len(pair))
    return float(np.mean(errors)) if errors else None


def evaluate_clip(pred_disp: np.ndarray, gt_depth: np.ndarray, K: np.ndarray | None = None,
                  cam_to_world: np.ndarray | None = None, min_depth: float = 1e-3,
                  max_depth: float | None = None) -> ClipMetrics:
    """Metrics of one clip: prediction (T, H, W) affine-invariant disparity, ground truth in metres (0 = invalid)."""
    if pred_disp.shape != gt_depth.shape:
        raise ValueError(f"prediction {pred_disp.shape} and ground truth {gt_depth.shape} differ in shape")
    valid = np.isfinite(gt_depth) & (gt_depth > min_depth)
    if max_depth is not None:
        valid &= gt_depth < max_depth
    if valid.sum() < 2:
        raise ValueError("the ground truth has no valid depth")
    hi = float(gt_depth[valid].max()) if max_depth is None else max_depth
    lo = max(min_depth, float(gt_depth[valid].min()))
    disp, s, t = align_disparity(pred_disp, gt_depth, valid)
    depth = disparity_to_depth(disp, lo, hi)
    t_err = None
    if K is not None and cam_to_world is not None and len(depth) > 1:
        t_err = tae(depth, valid, np.asarray(K, np.float64), np.asarray(cam_to_world, np.float64))
    return ClipMetrics(abs_rel(depth, gt_depth, valid), delta1(depth, gt_depth, valid), t_err, s, t)
