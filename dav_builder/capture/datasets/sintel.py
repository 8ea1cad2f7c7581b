"""MPI Sintel (Butler et al. 2012) depth training set, as published:

``training/final/<scene>/frame_<0001>.png`` (or ``clean``), ``training/depth/<scene>/frame_<0001>.dpt``
(float32 tag 202021.25, int32 width, int32 height, then float32 depth in scene units, planar z),
``training/camdata_left/<scene>/frame_<0001>.cam`` (float32 tag, 3x3 intrinsics and 3x4
world-to-camera extrinsics, float64 row-major).  Sintel's camera looks down +z with y down
(OpenCV), so the pose is the inverse of the extrinsic.  Frames are numbered from 1; fps 24.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose
from dav_builder.capture.discover import Layout, register

NAME = "sintel"
TAG = 202021.25


def find(root: Path) -> list[Path]:
    out = []
    for pass_dir in ("final", "clean"):
        for scene in Path(root).rglob(pass_dir):
            depth_root = scene.parent / "depth"
            if scene.is_dir() and depth_root.is_dir():
                out += [s for s in sorted(scene.iterdir()) if s.is_dir() and (depth_root / s.name).is_dir()]
        if out:
            break
    return sorted(out)


def read_dpt(path: Path) -> np.ndarray:
    raw = path.read_bytes()
    if len(raw) < 12 or abs(np.frombuffer(raw[:4], "<f4")[0] - TAG) > 1e-3:
        raise FrameError(path, "not a Sintel .dpt file (bad tag)")
    w, h = np.frombuffer(raw[4:12], "<i4")
    if len(raw) != 12 + 4 * int(w) * int(h):
        raise FrameError(path, f"truncated .dpt: expected {w}x{h} floats")
    return np.frombuffer(raw[12:], "<f4").reshape(int(h), int(w)).copy()


def read_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    raw = path.read_bytes()
    if len(raw) != 4 + 8 * 9 + 8 * 12 or abs(np.frombuffer(raw[:4], "<f4")[0] - TAG) > 1e-3:
        raise CaptureError(path, "not a Sintel .cam file")
    K = np.frombuffer(raw[4:76], "<f8").reshape(3, 3).copy()
    ext = np.eye(4)
    ext[:3] = np.frombuffer(raw[76:], "<f8").reshape(3, 4)
    return K, ext


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    training = path.parents[1]
    frames = []
    for rgb in sorted(path.glob("frame_*.png")):
        i = int(re.findall(r"\d+", rgb.stem)[-1])
        cam = training / "camdata_left" / path.name / f"{rgb.stem}.cam"
        if not cam.is_file():
            raise CaptureError(cam, "file is missing")
        K, ext = read_cam(cam)
        frames.append(FrameFiles(i, rgb, training / "depth" / path.name / f"{rgb.stem}.dpt", K, invert_pose(ext)))
    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 24.0)), frames, lambda p, f: read_dpt(p))


register(Layout(NAME, "MPI Sintel (training/final/<scene> + training/depth + camdata_left)", find, open_capture))
