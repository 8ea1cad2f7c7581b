"""MVS-Synth (Huang et al. 2018, GTA V), as published:

``GTAV_<res>/<seq>/images/<0000>.png``, ``depths/<0000>.exr`` (float planar depth, ``inf`` =
sky), ``poses/<0000>.json`` with ``extrinsic`` (4x4 world-to-camera, OpenCV axes) and ``c_x``,
``c_y``, ``f_x``, ``f_y`` in pixels.  fps is not published; 30 is assumed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dav_builder.capture.base import CaptureError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose, pinhole
from dav_builder.capture.discover import Layout, register
from dav_builder.capture.imageio import read_depth_file

NAME = "mvs_synth"


def find(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("depths")
                  if (p.parent / "images").is_dir() and (p.parent / "poses").is_dir())


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    frames = []
    for rgb in sorted((path / "images").glob("*.png")):
        i = int(rgb.stem)
        pose_file = path / "poses" / f"{rgb.stem}.json"
        try:
            meta = json.loads(pose_file.read_text())
            K = pinhole(meta["f_x"], meta["f_y"], meta["c_x"], meta["c_y"])
            pose = invert_pose(np.asarray(meta["extrinsic"], dtype=np.float64))
        except FileNotFoundError:
            raise CaptureError(pose_file, "file is missing") from None
        except (KeyError, ValueError, TypeError) as exc:
            raise CaptureError(pose_file, f"malformed pose file: {exc}") from None
        frames.append(FrameFiles(i, rgb, path / "depths" / f"{rgb.stem}.exr", K, pose))

    def load(p: Path, f: FrameFiles) -> np.ndarray:
        import OpenEXR

        with OpenEXR.File(str(p)) as exr:
            h, w = next(iter(exr.channels().values())).pixels.shape[:2]
        return read_depth_file(p, "exr", h, w)

    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 30.0)), frames, load)


register(Layout(NAME, "MVS-Synth (GTAV_*/<seq>/images + depths + poses)", find, open_capture))
