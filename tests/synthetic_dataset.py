"""Write a small dav-build dataset directly (no capture, no renderer) for tests of readers of datasets.

The scenes are analytic: a textured slanted plane whose depth is known, seen by a camera moving
forward, so a depth model can learn something and metrics have known answers.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dav_builder.clip import Clip, bucket_name, make_clip_id
from dav_builder.shards import BucketShardWriter, ShardLimits, clip_row, write_manifest


def analytic_clip(capture: str, first: int, frames: int, height: int, width: int, seed: int) -> Clip:
    """A clip of a camera moving towards a slanted, textured plane (depth known exactly)."""
    rng = np.random.default_rng(seed)
    fx = fy = 0.8 * width
    cx, cy = (width - 1) / 2, (height - 1) / 2
    K = np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]])
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    tilt = rng.uniform(-0.6, 0.6)
    base = rng.uniform(3.0, 8.0)
    texture = rng.integers(0, 255, size=(8, 8, 3)).astype(np.uint8)
    rgb, depth, poses = [], [], []
    for t in range(frames):
        z0 = base - 0.05 * t
        # plane z = z0 + tilt * y_cam  ->  z = z0 / (1 - tilt * (v - cy) / fy)
        z = z0 / (1.0 - tilt * (ys - cy) / fy)
        z = np.where(z > 0, z, 0)
        u_world = (xs - cx) / fx * z
        v_world = (ys - cy) / fy * z
        ti = (np.floor(u_world * 2).astype(int) % 8, np.floor(v_world * 2).astype(int) % 8)
        img = texture[ti[1], ti[0]]
        img = (img.astype(np.float32) * np.clip(3.0 / np.maximum(z, 1e-3), 0.3, 1.0)[..., None]).astype(np.uint8)
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok
        rgb.append(png.tobytes())
        depth.append(z.astype(np.float32))
        pose = np.eye(4)
        pose[2, 3] = 0.05 * t
        poses.append(pose)
    indices = list(range(first, first + frames))
    return Clip(
        clip_id=make_clip_id(capture, first, frames),
        capture=capture,
        frame_indices=indices,
        fps=10.0,
        height=height,
        width=width,
        rgb=rgb,
        rgb_ext="png",
        depth=np.stack(depth),
        K=np.repeat(K[None], frames, 0),
        cam_to_world=np.stack(poses),
    )


def write_synthetic_dataset(
    out: Path,
    buckets: tuple[tuple[int, int, int, int], ...] = ((32, 48, 6, 4), (32, 48, 1, 4), (48, 32, 4, 3)),
    seed: int = 0,
) -> Path:
    """Write ``out`` as a dav-build dataset; ``buckets`` lists (height, width, frames, clips)."""
    out = Path(out)
    rows = []
    n = 0
    for height, width, frames, count in buckets:
        bucket = bucket_name(height, width, frames)
        writer = BucketShardWriter(out, bucket, ShardLimits(max_clips=3))
        for _ in range(count):
            clip = analytic_clip(f"synthetic/{n:03d}", 0, frames, height, width, seed + n)
            clip.scores = {"depth_score": 0.9, "semantic_score": 0.9}
            writer.write(clip, clip_row)
            rows.append(clip_row(clip))
            n += 1
        writer.close()
    write_manifest(out, rows)
    return out
