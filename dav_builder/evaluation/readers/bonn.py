"""Bonn RGB-D Dynamic (Palazzolo et al. 2019), 24 sequences of people and moving objects.

Source: https://www.ipb.uni-bonn.de/data/rgbd-dynamic-dataset/, in the TUM RGB-D format:
``rgbd_bonn_<name>/rgb/<timestamp>.png``, ``depth/<timestamp>.png`` (uint16, metres x 5000,
0 = no measurement), ``rgb.txt`` and ``depth.txt`` (``timestamp path`` lines) and
``groundtruth.txt`` (``timestamp tx ty tz qx qy qz qw``, motion-capture poses).  Each RGB frame is
paired with the nearest depth frame (and pose) within 20 ms, as TUM's ``associate.py``.
Intrinsics: the data set's published calibration (fx 542.822841, fy 542.576870, cx 315.593520,
cy 237.756098).  The poses are the motion-capture marker's; they are used as camera-to-world as
they are (TAE on Bonn is approximate: the site gives the marker-to-camera offset separately).

Valid depth: (1e-3, 10] m.  No crop.  Clips: ``frames=110`` from ``start=30`` by default.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dav_builder.capture.datasets.common import quat_to_matrix
from dav_builder.evaluation.readers.video import CLIP_OPTIONS, VideoReader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_png16, read_rgb

K = np.array([[542.822841, 0.0, 315.593520], [0.0, 542.576870, 237.756098], [0.0, 0.0, 1.0]])
MAX_DT = 0.02


def read_list(path: Path) -> list[tuple[float, list[str]]]:
    """``timestamp values...`` lines of a TUM text file (``#`` comments skipped)."""
    if not path.is_file():
        raise ReaderError(path, "missing (TUM RGB-D format list)")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        try:
            out.append((float(parts[0]), parts[1:]))
        except (ValueError, IndexError):
            raise ReaderError(path, f"line {n}: expected 'timestamp ...', got {line!r}") from None
    return out


def nearest(ts: np.ndarray, t: float) -> int | None:
    if not len(ts):
        return None
    i = int(np.argmin(np.abs(ts - t)))
    return i if abs(ts[i] - t) <= MAX_DT else None


class Bonn(VideoReader):
    info = BenchmarkInfo("bonn", "Bonn RGB-D", "video", 1e-3, 10.0,
                         "rgbd_bonn_*/{rgb,depth}/*.png, rgb.txt, depth.txt, groundtruth.txt (TUM format)")
    defaults = {**CLIP_OPTIONS, "frames": 110, "start": 30}

    def scenes(self) -> list[str]:
        found = sorted(p.parent.name for p in self.root.glob("*/rgb.txt") if (p.parent / "depth.txt").is_file())
        if not found:
            raise ReaderError(self.root, "no sequences (expected rgbd_bonn_*/rgb.txt and depth.txt)")
        return found

    def _pairs(self, scene: str) -> list[tuple[str, str, np.ndarray | None, float]]:
        d = self.root / scene
        rgb, depth = read_list(d / "rgb.txt"), read_list(d / "depth.txt")
        dts = np.array([t for t, _ in depth])
        gt = read_list(d / "groundtruth.txt") if (d / "groundtruth.txt").is_file() else []
        gts = np.array([t for t, _ in gt])
        out = []
        for t, (path, *_) in rgb:
            j = nearest(dts, t)
            if j is None:
                continue
            k = nearest(gts, t)
            pose = None
            if k is not None:
                vals = [float(x) for x in gt[k][1][:7]]
                pose = np.eye(4)
                pose[:3, :3] = quat_to_matrix(*vals[3:7])
                pose[:3, 3] = vals[:3]
            out.append((path, depth[j][1][0], pose, t))
        return out

    def frame_count(self, scene: str) -> int:
        return len(self._pairs(scene))

    def load_frames(self, scene: str, idx: list[int]) -> EvalSequence:
        pairs = self._pairs(scene)
        d = self.root / scene
        rgb = np.stack([read_rgb(d / pairs[i][0]) for i in idx])
        depth = np.stack([read_png16(d / pairs[i][1]).astype(np.float32) / 5000.0 for i in idx])
        poses = [pairs[i][2] for i in idx]
        T = np.stack(poses) if all(p is not None for p in poses) else None
        return EvalSequence(f"bonn/{scene}@{idx[0]}", rgb, depth, np.ones(depth.shape, bool),
                            np.stack([K] * len(idx)), T, idx)
