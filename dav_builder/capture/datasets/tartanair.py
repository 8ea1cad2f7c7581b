"""TartanAir (Wang et al. 2020), as published:

``<env>/<Easy|Hard>/P<nnn>/image_left/<000000>_left.png``,
``depth_left/<000000>_left_depth.npy`` (float32 metres, planar), ``pose_left.txt`` (one line per
frame: ``tx ty tz qx qy qz qw``, camera-to-world in NED axes: x forward, y right, z down).
Intrinsics are fixed: fx = fy = 320, cx = 320, cy = 240 for 640x480 images.  The sky is a sphere
at a large finite distance ("e.g. 10000", the data set's own notes on its depth files), not inf:
depth at or beyond ``sky_depth_m`` (reader option, default 5000 m) is invalid.  Files whose names
are not ``<number>_left.png`` are ignored.  To OpenCV camera
axes (x right, y down, z forward): ``R_cv = R_ned @ [[0,0,1],[1,0,0],[0,1,0]]``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, numbered, pinhole, quat_to_matrix
from dav_builder.capture.discover import Layout, register
from dav_builder.capture.imageio import image_size, read_bytes

NAME = "tartanair"
CV_TO_NED = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns: cv x, y, z in NED body axes


def find(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("image_left") if (p.parent / "depth_left").is_dir())


RGB_NAME = re.compile(r"(\d+)_left\.png")
#: Depth at or beyond this many metres is the sky sphere (the files store about 10000 there).
SKY_DEPTH_M = 5000.0


def load_depth(path: Path, _f, sky_depth_m: float = SKY_DEPTH_M) -> np.ndarray:
    d = np.load(path, allow_pickle=False)
    if d.ndim != 2:
        raise FrameError(path, f"depth must be 2-D, got {d.shape}")
    d = d.astype(np.float32)
    return np.where(d < sky_depth_m, d, 0.0).astype(np.float32)


def ned_pose(values: list[float]) -> np.ndarray:
    tx, ty, tz, qx, qy, qz, qw = values
    m = np.eye(4)
    m[:3, :3] = quat_to_matrix(qx, qy, qz, qw) @ CV_TO_NED
    m[:3, 3] = [tx, ty, tz]
    return m


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    poses_file = path / "pose_left.txt"
    poses = []
    if poses_file.is_file():
        for lineno, line in enumerate(poses_file.read_text().splitlines(), start=1):
            try:
                values = [float(v) for v in line.split()]
            except ValueError:
                raise CaptureError(poses_file, f"line {lineno}: not numbers") from None
            if len(values) != 7:
                raise CaptureError(poses_file, f"line {lineno}: expected 7 values (tx ty tz qx qy qz qw)")
            poses.append(ned_pose(values))
    frames = []
    K = None
    for i, rgb in numbered((path / "image_left").iterdir(), RGB_NAME):
        if K is None:  # published: fx = fy = 320, cx = 320, cy = 240 at 640x480; scaled if resized
            w, h, _ = image_size(read_bytes(rgb), rgb)
            K = pinhole(320.0 * w / 640, 320.0 * h / 480, 320.0 * w / 640, 240.0 * h / 480)
        frames.append(FrameFiles(i, rgb, path / "depth_left" / f"{i:06d}_left_depth.npy", K,
                                 poses[i] if i < len(poses) else None))
    sky = float(opts.get("sky_depth_m", SKY_DEPTH_M))
    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 10.0)), frames,
                           lambda p, f: load_depth(p, f, sky))


register(Layout(NAME, "TartanAir (<env>/<difficulty>/P<nnn>/image_left + depth_left)", find, open_capture))
