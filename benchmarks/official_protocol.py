"""An independent re-implementation of the Depth Any Video authors' evaluation, written from reading
``dav/utils/eval_utils.py`` of github.com/Nightmare-n/DepthAnyVideo (``batch_eval_func`` and its TAE),
for checking the project's protocol against it.  It follows that code's steps, not the project's
functions: per clip, the valid pixels of every frame; a least-squares fit of ``[pred, 1]`` onto
``1 / max(gt, 1e-6)`` per frame or (``temporal_fit``) over the clip; ``1 / max(disp, 1e-6)``
clipped to the data set's depth range; AbsRel and delta1 summed per frame; TAE: per adjacent pair,
points at pixel centres ``+0.5`` lifted with ``inv(K @ world_to_cam)``, projected into the other
frame, rounded, written into an image (one value per pixel, whichever numpy writes last), AbsRel
against the other frame's prediction in both directions; the clip's mean over pairs counts once
per frame of the clip.  The data set's numbers are the sums divided by the number of frames.
"""

from __future__ import annotations

import numpy as np


def _lift(depth, mask, img2world):
    h, w = depth.shape
    rows, cols = np.meshgrid(np.linspace(0.5, h - 0.5, h), np.linspace(0.5, w - 0.5, w), indexing="ij")
    p = np.stack([cols, rows, depth, np.ones_like(cols)], axis=-1)[mask]
    p[:, 0] *= p[:, 2]
    p[:, 1] *= p[:, 2]
    return (p @ img2world.T)[:, :3]


def _splat(world, mask_dst, img2world_dst):
    hom = np.concatenate([world, np.ones((len(world), 1))], axis=1) @ np.linalg.inv(img2world_dst).T
    z = hom[:, 2]
    ok = z > 1e-6
    pix = np.round(hom[:, :2] / np.maximum(hom[:, 2:3], 1e-6)).astype(np.int32)
    h, w = mask_dst.shape
    ok &= (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
    img = np.zeros((h, w), np.float32)
    img[pix[ok, 1], pix[ok, 0]] = z[ok]                 # duplicates: numpy's assignment decides
    return img * mask_dst


def _tae_pair(da, ma, Pa, db, mb, Pb):
    errs = []
    for src, ms, Ps, dst, md, Pd in ((da, ma, Pa, db, mb, Pb), (db, mb, Pb, da, ma, Pa)):
        warped = _splat(_lift(src, ms, Ps), md, Pd)
        sel = (warped > 1e-6) & md
        errs.append(np.mean(np.abs(dst[sel] - warped[sel]) / dst[sel]))
    return 0.5 * (errs[0] + errs[1])


def official_scores(clips, depth_range, temporal_fit: bool) -> dict:
    """``clips``: list of (pred disparity (N,H,W), gt depth (N,H,W), mask (N,H,W), K (N,3,3) or None,
    cam_to_world (N,4,4) or None).  Returns the data set's abs_rel, delta1 and tae."""
    sums = {"abs_rel": 0.0, "delta1": 0.0, "tae": 0.0}
    frames = 0
    for pred, gt, mask, K, c2w in clips:
        pred = pred.astype(np.float64)
        scaled = pred.copy()
        if temporal_fit:
            A = np.stack([pred[mask], np.ones(mask.sum())], 1)
            s, t = np.linalg.lstsq(A, 1 / np.maximum(gt[mask], 1e-6), rcond=None)[0]
            scaled = pred * s + t
        else:
            for f in range(len(pred)):
                A = np.stack([pred[f][mask[f]], np.ones(mask[f].sum())], 1)
                s, t = np.linalg.lstsq(A, 1 / np.maximum(gt[f][mask[f]], 1e-6), rcond=None)[0]
                scaled[f] = pred[f] * s + t
        depth = np.clip(1 / np.maximum(scaled, 1e-6), *depth_range)
        if K is not None and c2w is not None:
            P = []
            for f in range(len(pred)):
                k4 = np.eye(4)
                k4[:3, :3] = K[f]
                P.append(np.linalg.inv(k4 @ np.linalg.inv(c2w[f])))
            pairs = [_tae_pair(depth[f], mask[f], P[f], depth[f + 1], mask[f + 1], P[f + 1]) for f in range(len(pred) - 1)]
            sums["tae"] += float(np.mean(pairs)) * len(pred)
        for f in range(len(pred)):
            g, d = gt[f][mask[f]], depth[f][mask[f]]
            sums["abs_rel"] += float(np.mean(np.abs(g - d) / g))
            sums["delta1"] += float(np.mean(np.maximum(g / d, d / g) < 1.25))
            frames += 1
    return {k: v / frames for k, v in sums.items()}
