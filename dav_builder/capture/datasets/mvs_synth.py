"""MVS-Synth (Huang et al. 2018, GTA V), as published:

``GTAV_<res>/<seq>/images/<0000>.png``, ``depths/<0000>.exr`` (float planar depth, ``inf`` =
sky), ``poses/<0000>.json`` with ``extrinsic`` (4x4 world-to-camera, OpenCV axes) and ``c_x``,
``c_y``, ``f_x``, ``f_y`` in pixels.  fps is not published; 30 is assumed.  Files whose names
are not ``<number>.png`` are ignored; a missing or malformed pose file is that frame's error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from dav_builder.capture.base import FrameError
from dav_builder.capture.datasets.common import FrameFiles, SequenceCapture, invert_pose, numbered, pinhole
from dav_builder.capture.imageio import file_problem, read_bytes
from dav_builder.capture.validate import pose_problem
from dav_builder.capture.discover import Layout, register
from dav_builder.capture.imageio import read_depth_file

NAME = "mvs_synth"
RGB_NAME = re.compile(r"(\d+)\.png")


def find(root: Path) -> list[Path]:
    return sorted(p.parent for p in Path(root).rglob("depths")
                  if (p.parent / "images").is_dir() and (p.parent / "poses").is_dir())


def open_capture(path: Path, capture_id: str, opts: dict) -> SequenceCapture:
    frames = []
    for i, rgb in numbered((path / "images").iterdir(), RGB_NAME):
        pose_file = path / "poses" / f"{rgb.stem}.json"
        depth = path / "depths" / f"{rgb.stem}.exr"
        problem = file_problem(pose_file)
        if problem is None:
            try:
                meta = json.loads(read_bytes(pose_file))
                K = pinhole(float(meta["f_x"]), float(meta["f_y"]), float(meta["c_x"]), float(meta["c_y"]))
                ext = np.asarray(meta["extrinsic"], dtype=np.float64)
                problem = pose_problem(ext)
                if problem is None:
                    frames.append(FrameFiles(i, rgb, depth, K, invert_pose(ext)))
                    continue
            except FrameError as exc:
                problem = exc.problem
            except (KeyError, ValueError, TypeError, OverflowError, RecursionError) as exc:
                problem = f"malformed pose file: {exc!r}"
        frames.append(FrameFiles(i, rgb, depth, None, None, problem=f"{pose_file}: {problem}"))

    def load(p: Path, f: FrameFiles) -> np.ndarray:
        import OpenEXR

        with OpenEXR.File(str(p)) as exr:
            h, w = next(iter(exr.channels().values())).pixels.shape[:2]
        return read_depth_file(p, "exr", h, w)

    return SequenceCapture(path, capture_id, NAME, float(opts.get("fps", 30.0)), frames, load)


register(Layout(NAME, "MVS-Synth (GTAV_*/<seq>/images + depths + poses)", find, open_capture))
