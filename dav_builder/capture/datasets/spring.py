"""Spring (Mehl et al. 2023), as published:

``train/<scene>/frame_left/frame_left_<0001>.png``, ``disp1_left/disp1_left_<0001>.dsp5`` (HDF5
dataset ``disparity`` at twice the image resolution: every second pixel is taken),
``cam_data/intrinsics.txt`` (``fx fy cx cy`` per frame) and ``cam_data/extrinsics.txt`` (16 values
per frame: world-to-camera, OpenCV axes).  Depth = fx * 0.065 m (the stereo baseline) / disparity;
zero or non-finite disparity is invalid.  Frames are numbered from 1; fps 60.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose, numbered, pinhole
from dav_builder.capture.discover import Layout, register

NAME = "spring"
BASELINE_M = 0.065
RGB_NAME = re.compile(r"frame_left_(\d+)\.png")  # other files in the folder are ignored


def find(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("frame_left") if (p.parent / "disp1_left").is_dir())


def _rows(path: Path, n: int) -> list[list[float]]:
    if not path.is_file():
        raise CaptureError(path, "file is missing")
    rows = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                vals = [float(v) for v in line.split()]
            except ValueError:
                raise CaptureError(path, f"line {lineno}: not numbers") from None
            if len(vals) != n:
                raise CaptureError(path, f"line {lineno}: expected {n} values, got {len(vals)}")
            rows.append(vals)
    return rows


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    intr = _rows(path / "cam_data" / "intrinsics.txt", 4)
    extr = _rows(path / "cam_data" / "extrinsics.txt", 16)
    frames = []
    for i, rgb in numbered((path / "frame_left").iterdir(), RGB_NAME):
        disp = path / "disp1_left" / f"disp1_left_{i:04d}.dsp5"
        if not 1 <= i <= len(intr):
            frames.append(FrameFiles(i, rgb, disp, None, None,
                                     problem=f"{path / 'cam_data' / 'intrinsics.txt'}: no line for frame {i}"))
            continue
        pose = invert_pose(np.array(extr[i - 1]).reshape(4, 4)) if i - 1 < len(extr) else None
        frames.append(FrameFiles(i, rgb, disp, pinhole(*intr[i - 1]), pose))

    def load(p: Path, f: FrameFiles) -> np.ndarray:
        import h5py

        try:
            with h5py.File(p, "r") as h:
                disp = np.asarray(h["disparity"], dtype=np.float64)[::2, ::2]
        except (OSError, KeyError) as exc:
            raise FrameError(p, f"HDF5 disparity cannot be read: {exc}") from None
        with np.errstate(divide="ignore", invalid="ignore"):
            z = f.K[0, 0] * BASELINE_M / disp
        return np.where(np.isfinite(disp) & (disp > 0), z, 0.0)

    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 60.0)), frames, load)


register(Layout(NAME, "Spring (train/<scene>/frame_left + disp1_left + cam_data)", find, open_capture))
