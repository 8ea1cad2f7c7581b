"""Temporal alignment error (TAE) of a depth video, in two forms.

TAE (Depth Any Video, arXiv 2410.10815, after ChronoDepth) reprojects the aligned predicted depth
of frame k into frame k+1 with the intrinsics and camera poses, compares it with the prediction of
frame k+1 there (AbsRel relative to the destination's own prediction), does the same from k+1
back to k, and averages both directions and the T - 1 adjacent pairs.

``tae_official`` computes it the way the authors' released evaluation does, so that numbers can
be put next to the paper's:

- source pixels are placed at their centres with a +0.5 offset (pixel (i, j) at (j + 0.5, i + 0.5))
  although the intrinsics follow OpenCV's convention (centre of pixel j at j): every point is
  shifted by half a pixel;
- the projected coordinates are rounded with numpy's round-half-to-even, so on a static camera
  pixel 1 lands on 2 and pixel 2 on 2 as well;
- where several source points land on one destination pixel, one of them is kept: the last one
  written in row-major source order (what numpy's fancy assignment does in practice), whether it
  is the nearest or hidden behind it;
- only source pixels with valid ground truth are projected, and only destination pixels with
  valid ground truth are compared.

``tae_zbuffer`` is the occlusion-aware form: OpenCV pixel centres, nearest destination pixel
(``floor(u + 0.5)``), and a z-buffer that keeps the nearest projected point per destination pixel,
so a surface hidden behind another in the destination frame is never compared with the occluder.
Destination pixels no source point reaches (disoccluded, or out of view) are left out, as in the
official form.

Both take depth (T, H, W) in metres, a validity mask (T, H, W), intrinsics K (T, 3, 3) and
camera-to-world poses (T, 4, 4) in OpenCV axes (x right, y down, z forward), and return None
when no pair could be compared.  Pure numpy.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-6


def _img2world(K: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """4x4 map from (u*z, v*z, z, 1) to world points, built as the official code does (inverse of
    intrinsics @ world-to-camera)."""
    k4 = np.eye(4)
    k4[:3, :3] = K
    return np.linalg.inv(k4 @ np.linalg.inv(cam_to_world))


def warp_official(depth_a: np.ndarray, mask_a: np.ndarray, img2world_a: np.ndarray, mask_b: np.ndarray,
                  img2world_b: np.ndarray) -> np.ndarray:
    """Depth of frame a's valid points as seen from frame b, one point per pixel (0 = none)."""
    h, w = depth_a.shape
    ys, xs = np.meshgrid(np.linspace(0.5, h - 0.5, h), np.linspace(0.5, w - 0.5, w), indexing="ij")
    pts = np.stack([xs, ys, depth_a.astype(np.float64), np.ones_like(xs)], -1)[mask_a]
    pts[:, :2] *= pts[:, 2:3]
    # (contiguous copies of the transposed 4x4s: numpy multiplies by a transposed view ~100x slower)
    world = (pts @ np.ascontiguousarray(img2world_a.T))[:, :3]
    hom = np.concatenate([world, np.ones_like(world[:, :1])], -1) @ np.ascontiguousarray(np.linalg.inv(img2world_b).T)
    z = hom[:, 2]
    uv = np.round(hom[:, :2] / np.clip(hom[:, 2:3], EPS, None)).astype(np.int64)
    hb, wb = mask_b.shape
    keep = (z > EPS) & (uv[:, 0] >= 0) & (uv[:, 0] < wb) & (uv[:, 1] >= 0) & (uv[:, 1] < hb)
    flat = uv[keep, 1] * wb + uv[keep, 0]
    zk = z[keep]
    out = np.zeros(hb * wb, np.float32)
    # the last point written wins: keep the last occurrence of each destination pixel
    rev_unique, rev_first = np.unique(flat[::-1], return_index=True)
    out[rev_unique] = zk[::-1][rev_first]
    return out.reshape(hb, wb) * mask_b


