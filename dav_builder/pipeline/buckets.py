"""Bucketing clips by resolution and length, and the optional resize or crop to a target size.

Every clip in a bucket has the same height, width and frame count, so the trainer batches a
bucket with no padding.  By default clips keep their native size (``mode = "native"``) and RGB
bytes are copied untouched; ``resize`` and ``crop`` map each clip to the configured target size
whose aspect ratio is nearest and re-encode its frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dav_builder.clip import Clip, bucket_name

MODES = ("native", "resize", "crop")


def nearest_target(height: int, width: int, targets: list[tuple[int, int]]) -> tuple[int, int]:
    """The target (h, w) whose aspect ratio is nearest to the frame's (compared in log space)."""
    if not targets:
        return height, width
    aspect = math.log(width / height)
    return min(targets, key=lambda hw: (abs(math.log(hw[1] / hw[0]) - aspect), -hw[0] * hw[1]))


@dataclass(frozen=True)
class Geometry:
    """How a frame maps to its bucket size: crop box (x0, y0, w, h) in source pixels, then scale."""

    x0: int
    y0: int
    crop_w: int
    crop_h: int
    out_w: int
    out_h: int

    @property
    def identity(self) -> bool:
        return self.x0 == 0 and self.y0 == 0 and self.crop_w == self.out_w and self.crop_h == self.out_h


def bucket_may_resize(mode: str) -> bool:
    """Whether ``mode`` can change a clip's pixels (so depth cannot be encoded before bucketing)."""
    return mode != "native"


def plan_geometry(height: int, width: int, mode: str, targets: list[tuple[int, int]]) -> Geometry:
    """Where a ``height`` x ``width`` frame is cropped and how it is scaled for ``mode``."""
    if mode not in MODES:
        raise ValueError(f"bucket mode {mode!r} is not one of {MODES}")
    if mode == "native" or not targets:
        return Geometry(0, 0, width, height, width, height)
    th, tw = nearest_target(height, width, targets)
    if mode == "resize":
        return Geometry(0, 0, width, height, tw, th)
    # crop: the largest centred box with the target's aspect ratio, then scale to the target
    if width * th > tw * height:  # source wider than target
        cw, ch = round(height * tw / th), height
    else:
        cw, ch = width, round(width * th / tw)
    return Geometry((width - cw) // 2, (height - ch) // 2, cw, ch, tw, th)


def transform_intrinsics(K: np.ndarray, g: Geometry) -> np.ndarray:
    """Intrinsics after cropping and scaling (pixel centres at integer coordinates, OpenCV)."""
    K = np.array(K, dtype=np.float64, copy=True)
    sx, sy = g.out_w / g.crop_w, g.out_h / g.crop_h
    K[..., 0, 2] -= g.x0
    K[..., 1, 2] -= g.y0
    K[..., 0, 0] *= sx
    K[..., 0, 1] *= sx
    K[..., 0, 2] = (K[..., 0, 2] + 0.5) * sx - 0.5
    K[..., 1, 1] *= sy
    K[..., 1, 2] = (K[..., 1, 2] + 0.5) * sy - 0.5
    return K


def transform_depth(depth: np.ndarray, g: Geometry) -> np.ndarray:
    """Crop and scale one depth frame with nearest-neighbour sampling.

    Averaging depth across an object edge would invent points floating between foreground and
    background, and averaging with invalid (0) pixels would invent near points; nearest keeps
    every output value a real measurement.
    """
    d = depth[g.y0 : g.y0 + g.crop_h, g.x0 : g.x0 + g.crop_w]
    if (g.crop_w, g.crop_h) == (g.out_w, g.out_h):
        return np.ascontiguousarray(d)
    return cv2.resize(d, (g.out_w, g.out_h), interpolation=cv2.INTER_NEAREST)


def transform_rgb(data: bytes, ext: str, g: Geometry) -> bytes:
    """Decode, crop, scale (area filter when shrinking) and re-encode one RGB image."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("RGB image cannot be decoded for resizing")
    img = img[g.y0 : g.y0 + g.crop_h, g.x0 : g.x0 + g.crop_w]
    shrink = g.out_w * g.out_h < g.crop_w * g.crop_h
    img = cv2.resize(img, (g.out_w, g.out_h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    if ext == "jpg":
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    else:
        ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise ValueError("RGB image cannot be re-encoded")
    return buf.tobytes()


def apply_bucket(clip: Clip, mode: str, targets: list[tuple[int, int]]) -> Clip:
    """Fit a loaded clip to its bucket size (in place) and set ``clip.bucket``."""
    g = plan_geometry(clip.height, clip.width, mode, targets)
    if not g.identity:
        clip.rgb = [transform_rgb(b, clip.rgb_ext, g) for b in clip.rgb]
        assert clip.depth is not None
        clip.depth = np.stack([transform_depth(d, g) for d in clip.depth])
        clip.depth_npy = None  # encoded before the geometry changed
        if clip.K is not None:
            clip.K = transform_intrinsics(clip.K, g)
        clip.height, clip.width = g.out_h, g.out_w
    clip.bucket = bucket_name(clip.height, clip.width, clip.num_frames)
    return clip
