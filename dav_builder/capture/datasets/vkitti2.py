"""Virtual KITTI 2 (Cabon et al. 2020), as published:

``<Scene>/<variation>/frames/rgb/Camera_<c>/rgb_<00000>.jpg``,
``<Scene>/<variation>/frames/depth/Camera_<c>/depth_<00000>.png`` (16-bit PNG, centimetres;
65535 = sky, i.e. 655.35 m and beyond: invalid), and per scene-variation ``intrinsic.txt``
(``frame cameraID K[0,0] K[1,1] K[0,2] K[1,2]``) and ``extrinsic.txt`` (``frame cameraID`` then the
16 values of the 4x4 world-to-camera matrix, row-major).  Camera axes are KITTI's, which are
OpenCV's (x right, y down, z forward), so the pose is the inverse of the extrinsic.  One capture
per (scene, variation, camera); fps 10 as KITTI.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose, numbered, pinhole
from dav_builder.capture.discover import Layout, register

NAME = "vkitti2"
INVALID_CM = 65535
RGB_NAME = re.compile(r"rgb_(\d+)\.jpg")  # other files in the folder are ignored


def find(root: Path) -> list[Path]:
    return sorted(p for p in Path(root).rglob("Camera_*") if p.is_dir() and p.parent.name == "rgb"
                  and p.parent.parent.name == "frames")


def _table(path: Path) -> dict[tuple[int, int], list[float]]:
    if not path.is_file():
        raise CaptureError(path, "file is missing")
    out = {}
    for lineno, line in enumerate(path.read_text().splitlines()[1:], start=2):
        parts = line.split()
        if not parts:
            continue
        try:
            out[(int(parts[0]), int(parts[1]))] = [float(v) for v in parts[2:]]
        except ValueError:
            raise CaptureError(path, f"line {lineno}: not numbers") from None
    return out


def load_depth(path: Path, _f) -> np.ndarray:
    d = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if d is None or d.dtype != np.uint16 or d.ndim != 2:
        raise FrameError(path, "not a 16-bit greyscale PNG")
    return np.where(d == INVALID_CM, 0.0, d.astype(np.float32) / 100.0)


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    try:
        cam = int(path.name.split("_")[-1])
    except ValueError:
        raise CaptureError(path, "camera folder must be named Camera_<number>") from None
    base = path.parents[2]  # <Scene>/<variation>
    intr, extr = _table(base / "intrinsic.txt"), _table(base / "extrinsic.txt")
    frames = []
    for i, rgb in numbered(path.iterdir(), RGB_NAME):
        k = intr.get((i, cam))
        depth = base / "frames" / "depth" / path.name / f"depth_{i:05d}.png"
        if k is None or len(k) < 4:
            frames.append(FrameFiles(i, rgb, depth, None, None,
                                     problem=f"{base / 'intrinsic.txt'}: no intrinsics for frame {i} camera {cam}"))
            continue
        e = extr.get((i, cam))
        pose = invert_pose(np.array(e).reshape(4, 4)) if e and len(e) == 16 else None
        frames.append(FrameFiles(i, rgb, depth, pinhole(*k[:4]), pose))
    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 10.0)), frames, load_depth)


register(Layout(NAME, "Virtual KITTI 2 (<Scene>/<variation>/frames/rgb/Camera_N)", find, open_capture))
