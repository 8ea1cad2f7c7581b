"""ScanNet v2 (Dai et al. 2017), RGB-D videos with camera poses.

Source: http://www.scan-net.org; each scene's ``.sens`` file exported with the toolkit's
``SensReader`` (``reader.py --export_color_images --export_depth_images --export_poses
--export_intrinsics``): ``<scene>/color/<i>.jpg`` (1296 x 968), ``<scene>/depth/<i>.png`` (640 x 480,
uint16 millimetres, 0 = no measurement), ``<scene>/pose/<i>.txt`` (4 x 4 camera-to-world, OpenCV
axes; ``-inf`` where tracking failed) and ``<scene>/intrinsic/intrinsic_depth.txt`` (4 x 4).  The
scenes may sit in the root or under ``scans/`` or ``scans_test/``.

Valid depth: (1e-3, 10] m.  No crop.  Clips: ``frames=90`` taken every ``stride=3`` frames, the first
clip of every scene, by default.  Predictions are made on the colour images and resized to the
depth maps' resolution; TAE uses the depth intrinsics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dav_builder.evaluation.readers.video import CLIP_OPTIONS, VideoReader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_png16, read_rgb, sort_numeric


def read_matrix(path: Path, shape=(4, 4)) -> np.ndarray:
    try:
        m = np.array([[float(x) for x in line.split()] for line in path.read_text().splitlines() if line.strip()])
        return m.reshape(shape)
    except (OSError, ValueError) as exc:
        raise ReaderError(path, f"not a {shape[0]}x{shape[1]} matrix: {exc}") from None


class ScanNet(VideoReader):
    info = BenchmarkInfo("scannet", "ScanNet", "video", 1e-3, 10.0,
                         "<scene>/{color,depth,pose,intrinsic} as the ScanNet SensReader exports a .sens file")
    defaults = {**CLIP_OPTIONS, "frames": 90, "stride": 3}

    def _scene_dirs(self) -> dict[str, Path]:
        out = {}
        for base in (self.root, self.root / "scans", self.root / "scans_test"):
            for d in sorted(base.glob("*/depth")):
                if (d.parent / "color").is_dir():
                    out.setdefault(d.parent.name, d.parent)
        if not out:
            raise ReaderError(self.root, "no exported scenes (expected <scene>/color/ and <scene>/depth/)")
        return out

    def scenes(self) -> list[str]:
        return sorted(self._scene_dirs())

    def _frames(self, scene: str) -> tuple[Path, list[str]]:
        d = self._scene_dirs()[scene]
        return d, [p.stem for p in sort_numeric(list((d / "depth").glob("*.png"))) if (d / "color" / f"{p.stem}.jpg").is_file()]

    def frame_count(self, scene: str) -> int:
        return len(self._frames(scene)[1])

    def load_frames(self, scene: str, idx: list[int]) -> EvalSequence:
        d, names = self._frames(scene)
        sel = [names[i] for i in idx]
        rgb = np.stack([read_rgb(d / "color" / f"{n}.jpg") for n in sel])
        depth = np.stack([read_png16(d / "depth" / f"{n}.png").astype(np.float32) / 1000.0 for n in sel])
        K = T = None
        kfile = d / "intrinsic" / "intrinsic_depth.txt"
        if kfile.is_file() and all((d / "pose" / f"{n}.txt").is_file() for n in sel):
            poses = np.stack([read_matrix(d / "pose" / f"{n}.txt") for n in sel])
            if np.isfinite(poses).all():                   # -inf: tracking lost; no TAE for this clip
                K, T = np.stack([read_matrix(kfile)[:3, :3]] * len(sel)), poses
        return EvalSequence(f"scannet/{scene}@{sel[0]}", rgb, depth, np.ones(depth.shape, bool), K, T,
                            [int(n) for n in sel])
