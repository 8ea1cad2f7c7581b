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
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose, numbered
from dav_builder.capture.imageio import file_problem, read_bytes
from dav_builder.capture.discover import Layout, register

NAME = "sintel"
TAG = 202021.25
RGB_NAME = re.compile(r"frame_(\d+)\.png")  # other files in the folder are ignored


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
    raw = read_bytes(path)
    if len(raw) < 12 or abs(np.frombuffer(raw[:4], "<f4")[0] - TAG) > 1e-3:
        raise FrameError(path, "not a Sintel .dpt file (bad tag)")
    w, h = np.frombuffer(raw[4:12], "<i4")
    if len(raw) != 12 + 4 * int(w) * int(h):
        raise FrameError(path, f"truncated .dpt: expected {w}x{h} floats")
    return np.frombuffer(raw[12:], "<f4").reshape(int(h), int(w)).copy()


def read_cam(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        raw = read_bytes(path)
    except FrameError as exc:
        raise CaptureError(path, exc.problem) from None
    if len(raw) != 4 + 8 * 9 + 8 * 12 or abs(np.frombuffer(raw[:4], "<f4")[0] - TAG) > 1e-3:
        raise CaptureError(path, "not a Sintel .cam file")
    K = np.frombuffer(raw[4:76], "<f8").reshape(3, 3).copy()
    ext = np.eye(4)
    ext[:3] = np.frombuffer(raw[76:], "<f8").reshape(3, 4)
    return K, ext


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    training = path.parents[1]
    frames = []
    for i, rgb in numbered(path.iterdir(), RGB_NAME):
        cam = training / "camdata_left" / path.name / f"{rgb.stem}.cam"
        depth = training / "depth" / path.name / f"{rgb.stem}.dpt"
        problem = file_problem(cam)
        if problem is None:
            try:
                K, ext = read_cam(cam)
                frames.append(FrameFiles(i, rgb, depth, K, invert_pose(ext)))
                continue
            except CaptureError as exc:
                problem = exc.problem
        frames.append(FrameFiles(i, rgb, depth, None, None, problem=f"{cam}: {problem}"))
    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 24.0)), frames, lambda p, f: read_dpt(p))


register(Layout(NAME, "MPI Sintel (training/final/<scene> + training/depth + camdata_left)", find, open_capture))