def warp_zbuffer(depth_a: np.ndarray, mask_a: np.ndarray, K_a: np.ndarray, T_a: np.ndarray, mask_b: np.ndarray,
                 K_b: np.ndarray, T_b: np.ndarray) -> np.ndarray:
    """Depth of frame a's valid points as seen from frame b, nearest point per pixel (inf = none)."""
    h, w = depth_a.shape
    ys, xs = np.nonzero(mask_a)
    z_a = depth_a[ys, xs].astype(np.float64)
    pix = np.stack([xs, ys, np.ones_like(xs)], 0).astype(np.float64)
    cam = np.linalg.inv(K_a) @ pix * z_a
    rel = np.linalg.inv(T_b) @ T_a
    cam_b = rel[:3, :3] @ cam + rel[:3, 3:4]
    z = cam_b[2]
    front = z > EPS
    proj = K_b @ cam_b[:, front]
    z = z[front]
    u = np.floor(proj[0] / z + 0.5)
    v = np.floor(proj[1] / z + 0.5)
    hb, wb = mask_b.shape
    inside = (u >= 0) & (u < wb) & (v >= 0) & (v < hb)
    flat = (v[inside] * wb + u[inside]).astype(np.int64)
    out = np.full(hb * wb, np.inf)
    np.minimum.at(out, flat, z[inside])
    out = out.reshape(hb, wb)
    out[~mask_b] = np.inf
    return out


def _abs_rel(ref: np.ndarray, other: np.ndarray) -> float:
    return float(np.mean(np.abs(ref - other) / ref))


def _pair_official(d_a, m_a, P_a, d_b, m_b, P_b) -> float | None:
    errs = []
    for src, ms, Ps, dst, md, Pd in ((d_a, m_a, P_a, d_b, m_b, P_b), (d_b, m_b, P_b, d_a, m_a, P_a)):
        warped = warp_official(src, ms, Ps, md, Pd)
        sel = (warped > EPS) & md
        if sel.any():
            errs.append(_abs_rel(dst[sel].astype(np.float64), warped[sel].astype(np.float64)))
    # the official code averages both directions as they are (an empty one gives NaN there); a
    # direction with nothing to compare is left out here
    return float(np.mean(errs)) if errs else None


def _pair_zbuffer(d_a, m_a, K_a, T_a, d_b, m_b, K_b, T_b) -> float | None:
    errs = []
    for src, ms, Ks, Ts, dst, md, Kd, Td in ((d_a, m_a, K_a, T_a, d_b, m_b, K_b, T_b),
                                             (d_b, m_b, K_b, T_b, d_a, m_a, K_a, T_a)):
        warped = warp_zbuffer(src, ms, Ks, Ts, md, Kd, Td)
        sel = np.isfinite(warped) & md
        if sel.any():
            errs.append(_abs_rel(dst[sel].astype(np.float64), warped[sel]))
    return float(np.mean(errs)) if errs else None


def _check(depth, valid, K, cam_to_world):
    depth, valid = np.asarray(depth), np.asarray(valid, bool)
    K, cam_to_world = np.asarray(K, np.float64), np.asarray(cam_to_world, np.float64)
    if depth.ndim != 3 or valid.shape != depth.shape or K.shape != (len(depth), 3, 3) \
            or cam_to_world.shape != (len(depth), 4, 4):
        raise ValueError(f"TAE needs depth and mask (T, H, W), K (T, 3, 3), poses (T, 4, 4); got {depth.shape}, "
                         f"{valid.shape}, {K.shape}, {cam_to_world.shape}")
    return depth, valid, K, cam_to_world


def tae_pairs(depth, valid, K, cam_to_world, form: str = "official") -> list[float | None]:
    """TAE of each adjacent pair (None where nothing could be compared)."""
    depth, valid, K, T = _check(depth, valid, K, cam_to_world)
    if form == "official":
        P = [_img2world(K[k], T[k]) for k in range(len(depth))]
        return [_pair_official(depth[k], valid[k], P[k], depth[k + 1], valid[k + 1], P[k + 1])
                for k in range(len(depth) - 1)]
    if form == "zbuffer":
        return [_pair_zbuffer(depth[k], valid[k], K[k], T[k], depth[k + 1], valid[k + 1], K[k + 1], T[k + 1])
                for k in range(len(depth) - 1)]
    raise ValueError(f"TAE form must be 'official' or 'zbuffer', got {form!r}")


def tae(depth, valid, K, cam_to_world, form: str = "official") -> float | None:
    """Mean TAE over the adjacent pairs of a clip (None for one frame, or nothing comparable)."""
    pairs = [p for p in tae_pairs(depth, valid, K, cam_to_world, form) if p is not None]
    return float(np.mean(pairs)) if pairs else None
